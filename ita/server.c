/*
 * The server core. Setup: one h2o global config with a single handler at
 * "/" (routing is ours, so every answer, error or not, passes through the
 * same request-id, auth, audit and metrics code), then one thread per
 * worker, each with its own event loop, h2o context, listening socket,
 * job-directory cache and keys cache. The main thread waits in sigwait for
 * SIGTERM/SIGINT and raises `stop`, which every loop checks at least every
 * 100 ms.
 *
 * A request: bounded headers, path and body; GET or HEAD (POST for the
 * routes that take a body: submit, cancel, scan, tests); route by
 * splitting the raw path (job ids are validated by jobdir.h, never
 * decoded); check the key and scope the route needs, then the rate limit;
 * run the route.
 */
#include "ita/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ita/http.h"
#include "ita/problem.h"

#define MAX_HEADER_BYTES (16 * 1024)
#define MAX_PATH_BYTES 2048
#define MAX_BODY_BYTES 4096
#define MAX_SCAN_BODY_BYTES (1024 * 1024) /* POST /v1/hygiene/scan */

void ita_log(ita_server_t *srv, const char *fmt, ...) {
    char now[32];
    ita_time_now_rfc3339(now);
    pthread_mutex_lock(&srv->errlog_mu);
    fprintf(srv->errlog, "%s codex-ita: ", now);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(srv->errlog, fmt, ap);
    va_end(ap);
    fputc('\n', srv->errlog);
    fflush(srv->errlog);
    pthread_mutex_unlock(&srv->errlog_mu);
}

const h2o_iovec_t *ita_header(const ita_req_t *rq, const char *name) {
    ssize_t i = h2o_find_header_by_str(&rq->req->headers, name, strlen(name), -1);
    return i < 0 ? NULL : &rq->req->headers.entries[i].value;
}

void ita_add_header(ita_req_t *rq, const char *name, const char *value) {
    h2o_add_header_by_str(&rq->req->pool, &rq->req->res.headers, name, strlen(name), 1, NULL, value,
                          strlen(value));
}

static void peer_text(h2o_req_t *req, char *out, size_t cap) {
    struct sockaddr_storage ss;
    out[0] = 0;
    socklen_t n = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (n && ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)cap);
    else if (n && ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, out, (socklen_t)cap);
}

void ita_finish(ita_req_t *rq, int status) {
    double dt = ita_mono_now() - rq->t0;
    char remote[64];
    peer_text(rq->req, remote, sizeof remote);
    ita_audit_record_t rec = {
        .request_id = rq->request_id,
        .key_name = rq->key_name[0] ? rq->key_name : NULL,
        .method = rq->req->input.method.base,
        .method_len = rq->req->input.method.len,
        .path = rq->req->input.path.base,
        .path_len = rq->req->input.path.len,
        .status = status,
        .latency_ms = dt * 1e3,
        .remote = remote[0] ? remote : NULL,
        .key_id = rq->key_id[0] ? rq->key_id : NULL,
        .action = rq->action,
        .job = rq->action && rq->job[0] ? rq->job : NULL,
        .launched = rq->launched,
    };
    if (ita_audit_write(&rq->w->srv->audit, &rec))
        atomic_fetch_add_explicit(&rq->w->metrics->audit_failures, 1, memory_order_relaxed);
    ita_metrics_observe(rq->w->metrics, rq->route, status, dt);
}

