/*
 * Server-Sent Events for GET /v1/jobs/{id}/events with Accept:
 * text/event-stream. A stream polls its job on the worker's sse_timeout
 * (sse.poll_ms) and sends what was appended to events.jsonl since its
 * offset: each line as an event named by its "type", the batch's last
 * event carrying the byte offset after it as its id (so a reconnecting
 * client's Last-Event-ID resumes exactly there), plus a "state" event when
 * the job's status or step changes, a comment every 15 s of silence, and
 * an "end" event, after which the stream closes, once the job has finished
 * and everything is sent.
 *
 * h2o allows one send in flight per request: a poll that finds the
 * previous chunk still going out waits for the next tick. The stream's
 * memory belongs to the request's pool, so it goes away with the request
 * whichever side ends it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ita/http.h"

#define SSE_BATCH_EVENTS 200
#define SSE_BATCH_BYTES (256 * 1024)
#define SSE_KEEPALIVE_S 15.0

typedef struct {
    h2o_generator_t super;
    h2o_linklist_t link;
    h2o_timeout_entry_t timer;
    ita_req_t *rq;
    ita_worker_t *w;
    int64_t offset;
    char *buf;
    size_t len, cap;
    int sending, closing, done;
    double last_sent;
    int64_t last_step;
    char last_status[16];
} sse_t;

static int append(sse_t *s, const char *data, size_t n) {
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        while (cap < s->len + n) cap *= 2;
        char *g = realloc(s->buf, cap);
        if (!g) return -1;
        s->buf = g;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    return 0;
}

static void detach(sse_t *s) {
    if (h2o_timeout_is_linked(&s->timer)) h2o_timeout_unlink(&s->timer);
    if (h2o_linklist_is_linked(&s->link)) {
        h2o_linklist_unlink(&s->link);
        s->w->n_streams--;
    }
}

static void on_dispose(void *p) {
    sse_t *s = p;
    detach(s);
    free(s->buf);
}

static void flush(sse_t *s, int final) {
    h2o_iovec_t iov = h2o_iovec_init(s->buf, s->len);
    s->sending = 1;
    if (final) {
        s->done = 1;
        detach(s);
    }
    h2o_send(s->rq->req, &iov, s->len ? 1 : 0,
             final ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void add_events(sse_t *s) {
    ita_jsonl_query_t q = {INT64_MIN, s->offset, SSE_BATCH_EVENTS, SSE_BATCH_BYTES, NULL, 0};
    ita_jsonl_page_t page;
    cu_error_t err;
    if (ita_jobdir_jsonl(s->w->jobs, s->rq->job, ITA_JSONL_EVENTS, &q, &page, &err)) {
        /* A cursor past a shrunken file: start again from the top. */
        if (err.code == CU_EINVAL) s->offset = 0;
        json_decref(page.records);
        return;
    }
    size_t n = json_array_size(page.records);
    for (size_t i = 0; i < n; i++) {
        json_t *ev = json_array_get(page.records, i);
        const char *type = json_string_value(json_object_get(ev, "type"));
        char *data = json_dumps(ev, JSON_COMPACT | JSON_REAL_PRECISION(15));
        char head[128];
        int ok_type = type && strlen(type) < 32 && !strpbrk(type, "\r\n:");
        int hn = snprintf(head, sizeof head, "event: %s\n", ok_type ? type : "message");
        if (i + 1 == n)
            hn += snprintf(head + hn, sizeof head - (size_t)hn, "id: %lld\n",
                           (long long)page.next_cursor);
        if (data) {
            append(s, head, (size_t)hn);
            append(s, "data: ", 6);
            append(s, data, strlen(data));
            append(s, "\n\n", 2);
        }
        free(data);
    }
    s->offset = page.next_cursor;
    json_decref(page.records);
}

