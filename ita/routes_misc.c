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
    if (!text) {
        ita_problem(rq, 500, "out of memory while rendering metrics");
        return;
    }
    ita_respond(rq, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
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