void ita_respond(ita_req_t *rq, int status, const char *content_type, const char *body,
                 size_t len) {
    h2o_req_t *req = rq->req;
    req->res.status = status;
    req->res.reason = ita_status_reason(status);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                   strlen(content_type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    ita_add_header(rq, "x-request-id", rq->request_id);
    req->res.content_length = len;
    if (atomic_load_explicit(&rq->w->srv->stop, memory_order_relaxed))
        req->http1_is_persistent = 0; /* shutting down: no keep-alive */
    ita_finish(rq, status);
    h2o_send_inline(req, body, len);
}

void ita_problem(ita_req_t *rq, int status, const char *detail) {
    char *doc = ita_problem_json(status, detail, rq->req->input.path.base, rq->req->input.path.len,
                                 rq->request_id);
    if (!doc) {
        static const char oom[] = "{\"title\":\"Internal Server Error\",\"status\":500}";
        ita_respond(rq, 500, "application/problem+json", oom, sizeof oom - 1);
        return;
    }
    ita_respond(rq, status, "application/problem+json", doc, strlen(doc));
    free(doc);
}

void ita_respond_json(ita_req_t *rq, json_t *doc) {
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
    json_decref(doc);
    if (!text) {
        ita_problem(rq, 500, "out of memory while formatting the answer");
        return;
    }
    ita_respond(rq, 200, "application/json", text, strlen(text));
    free(text);
}

static int hexdig(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

int ita_query_param(const ita_req_t *rq, const char *name, char *out, size_t cap) {
    const char *q = rq->query, *end = q ? q + rq->query_len : NULL;
    size_t nlen = strlen(name);
    while (q && q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        const char *kend = eq ? eq : stop;
        if ((size_t)(kend - q) == nlen && !memcmp(q, name, nlen)) {
            size_t o = 0;
            for (const char *p = eq ? eq + 1 : stop; p < stop; p++) {
                if (o + 1 >= cap) return -1;
                if (*p == '%') {
                    if (p + 2 >= stop) return -1;
                    int hi = hexdig(p[1]), lo = hexdig(p[2]);
                    if (hi < 0 || lo < 0) return -1;
                    out[o++] = (char)(hi << 4 | lo);
                    p += 2;
                    continue;
                }
                out[o++] = *p == '+' ? ' ' : *p;
            }
            out[o] = 0;
            if (memchr(out, 0, o)) return -1; /* an encoded NUL */
            return 1;
        }
        q = amp ? amp + 1 : end;
    }
    return 0;
}

/* ---- routing ---- */

typedef struct {
    ita_route_t route;
    int scope;
    const char *static_name;
} match_t;

static int seg_eq(const char *s, size_t len, const char *lit) {
    return strlen(lit) == len && !memcmp(s, lit, len);
}

/* Splits the path (no query) into at most 5 segments. */
static int split(const char *p, size_t len, const char **seg, size_t *seglen, int max) {
    int n = 0;
    size_t i = 0;
    if (len == 0 || p[0] != '/') return -1;
    i = 1;
    while (i <= len) {
        size_t j = i;
        while (j < len && p[j] != '/') j++;
        if (n == max) return -1;
        seg[n] = p + i;
        seglen[n] = j - i;
        n++;
        i = j + 1;
    }
    return n;
}

static int match_route(ita_req_t *rq, const char *path, size_t len, match_t *m) {
    const char *seg[6];
    size_t sl[6];
    int n = split(path, len, seg, sl, 6);
    m->scope = ITA_SCOPE_READ;
    m->static_name = NULL;
    if (n == 1 && sl[0] == 0) {
        m->route = ITA_ROUTE_DASHBOARD;
        m->scope = ITA_SCOPE_NONE;
        m->static_name = "index.html";
        return 1;
    }
    if (n == 1 && seg_eq(seg[0], sl[0], "healthz")) {
        m->route = ITA_ROUTE_HEALTHZ;
        m->scope = ITA_SCOPE_NONE;
        return 1;
    }
    if (n == 1 && seg_eq(seg[0], sl[0], "openapi.json")) {
        m->route = ITA_ROUTE_OPENAPI;
        m->scope = ITA_SCOPE_NONE;
        return 1;
    }
    if (n == 1 && seg_eq(seg[0], sl[0], "mcp")) {
        m->route = ITA_ROUTE_MCP; /* each tool checks the scope it needs */
        return 1;
    }
    if (n == 1 && seg_eq(seg[0], sl[0], "metrics")) {
        m->route = ITA_ROUTE_PROMETHEUS;
        if (rq->w->srv->cfg.metrics_public) m->scope = ITA_SCOPE_NONE;
        return 1;
    }
    if (n == 1 && sl[0] > 0 && sl[0] < sizeof rq->file) {
        /* A dashboard file: served only if it was loaded at start. */
        m->route = ITA_ROUTE_DASHBOARD;
        m->scope = ITA_SCOPE_NONE;
        memcpy(rq->file, seg[0], sl[0]);
        rq->file[sl[0]] = 0;
        m->static_name = rq->file;
        return 1;
    }
    if (n < 2 || !seg_eq(seg[0], sl[0], "v1")) return 0;
    if (n == 3 && seg_eq(seg[1], sl[1], "hygiene") && seg_eq(seg[2], sl[2], "scan")) {
        m->route = ITA_ROUTE_HYGIENE_SCAN;
        return 1;
    }
    if (n == 3 && seg_eq(seg[1], sl[1], "tests") && seg_eq(seg[2], sl[2], "run")) {
        m->route = ITA_ROUTE_TESTS_RUN;
        m->scope = ITA_SCOPE_SUBMIT;
        return 1;
    }
    if (n == 3 && seg_eq(seg[1], sl[1], "kb") && seg_eq(seg[2], sl[2], "search")) {
        m->route = ITA_ROUTE_KB_SEARCH;
        return 1;
    }
    if (n == 4 && seg_eq(seg[1], sl[1], "repos") && seg_eq(seg[3], sl[3], "pulls") && sl[2] > 0 &&
        sl[2] < 32) {
        m->route = ITA_ROUTE_REPO_PULLS; /* the repository's name, checked by the route */
        m->scope = ITA_SCOPE_SUBMIT;
        memcpy(rq->file, seg[2], sl[2]);
        rq->file[sl[2]] = 0;
        return 1;
    }
    if (n == 2 && seg_eq(seg[1], sl[1], "keys")) {
        m->route = ITA_ROUTE_KEYS;
        m->scope = ITA_SCOPE_ADMIN;
        return 1;
    }
    if (!seg_eq(seg[1], sl[1], "jobs")) return 0;
    if (n == 2) {
        m->route = ITA_ROUTE_JOBS;
        if (h2o_memis(rq->req->method.base, rq->req->method.len, H2O_STRLIT("POST"))) {
            m->route = ITA_ROUTE_JOB_SUBMIT;
            m->scope = ITA_SCOPE_SUBMIT;
        }
        return 1;
    }
    if (!ita_job_id_valid(seg[2], sl[2])) return -1; /* a job that cannot exist */
    memcpy(rq->job, seg[2], sl[2]);
    rq->job[sl[2]] = 0;
    if (n == 3) {
        m->route = ITA_ROUTE_JOB;
        return 1;
    }
    if (n != 4) return 0;
    if (seg_eq(seg[3], sl[3], "cancel")) {
        m->route = ITA_ROUTE_JOB_CANCEL;
        m->scope = ITA_SCOPE_SUBMIT;
    } else if (seg_eq(seg[3], sl[3], "metrics"))
        m->route = ITA_ROUTE_JOB_METRICS;
    else if (seg_eq(seg[3], sl[3], "events"))
        m->route = ITA_ROUTE_JOB_EVENTS;
    else if (seg_eq(seg[3], sl[3], "checkpoints"))
        m->route = ITA_ROUTE_JOB_CHECKPOINTS;
    else if (seg_eq(seg[3], sl[3], "config"))
        m->route = ITA_ROUTE_JOB_CONFIG;
    else
        return 0;
    return 1;
}

static const char *presented_key(ita_req_t *rq, size_t *len) {
    const h2o_iovec_t *v = ita_header(rq, "x-api-key");
    if (v) {
        *len = v->len;
        return v->base;
    }
    ssize_t i = h2o_find_header(&rq->req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i < 0) return NULL;
    const h2o_iovec_t *a = &rq->req->headers.entries[i].value;
    return ita_auth_bearer(a->base, a->len, len);
}

/* 0 when the request may go on; otherwise it has been answered. */
static int authorise(ita_req_t *rq, int scope) {
    ita_worker_t *w = rq->w;
    cu_error_t err;
    if (ita_keycache_refresh(&w->keys, ita_mono_now(), &err))
        ita_log(w->srv, "keys file: %s (keeping the keys loaded before)", err.msg);
    size_t len = 0;
    const char *k = presented_key(rq, &len);
    if (scope == ITA_SCOPE_NONE && !k) return 0;
    const ita_key_t *key = NULL;
    ita_auth_result_t r = ita_auth_check(&w->keys, k, len, scope, &key);
    if (key) {
        snprintf(rq->key_name, sizeof rq->key_name, "%s", key->name);
        snprintf(rq->key_id, sizeof rq->key_id, "%s", key->id);
        rq->key_scope = r == ITA_AUTH_REVOKED ? ITA_SCOPE_NONE : key->scope;
    }
    if (scope == ITA_SCOPE_NONE) return 0; /* a key on an open route only names the caller */
    const char *why = NULL;
    switch (r) {
    case ITA_AUTH_OK:
        break;
    case ITA_AUTH_MISSING:
        why = "send an API key in X-API-Key or Authorization: Bearer";
        break;
    case ITA_AUTH_INVALID:
        why = "the API key is not valid";
        break;
    case ITA_AUTH_REVOKED:
        why = "the API key has been revoked";
        break;
    case ITA_AUTH_SCOPE: {
        char d[128];
        snprintf(d, sizeof d, "this route needs scope '%s'; the key has '%s'",
                 ita_scope_name(scope), ita_scope_name(key->scope));
        ita_problem(rq, 403, d);
        return -1;
    }
    }
    if (why) {
        ita_add_header(rq, "www-authenticate", "Bearer realm=\"codex-ita\"");
        ita_problem(rq, 401, why);
        return -1;
    }
    double wait = ita_ratelimit_take(&w->srv->ratelimit, key->id, ita_mono_now());
    if (wait > 0) {
        char ra[32];
        snprintf(ra, sizeof ra, "%d", (int)ceil(wait));
        ita_add_header(rq, "retry-after", ra);
        ita_problem(rq, 429, "rate limit exceeded for this key; retry after the given seconds");
        return -1;
    }
    return 0;
}

static size_t header_bytes(const h2o_req_t *req) {
    size_t total = 0;
    for (size_t i = 0; i < req->headers.size; i++)
        total += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    return total;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req) {
    ita_req_t *rq = h2o_mem_alloc_pool(&req->pool, sizeof *rq);
    memset(rq, 0, sizeof *rq);
    rq->req = req;
    rq->w = (ita_worker_t *)req->conn->ctx;
    rq->t0 = ita_mono_now();
    rq->route = ITA_ROUTE_OTHER;
    if (ita_guard_request(rq->w, req->conn, req->version >= 0x200)) {
        /* the connection is being closed (and what h2o had read of it
         * dropped): the cheapest answer, no request id, no problem
         * document, no audit line (counted in /metrics) */
        req->res.status = 429;
        req->res.reason = "Too Many Requests";
        h2o_send_inline(req, NULL, 0);
        return 0;
    }
    const h2o_iovec_t *rid = ita_header(rq, "x-request-id");
    if (rid && ita_request_id_valid(rid->base, rid->len)) {
        memcpy(rq->request_id, rid->base, rid->len);
        rq->request_id[rid->len] = 0;
    } else {
        ita_request_id_generate(rq->request_id, &rq->w->id_counter);
    }
    const char *ambiguous = ita_guard_http1_framing(req);
    if (ambiguous) {
        req->http1_is_persistent = 0; /* the bytes behind it are never parsed */
        char d[128];
        snprintf(d, sizeof d, "ambiguous request framing: %s", ambiguous);
        ita_problem(rq, 400, d);
        return 0;
    }
    if (header_bytes(req) > MAX_HEADER_BYTES) {
        ita_problem(rq, 431, "request headers exceed 16 KiB");
        return 0;
    }
    const char *path = req->input.path.base;
    size_t plen = req->input.path.len;
    if (plen > MAX_PATH_BYTES) {
        ita_problem(rq, 414, "the request target exceeds 2048 bytes");
        return 0;
    }
    size_t path_only = req->input.query_at != SIZE_MAX ? req->input.query_at : plen;
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    int is_get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
                 h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    /* the routes that take a body, by POST only; /v1/jobs takes GET (the
     * list) and POST (a submission); /v1/jobs/{id}/cancel POST only */
    int is_scan = h2o_memis(path, path_only, H2O_STRLIT("/v1/hygiene/scan")) ||
                  h2o_memis(path, path_only, H2O_STRLIT("/v1/tests/run")) ||
                  h2o_memis(path, path_only, H2O_STRLIT("/v1/kb/search")) ||
                  h2o_memis(path, path_only, H2O_STRLIT("/mcp")) ||
                  (path_only > 16 && !memcmp(path, "/v1/repos/", 10) &&
                   h2o_memis(path + path_only - 6, 6, H2O_STRLIT("/pulls")));
    int is_jobs = h2o_memis(path, path_only, H2O_STRLIT("/v1/jobs"));
    int is_cancel = path_only > 16 && !memcmp(path, "/v1/jobs/", 9) &&
                    h2o_memis(path + path_only - 7, 7, H2O_STRLIT("/cancel"));
    int big = is_scan || (is_jobs && is_post);
    if (req->entity.base && req->entity.len > (big ? MAX_SCAN_BODY_BYTES : MAX_BODY_BYTES)) {
        ita_problem(rq, 413,
                    big ? "a body is limited to 1 MiB" : "request bodies are limited to 4 KiB");
        return 0;
    }
    if ((is_scan || is_cancel) && !is_post) {
        ita_add_header(rq, "allow", "POST");
        ita_problem(rq, 405, "this route takes a POST");
        return 0;
    }
    if (!is_scan && !is_cancel && !is_get && !(is_jobs && is_post)) {
        ita_add_header(rq, "allow", is_jobs ? "GET, HEAD, POST" : "GET, HEAD");
        ita_problem(rq, 405,
                    is_jobs ? "GET lists jobs, POST submits one" : "only GET and HEAD are served");
        return 0;
    }
    if (req->input.query_at != SIZE_MAX) {
        rq->query = path + req->input.query_at + 1;
        rq->query_len = plen - req->input.query_at - 1;
    }
    match_t m;
    int found = match_route(rq, path, path_only, &m);
    if (found <= 0) {
        rq->job[0] = 0;
        ita_problem(rq, 404, found < 0 ? "no such job" : "no such route");
        return 0;
    }
    rq->route = m.route;
    if (authorise(rq, m.scope)) return 0;
    /* the newest scheduler view (one atomic load when it has not changed) */
    ita_sched_sync(rq->w->srv->sched, &rq->w->view, &rq->w->view_gen);
    ita_jobdir_set_view(rq->w->jobs, rq->w->view);
    switch (m.route) {
    case ITA_ROUTE_HEALTHZ:
        ita_route_healthz(rq);
        break;
    case ITA_ROUTE_JOBS:
        ita_route_jobs(rq);
        break;
    case ITA_ROUTE_JOB:
        ita_route_job(rq);
        break;
    case ITA_ROUTE_JOB_METRICS:
        ita_route_job_metrics(rq);
        break;
    case ITA_ROUTE_JOB_EVENTS:
        ita_route_job_events(rq);
        break;
    case ITA_ROUTE_JOB_CHECKPOINTS:
        ita_route_job_checkpoints(rq);
        break;
    case ITA_ROUTE_JOB_CONFIG:
        ita_route_job_config(rq);
        break;
    case ITA_ROUTE_PROMETHEUS:
        ita_route_prometheus(rq);
        break;
    case ITA_ROUTE_KEYS:
        ita_route_keys(rq);
        break;
    case ITA_ROUTE_DASHBOARD:
        ita_route_static(rq, m.static_name);
        break;
    case ITA_ROUTE_HYGIENE_SCAN:
        ita_route_hygiene_scan(rq);
        break;
    case ITA_ROUTE_TESTS_RUN:
        ita_route_tests_run(rq);
        break;
    case ITA_ROUTE_JOB_SUBMIT:
        ita_route_job_submit(rq);
        break;
    case ITA_ROUTE_JOB_CANCEL:
        ita_route_job_cancel(rq);
        break;
    case ITA_ROUTE_OPENAPI:
        ita_route_openapi(rq);
        break;
    case ITA_ROUTE_MCP:
        ita_route_mcp(rq);
        break;
    case ITA_ROUTE_KB_SEARCH:
        ita_route_kb_search(rq);
        break;
    case ITA_ROUTE_REPO_PULLS:
        ita_route_repo_pulls(rq);
        break;
    default:
        ita_problem(rq, 404, "no such route");
        break;
    }
    return 0;
}

/* ---- sockets and threads ---- */

/* One listening socket, without SO_REUSEPORT: bind fails with EADDRINUSE
 * while any other process (another codex-ita included) listens on the
 * port, and nobody can join this one. */
static int listen_socket(const char *host, int port, cu_error_t *err) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) return -cu_error_set(err, CU_EIO, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, host, &a.sin_addr);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, SOMAXCONN) != 0) {
        int rc = cu_error_set(err, CU_EIO, "listen on %s:%d: %s", host, port, strerror(errno));
        close(fd);
        return -rc;
    }
    return fd;
}

