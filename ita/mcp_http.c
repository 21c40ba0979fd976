/*
 * POST /mcp: the MCP Streamable HTTP transport. The service keeps no MCP
 * session, so every POST is answered on its own: a request with one
 * application/json response, a notification or a client's response with
 * 202 and no body. GET and DELETE are 405 (no server-initiated stream, no
 * session to end). Before anything else, as the transport requires:
 *
 *   - an Origin header (a browser) must be the service's own origin or one
 *     of mcp.allowed_origins, else 403 (DNS rebinding protection);
 *   - an MCP-Protocol-Version header must name a version spoken here,
 *     else 400.
 *
 * The key was checked by the server core (scope read at least); the audit
 * line names the MCP method or tool ("mcp tools/call job_status").
 */
#include <string.h>

#include "ita/http.h"
#include "ita/mcp.h"

static int origin_allowed(ita_req_t *rq, const h2o_iovec_t *o) {
    char own[96];
    int port = rq->w->srv->port;
    const char *scheme = rq->w->srv->ssl ? "https" : "http";
    const char *hosts[] = {"127.0.0.1", "localhost", rq->w->srv->cfg.host};
    for (size_t i = 0; i < 3; i++) {
        snprintf(own, sizeof own, "%s://%s:%d", scheme, hosts[i], port);
        if (h2o_memis(o->base, o->len, own, strlen(own))) return 1;
    }
    const char *list = rq->w->srv->cfg.mcp_origins;
    while (*list) {
        list += strspn(list, " ,");
        size_t n = strcspn(list, " ,");
        if (n && h2o_memis(o->base, o->len, list, n)) return 1;
        list += n;
    }
    return 0;
}

static int check_headers(ita_req_t *rq) {
    const h2o_iovec_t *o = ita_header(rq, "origin");
    if (o && !origin_allowed(rq, o)) {
        ita_problem(rq, 403, "Origin not allowed (add it to mcp.allowed_origins)");
        return -1;
    }
    const h2o_iovec_t *v = ita_header(rq, "mcp-protocol-version");
    if (v) {
        char ver[32];
        size_t n = v->len < sizeof ver - 1 ? v->len : sizeof ver - 1;
        memcpy(ver, v->base, n);
        ver[n] = 0;
        if (v->len >= sizeof ver || !ita_mcp_version_supported(ver)) {
            ita_problem(rq, 400, "unsupported MCP-Protocol-Version");
            return -1;
        }
    }
    return 0;
}

static void respond_rpc(ita_req_t *rq, int status, json_t *msg) {
    char *text = json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(msg);
    if (!text) {
        ita_problem(rq, 500, "out of memory while formatting the answer");
        return;
    }
    ita_respond(rq, status, "application/json", text, strlen(text));
    free(text);
}

void ita_route_mcp(ita_req_t *rq) {
    if (check_headers(rq)) return;
    json_error_t je;
    json_t *msg =
        rq->req->entity.base ? json_loadb(rq->req->entity.base, rq->req->entity.len, 0, &je) : NULL;
    if (!msg) {
        respond_rpc(rq, 400, ita_mcp_error(NULL, -32700, "parse error: the body is not JSON"));
        return;
    }
    ita_mcp_ctx_t c = {.cfg = &rq->w->srv->cfg,
                       .jobs = rq->w->jobs,
                       .view = rq->w->view,
                       .safety = rq->w->safety,
                       .sandbox_mu = &rq->w->srv->sandbox_mu,
                       .sched = rq->w->srv->sched,
                       .submit_mu = &rq->w->srv->submit_mu,
                       .scope = rq->key_scope,
                       .audit = &rq->w->srv->audit,
                       .request_id = rq->request_id,
                       .key_name = rq->key_name,
                       .key_id = rq->key_id};
    json_t *answer = ita_mcp_handle(&c, msg);
    int invalid = json_is_object(msg) == 0;
    json_decref(msg);
    if (c.action[0]) {
        size_t n = strlen(c.action) + 1;
        char *a = h2o_mem_alloc_pool(&rq->req->pool, n);
        memcpy(a, c.action, n);
        rq->action = a;
        if (c.job[0]) snprintf(rq->job, sizeof rq->job, "%s", c.job);
    }
    if (c.launched[0]) {
        size_t n = strlen(c.launched) + 1;
        char *l = h2o_mem_alloc_pool(&rq->req->pool, n);
        memcpy(l, c.launched, n);
        rq->launched = l;
    }
    if (!answer) {
        ita_respond(rq, 202, "application/json", "", 0);
        return;
    }
    respond_rpc(rq, invalid ? 400 : 200, answer);
}
