/*
 * The MCP tools: each mirrors a REST route (same checks, same scope, same
 * answer shape), described by an input and an output JSON Schema. A tool
 * that fails on its own terms (no such job, scope too low, a test command
 * not allowed) answers a result with isError, so the model sees why; bad
 * arguments are a JSON-RPC Invalid Params error.
 *
 *   list_jobs     read    GET /v1/jobs
 *   job_status    read    GET /v1/jobs/{id} (status merged with Slurm's view)
 *   job_metrics   read    GET /v1/jobs/{id}/metrics
 *   kb_search     read    POST /v1/kb/search
 *   hygiene_scan  read    POST /v1/hygiene/scan
 *   run_tests     submit  POST /v1/tests/run
 *   submit_job    submit  POST /v1/jobs (?dry_run=true unless dry_run is
 *                 false; the same code, routes_submit.c's ita_submit_run)
 *   cancel_job    submit  POST /v1/jobs/{id}/cancel (ita_submit_cancel)
 *   create_pull_request  submit  POST /v1/repos/{name}/pulls (dry run unless
 *                 dry_run is false and confirm true)
 */
#include <stdlib.h>
#include <string.h>

#include "ita/http.h"
#include "ita/kb.h"
#include "ita/keys.h"
#include "ita/mcp.h"
#include "ita/submit.h"
#include "safety/hits.h"

#define RPC_INVALID_PARAMS -32602