static void on_accept(h2o_socket_t *listener, const char *error);

/* Connections counted against max_connections: the ones the guard shut
 * down are on their way out. */
static int live_conns(const ita_worker_t *w) {
    return w->n_conns - w->n_dying;
}

/* A connection closed (h2o calls guard.c's close callback from
 * h2o_socket_close). */
void ita_server_conn_closed(ita_worker_t *w) {
    w->n_conns--;
    if (w->accept_paused && w->listener && live_conns(w) < w->srv->cfg.max_connections) {
        w->accept_paused = 0;
        h2o_socket_read_start(w->listener, on_accept);
    }
}

/* The backoff after running out of descriptors is over. */
static void on_accept_retry(h2o_timeout_entry_t *entry) {
    ita_worker_t *w = H2O_STRUCT_FROM_MEMBER(ita_worker_t, accept_retry, entry);
    if (w->accept_paused && w->listener && live_conns(w) < w->srv->cfg.max_connections) {
        w->accept_paused = 0;
        h2o_socket_read_start(w->listener, on_accept);
    }
}

/* Whether a connection waits in the listen backlog (evicting an idle
 * client for a newcomer that is not there would only lose a client). */
static int connection_waiting(const ita_worker_t *w) {
    struct pollfd p = {.fd = h2o_socket_get_fd(w->listener), .events = POLLIN};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

static void on_accept(h2o_socket_t *listener, const char *error) {
    if (error) return;
    ita_worker_t *w = listener->data;
    for (int i = 0; i < 16; i++) {
        int full = live_conns(w) >= w->srv->cfg.max_connections;
        if (full && !connection_waiting(w)) return; /* the listener stays polled */
        if (full && !ita_guard_evict(w)) {
            /* At the bound, and every connection has sent a request (none
             * to evict for the newcomer): leave new connections in the
             * kernel's backlog until one closes. */
            h2o_socket_read_stop(listener);
            w->accept_paused = 1;
            return;
        }
        errno = 0;
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (!sock && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)) {
            /* No descriptor for it: the connection stays in the backlog
             * (still readable), so stop polling the listener for a while
             * rather than spin on accept(). A close resumes sooner. */
            h2o_socket_read_stop(listener);
            w->accept_paused = 1;
            ita_guard_evict(w); /* frees a descriptor when h2o closes it */
            if (!h2o_timeout_is_linked(&w->accept_retry))
                h2o_timeout_link(w->loop, &w->accept_backoff, &w->accept_retry);
            return;
        }
        if (!sock) return;
        if (ita_guard_conn_open(w, sock)) {
            h2o_socket_close(sock);
            continue;
        }
        h2o_accept(&w->accept_ctx, sock);
    }
}

