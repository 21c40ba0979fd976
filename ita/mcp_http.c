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
 *
 * A call of a tool that blocks (a scan, the sandbox, git, sbatch/scancel,
 * the knowledge index: ita_mcp_call_blocks) runs in the worker pool like
 * the REST routes it mirrors. When the pool is full the request is
 * answered at once with a JSON-RPC error for its id, code -32050 (the
 * implementation-defined server-error range; MCP names no code for
 * "busy") and data.retryAfter, in an HTTP 503 with Retry-After.
 */
#include <stdint.h>
#include <stdlib.h>
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

/* Hands the MCP context's audit fields to the request. */
static void take_audit(ita_req_t *rq, const char *action, const char *job, const char *launched) {
    if (action[0]) {
        rq->action = h2o_strdup(&rq->req->pool, action, SIZE_MAX).base;
        if (job[0]) snprintf(rq->job, sizeof rq->job, "%s", job);
    }
    if (launched[0]) rq->launched = h2o_strdup(&rq->req->pool, launched, SIZE_MAX).base;
}

/* A tools/call handed to the worker pool: the message (owned), who asks,
 * and the answer and audit fields the loop sends back. */
typedef struct {
    ita_server_t *srv;
    json_t *msg, *answer;
    int scope;
    char request_id[ITA_REQUEST_ID_MAX + 1];
    char key_name[ITA_KEY_NAME_MAX + 1], key_id[24];
    char action[96], job[ITA_JOB_ID_MAX + 1], launched[96];
} mcp_in_t;

static void mcp_in_free(void *p) {
    mcp_in_t *in = p;
    if (!in) return;
    json_decref(in->msg);
    json_decref(in->answer);
    free(in);
}

/* On a pool thread: the call, with this thread's scanner and a job
 * directory reader of the job's own. */
static void mcp_job_run(ita_pool_job_t *j, ita_pool_thread_t *t) {
    mcp_in_t *in = j->in;
    ita_jobdir_t *jobs = NULL;
    ita_sched_view_t *view = NULL;
    cu_error_t err = {0};
    if (ita_offload_jobs_open(in->srv, &jobs, &view, &err) != CU_OK) {
        ita_log(in->srv, "mcp: %s", err.msg);
        in->answer = ita_mcp_error(json_object_get(in->msg, "id"), -32603,
                                   "the runs directory could not be read");
        return;
    }
    ita_mcp_ctx_t c = {.cfg = &in->srv->cfg,
                       .jobs = jobs,
                       .view = view,
                       .safety = t->safety,
                       .sandbox_mu = &in->srv->sandbox_mu,
                       .sched = in->srv->sched,
                       .submit_mu = &in->srv->submit_mu,
                       .scope = in->scope,
                       .audit = &in->srv->audit,
                       .request_id = in->request_id,
                       .key_name = in->key_name,
                       .key_id = in->key_id};
    in->answer = ita_mcp_handle(&c, in->msg);
    snprintf(in->action, sizeof in->action, "%s", c.action);
    snprintf(in->job, sizeof in->job, "%s", c.job);
    snprintf(in->launched, sizeof in->launched, "%s", c.launched);
    ita_offload_jobs_close(jobs, view);
}

static void mcp_job_done(ita_pool_job_t *j, void *owner) {
    ita_req_t *rq = owner;
    mcp_in_t *in = j->in;
    take_audit(rq, in->action, in->job, in->launched);
    json_t *answer = in->answer;
    in->answer = NULL;
    if (!answer) {
        ita_respond(rq, 202, "application/json", "", 0);
        return;
    }
    respond_rpc(rq, 200, answer);
}

/* A blocking tool call (ita_mcp_call_blocks): into the worker pool, or, when
 * it is full, a JSON-RPC error for the request's id at once (HTTP 503 with
 * Retry-After, so HTTP-level clients and proxies see it too). Takes msg. */
static void mcp_offload(ita_req_t *rq, json_t *msg) {
    ita_pool_job_t *j = ita_offload_job(rq, sizeof(mcp_in_t), sizeof(mcp_in_t), NULL, 0);
    if (!j) {
        json_decref(msg);
        return;
    }
    mcp_in_t *in = j->in;
    in->srv = rq->w->srv;
    in->msg = msg;
    in->scope = rq->key_scope;
    snprintf(in->request_id, sizeof in->request_id, "%s", rq->request_id);
    snprintf(in->key_name, sizeof in->key_name, "%s", rq->key_name);
    snprintf(in->key_id, sizeof in->key_id, "%s", rq->key_id);
    j->free_in = mcp_in_free;
    j->run = mcp_job_run;
    j->done = mcp_job_done;
    if (ita_offload_try(rq, j) == 0) return;
    char action[96];
    snprintf(action, sizeof action, "mcp tools/call %.60s",
             json_string_value(json_object_get(json_object_get(msg, "params"), "name")));
    take_audit(rq, action, "", "");
    json_t *e = ita_mcp_busy_error(json_object_get(msg, "id"), 1);
    ita_pool_job_free(j);
    ita_add_header(rq, "retry-after", "1");
    respond_rpc(rq, 503, e);
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
    if (json_is_object(msg) && ita_mcp_call_blocks(msg)) {
        mcp_offload(rq, msg);
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
    take_audit(rq, c.action, c.job, c.launched);
    if (!answer) {
        ita_respond(rq, 202, "application/json", "", 0);
        return;
    }
    respond_rpc(rq, invalid ? 400 : 200, answer);
}