static const char TOOLS_JSON[] =
    "["
    "{\"name\":\"list_jobs\",\"title\":\"List training jobs\","
    "\"description\":\"Fine-tuning jobs of the runs directory, newest first, with status (merged "
    "with Slurm's view), step, loss, progress and ETA.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{"
    "\"status\":{\"type\":\"string\",\"description\":\"comma-separated statuses to keep, e.g. "
    "RUNNING,LOST\"},\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":500}},"
    "\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"required\":[\"jobs\"],\"properties\":{\"jobs\":{"
    "\"type\":\"array\",\"items\":{\"type\":\"object\",\"required\":[\"id\",\"status\"]}}}},"
    "\"annotations\":{\"readOnlyHint\":true}},"
    "{\"name\":\"job_status\",\"title\":\"One job's status\","
    "\"description\":\"A job's status with the scheduler's view (Slurm state, reason, nodes), "
    "progress, ETA, and its state.json (error message of a failed job).\","
    "\"inputSchema\":{\"type\":\"object\",\"required\":[\"job\"],\"properties\":{\"job\":{"
    "\"type\":\"string\",\"description\":\"the job id\"}},\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"required\":[\"id\",\"status\",\"state\"],"
    "\"properties\":{\"id\":{\"type\":\"string\"},\"status\":{\"type\":\"string\"},"
    "\"scheduler\":{\"type\":[\"object\",\"null\"]},\"state\":{\"type\":\"object\"}}},"
    "\"annotations\":{\"readOnlyHint\":true}},"
    "{\"name\":\"job_metrics\",\"title\":\"A job's metrics\","
    "\"description\":\"Records of a job's metrics.jsonl (loss, lr, tokens/s, evaluations), in "
    "order.\","
    "\"inputSchema\":{\"type\":\"object\",\"required\":[\"job\"],\"properties\":{\"job\":{"
    "\"type\":\"string\"},\"since_step\":{\"type\":\"integer\"},\"names\":{\"type\":\"array\","
    "\"items\":{\"type\":\"string\"},\"maxItems\":16},\"limit\":{\"type\":\"integer\","
    "\"minimum\":1,\"maximum\":5000}},\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"required\":[\"job\",\"records\",\"more\"],"
    "\"properties\":{\"job\":{\"type\":\"string\"},\"records\":{\"type\":\"array\"},"
    "\"more\":{\"type\":\"boolean\"}}},\"annotations\":{\"readOnlyHint\":true}},"
    "{\"name\":\"kb_search\",\"title\":\"Search code, docs and runs\","
    "\"description\":\"Full-text search (BM25) of the knowledge index: the project's docs and "
    "code, job configs, events and evaluation samples. Identifiers match whole or by their "
    "camelCase/snake_case words.\","
    "\"inputSchema\":{\"type\":\"object\",\"required\":[\"query\"],\"properties\":{\"query\":{"
    "\"type\":\"string\",\"minLength\":1,\"maxLength\":1000},\"top_k\":{\"type\":\"integer\","
    "\"minimum\":1,\"maximum\":100},\"kinds\":{\"type\":\"array\",\"items\":{\"enum\":[\"doc\","
    "\"code\",\"config\",\"events\",\"eval\"]}},\"paths\":{\"type\":\"array\",\"items\":{"
    "\"type\":\"string\"}}},\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"required\":[\"query\",\"results\"],\"properties\":{"
    "\"query\":{\"type\":\"string\"},\"results\":{\"type\":\"array\",\"items\":{\"type\":"
    "\"object\",\"required\":[\"source\",\"kind\",\"title\",\"line_start\",\"line_end\","
    "\"snippet\",\"score\"]}}}},\"annotations\":{\"readOnlyHint\":true}},"
    "{\"name\":\"hygiene_scan\",\"title\":\"Scan for secrets and personal data\","
    "\"description\":\"Runs the hygiene scanner on a text or a unified diff (only added lines); "
    "answers findings with masked previews, never the secret.\","
    "\"inputSchema\":{\"type\":\"object\",\"required\":[\"text\"],\"properties\":{\"text\":{"
    "\"type\":\"string\",\"maxLength\":1048576},\"kind\":{\"enum\":[\"text\",\"diff\"]},"
    "\"path\":{\"type\":\"string\",\"maxLength\":255}},\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\"},\"annotations\":{\"readOnlyHint\":true}},"
    "{\"name\":\"run_tests\",\"title\":\"Run tests in the sandbox\","
    "\"description\":\"Runs one of the service's allowlisted test commands in the sandbox (no "
    "network, private directory, time limit) on the given files. Needs a key of scope submit.\","
    "\"inputSchema\":{\"type\":\"object\",\"required\":[\"command\"],\"properties\":{"
    "\"command\":{\"type\":\"string\"},\"files\":{\"type\":\"object\",\"additionalProperties\":"
    "{\"type\":\"string\"},\"maxProperties\":32},\"stdin\":{\"type\":\"string\"}},"
    "\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"required\":[\"command\",\"passed\",\"exit_code\","
    "\"timed_out\"],\"properties\":{\"command\":{\"type\":\"string\"},\"passed\":{\"type\":"
    "\"boolean\"},\"exit_code\":{\"type\":[\"integer\",\"null\"]},\"timed_out\":{\"type\":"
    "\"boolean\"},\"stdout\":{\"type\":\"string\"},\"stderr\":{\"type\":\"string\"}}},"
    "\"annotations\":{\"readOnlyHint\":false,\"destructiveHint\":false,\"openWorldHint\":false}},"
    "{\"name\":\"create_pull_request\",\"title\":\"Propose a change as a pull request\","
    "\"description\":\"Applies a patch or files to a new branch from an allowed base of a "
    "configured repository, scans the change for secrets, runs the repository's tests in the "
    "sandbox, commits, pushes and opens the pull request. A dry run (the default) only checks the "
    "patch and scans it; writing needs dry_run false AND confirm true. Needs scope submit.\","
    "\"inputSchema\":{\"type\":\"object\",\"required\":[\"repo\",\"title\",\"base\"],"
    "\"properties\":{\"repo\":{\"type\":\"string\"},\"title\":{\"type\":\"string\","
    "\"maxLength\":256},\"body\":{\"type\":\"string\"},\"base\":{\"type\":\"string\"},"
    "\"head\":{\"type\":\"string\"},\"patch\":{\"type\":\"string\"},\"files\":{\"type\":"
    "\"object\",\"additionalProperties\":{\"type\":\"string\"}},\"labels\":{\"type\":"
    "\"array\",\"items\":{\"type\":\"string\"}},\"dry_run\":{\"type\":\"boolean\","
    "\"default\":true},\"confirm\":{\"type\":\"boolean\",\"default\":false}},"
    "\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"required\":[\"dry_run\",\"repo\",\"steps\"],"
    "\"properties\":{\"dry_run\":{\"type\":\"boolean\"},\"repo\":{\"type\":\"string\"},"
    "\"steps\":{\"type\":\"array\"},\"commit\":{\"type\":\"string\"},\"pull_request\":{"
    "\"type\":[\"object\",\"null\"]}}},"
    "\"annotations\":{\"readOnlyHint\":false,\"destructiveHint\":false,\"openWorldHint\":true}},"
    "{\"name\":\"submit_job\",\"title\":\"Submit a fine-tuning job\","
    "\"description\":\"Validates a job config exactly as POST /v1/jobs does (keys, values, output "
    "kept in the service's runs directory) and answers the batch script it would run; nothing is "
    "written unless dry_run is false, which writes the run directory and submits it to Slurm "
    "(sbatch) or, with launcher local, starts mpirun. Needs scope submit.\","
    "\"inputSchema\":{\"type\":\"object\",\"required\":[\"config\"],\"properties\":{"
    "\"config\":{\"type\":\"string\",\"description\":\"the job config, YAML or JSON text\"},"
    "\"overrides\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"pattern\":\"=\"},"
    "\"maxItems\":128,\"description\":\"section.key=value\"},\"launcher\":{\"enum\":["
    "\"slurm\",\"local\"],\"default\":\"slurm\"},\"ranks\":{\"type\":\"integer\","
    "\"minimum\":1,\"maximum\":64,\"description\":\"MPI ranks (launcher local only)\"},"
    "\"sweep\":{\"type\":\"string\",\"description\":\"KEY=V1,V2,...: a Slurm job array\"},"
    "\"dry_run\":{\"type\":\"boolean\",\"default\":true}},\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"required\":[\"job\",\"launcher\",\"jobs\"],"
    "\"properties\":{\"dry_run\":{\"type\":\"boolean\"},\"job\":{\"type\":\"string\"},"
    "\"launcher\":{\"enum\":[\"slurm\",\"local\"]},\"run_dir\":{\"type\":\"string\"},"
    "\"script\":{\"type\":\"string\"},\"status\":{\"type\":\"string\"},"
    "\"slurm_job_id\":{\"type\":[\"string\",\"null\"]},\"pid\":{\"type\":[\"integer\","
    "\"null\"]},\"jobs\":{\"type\":\"array\"}}},"
    "\"annotations\":{\"readOnlyHint\":false,\"destructiveHint\":false,\"openWorldHint\":false}},"
    "{\"name\":\"cancel_job\",\"title\":\"Cancel a job\","
    "\"description\":\"Stops a pending or running job (scancel, or SIGTERM to a local launch) and "
    "records it CANCELLED, as POST /v1/jobs/{id}/cancel. Needs scope submit.\","
    "\"inputSchema\":{\"type\":\"object\",\"required\":[\"job\"],\"properties\":{\"job\":{"
    "\"type\":\"string\",\"description\":\"the job id\"}},\"additionalProperties\":false},"
    "\"outputSchema\":{\"type\":\"object\",\"required\":[\"job\",\"status\","
    "\"slurm_job_id\"],\"properties\":{\"job\":{\"type\":\"string\"},\"status\":{"
    "\"const\":\"CANCELLED\"},\"slurm_job_id\":{\"type\":[\"string\",\"null\"]}}},"
    "\"annotations\":{\"readOnlyHint\":false,\"destructiveHint\":true,\"idempotentHint\":false,"
    "\"openWorldHint\":false}}"
    "]";