/* Returns 1 when the job has finished. */
static int add_state(sse_t *s) {
    ita_job_summary_t sum;
    cu_error_t err;
    /* a stream may be the worker's only client: take the newest scheduler
     * view here too, so a job Slurm ends (TIMEOUT, CANCELLED) ends it */
    ita_sched_sync(s->w->srv->sched, &s->w->view, &s->w->view_gen);
    ita_jobdir_set_view(s->w->jobs, s->w->view);
    if (ita_jobdir_state(s->w->jobs, s->rq->job, &sum, NULL, &err)) return 0;
    if (sum.step != s->last_step || strcmp(sum.status, s->last_status)) {
        s->last_step = sum.step;
        snprintf(s->last_status, sizeof s->last_status, "%s", sum.status);
        json_t *j = ita_job_summary_json_view(&sum, s->w->view);
        char *data = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
        json_decref(j);
        if (data) {
            append(s, "event: state\ndata: ", 19);
            append(s, data, strlen(data));
            append(s, "\n\n", 2);
        }
        free(data);
    }
    return !strcmp(sum.status, "COMPLETED") || !strcmp(sum.status, "FAILED") ||
           !strcmp(sum.status, "CANCELLED") || !strcmp(sum.status, "TIMEOUT");
}

static void poll_stream(sse_t *s) {
    if (s->done) return;
    if (s->sending) {
        h2o_timeout_link(s->w->loop, &s->w->sse_timeout, &s->timer);
        return;
    }
    s->len = 0;
    if (s->closing) {
        s->rq->req->http1_is_persistent = 0; /* the server is going away */
        append(s, "event: end\ndata: {\"reason\":\"shutdown\"}\n\n", 41);
        flush(s, 1);
        return;
    }
    int finished = add_state(s);
    add_events(s);
    double now = ita_mono_now();
    if (finished && s->len == 0) {
        char end[96];
        int n =
            snprintf(end, sizeof end, "event: end\ndata: {\"status\":\"%s\"}\n\n", s->last_status);
        append(s, end, (size_t)n);
        flush(s, 1);
        return;
    }
    if (s->len == 0 && now - s->last_sent >= SSE_KEEPALIVE_S) append(s, ": keepalive\n\n", 13);
    h2o_timeout_link(s->w->loop, &s->w->sse_timeout, &s->timer);
    if (s->len) {
        s->last_sent = now;
        flush(s, 0);
    }
}

static void on_timer(h2o_timeout_entry_t *entry) {
    sse_t *s = H2O_STRUCT_FROM_MEMBER(sse_t, timer, entry);
    poll_stream(s);
}

static void on_proceed(h2o_generator_t *gen, h2o_req_t *req) {
    sse_t *s = (sse_t *)gen;
    s->sending = 0;
    if (s->closing && !s->done) poll_stream(s);
}

static void on_stop(h2o_generator_t *gen, h2o_req_t *req) {
    sse_t *s = (sse_t *)gen;
    s->done = 1;
    detach(s);
}

void ita_sse_start(ita_req_t *rq, int64_t from) {
    ita_worker_t *w = rq->w;
    if (w->n_streams >= w->srv->cfg.sse_max_streams) {
        ita_add_header(rq, "retry-after", "5");
        ita_problem(rq, 503, "too many event streams on this server; retry later");
        return;
    }
    sse_t *s = h2o_mem_alloc_shared(&rq->req->pool, sizeof *s, on_dispose);
    memset(s, 0, sizeof *s);
    s->super.proceed = on_proceed;
    s->super.stop = on_stop;
    s->timer.cb = on_timer;
    s->rq = rq;
    s->w = w;
    s->offset = from;
    s->last_step = -1;
    s->last_sent = ita_mono_now();
    h2o_linklist_insert(&w->streams, &s->link);
    w->n_streams++;

    h2o_req_t *req = rq->req;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream; charset=utf-8"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-store"));
    ita_add_header(rq, "x-request-id", rq->request_id);
    ita_add_header(rq, "x-accel-buffering", "no");
    ita_finish(rq, 200); /* audited when the stream starts */
    h2o_start_response(req, &s->super);
    append(s, "retry: 2000\n\n", 13);
    if (h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD"))) {
        flush(s, 1);
        return;
    }
    s->sending = 1; /* the first poll follows this chunk */
    h2o_iovec_t iov = h2o_iovec_init(s->buf, s->len);
    h2o_send(req, &iov, 1, H2O_SEND_STATE_IN_PROGRESS);
    h2o_timeout_link(w->loop, &w->sse_timeout, &s->timer);
    s->last_sent = 0; /* a first poll with nothing new still sends a keepalive */
}

void ita_sse_end_all(ita_worker_t *w) {
    while (!h2o_linklist_is_empty(&w->streams)) {
        sse_t *s = H2O_STRUCT_FROM_MEMBER(sse_t, link, w->streams.next);
        s->closing = 1;
        h2o_linklist_unlink(&s->link);
        w->n_streams--;
        if (!s->sending) poll_stream(s);
    }
}
