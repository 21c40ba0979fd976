/*
 * The connection guard (guard.h). Records live in the worker's list from
 * accept to h2o's close callback; "dying" ones were shut down and wait for
 * h2o to notice, and are not counted against max_connections.
 */
#include "ita/guard.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "ita/http.h"

struct ita_conn {
    h2o_linklist_t link; /* in the worker's conns, oldest first */
    ita_worker_t *w;
    h2o_socket_t *sock;
    double accepted;
    unsigned long n_reqs;
    double win_start; /* the current second of the HTTP/2 rate */
    int win_count;
    uint64_t written; /* bytes written when last seen writing */
    double stalled_since;
    int dying;
};

static void conn_kill(ita_conn_t *c) {
    if (c->dying) return;
    c->dying = 1;
    c->w->n_dying++;
    shutdown(h2o_socket_get_fd(c->sock), SHUT_RDWR);
}

static void on_close(void *data) {
    ita_conn_t *c = data;
    ita_worker_t *w = c->w;
    h2o_linklist_unlink(&c->link);
    if (c->dying) w->n_dying--;
    free(c);
    ita_server_conn_closed(w);
}

int ita_guard_conn_open(void *worker, h2o_socket_t *sock) {
    ita_worker_t *w = worker;
    ita_conn_t *c = calloc(1, sizeof *c);
    if (!c) return -1;
    w->n_conns++;
    c->w = w;
    c->sock = sock;
    c->accepted = ita_mono_now();
    h2o_linklist_insert(&w->conns, &c->link);
    sock->on_close.cb = on_close;
    sock->on_close.data = c;
    return 0;
}

int ita_guard_evict(void *worker) {
    ita_worker_t *w = worker;
    if (w->n_dying >= 64) return 0; /* descriptors not yet released */
    for (h2o_linklist_t *l = w->conns.next; l != &w->conns; l = l->next) {
        ita_conn_t *c = H2O_STRUCT_FROM_MEMBER(ita_conn_t, link, l);
        if (!c->dying && c->n_reqs == 0) {
            conn_kill(c);
            atomic_fetch_add_explicit(&w->n_evicted, 1, memory_order_relaxed);
            return 1;
        }
    }
    return 0;
}

/* h2o 2.2 parses the HTTP/2 frames it has read in a loop that runs until
 * its input buffer is empty, whatever the connection's fate: after a
 * rapid-reset flood trips the limit, thousands of streams already read would
 * each still be opened, answered and reset. A request is started from
 * within that loop by the frame at the start of the buffer (HEADERS,
 * CONTINUATION or DATA ending the stream; RST_STREAM when a waiting stream
 * gets its turn), which h2o consumes when the handler returns: cutting the
 * buffer to that frame ends the loop there. Outside the loop (a waiting
 * request started by a write completing) the buffer holds at most an
 * incomplete frame, left as it is. Whatever arrives later meets the next
 * refusal, and the shut-down socket soon reads its end. */
static void drop_read_frames(h2o_socket_t *sock) {
    h2o_buffer_t *in = sock->input;
    if (!in || in->size < 9) return;
    const unsigned char *b = (const unsigned char *)in->bytes;
    size_t frame = 9 + ((size_t)b[0] << 16 | (size_t)b[1] << 8 | b[2]);
    if (frame <= in->size) in->size = frame;
}

int ita_guard_request(void *worker, h2o_conn_t *conn, int http2) {
    ita_worker_t *w = worker;
    h2o_socket_t *sock = conn->callbacks->get_socket ? conn->callbacks->get_socket(conn) : NULL;
    if (!sock || sock->on_close.cb != on_close) return 0;
    ita_conn_t *c = sock->on_close.data;
    c->n_reqs++;
    if (!http2) return 0;
    double now = ita_mono_now();
    if (now - c->win_start >= 1.0) {
        c->win_start = now;
        c->win_count = 0;
    }
    if (++c->win_count <= w->srv->cfg.h2_max_requests_per_s) return 0;
    atomic_fetch_add_explicit(&w->n_rate_refused, 1, memory_order_relaxed);
    if (!c->dying) {
        atomic_fetch_add_explicit(&w->n_rate_closed, 1, memory_order_relaxed);
        conn_kill(c);
    }
    drop_read_frames(sock);
    return -1;
}