json_t *ita_mcp_tools_list(void) {
    return json_loads(TOOLS_JSON, 0, NULL);
}

/* A successful result: the document as structured content and as text. */
static json_t *tool_ok(json_t *doc) {
    char *text = json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_t *r = json_pack("{s:[{s:s, s:s}], s:o, s:b}", "content", "type", "text", "text",
                          text ? text : "{}", "structuredContent", doc, "isError", 0);
    free(text);
    return r;
}

static json_t *tool_error(const char *fmt_msg) {
    return json_pack("{s:[{s:s, s:s}], s:b}", "content", "type", "text", "text", fmt_msg, "isError",
                     1);
}

static int need_scope(ita_mcp_ctx_t *c, int scope, json_t **res) {
    if (c->scope >= scope) return 0;
    char msg[128];
    snprintf(msg, sizeof msg, "this tool needs scope '%s'; the key has '%s'", ita_scope_name(scope),
             ita_scope_name(c->scope));
    *res = tool_error(msg);
    return -1;
}

static const char *job_arg(ita_mcp_ctx_t *c, json_t *args, cu_error_t *err) {
    const char *job = json_string_value(json_object_get(args, "job"));
    if (!job) {
        cu_error_set(err, CU_EINVAL, "job: a job id is required");
        return NULL;
    }
    snprintf(c->job, sizeof c->job, "%s", job);
    return job;
}

