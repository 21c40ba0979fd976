/*
 * The service's own routes: /healthz (no key), /metrics (Prometheus) and
 * /v1/keys (admin: the keys file without its hashes).
 */
#include <stdlib.h>
#include <string.h>

#include "ita/http.h"

void ita_route_healthz(ita_req_t *rq) {
    char now[32];
    ita_time_now_rfc3339(now);
    ita_respond_json(rq, json_pack("{s:s, s:s, s:s, s:i}", "status", "ok", "version", CU_VERSION,
                                   "time", now, "threads", rq->w->srv->n_workers));
}

void ita_route_prometheus(ita_req_t *rq) {
    ita_server_t *srv = rq->w->srv;
    ita_metrics_t *ms[64];
    size_t n = 0;
    for (int i = 0; i < srv->n_workers && n < 64; i++) ms[n++] = srv->workers[i].metrics;
    size_t len = 0;
    char *text = ita_metrics_render(ms, n, rq->w->jobs, &len);
    /* the worker pool and the connection guard (pool.h, guard.h) */
    int in_pool = 0;
    unsigned long refused = 0, evicted = 0, rate_closed = 0, timed_out = 0, rate_refused = 0;
    ita_pool_counts(srv->pool, &in_pool, &refused);
    for (int i = 0; i < srv->n_workers; i++) {
        evicted += atomic_load_explicit(&srv->workers[i].n_evicted, memory_order_relaxed);
        rate_closed += atomic_load_explicit(&srv->workers[i].n_rate_closed, memory_order_relaxed);
        timed_out += atomic_load_explicit(&srv->workers[i].n_timed_out, memory_order_relaxed);
        rate_refused += atomic_load_explicit(&srv->workers[i].n_rate_refused, memory_order_relaxed);
    }
    char tail[2048];
    int tn = snprintf(
        tail, sizeof tail,
        "# HELP codex_ita_pool_jobs Jobs in the worker pool, running or waiting.\n"
        "# TYPE codex_ita_pool_jobs gauge\ncodex_ita_pool_jobs %d\n"
        "# HELP codex_ita_pool_refused_total Requests answered 503 because the pool was full.\n"
        "# TYPE codex_ita_pool_refused_total counter\ncodex_ita_pool_refused_total %lu\n"
        "# HELP codex_ita_connections_closed_total Connections the service closed, by reason.\n"
        "# TYPE codex_ita_connections_closed_total counter\n"
        "codex_ita_connections_closed_total{reason=\"evicted\"} %lu\n"
        "codex_ita_connections_closed_total{reason=\"timeout\"} %lu\n"
        "codex_ita_connections_closed_total{reason=\"http2_rate\"} %lu\n"
        "# HELP codex_ita_streams_refused_total Streams answered a bare 429, by reason "
        "(http2_rate: past http2.max_requests_per_s).\n"
        "# TYPE codex_ita_streams_refused_total counter\n"
        "codex_ita_streams_refused_total{reason=\"http2_rate\"} %lu\n",
        in_pool, refused, evicted, timed_out, rate_closed, rate_refused);
    char *all = text ? realloc(text, len + (size_t)tn + 1) : NULL;
    if (!all) {
        free(text);
        ita_problem(rq, 500, "out of memory while rendering metrics");
        return;
    }
    memcpy(all + len, tail, (size_t)tn + 1);
    len += (size_t)tn;
    ita_respond(rq, 200, "text/plain; version=0.0.4; charset=utf-8", all, len);
    free(all);
}

void ita_route_keys(ita_req_t *rq) {
    const ita_keyset_t *set = &rq->w->keys.set;
    json_t *arr = json_array();
    for (size_t i = 0; i < set->n; i++) {
        const ita_key_t *k = &set->keys[i];
        json_array_append_new(
            arr, json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", k->id, "name", k->name, "scope",
                           ita_scope_name(k->scope), "created_at", k->created_at, "revoked_at",
                           k->revoked_at[0] ? json_string(k->revoked_at) : json_null()));
    }
    ita_respond_json(rq, json_pack("{s:o}", "keys", arr));
}
