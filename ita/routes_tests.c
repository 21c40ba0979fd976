/*
 * POST /v1/tests/run: runs one of the test commands the service's config
 * allows (test_commands: NAME: "argv words") in the safety sandbox — a
 * cgroup of its own, no network, a root of its own with the system
 * directories read-only and a capped private /tmp (none of the service's
 * files), rlimits, a clean environment, tests_timeout_s of wall clock — on
 * the files the request brings:
 *
 *   {"command": "NAME", "files": {"test_x.py": "...", ...}, "stdin": "..."}
 *
 * and answers with the exit status, the timing (cpu_s: the run's cgroup's),
 * whether it timed out, the bounded stdout and stderr (base64 when they are
 * not UTF-8, with stdout_encoding/stderr_encoding saying which), and the
 * sandbox layers that were in force.
 * Scope submit. A run takes a worker-pool thread (pool.h; 503 when the pool
 * is full), not an event loop, and runs are serialised service-wide: the
 * sandbox forks, which must not happen from two threads at once.
 */
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ita/http.h"
#include "safety/sandbox.h"

#define MAX_FILES 32
#define MAX_ARGS 32

/* Splits a configured command line on spaces into argv (in buf). */
static int split_command(const char *cmd, char *buf, size_t cap, const char **argv) {
    snprintf(buf, cap, "%s", cmd);
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(buf, " ", &save); w && n < MAX_ARGS; w = strtok_r(NULL, " ", &save))
        argv[n++] = w;
    argv[n] = NULL;
    return n;
}

/* Reads the request's files into out (names checked: plain, no '/'). */
static int read_files(json_t *files, sandbox_file_t *out, size_t *n, cu_error_t *err) {
    *n = 0;
    if (!files) return 0;
    if (!json_is_object(files))
        return cu_error_set(err, CU_EINVAL, "files is an object of file name to text");
    const char *name;
    json_t *v;
    json_object_foreach(files, name, v) {
        if (*n == MAX_FILES) return cu_error_set(err, CU_EINVAL, "at most 32 files");
        if (!json_is_string(v) || !name[0] || strchr(name, '/') || !strcmp(name, ".") ||
            !strcmp(name, "..") || strlen(name) > 255)
            return cu_error_set(err, CU_EINVAL,
                                "each file is a plain name (no '/') with a string of content");
        out[*n] = (sandbox_file_t){
            .name = name, .data = json_string_value(v), .len = json_string_length(v)};
        (*n)++;
    }
    return 0;
}

int ita_put_output(json_t *obj, const char *key, const char *buf, size_t len) {
    char enc_key[64];
    snprintf(enc_key, sizeof enc_key, "%s_encoding", key);
    json_t *v = json_stringn(buf, len); /* NULL when not UTF-8 */
    if (v) {
        json_object_set_new(obj, key, v);
        return json_object_set_new(obj, enc_key, json_string("utf-8"));
    }
    char *b64 = malloc(4 * ((len + 2) / 3) + 1);
    if (!b64) return -1;
    int n = EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)buf, (int)len);
    json_object_set_new(obj, key, json_stringn(b64, n > 0 ? (size_t)n : 0));
    free(b64);
    return json_object_set_new(obj, enc_key, json_string("base64"));
}

void ita_sandbox_opts(const ita_config_t *cfg, sandbox_opts_t *o, const char **hide,
                      const char **ro, const char *const *extra_ro) {
    int k = 0;
    for (int i = 0; o->argv && o->argv[i] && k < ITA_SANDBOX_RO - 1; i++)
        if (o->argv[i][0] == '/' && access(o->argv[i], F_OK) == 0) ro[k++] = o->argv[i];
    for (int i = 0; extra_ro && extra_ro[i] && k < ITA_SANDBOX_RO - 1; i++)
        if (extra_ro[i][0]) ro[k++] = extra_ro[i];
    ro[k] = NULL;
    o->ro_paths = ro;
    o->allow_rlimits_only = cfg->sandbox_allow_rlimits_only;
    o->cgroup_parent = cfg->sandbox_cgroup_parent[0] ? cfg->sandbox_cgroup_parent : NULL;
    o->mem_bytes = (size_t)cfg->sandbox_memory_mb << 20;
    /* the service's own files: never readable inside, wherever they are */
    const char *const mine[] = {cfg->keys_file, cfg->audit_log, cfg->error_log,
                                cfg->tls_key,   cfg->tls_cert,  cfg->forge_token_file,
                                cfg->kb_db,     cfg->runs_dir,  cfg->submit_workdir};
    int n = 0;
    for (size_t i = 0; i < sizeof mine / sizeof mine[0] && n < ITA_SANDBOX_HIDE - 1; i++)
        if (mine[i][0] && strcmp(mine[i], "-")) hide[n++] = mine[i];
    hide[n] = NULL;
    o->hide_paths = hide;
}