static json_t *job_error(const cu_error_t *e) {
    return tool_error(e->code == ITA_ENOENT ? "no such job" : e->msg);
}

static json_t *t_list_jobs(ita_mcp_ctx_t *c, json_t *args, int *code, cu_error_t *err) {
    json_t *st = json_object_get(args, "status"), *lim = json_object_get(args, "limit");
    if ((st && !json_is_string(st)) ||
        (lim &&
         (!json_is_integer(lim) || json_integer_value(lim) < 1 || json_integer_value(lim) > 500))) {
        *code = RPC_INVALID_PARAMS;
        cu_error_set(err, CU_EINVAL, "status is a string, limit an integer in [1, 500]");
        return NULL;
    }
    size_t limit = lim ? (size_t)json_integer_value(lim) : 50;
    ita_job_summary_t *all = NULL;
    size_t n = 0;
    cu_error_t e = {0};
    if (ita_jobdir_list(c->jobs, &all, &n, &e)) return tool_error(e.msg);
    json_t *jobs = json_array();
    const char *want = json_string_value(st);
    for (size_t i = 0; i < n && json_array_size(jobs) < limit; i++) {
        if (want) {
            const char *hit = strstr(want, all[i].status);
            size_t l = strlen(all[i].status);
            if (!hit || (hit > want && hit[-1] != ',') || (hit[l] && hit[l] != ',')) continue;
        }
        json_array_append_new(jobs, ita_job_summary_json_view(&all[i], c->view));
    }
    free(all);
    return tool_ok(json_pack("{s:o}", "jobs", jobs));
}

static json_t *t_job_status(ita_mcp_ctx_t *c, json_t *args, int *code, cu_error_t *err) {
    const char *job = job_arg(c, args, err);
    if (!job) return *code = RPC_INVALID_PARAMS, NULL;
    if (!ita_job_id_valid(job, strlen(job))) return tool_error("no such job");
    ita_job_summary_t sum;
    const json_t *state = NULL;
    cu_error_t e = {0};
    if (ita_jobdir_state(c->jobs, job, &sum, &state, &e)) return job_error(&e);
    json_t *doc = ita_job_summary_json_view(&sum, c->view);
    json_object_set(doc, "state", (json_t *)state);
    return tool_ok(doc);
}

static json_t *t_job_metrics(ita_mcp_ctx_t *c, json_t *args, int *code, cu_error_t *err) {
    const char *job = job_arg(c, args, err);
    if (!job) return *code = RPC_INVALID_PARAMS, NULL;
    if (!ita_job_id_valid(job, strlen(job))) return tool_error("no such job");
    json_t *since = json_object_get(args, "since_step"), *lim = json_object_get(args, "limit");
    json_t *names = json_object_get(args, "names");
    const char *nv[16];
    size_t nn = 0;
    if ((since && !json_is_integer(since)) || (lim && !json_is_integer(lim)) ||
        (names && (!json_is_array(names) || json_array_size(names) > 16))) {
        *code = RPC_INVALID_PARAMS;
        cu_error_set(err, CU_EINVAL, "since_step and limit are integers, names a list of <= 16");
        return NULL;
    }
    for (size_t i = 0; names && i < json_array_size(names); i++) {
        nv[nn] = json_string_value(json_array_get(names, i));
        if (nv[nn]) nn++;
    }
    long long l = lim ? json_integer_value(lim) : 1000;
    ita_jsonl_query_t q = {.since_step = since ? json_integer_value(since) : INT64_MIN,
                           .cursor = -1,
                           .limit = (size_t)(l < 1      ? 1
                                             : l > 5000 ? 5000
                                                        : l),
                           .max_bytes = 1 << 20,
                           .names = nn ? nv : NULL,
                           .n_names = nn};
    ita_job_summary_t sum;
    const json_t *state;
    cu_error_t e = {0};
    if (ita_jobdir_state(c->jobs, job, &sum, &state, &e)) return job_error(&e);
    ita_jsonl_page_t page;
    if (ita_jobdir_jsonl(c->jobs, job, ITA_JSONL_METRICS, &q, &page, &e)) return job_error(&e);
    return tool_ok(
        json_pack("{s:s, s:o, s:b}", "job", job, "records", page.records, "more", page.more));
}