static void *worker_main(void *arg) {
    ita_worker_t *w = arg;
    ita_server_t *srv = w->srv;
    while (!atomic_load(&srv->stop)) h2o_evloop_run(w->loop, 100);
    /* Shutdown: no new connections, end event streams, ask h2o to close
     * idle connections, and give what is in flight up to a second. */
    if (!w->accept_paused) h2o_socket_read_stop(w->listener);
    h2o_socket_close(w->listener);
    w->listener = NULL;
    ita_sse_end_all(w);
    double until = ita_mono_now() + 0.3;
    while (w->n_conns > 0 && ita_mono_now() < until) h2o_evloop_run(w->loop, 20);
    /* Connections still open after that (idle keep-alive ones): ask h2o to
     * close them. That arms h2o's graceful-shutdown timer, after which the
     * context cannot be disposed (h2o asserts on armed timers), so it is
     * only released when no connection needed it. */
    int asked = w->n_conns > 0;
    if (asked) h2o_context_request_shutdown(&w->ctx);
    until = ita_mono_now() + 1.0;
    while (w->n_conns > 0 && ita_mono_now() < until) h2o_evloop_run(w->loop, 20);
    for (int i = 0; i < 3; i++) h2o_evloop_run(w->loop, 0); /* deferred callbacks */
    if (w->n_conns == 0 && !asked && w->pool_out == 0) {
        ita_guard_stop(w);
        h2o_multithread_unregister_receiver(w->mq, &w->pool_back);
        h2o_multithread_destroy_queue(w->mq);
        h2o_timeout_dispose(w->loop, &w->sse_timeout);
        if (h2o_timeout_is_linked(&w->accept_retry)) h2o_timeout_unlink(&w->accept_retry);
        h2o_timeout_dispose(w->loop, &w->accept_backoff);
        h2o_context_dispose(&w->ctx);
        h2o_evloop_destroy(w->loop);
        w->disposed = 1;
    }
    return NULL;
}