static json_t *result_json(const char *name, const sandbox_result_t *r) {
    char layers[160];
    sandbox_applied_string(r->applied, layers, sizeof layers);
    json_t *o =
        json_pack("{s:s, s:b, s:o, s:o, s:b, s:f, s:f, s:b, s:b, s:s}", "command", name, "passed",
                  r->exited && r->exit_code == 0 && !r->timed_out, "exit_code",
                  r->exited ? json_integer(r->exit_code) : json_null(), "signal",
                  r->signaled ? json_integer(r->term_signal) : json_null(), "timed_out",
                  r->timed_out, "wall_s", r->wall_s, "cpu_s", r->cpu_s, "stdout_truncated",
                  r->out_truncated, "stderr_truncated", r->err_truncated, "sandbox", layers);
    if (o && (ita_put_output(o, "stdout", r->out, r->out_len) ||
              ita_put_output(o, "stderr", r->err, r->err_len))) {
        json_decref(o);
        return NULL;
    }
    if (o && r->oom_kills) json_object_set_new(o, "oom_kills", json_integer(r->oom_kills));
    return o;
}

int ita_tests_run(const ita_config_t *cfg, pthread_mutex_t *sandbox_mu, json_t *doc, json_t **out,
                  cu_error_t *err) {
    *out = NULL;
    const char *name = json_string_value(json_object_get(doc, "command"));
    if (!json_is_object(doc) || !name)
        return cu_error_set(err, CU_EINVAL,
                            "the body is a JSON object {\"command\": NAME, \"files\": {...}}");
    int idx = -1;
    for (int i = 0; i < cfg->n_test_cmds; i++)
        if (!strcmp(cfg->test_cmds[i].name, name)) idx = i;
    if (idx < 0)
        return cu_error_set(err, ITA_ENOTALLOWED,
                            "that command is not in the service's test_commands allowlist");
    sandbox_file_t files[MAX_FILES];
    size_t nfiles;
    int rc = read_files(json_object_get(doc, "files"), files, &nfiles, err);
    if (rc) return rc;
    char words[256];
    const char *argv[MAX_ARGS + 1];
    split_command(cfg->test_cmds[idx].command, words, sizeof words, argv);
    json_t *in = json_object_get(doc, "stdin");
    sandbox_opts_t opts;
    sandbox_opts_init(&opts);
    opts.argv = argv;
    opts.files = files;
    opts.nfiles = nfiles;
    opts.timeout_s = cfg->tests_timeout_s;
    opts.max_output = 256 * 1024;
    const char *hide[ITA_SANDBOX_HIDE], *ro[ITA_SANDBOX_RO];
    ita_sandbox_opts(cfg, &opts, hide, ro, NULL);
    if (json_is_string(in)) {
        opts.stdin_data = json_string_value(in);
        opts.stdin_len = json_string_length(in);
    }
    sandbox_result_t r;
    pthread_mutex_lock(sandbox_mu);
    rc = sandbox_run(&opts, &r, err);
    pthread_mutex_unlock(sandbox_mu);
    if (rc != CU_OK) return cu_error_prefix(err, "the sandbox could not run %s: ", name);
    *out = result_json(name, &r);
    sandbox_result_free(&r);
    return *out ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory while building the answer");
}

typedef struct {
    ita_server_t *srv;
    size_t len;
    char body[]; /* len bytes */
} tests_in_t;

/* On a pool thread: parses the copied body and runs the command. */
static void tests_run_job(ita_pool_job_t *j, ita_pool_thread_t *t) {
    (void)t;
    tests_in_t *in = j->in;
    json_error_t je;
    json_t *doc = json_loadb(in->body, in->len, 0, &je);
    json_t *out = NULL;
    cu_error_t err = {0};
    int rc = ita_tests_run(&in->srv->cfg, &in->srv->sandbox_mu, doc, &out, &err);
    json_decref(doc);
    /* CU_EPOLICY: the sandbox cannot hold a run here (docs/safety.md) */
    j->status = rc == CU_OK             ? 200
                : rc == CU_EINVAL       ? 400
                : rc == CU_EPOLICY      ? 503
                : rc == ITA_ENOTALLOWED ? 403
                                        : 500;
    j->out = out;
    snprintf(j->detail, sizeof j->detail, "%s",
             j->status == 500 ? "the sandbox could not run the command" : err.msg);
    if (j->status == 500) ita_log(in->srv, "tests/run: %s", err.msg);
}

void ita_route_tests_run(ita_req_t *rq) {
    const char *body = rq->req->entity.base;
    size_t len = body ? rq->req->entity.len : 0;
    ita_pool_job_t *j =
        ita_offload_job(rq, sizeof(tests_in_t), offsetof(tests_in_t, body), body, len);
    if (!j) return;
    tests_in_t *in = j->in;
    in->srv = rq->w->srv;
    in->len = len;
    j->run = tests_run_job;
    ita_offload(rq, j);
}