static json_t *t_kb_search(ita_mcp_ctx_t *c, json_t *args, int *code, cu_error_t *err) {
    if (!c->cfg->kb_db[0]) return tool_error("no knowledge index is configured (kb.db)");
    json_t *answer = NULL;
    cu_error_t e = {0};
    int rc = ita_kb_search_request(c->cfg->kb_db, args, &answer, &e);
    if (rc == CU_EINVAL) {
        *code = RPC_INVALID_PARAMS;
        *err = e;
        return NULL;
    }
    return rc ? tool_error(e.msg) : tool_ok(answer);
}

static json_t *t_hygiene_scan(ita_mcp_ctx_t *c, json_t *args, int *code, cu_error_t *err) {
    json_t *text = json_object_get(args, "text");
    const char *kind = json_string_value(json_object_get(args, "kind"));
    const char *path = json_string_value(json_object_get(args, "path"));
    if (!json_is_string(text) || (kind && strcmp(kind, "text") && strcmp(kind, "diff"))) {
        *code = RPC_INVALID_PARAMS;
        cu_error_set(err, CU_EINVAL, "text is a string; kind is text or diff");
        return NULL;
    }
    safety_hits_t hits;
    memset(&hits, 0, sizeof hits);
    cu_error_t e = {0};
    const char *s = json_string_value(text);
    size_t len = json_string_length(text);
    int rc = kind && !strcmp(kind, "diff")
                 ? safety_hits_scan_diff(c->safety, SAFETY_STAGE_DATA, s, len, &hits, &e)
                 : safety_hits_scan_text(c->safety, SAFETY_STAGE_DATA, path ? path : "request", s,
                                         len, &hits, &e);
    json_t *doc = rc ? NULL : safety_hits_json(c->safety, SAFETY_STAGE_DATA, &hits);
    safety_hits_free(&hits);
    if (rc) return tool_error(e.msg);
    return doc ? tool_ok(doc) : tool_error("out of memory");
}

static json_t *t_run_tests(ita_mcp_ctx_t *c, json_t *args, int *code, cu_error_t *err) {
    json_t *res = NULL;
    if (need_scope(c, ITA_SCOPE_SUBMIT, &res)) return res;
    json_t *out = NULL;
    cu_error_t e = {0};
    int rc = ita_tests_run(c->cfg, c->sandbox_mu, args, &out, &e);
    if (rc == CU_EINVAL) {
        *code = RPC_INVALID_PARAMS;
        *err = e;
        return NULL;
    }
    return rc ? tool_error(e.msg) : tool_ok(out);
}

static json_t *t_create_pull_request(ita_mcp_ctx_t *c, json_t *args, int *code, cu_error_t *err) {
    json_t *res = NULL;
    if (need_scope(c, ITA_SCOPE_SUBMIT, &res)) return res;
    const char *repo = json_string_value(json_object_get(args, "repo"));
    if (!repo) {
        *code = RPC_INVALID_PARAMS;
        cu_error_set(err, CU_EINVAL, "repo: the name of a configured repository");
        return NULL;
    }
    snprintf(c->job, sizeof c->job, "%s", repo);
    json_t *req = json_deep_copy(args);
    json_object_del(req, "repo");
    ita_pull_ctx_t pc = {.cfg = c->cfg,
                         .safety = c->safety,
                         .sandbox_mu = c->sandbox_mu,
                         .audit = c->audit,
                         .request_id = c->request_id ? c->request_id : "",
                         .key_name = c->key_name,
                         .key_id = c->key_id,
                         .method = "MCP",
                         .path = "tools/call create_pull_request"};
    json_t *doc = NULL;
    char detail[256];
    int status = ita_pull_run(&pc, repo, req, &doc, detail, sizeof detail);
    json_decref(req);
    if (!doc) {
        char msg[300];
        snprintf(msg, sizeof msg, "refused (%d): %s", status, detail);
        return tool_error(msg);
    }
    if (status < 400) return tool_ok(doc);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    json_t *r = tool_error(text ? text : detail);
    free(text);
    return r;
}

/* The submit context of an MCP call. */
static ita_submit_ctx_t submit_ctx(const ita_mcp_ctx_t *c) {
    return (ita_submit_ctx_t){.cfg = c->cfg,
                              .jobs = c->jobs,
                              .sched = c->sched,
                              .submit_mu = c->submit_mu,
                              .key_name = c->key_name,
                              .key_id = c->key_id};
}