static int worker_init(ita_server_t *srv, ita_worker_t *w, int fd, cu_error_t *err) {
    w->srv = srv;
    w->listen_fd = fd;
    w->metrics = calloc(1, sizeof *w->metrics);
    if (!w->metrics) return cu_error_set(err, CU_ENOMEM, "out of memory");
    int rc =
        ita_jobdir_open(&w->jobs, srv->cfg.runs_dir, srv->cfg.lost_after_s, srv->cfg.max_jobs, err);
    if (rc) return rc;
    /* the built-in default policy; compiled once per thread so no scanner
     * state is shared between event loops */
    if ((rc = safety_engine_new(NULL, &w->safety, err)))
        return cu_error_prefix(err, "safety policy for /v1/hygiene/scan");
    ita_keycache_init(&w->keys, srv->cfg.keys_file);
    w->loop = h2o_evloop_create();
    h2o_context_init(&w->ctx, w->loop, &srv->globalconf);
    h2o_timeout_init(w->loop, &w->sse_timeout, (uint64_t)srv->cfg.sse_poll_ms);
    h2o_timeout_init(w->loop, &w->accept_backoff, 200);
    ita_guard_start(w);
    w->mq = h2o_multithread_create_queue(w->loop);
    h2o_multithread_register_receiver(w->mq, &w->pool_back, ita_offload_done);
    w->accept_retry.cb = on_accept_retry;
    h2o_linklist_init_anchor(&w->streams);
    w->accept_ctx.ctx = &w->ctx;
    w->accept_ctx.hosts = srv->globalconf.hosts;
    w->accept_ctx.ssl_ctx = srv->ssl;
    w->listener = h2o_evloop_socket_create(w->loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    w->listener->data = w;
    h2o_socket_read_start(w->listener, on_accept);
    return CU_OK;
}

static void worker_dispose(ita_worker_t *w) {
    /* The h2o context and loop were released by the worker thread when no
     * connection was left open (worker_main). */
    ita_jobdir_free(w->jobs);
    ita_sched_view_release(w->view);
    safety_engine_free(w->safety);
    ita_keycache_free(&w->keys);
    free(w->metrics);
}

static int tls_setup(ita_server_t *srv, cu_error_t *err) {
    if (!srv->cfg.tls_cert[0]) return CU_OK;
    srv->ssl = SSL_CTX_new(TLS_server_method());
    if (!srv->ssl) return cu_error_set(err, CU_EINTERNAL, "TLS: cannot create a context");
    SSL_CTX_set_min_proto_version(srv->ssl, TLS1_2_VERSION);
    /* no client-initiated renegotiation (TLS 1.2; 1.3 has none) */
    SSL_CTX_set_options(srv->ssl, SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(srv->ssl, srv->cfg.tls_cert) != 1)
        return cu_error_set(err, CU_EINVAL, "tls.cert %s: cannot load the certificate chain",
                            srv->cfg.tls_cert);
    if (SSL_CTX_use_PrivateKey_file(srv->ssl, srv->cfg.tls_key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(srv->ssl) != 1)
        return cu_error_set(err, CU_EINVAL, "tls.key %s: cannot load it, or it does not match",
                            srv->cfg.tls_key);
    h2o_ssl_register_alpn_protocols(srv->ssl, h2o_http2_alpn_protocols);
    return CU_OK;
}

static int server_setup(ita_server_t *srv, cu_error_t *err) {
    int rc;
    if (srv->cfg.error_log[0]) {
        srv->errlog = fopen(srv->cfg.error_log, "a");
        if (!srv->errlog)
            return cu_error_set(err, CU_EIO, "log.error %s: %s", srv->cfg.error_log,
                                strerror(errno));
    } else {
        srv->errlog = stderr;
    }
    if ((rc = ita_audit_open(&srv->audit, srv->cfg.audit_log, err))) return rc;
    ita_audit_limits(&srv->audit, (long long)(srv->cfg.audit_max_mb * 1024 * 1024),
                     srv->cfg.audit_keep, srv->cfg.audit_rejected_per_s);
    if ((rc = ita_ratelimit_init(&srv->ratelimit, srv->cfg.rate_per_s, srv->cfg.rate_burst, err)))
        return rc;
    if ((rc = ita_static_load(srv, err))) return rc;
    if ((rc = tls_setup(srv, err))) return rc;
    h2o_config_init(&srv->globalconf);
    srv->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("codex-ita"));
    srv->globalconf.max_request_entity_size = MAX_SCAN_BODY_BYTES;
    /* HTTP/2 only by ALPN over TLS: no "Upgrade: h2c" on the plain port */
    srv->globalconf.http1.upgrade_to_http2 = 0;
    /* h2o's own timers; guard.c adds the first request's deadline (which
     * a client trickling header bytes would otherwise keep extending) and
     * the write timeout */
    srv->globalconf.http1.req_timeout = (uint64_t)(srv->cfg.header_timeout_s * 1000);
    srv->globalconf.http2.idle_timeout = (uint64_t)(srv->cfg.idle_timeout_s * 1000);
    h2o_hostconf_t *host =
        h2o_config_register_host(&srv->globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pc = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(pc, sizeof *h);
    h->on_req = on_req;
    return CU_OK;
}

static void server_teardown(ita_server_t *srv) {
    for (int i = 0; i < srv->n_workers; i++) worker_dispose(&srv->workers[i]);
    free(srv->workers);
    if (srv->globalconf.hosts) h2o_config_dispose(&srv->globalconf);
    if (srv->ssl) SSL_CTX_free(srv->ssl);
    ita_static_free(srv);
    ita_ratelimit_free(&srv->ratelimit);
    ita_audit_close(&srv->audit);
    if (srv->errlog && srv->errlog != stderr) fclose(srv->errlog);
}

/* Every worker accepts from the same socket (a descriptor of its own for
 * it): a worker busy with a request leaves new connections to the others,
 * where SO_REUSEPORT would pin them to it. */
static int open_listeners(ita_server_t *srv, int *fds, cu_error_t *err) {
    const ita_config_t *c = &srv->cfg;
    int fd = listen_socket(c->host, c->port, err);
    if (fd < 0) return -fd;
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &alen);
    srv->port = ntohs(a.sin_port);
    fds[0] = fd;
    for (int i = 1; i < c->threads; i++) {
        fds[i] = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (fds[i] < 0) return cu_error_set(err, CU_EIO, "dup: %s", strerror(errno));
    }
    return CU_OK;
}

/* Descriptors kept back from connections: logs, listeners, job files,
 * spawned commands' pipes, and /healthz under load. */
#define FD_RESERVE 64

/* Raises the soft RLIMIT_NOFILE to the hard one and bounds
 * max_connections so every thread's share fits in it with a reserve. */
static void fit_connections(ita_server_t *srv) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        /* not unbounded: children (mpirun) inherit it, and some close
         * every descriptor up to the limit */
        rlim_t want = rl.rlim_max < 65536 ? rl.rlim_max : 65536;
        struct rlimit up = {want, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0) rl.rlim_cur = want;
    }
    ita_config_t *c = &srv->cfg;
    long avail = rl.rlim_cur == RLIM_INFINITY ? 1048576 : (long)rl.rlim_cur;
    long per = (avail - FD_RESERVE - 8L * c->threads) / c->threads;
    if (per < 1) per = 1;
    if (c->max_connections > per) {
        ita_log(srv, "max_connections %d per thread lowered to %ld: the descriptor limit is %ld",
                c->max_connections, per, avail);
        c->max_connections = (int)per;
    }
}

