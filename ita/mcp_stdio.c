/*
 * `codex-ita --mcp-stdio`: the MCP server on stdin/stdout, for agents that
 * start their tools as child processes (IDEs, Copilot's local MCP
 * servers, the MCP inspector). Messages are newline-delimited JSON-RPC;
 * nothing but MCP messages is written to stdout (diagnostics go to
 * stderr).
 *
 * The same rules as over HTTP: the API key (from $CODEX_ITA_KEY) is
 * checked against the service's keys file, at start and before each
 * request (so a revoked key stops working), its scope bounds the tools,
 * and every request writes an audit line (method "MCP", path "stdio").
 */
#include <stdlib.h>
#include <string.h>

#include "ita/audit.h"
#include "ita/auth.h"
#include "ita/mcp.h"
#include "ita/sched.h"
#include "ita/trace.h"

#define LINE_MAX_BYTES (1 << 20)

typedef struct {
    const ita_config_t *cfg;
    ita_keycache_t keys;
    ita_audit_t audit;
    ita_jobdir_t *jobs;
    safety_engine_t *safety;
    ita_sched_t *sched;
    ita_sched_view_t *view;
    unsigned long view_gen;
    pthread_mutex_t sandbox_mu;
    pthread_mutex_t submit_mu; /* submit_job: one at a time in this process */
    uint64_t id_counter;
    const char *key;
} stdio_server_t;

/* The caller's key: its scope, or -1 (with why) when it is not valid. */
static int key_scope(stdio_server_t *s, const char **why, const ita_key_t **key) {
    cu_error_t err;
    if (ita_keycache_refresh(&s->keys, ita_mono_now(), &err))
        fprintf(stderr, "codex-ita: keys file: %s\n", err.msg);
    *key = NULL;
    ita_auth_result_t r =
        ita_auth_check(&s->keys, s->key, s->key ? strlen(s->key) : 0, ITA_SCOPE_READ, key);
    switch (r) {
    case ITA_AUTH_OK:
        return (*key)->scope;
    case ITA_AUTH_MISSING:
        *why = "set CODEX_ITA_KEY to an API key (codexctl keys create)";
        return -1;
    case ITA_AUTH_REVOKED:
        *why = "the API key has been revoked";
        return -1;
    case ITA_AUTH_SCOPE:
        *why = "the API key has no scope";
        return -1;
    default:
        *why = "the API key is not valid";
        return -1;
    }
}

static void audit(stdio_server_t *s, const ita_key_t *key, const ita_mcp_ctx_t *c, int status,
                  double t0, const char *rid) {
    ita_audit_record_t rec = {
        .request_id = rid,
        .key_name = key ? key->name : NULL,
        .key_id = key ? key->id : NULL,
        .method = "MCP",
        .method_len = 3,
        .path = "stdio",
        .path_len = 5,
        .status = status,
        .latency_ms = (ita_mono_now() - t0) * 1e3,
        .action = c->action[0] ? c->action : NULL,
        .job = c->action[0] && c->job[0] ? c->job : NULL,
        .launched = c->launched[0] ? c->launched : NULL,
    };
    if (ita_audit_write(&s->audit, &rec))
        fprintf(stderr, "codex-ita: the audit log could not be written\n");
}

static void write_msg(FILE *out, json_t *msg) {
    char *text = json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(15));
    if (text) {
        fputs(text, out);
        fputc('\n', out);
        fflush(out);
    }
    free(text);
    json_decref(msg);
}

static void serve_line(stdio_server_t *s, const char *line, size_t len, FILE *out) {
    double t0 = ita_mono_now();
    char rid[ITA_REQUEST_ID_MAX + 1];
    ita_request_id_generate(rid, &s->id_counter);
    const char *why = NULL;
    const ita_key_t *key = NULL;
    int scope = key_scope(s, &why, &key);
    ita_mcp_ctx_t c = {.cfg = s->cfg,
                       .jobs = s->jobs,
                       .safety = s->safety,
                       .sandbox_mu = &s->sandbox_mu,
                       .sched = s->sched,
                       .submit_mu = &s->submit_mu,
                       .audit = &s->audit,
                       .request_id = rid,
                       .key_name = key ? key->name : NULL,
                       .key_id = key ? key->id : NULL};
    json_error_t je;
    json_t *msg = json_loadb(line, len, 0, &je);
    json_t *id = json_object_get(msg, "id");
    json_t *answer;
    int status = 200;
    if (!msg) {
        answer = ita_mcp_error(NULL, -32700, "parse error: the line is not JSON");
        status = 400;
    } else if (scope < 0) {
        answer = ita_mcp_error(id, -32001, why);
        status = 401;
    } else {
        if (s->sched) ita_sched_sync(s->sched, &s->view, &s->view_gen);
        ita_jobdir_set_view(s->jobs, s->view);
        c.view = s->view;
        c.scope = scope;
        answer = ita_mcp_handle(&c, msg);
        if (!answer) status = 202;
    }
    audit(s, key, &c, status, t0, rid);
    json_decref(msg);
    if (answer) write_msg(out, answer);
}

static int setup(stdio_server_t *s, const ita_config_t *cfg, cu_error_t *err) {
    s->cfg = cfg;
    s->key = getenv("CODEX_ITA_KEY");
    pthread_mutex_init(&s->sandbox_mu, NULL);
    pthread_mutex_init(&s->submit_mu, NULL);
    ita_keycache_init(&s->keys, cfg->keys_file);
    int rc = ita_audit_open(&s->audit, cfg->audit_log, err);
    if (!rc) rc = ita_jobdir_open(&s->jobs, cfg->runs_dir, cfg->lost_after_s, cfg->max_jobs, err);
    if (!rc) rc = safety_engine_new(NULL, &s->safety, err);
    if (!rc) rc = ita_sched_start(&s->sched, cfg, err);
    return rc;
}

static void teardown(stdio_server_t *s) {
    ita_sched_stop(s->sched);
    ita_sched_view_release(s->view);
    safety_engine_free(s->safety);
    ita_jobdir_free(s->jobs);
    ita_audit_close(&s->audit);
    ita_keycache_free(&s->keys);
    pthread_mutex_destroy(&s->sandbox_mu);
    pthread_mutex_destroy(&s->submit_mu);
}

int ita_mcp_stdio_run(const ita_config_t *cfg, FILE *in, FILE *out) {
    stdio_server_t s;
    memset(&s, 0, sizeof s);
    cu_error_t err;
    if (setup(&s, cfg, &err)) {
        fprintf(stderr, "codex-ita: %s\n", err.msg);
        teardown(&s);
        return 1;
    }
    const char *why = NULL;
    const ita_key_t *key = NULL;
    if (key_scope(&s, &why, &key) < 0) {
        fprintf(stderr, "codex-ita --mcp-stdio: %s\n", why);
        teardown(&s);
        return 2;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, in)) >= 0) {
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        if (n == 0) continue;
        if (n > LINE_MAX_BYTES) {
            write_msg(out, ita_mcp_error(NULL, -32600, "a message is limited to 1 MiB"));
            continue;
        }
        serve_line(&s, line, (size_t)n, out);
    }
    free(line);
    teardown(&s);
    return 0;
}