/* A submit/cancel result as a tool result, its audit fields into c. */
static json_t *submit_result(ita_mcp_ctx_t *c, ita_submit_result_t *res) {
    if (res->job[0]) snprintf(c->job, sizeof c->job, "%s", res->job);
    snprintf(c->launched, sizeof c->launched, "%s", res->launched);
    if (res->log[0]) fprintf(stderr, "codex-ita: request %s: %s\n", c->request_id, res->log);
    if (res->status < 400) return tool_ok(res->doc);
    char msg[1100];
    snprintf(msg, sizeof msg, "refused (%d): %s", res->status, res->detail);
    return tool_error(msg);
}

static json_t *t_submit_job(ita_mcp_ctx_t *c, json_t *args, int *code, cu_error_t *err) {
    json_t *res = NULL;
    if (need_scope(c, ITA_SCOPE_SUBMIT, &res)) return res;
    json_t *dr = json_object_get(args, "dry_run");
    if (dr && !json_is_boolean(dr)) {
        *code = RPC_INVALID_PARAMS;
        cu_error_set(err, CU_EINVAL, "dry_run is a boolean");
        return NULL;
    }
    json_t *body = json_copy(args);
    json_object_del(body, "dry_run");
    ita_submit_ctx_t sc = submit_ctx(c);
    ita_submit_result_t r;
    ita_submit_run(&sc, body, !dr || json_is_true(dr), &r);
    json_decref(body);
    return submit_result(c, &r);
}

static json_t *t_cancel_job(ita_mcp_ctx_t *c, json_t *args, int *code, cu_error_t *err) {
    json_t *res = NULL;
    if (need_scope(c, ITA_SCOPE_SUBMIT, &res)) return res;
    const char *job = job_arg(c, args, err);
    if (!job) return *code = RPC_INVALID_PARAMS, NULL;
    if (!ita_job_id_valid(job, strlen(job))) return tool_error("no such job");
    ita_submit_ctx_t sc = submit_ctx(c);
    ita_submit_result_t r;
    ita_submit_cancel(&sc, job, &r);
    return submit_result(c, &r);
}

typedef json_t *(*tool_fn)(ita_mcp_ctx_t *, json_t *, int *, cu_error_t *);

/* blocks: the tool scans, runs a program or waits for one (sandbox, git,
 * sbatch, scancel) or searches an index of unbounded size, so over HTTP it
 * runs in the worker pool, never on an event loop (mcp_http.c). */
static const struct {
    const char *name;
    tool_fn fn;
    int blocks;
} TOOLS[] = {
    {"list_jobs", t_list_jobs, 0},
    {"job_status", t_job_status, 0},
    {"job_metrics", t_job_metrics, 0},
    {"kb_search", t_kb_search, 1},
    {"hygiene_scan", t_hygiene_scan, 1},
    {"run_tests", t_run_tests, 1},
    {"create_pull_request", t_create_pull_request, 1},
    {"submit_job", t_submit_job, 1},
    {"cancel_job", t_cancel_job, 1},
};

int ita_mcp_call_blocks(json_t *msg) {
    const char *method = json_string_value(json_object_get(msg, "method"));
    if (!method || strcmp(method, "tools/call") || !json_object_get(msg, "id")) return 0;
    const char *name = json_string_value(json_object_get(json_object_get(msg, "params"), "name"));
    for (size_t i = 0; name && i < sizeof TOOLS / sizeof TOOLS[0]; i++)
        if (!strcmp(TOOLS[i].name, name)) return TOOLS[i].blocks;
    return 0;
}

json_t *ita_mcp_tool_call(ita_mcp_ctx_t *c, const char *name, json_t *args, int *rpc_code,
                          cu_error_t *err) {
    json_t *empty = NULL;
    if (!args) args = empty = json_object();
    json_t *res = NULL;
    int found = 0;
    for (size_t i = 0; i < sizeof TOOLS / sizeof TOOLS[0]; i++)
        if (!strcmp(TOOLS[i].name, name)) {
            found = 1;
            res = TOOLS[i].fn(c, args, rpc_code, err);
        }
    json_decref(empty);
    if (!found) {
        *rpc_code = RPC_INVALID_PARAMS;
        cu_error_set(err, CU_EINVAL, "no such tool: %s", name);
    }
    return res;
}