int ita_server_run(const ita_config_t *cfg, FILE *ready, cu_error_t *err) {
    ita_server_t *srv = calloc(1, sizeof *srv);
    if (!srv) return cu_error_set(err, CU_ENOMEM, "out of memory");
    srv->cfg = *cfg;
    pthread_mutex_init(&srv->errlog_mu, NULL);
    pthread_mutex_init(&srv->sandbox_mu, NULL);
    int fds[64];
    for (int i = 0; i < 64; i++) fds[i] = -1;
    pthread_mutex_init(&srv->submit_mu, NULL);
    int rc = server_setup(srv, err);
    if (!rc) fit_connections(srv);
    /* CU_ITA_POOL_HOLD is for tests only: pool jobs wait while that file
     * exists, so a test can fill the pool without racing it */
    if (!rc)
        rc = ita_pool_start(&srv->pool, cfg->pool_threads, cfg->pool_queue,
                            getenv("CU_ITA_POOL_HOLD"), err);
    if (!rc) rc = ita_sched_start(&srv->sched, &srv->cfg, err);
    if (!rc) rc = open_listeners(srv, fds, err);
    if (!rc) {
        srv->workers = calloc((size_t)cfg->threads, sizeof *srv->workers);
        if (!srv->workers) rc = cu_error_set(err, CU_ENOMEM, "out of memory");
    }
    for (int i = 0; !rc && i < cfg->threads; i++) {
        srv->workers[i].index = i;
        rc = worker_init(srv, &srv->workers[i], fds[i], err);
        srv->n_workers = i + 1;
        if (!rc) fds[i] = -1; /* the h2o socket owns it now */
    }
    int started = 0;
    for (int i = 0; !rc && i < srv->n_workers; i++) {
        if (pthread_create(&srv->workers[i].tid, NULL, worker_main, &srv->workers[i])) {
            rc = cu_error_set(err, CU_EINTERNAL, "cannot start worker thread %d", i);
            break;
        }
        started++;
    }
    if (!rc) {
        ita_log(srv, "listening on %s://%s:%d with %d threads, runs %s",
                srv->ssl ? "https" : "http", cfg->host, srv->port, cfg->threads, cfg->runs_dir);
        if (ready) {
            fprintf(ready, "codex-ita: listening on %s://%s:%d\n", srv->ssl ? "https" : "http",
                    cfg->host, srv->port);
            fflush(ready);
        }
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGINT);
        int sig = 0;
        sigwait(&set, &sig);
        ita_log(srv, "signal %d: shutting down", sig);
    }
    atomic_store(&srv->stop, 1);
    for (int i = 0; i < started; i++) pthread_join(srv->workers[i].tid, NULL);
    ita_pool_stop(srv->pool);
    for (int i = 0; i < 64; i++)
        if (fds[i] >= 0) close(fds[i]);
    ita_sched_stop(srv->sched);
    if (!rc) ita_log(srv, "stopped");
    server_teardown(srv);
    pthread_mutex_destroy(&srv->submit_mu);
    pthread_mutex_destroy(&srv->errlog_mu);
    pthread_mutex_destroy(&srv->sandbox_mu);
    free(srv);
    return rc;
}