static int name_is(const char *p, size_t len, const char *lit) {
    return strlen(lit) == len && !strncasecmp(p, lit, len);
}

/* h2o 2.2 frames the body by Transfer-Encoding, else the first
 * Content-Length, and keeps neither in req->headers, so the header block is
 * read where h2o parsed it: a connection's input stays in its buffer until
 * the answer has been sent, starting at this request's line (after the
 * empty lines a client may send between requests). h2o has parsed it
 * already, so every line is complete and names end at a colon. */
const char *ita_guard_http1_framing(h2o_req_t *req) {
    if (req->version >= 0x200 || !req->conn->callbacks->get_socket) return NULL;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (!sock || !sock->input) return NULL;
    const char *p = sock->input->bytes, *end = p + sock->input->size;
    while (p < end && (*p == '\r' || *p == '\n')) p++;
    const char *eol = memchr(p, '\n', (size_t)(end - p)); /* the request line */
    int n_length = 0, n_coding = 0;
    while (eol) {
        p = eol + 1;
        if (!(eol = memchr(p, '\n', (size_t)(end - p)))) break;
        size_t len = (size_t)(eol - p);
        if (len && p[len - 1] == '\r') len--;
        if (len == 0) break; /* the end of the header block */
        if (*p == ' ' || *p == '\t') return "a folded header line (obs-fold) is not accepted";
        const char *colon = memchr(p, ':', len);
        if (!colon) continue;
        if (name_is(p, (size_t)(colon - p), "content-length"))
            n_length++;
        else if (name_is(p, (size_t)(colon - p), "transfer-encoding"))
            n_coding++;
    }
    if (n_length && n_coding) return "Content-Length together with Transfer-Encoding";
    if (n_length > 1) return "more than one Content-Length";
    if (n_coding > 1) return "more than one Transfer-Encoding";
    return NULL;
}

static void sweep(ita_worker_t *w) {
    const ita_config_t *cfg = &w->srv->cfg;
    double now = ita_mono_now();
    for (h2o_linklist_t *l = w->conns.next; l != &w->conns; l = l->next) {
        ita_conn_t *c = H2O_STRUCT_FROM_MEMBER(ita_conn_t, link, l);
        if (c->dying) continue;
        if (c->n_reqs == 0 && now - c->accepted > cfg->header_timeout_s) {
            conn_kill(c); /* no complete request in time: slowloris, stalled handshake */
            atomic_fetch_add_explicit(&w->n_timed_out, 1, memory_order_relaxed);
            continue;
        }
        if (!h2o_socket_is_writing(c->sock)) {
            c->stalled_since = 0;
            continue;
        }
        if (c->stalled_since == 0 || c->sock->bytes_written != c->written) {
            c->written = c->sock->bytes_written;
            c->stalled_since = now;
        } else if (now - c->stalled_since > cfg->write_timeout_s) {
            conn_kill(c); /* the client reads nothing of the answer */
            atomic_fetch_add_explicit(&w->n_timed_out, 1, memory_order_relaxed);
        }
    }
}

static void on_sweep(h2o_timeout_entry_t *e) {
    ita_worker_t *w = H2O_STRUCT_FROM_MEMBER(ita_worker_t, guard_entry, e);
    sweep(w);
    h2o_timeout_link(w->loop, &w->guard_timeout, &w->guard_entry);
}

void ita_guard_start(void *worker) {
    ita_worker_t *w = worker;
    h2o_linklist_init_anchor(&w->conns);
    h2o_timeout_init(w->loop, &w->guard_timeout, 250);
    w->guard_entry.cb = on_sweep;
    h2o_timeout_link(w->loop, &w->guard_timeout, &w->guard_entry);
}

void ita_guard_stop(void *worker) {
    ita_worker_t *w = worker;
    if (h2o_timeout_is_linked(&w->guard_entry)) h2o_timeout_unlink(&w->guard_entry);
    h2o_timeout_dispose(w->loop, &w->guard_timeout);
}
