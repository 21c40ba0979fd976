/*
 * Unit tests of codex-ita's parts without a server: keys (create, verify,
 * revoke, save/load round trip, file mode, malformed files), job ids and
 * the runs-directory reader (traversal and symlinks, state cache refresh,
 * LOST, partial .jsonl lines, metrics paging by step and cursor), request
 * ids, the audit line escaper, problem documents and the config parser.
 */
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "ita/audit.h"
#include "ita/auth.h"
#include "ita/config.h"
#include "ita/jobdir.h"
#include "ita/keys.h"
#include "ita/metrics.h"
#include "ita/problem.h"
#include "ita/trace.h"
#include "rundir/rundir.h"
#include "rundir/status.h"

static char tmpdir[256];

/* Every folder make_tmpdir creates, removed with its contents at exit. */
enum { MAX_TMPDIRS = 64 };
static char made[MAX_TMPDIRS][256];
static int n_made;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void remove_tmpdirs(void) {
    for (int i = 0; i < n_made; i++) nftw(made[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_ita_XXXXXX");
    if (!mkdtemp(tmpdir)) abort();
    if (n_made == 0) atexit(remove_tmpdirs);
    if (n_made < MAX_TMPDIRS) snprintf(made[n_made++], sizeof made[0], "%s", tmpdir);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

static void test_keys(void) {
    make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/keys.json", tmpdir);
    ita_keyset_t set;
    ita_keyset_init(&set);
    cu_error_t err;
    char k1[ITA_KEY_LEN + 1], k2[ITA_KEY_LEN + 1];
    CHECK(ita_keys_create(&set, "alice", ITA_SCOPE_READ, k1, &err) == CU_OK);
    CHECK(ita_keys_create(&set, "bob", ITA_SCOPE_ADMIN, k2, &err) == CU_OK);
    CHECK(strlen(k1) == ITA_KEY_LEN && strcmp(k1, k2));
    CHECK(ita_keys_create(&set, "alice", ITA_SCOPE_READ, k2, &err) == CU_EINVAL);
    CHECK(ita_keys_create(&set, "a b", ITA_SCOPE_READ, k2, &err) == CU_EINVAL);
    CHECK(ita_keys_save(path, &set, &err) == CU_OK);
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    ita_keyset_t back;
    ita_keyset_init(&back);
    CHECK(ita_keys_load(path, &back, 0, &err) == CU_OK && back.n == 2);
    const ita_key_t *k = NULL;
    CHECK(ita_keys_verify(&back, k1, strlen(k1), &k) == ITA_KEY_OK && k &&
          !strcmp(k->name, "alice") && k->scope == ITA_SCOPE_READ);
    char bad[ITA_KEY_LEN + 1];
    memcpy(bad, k1, sizeof bad);
    bad[ITA_KEY_LEN - 1] = bad[ITA_KEY_LEN - 1] == '0' ? '1' : '0';
    CHECK(ita_keys_verify(&back, bad, strlen(bad), &k) == ITA_KEY_UNKNOWN && !k);
    CHECK(ita_keys_verify(&back, k1, strlen(k1) - 1, &k) == ITA_KEY_UNKNOWN);
    CHECK(ita_keys_verify(&back, "", 0, &k) == ITA_KEY_UNKNOWN);
    CHECK(ita_keys_revoke(&back, "alice", &err) == CU_OK);
    CHECK(ita_keys_revoke(&back, "alice", &err) == CU_EINVAL);
    CHECK(ita_keys_verify(&back, k1, strlen(k1), &k) == ITA_KEY_REVOKED);
    CHECK(ita_keys_verify(&back, k2, strlen(k2), &k) == ITA_KEY_OK && k->scope == ITA_SCOPE_ADMIN);
    /* The file never holds a key. */
    FILE *f = fopen(path, "r");
    char text[8192] = {0};
    CHECK(f && fread(text, 1, sizeof text - 1, f) > 0);
    if (f) fclose(f);
    CHECK(!strstr(text, k1 + 21) && !strstr(text, k2 + 21));
    write_file(path, "{\"version\":1,\"keys\":[{\"id\":\"zz\"}]}");
    ita_keyset_t broken;
    ita_keyset_init(&broken);
    CHECK(ita_keys_load(path, &broken, 0, &err) == CU_EFORMAT);
    write_file(path, "not json");
    CHECK(ita_keys_load(path, &broken, 0, &err) == CU_EFORMAT);
    unlink(path);
    CHECK(ita_keys_load(path, &broken, 1, &err) == CU_OK && broken.n == 0);
    CHECK(ita_keys_load(path, &broken, 0, &err) == CU_EIO);
    CHECK(ita_scope_parse("submit") == ITA_SCOPE_SUBMIT && ita_scope_parse("root") == 0);
    ita_keyset_free(&set);
    ita_keyset_free(&back);
    ita_keyset_free(&broken);
}

static void test_job_ids(void) {
    CHECK(ita_job_id_valid("demo-1_a.b", 10));
    CHECK(!ita_job_id_valid("..", 2));
    CHECK(!ita_job_id_valid(".", 1));
    CHECK(!ita_job_id_valid(".hidden", 7));
    CHECK(!ita_job_id_valid("a/b", 3));
    CHECK(!ita_job_id_valid("a%2f", 4));
    CHECK(!ita_job_id_valid("", 0));
    char long_id[200];
    memset(long_id, 'a', sizeof long_id);
    CHECK(ita_job_id_valid(long_id, 128) && !ita_job_id_valid(long_id, 129));
}

static void mkjob(const char *runs, const char *id, const char *state) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", runs, id);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/%s/state.json", runs, id);
    write_file(p, state);
}

/* A FIFO (or any non-regular file) named like a run file must not block
 * codex-ita's worker or the rundir library in open(): each read or write
 * is refused at once. A hang would be killed by the alarm. */
static void test_fifo_run_files(void) {
    make_tmpdir();
    char runs[512], p[700];
    snprintf(runs, sizeof runs, "%s/runs", tmpdir);
    mkdir(runs, 0755);
    mkjob(runs, "good", "{\"status\":\"RUNNING\",\"step\":1,\"max_steps\":10}");
    snprintf(p, sizeof p, "%s/good/checkpoints", runs);
    mkdir(p, 0755);
    const char *names[] = {"metrics.jsonl",      "events.jsonl", "launcher.pid",
                           "checkpoints/latest", "lock",         "local.out"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(p, sizeof p, "%s/good/%s", runs, names[i]);
        CHECK(mkfifo(p, 0644) == 0);
    }
    snprintf(p, sizeof p, "%s/fifo", runs);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/fifo/state.json", runs);
    CHECK(mkfifo(p, 0644) == 0);
    alarm(60);
    ita_jobdir_t *jd = NULL;
    cu_error_t err;
    CHECK(ita_jobdir_open(&jd, runs, 120, 100, &err) == CU_OK);
    if (!jd) return;
    ita_job_summary_t s;
    CHECK(ita_jobdir_state(jd, "fifo", &s, NULL, &err) == ITA_ENOENT);
    CHECK(ita_jobdir_state(jd, "good", &s, NULL, &err) == CU_OK && s.step == 1);
    ita_jsonl_query_t q = {.since_step = INT64_MIN, .cursor = -1, .limit = 10, .max_bytes = 4096};
    for (int k = 0; k < 2; k++) {
        ita_jsonl_page_t pg = {0};
        CHECK(ita_jobdir_jsonl(jd, "good", (ita_jsonl_kind_t)k, &q, &pg, &err) == CU_OK &&
              json_array_size(pg.records) == 0);
        json_decref(pg.records);
    }
    CHECK(ita_jobdir_launcher_alive(jd, "good") < 0);
    CHECK(ita_jobdir_openat(jd, "good", "checkpoints/latest", O_RDONLY) < 0);
    CHECK(ita_jobdir_append_line(jd, "good", "events.jsonl", "{}", &err) != CU_OK);
    ita_job_summary_t *list = NULL;
    size_t n = 0;
    CHECK(ita_jobdir_list(jd, &list, &n, &err) == CU_OK && n == 1);
    free(list);
    ita_jobdir_free(jd);
    /* the rundir library, as codex-train and codexctl use it */
    snprintf(p, sizeof p, "%s/fifo", runs);
    rundir_state_t st;
    rundir_state_init(&st, "fifo");
    CHECK(rundir_read_state(p, &st, &err) != CU_OK);
    CHECK(rundir_record_status(p, "CANCELLED", "x", &err) != CU_OK);
    snprintf(p, sizeof p, "%s/good", runs);
    char holder[64];
    CHECK(rundir_lock_holder(p, holder, sizeof holder) == 0);
    rundir_t d;
    CHECK(rundir_open(&d, p, &err) != CU_OK);
    alarm(0);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CHECK(system(cmd) == 0);
}

static void test_jobdir(void) {
    make_tmpdir();
    char runs[512], p[600], q[600];
    snprintf(runs, sizeof runs, "%s/runs", tmpdir);
    mkdir(runs, 0755);
    char now[32];
    ita_time_now_rfc3339(now);
    char st[512];
    snprintf(st, sizeof st,
             "{\"status\":\"RUNNING\",\"step\":5,\"max_steps\":10,\"loss\":2.5,"
             "\"started_at\":\"2026-11-24T07:00:00.000Z\",\"updated_at\":\"%s\"}",
             now);
    mkjob(runs, "a", st);
    mkjob(runs, "old",
          "{\"status\":\"RUNNING\",\"step\":1,\"max_steps\":10,"
          "\"started_at\":\"2026-11-24T06:00:00.000Z\","
          "\"updated_at\":\"2026-01-01T00:00:00.000Z\"}");
    /* outside/ with a state.json, and a symlink to it from runs/ */
    snprintf(p, sizeof p, "%s/outside", tmpdir);
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/outside/state.json", tmpdir);
    write_file(p, "{\"status\":\"RUNNING\"}");
    snprintf(p, sizeof p, "%s/outside", tmpdir);
    snprintf(q, sizeof q, "%s/escape", runs);
    CHECK(symlink(p, q) == 0);
    snprintf(q, sizeof q, "%s/alias", runs);
    CHECK(symlink("a", q) == 0);

    ita_jobdir_t *jd = NULL;
    cu_error_t err;
    CHECK(ita_jobdir_open(&jd, runs, 120, 100, &err) == CU_OK);
    if (!jd) return;
    ita_job_summary_t s;
    const json_t *state;
    CHECK(ita_jobdir_state(jd, "a", &s, &state, &err) == CU_OK);
    CHECK(!strcmp(s.status, "RUNNING") && !s.lost && s.step == 5 && fabs(s.progress - 0.5) < 1e-12);
    CHECK(ita_jobdir_state(jd, "old", &s, NULL, &err) == CU_OK && s.lost &&
          !strcmp(s.status, "LOST") && !strcmp(s.state_status, "RUNNING"));
    CHECK(ita_jobdir_state(jd, "escape", &s, NULL, &err) == ITA_ENOENT);
    CHECK(ita_jobdir_state(jd, "alias", &s, NULL, &err) == CU_OK && s.step == 5);
    CHECK(ita_jobdir_state(jd, "..", &s, NULL, &err) == ITA_ENOENT);
    CHECK(ita_jobdir_state(jd, "missing", &s, NULL, &err) == ITA_ENOENT);
    CHECK(ita_jobdir_openat(jd, "a", "../../outside/state.json", O_RDONLY) < 0);
    ita_job_summary_t *list = NULL;
    size_t n = 0;
    CHECK(ita_jobdir_list(jd, &list, &n, &err) == CU_OK && n == 3);
    if (n == 3)
        CHECK((!strcmp(list[0].id, "a") || !strcmp(list[0].id, "alias")) &&
              !strcmp(list[2].id, "old"));
    free(list);

    /* An atomic rewrite is picked up. */
    snprintf(p, sizeof p, "%s/a/state.json.tmp", runs);
    snprintf(st, sizeof st,
             "{\"status\":\"COMPLETED\",\"step\":10,\"max_steps\":10,\"updated_at\":\"%s\"}", now);
    write_file(p, st);
    snprintf(q, sizeof q, "%s/a/state.json", runs);
    CHECK(rename(p, q) == 0);
    CHECK(ita_jobdir_state(jd, "a", &s, NULL, &err) == CU_OK && s.step == 10 &&
          !strcmp(s.status, "COMPLETED") && s.eta_s == 0);

    /* metrics.jsonl: 300 steps, a partial last line. */
    snprintf(p, sizeof p, "%s/a/metrics.jsonl", runs);
    FILE *f = fopen(p, "w");
    for (int i = 1; i <= 300; i++) {
        fprintf(f, "{\"step\": %d, \"loss\": %g}\n", i, 1.0 / i);
        if (i % 100 == 0) fprintf(f, "{\"step\": %d, \"val_loss\": %g}\n", i, 2.0 / i);
    }
    fputs("{\"step\": 301, \"lo", f);
    fclose(f);
    ita_jsonl_query_t qq = {INT64_MIN, -1, 10000, 1 << 20, NULL, 0};
    ita_jsonl_page_t page;
    CHECK(ita_jobdir_jsonl(jd, "a", ITA_JSONL_METRICS, &qq, &page, &err) == CU_OK);
    CHECK(json_array_size(page.records) == 303 && !page.more);
    json_decref(page.records);
    qq.since_step = 250;
    CHECK(ita_jobdir_jsonl(jd, "a", ITA_JSONL_METRICS, &qq, &page, &err) == CU_OK);
    CHECK(json_array_size(page.records) == 51);
    CHECK(json_integer_value(json_object_get(json_array_get(page.records, 0), "step")) == 251);
    json_decref(page.records);
    const char *names[] = {"val_loss"};
    qq.since_step = INT64_MIN;
    qq.names = names;
    qq.n_names = 1;
    CHECK(ita_jobdir_jsonl(jd, "a", ITA_JSONL_METRICS, &qq, &page, &err) == CU_OK);
    CHECK(json_array_size(page.records) == 3);
    json_decref(page.records);
    qq.names = NULL;
    qq.n_names = 0;
    qq.limit = 7;
    size_t total = 0;
    int64_t cursor = 0;
    for (int i = 0; i < 100; i++) {
        qq.cursor = cursor;
        CHECK(ita_jobdir_jsonl(jd, "a", ITA_JSONL_METRICS, &qq, &page, &err) == CU_OK);
        total += json_array_size(page.records);
        json_decref(page.records);
        cursor = page.next_cursor;
        if (!page.more) break;
    }
    CHECK(total == 303);
    qq.cursor = 3; /* mid-line */
    CHECK(ita_jobdir_jsonl(jd, "a", ITA_JSONL_METRICS, &qq, &page, &err) == CU_EINVAL);
    json_decref(page.records);
    json_t *ev = ita_jobdir_eval_at(jd, "a", 200);
    CHECK(ev && fabs(json_real_value(json_object_get(ev, "val_loss")) - 0.01) < 1e-12);
    json_decref(ev);
    CHECK(ita_jobdir_eval_at(jd, "a", 150) == NULL);
    /* Complete the partial line: it appears. */
    f = fopen(p, "a");
    fputs("ss\": 0.5}\n", f);
    fclose(f);
    qq.cursor = -1;
    qq.since_step = 300;
    qq.limit = 100;
    CHECK(ita_jobdir_jsonl(jd, "a", ITA_JSONL_METRICS, &qq, &page, &err) == CU_OK);
    CHECK(json_array_size(page.records) == 1);
    json_decref(page.records);
    /* A file replaced by a shorter one is indexed afresh. */
    write_file(p, "{\"step\": 1, \"loss\": 9}\n");
    qq.since_step = INT64_MIN;
    CHECK(ita_jobdir_jsonl(jd, "a", ITA_JSONL_METRICS, &qq, &page, &err) == CU_OK);
    CHECK(json_array_size(page.records) == 1);
    json_decref(page.records);
    ita_jobdir_free(jd);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CHECK(system(cmd) == 0);
}

static void test_trace_and_problem(void) {
    CHECK(ita_request_id_valid("abc-DEF_1.2:3", 13));
    CHECK(!ita_request_id_valid("a b", 3));
    CHECK(!ita_request_id_valid("", 0));
    char big[80];
    memset(big, 'a', sizeof big);
    CHECK(ita_request_id_valid(big, 64) && !ita_request_id_valid(big, 65));
    char a[ITA_REQUEST_ID_MAX + 1], b[ITA_REQUEST_ID_MAX + 1];
    uint64_t c = 0;
    ita_request_id_generate(a, &c);
    ita_request_id_generate(b, &c);
    CHECK(strlen(a) == 32 && strcmp(a, b) && ita_request_id_valid(a, 32));
    double t;
    CHECK(ita_time_parse_rfc3339("2026-11-24T07:00:00.500Z", &t) == 0 &&
          fabs(t - 1795503600.5) < 1e-6);
    CHECK(ita_time_parse_rfc3339("2026-11-24 07:00:00Z", &t) != 0);
    CHECK(ita_time_parse_rfc3339("2026-11-24T07:00:00+02:00", &t) != 0);
    char buf[64];
    size_t pos = 0;
    CHECK(ita_json_escape(buf, sizeof buf, &pos, "a\"\\\n\xff", 5, 100) == 0);
    buf[pos] = 0;
    CHECK(!strcmp(buf, "\"a\\\"\\\\\\u000a\\u00ff\""));
    char *doc = ita_problem_json(404, "no such job", "/v1/jobs/x", 10, "rid");
    json_t *j = doc ? json_loads(doc, 0, NULL) : NULL;
    CHECK(j && json_integer_value(json_object_get(j, "status")) == 404 &&
          !strcmp(json_string_value(json_object_get(j, "request_id")), "rid") &&
          !strcmp(json_string_value(json_object_get(j, "title")), "Not Found"));
    json_decref(j);
    free(doc);
    doc = ita_problem_json(400, NULL, "/\xff", 2, "rid"); /* non-UTF-8 instance is dropped */
    CHECK(doc && !strstr(doc, "instance"));
    free(doc);
}

static void test_config(void) {
    make_tmpdir();
    char p[512];
    snprintf(p, sizeof p, "%s/ita.yaml", tmpdir);
    write_file(p, "listen:\n  host: 127.0.0.1\n  port: 9000\nruns_dir: r\nthreads: 4\n"
                  "rate_limit:\n  per_second: 1.5\n  burst: 3\nmetrics_public: true\n"
                  "log:\n  audit: '-'\n");
    ita_config_t cfg;
    cu_error_t err;
    ita_config_defaults(&cfg);
    CHECK(ita_config_load(p, &cfg, &err) == CU_OK);
    CHECK(cfg.port == 9000 && cfg.threads == 4 && cfg.rate_per_s == 1.5 && cfg.metrics_public);
    {
        /* issue 18: a huge file or a FIFO is refused unread, at once */
        char big[600];
        snprintf(big, sizeof big, "%s/big.yaml", tmpdir);
        FILE *f = fopen(big, "w");
        for (int i = 0; f && i < 20000; i++) fprintf(f, "# &a%d padding\n", i);
        if (f) fclose(f);
        CHECK(ita_config_load(big, &cfg, &err) == CU_EINVAL && strstr(err.msg, "at most"));
        snprintf(big, sizeof big, "%s/fifo.yaml", tmpdir);
        CHECK(mkfifo(big, 0600) == 0);
        alarm(30);
        CHECK(ita_config_load(big, &cfg, &err) == CU_EINVAL);
        alarm(0);
        ita_config_defaults(&cfg);
        CHECK(ita_config_load(p, &cfg, &err) == CU_OK);
    }
    char expect[600];
    snprintf(expect, sizeof expect, "%s/r", tmpdir);
    CHECK(!strcmp(cfg.runs_dir, expect) && !strcmp(cfg.audit_log, "-"));
    CHECK(ita_config_finish(&cfg, &err) == CU_OK && cfg.www_dir[0]);
    write_file(p, "threads: 0\n");
    ita_config_defaults(&cfg);
    CHECK(ita_config_load(p, &cfg, &err) == CU_EINVAL && strstr(err.msg, "threads"));
    write_file(p, "nope: 1\n");
    CHECK(ita_config_load(p, &cfg, &err) == CU_EINVAL && strstr(err.msg, "nope"));
    write_file(p, "a:\n  b:\n    c: 1\n");
    CHECK(ita_config_load(p, &cfg, &err) == CU_EINVAL);
    write_file(p, "listen: [1\n");
    CHECK(ita_config_load(p, &cfg, &err) == CU_EINVAL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CHECK(system(cmd) == 0);
}

static void test_auth(void) {
    ita_keycache_t kc;
    ita_keycache_init(&kc, "/nonexistent/keys.json");
    cu_error_t err;
    CHECK(ita_keycache_refresh(&kc, 0, &err) == CU_OK && kc.set.n == 0);
    char rk[ITA_KEY_LEN + 1], ak[ITA_KEY_LEN + 1], gk[ITA_KEY_LEN + 1];
    CHECK(ita_keys_create(&kc.set, "r", ITA_SCOPE_READ, rk, &err) == CU_OK);
    CHECK(ita_keys_create(&kc.set, "a", ITA_SCOPE_ADMIN, ak, &err) == CU_OK);
    CHECK(ita_keys_create(&kc.set, "g", ITA_SCOPE_ADMIN, gk, &err) == CU_OK);
    CHECK(ita_keys_revoke(&kc.set, "g", &err) == CU_OK);
    const ita_key_t *k;
    CHECK(ita_auth_check(&kc, NULL, 0, ITA_SCOPE_READ, &k) == ITA_AUTH_MISSING);
    CHECK(ita_auth_check(&kc, "nope", 4, ITA_SCOPE_READ, &k) == ITA_AUTH_INVALID && !k);
    CHECK(ita_auth_check(&kc, gk, strlen(gk), ITA_SCOPE_READ, &k) == ITA_AUTH_REVOKED);
    CHECK(ita_auth_check(&kc, rk, strlen(rk), ITA_SCOPE_ADMIN, &k) == ITA_AUTH_SCOPE && k &&
          !strcmp(k->name, "r"));
    CHECK(ita_auth_check(&kc, rk, strlen(rk), ITA_SCOPE_READ, &k) == ITA_AUTH_OK);
    CHECK(ita_auth_check(&kc, ak, strlen(ak), ITA_SCOPE_SUBMIT, &k) == ITA_AUTH_OK);
    ita_keycache_free(&kc);

    size_t n = 0;
    const char *b = ita_auth_bearer("Bearer  abc ", 12, &n);
    CHECK(b && n == 3 && !strncmp(b, "abc", 3));
    CHECK(ita_auth_bearer("bearer x", 8, &n) && n == 1);
    CHECK(!ita_auth_bearer("Basic abc", 9, &n));
    CHECK(!ita_auth_bearer("Bearer ", 7, &n));

    ita_ratelimit_t rl;
    CHECK(ita_ratelimit_init(&rl, 2, 3, &err) == CU_OK);
    int allowed = 0;
    for (int i = 0; i < 5; i++) allowed += ita_ratelimit_take(&rl, "k1", 100.0) == 0;
    CHECK(allowed == 3); /* the burst */
    double wait = ita_ratelimit_take(&rl, "k1", 100.0);
    CHECK(wait > 0.4 && wait <= 0.5);                 /* one token at 2/s */
    CHECK(ita_ratelimit_take(&rl, "k2", 100.0) == 0); /* per key */
    CHECK(ita_ratelimit_take(&rl, "k1", 100.6) == 0); /* refilled */
    ita_ratelimit_free(&rl);
    CHECK(ita_ratelimit_init(&rl, 0, 1, &err) == CU_OK);
    for (int i = 0; i < 100; i++) CHECK(ita_ratelimit_take(&rl, "k", 0) == 0); /* off */
    ita_ratelimit_free(&rl);
}

static void test_metrics_render(void) {
    ita_metrics_t *m = calloc(2, sizeof *m);
    ita_metrics_observe(&m[0], ITA_ROUTE_JOB, 200, 0.0003);
    ita_metrics_observe(&m[1], ITA_ROUTE_JOB, 200, 0.002);
    ita_metrics_observe(&m[1], ITA_ROUTE_JOB, 599, 0.002); /* an unknown status: "other" */
    make_tmpdir();
    char runs[512];
    snprintf(runs, sizeof runs, "%s/runs", tmpdir);
    mkdir(runs, 0755);
    mkjob(runs, "j1",
          "{\"status\":\"COMPLETED\",\"step\":7,\"max_steps\":7,\"loss\":1.25,"
          "\"updated_at\":\"2026-01-01T00:00:00.000Z\"}");
    /* A running job with a fresh heartbeat, its last and best evaluation. */
    char now[32], j2[512];
    time_t t = time(NULL);
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%S.000Z", gmtime(&t));
    snprintf(j2, sizeof j2,
             "{\"status\":\"RUNNING\",\"step\":3,\"max_steps\":10,\"loss\":2.5,\"lr\":0.0005,"
             "\"eta_s\":42,\"started_at\":\"%s\",\"updated_at\":\"%s\","
             "\"last_eval\":{\"step\":2,\"val_loss\":2.75},"
             "\"best_eval\":{\"step\":1,\"val_loss\":2.625}}",
             now, now);
    mkjob(runs, "j2", j2);
    ita_jobdir_t *jd = NULL;
    cu_error_t err;
    CHECK(ita_jobdir_open(&jd, runs, 120, 100, &err) == CU_OK);
    ita_metrics_t *const ws[2] = {&m[0], &m[1]};
    size_t len = 0;
    char *text = jd ? ita_metrics_render(ws, 2, jd, &len) : NULL;
    CHECK(text && strlen(text) == len);
    if (text) {
        CHECK(strstr(text, "codex_ita_requests_total{route=\"/v1/jobs/{id}\",status=\"200\"} 2\n"));
        CHECK(strstr(text, "status=\"other\"} 1\n"));
        CHECK(strstr(text, "codex_ita_request_duration_seconds_bucket{route=\"/v1/jobs/{id}\","
                           "status=\"200\",le=\"0.0005\"} 1\n"));
        CHECK(strstr(text, "codex_ita_request_duration_seconds_bucket{route=\"/v1/jobs/{id}\","
                           "status=\"200\",le=\"0.0025\"} 2\n"));
        CHECK(strstr(text, "codex_jobs{status=\"COMPLETED\"} 1\n"));
        CHECK(strstr(text, "codex_job_step{job=\"j1\"} 7\n"));
        CHECK(strstr(text, "codex_job_loss{job=\"j1\"} 1.25\n"));
        CHECK(!strstr(text, "codex_job_tokens_per_second{job=\"j1\"}")); /* null: no sample */
        CHECK(strstr(text, "codex_job_info{job=\"j1\",status=\"COMPLETED\","
                           "scheduler_state=\"local\"} 1\n"));
        CHECK(strstr(text, "codex_job_info{job=\"j2\",status=\"RUNNING\","
                           "scheduler_state=\"local\"} 1\n"));
        CHECK(strstr(text, "codex_job_val_loss{job=\"j2\"} 2.75\n"));
        CHECK(strstr(text, "codex_job_best_val_loss{job=\"j2\"} 2.625\n"));
        CHECK(strstr(text, "codex_job_learning_rate{job=\"j2\"} 0.0005\n"));
        CHECK(strstr(text, "codex_job_eta_seconds{job=\"j2\"} 42\n"));
        CHECK(strstr(text, "codex_job_eta_seconds{job=\"j1\"} 0\n"));
        CHECK(!strstr(text, "codex_job_val_loss{job=\"j1\"}"));
        /* the heartbeat's age only for the job still running */
        CHECK(strstr(text, "codex_job_heartbeat_age_seconds{job=\"j2\"}"));
        CHECK(!strstr(text, "codex_job_heartbeat_age_seconds{job=\"j1\"}"));
    }
    free(text);
    ita_jobdir_free(jd);
    free(m);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CHECK(system(cmd) == 0);
}

/* rundir/'s one layout of an events.jsonl line (codex-train and codex-ita
 * both write it) and its rule that the first recorded end stays: a running
 * job's update does not cover another witness's FAILED or a cancel. */
static void test_rundir_events_and_ends(void) {
    make_tmpdir();
    cu_error_t err;
    char *line = rundir_event_line(42, "failed", "rank 1 on h: \"x\"\n", "\"rank\": 1", &err);
    CHECK(line != NULL);
    if (line) {
        size_t n = strlen(line);
        CHECK(n > 0 && line[n - 1] == '\n' && !memchr(line, '\n', n - 1));
        json_t *o = json_loads(line, 0, NULL);
        CHECK(o && json_integer_value(json_object_get(o, "step")) == 42 &&
              !strcmp(json_string_value(json_object_get(o, "type")), "failed") &&
              !strcmp(json_string_value(json_object_get(o, "message")), "rank 1 on h: \"x\"\n") &&
              json_integer_value(json_object_get(o, "rank")) == 1 &&
              json_is_string(json_object_get(o, "time")));
        json_decref(o);
        CHECK(rundir_line_step(line, n) == 42);
    }
    free(line);
    const char *no_step = "{\"time\": \"t\"}", *step7 = "{\"step\":7,\"loss\":1}";
    CHECK(rundir_line_step(no_step, strlen(no_step)) == -1);
    CHECK(rundir_line_step(step7, strlen(step7)) == 7);

    rundir_t d;
    CHECK(rundir_open(&d, tmpdir, &err) == CU_OK);
    rundir_state_t st;
    rundir_state_init(&st, "j");
    st.step = 3;
    int ended = -1, recorded = 0;
    CHECK(rundir_write_state(&d, &st, &err) == CU_OK);
    CHECK(rundir_update_state(&d, &st, &ended, &err) == CU_OK && ended == 0);
    CHECK(rundir_record_failure(tmpdir, 0, "rank 0 stopped", &recorded, &err) == CU_OK &&
          recorded == 1);
    st.step = 4; /* the stopped rank, continued, tries to write RUNNING */
    CHECK(rundir_update_state(&d, &st, &ended, &err) == CU_OK && ended == 1);
    snprintf(st.status, sizeof st.status, "FAILED"); /* or a vaguer end of its own */
    snprintf(st.error, sizeof st.error, "rank 1 died");
    CHECK(rundir_update_state(&d, &st, &ended, &err) == CU_OK && ended == 1);
    rundir_state_t disk;
    rundir_state_init(&disk, "");
    CHECK(rundir_read_state(tmpdir, &disk, &err) == CU_OK && !strcmp(disk.status, "FAILED") &&
          disk.step == 3);
    char p[600];
    snprintf(p, sizeof p, "%s/state.json", tmpdir);
    json_t *o = json_load_file(p, 0, NULL);
    const char *m = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    CHECK(m && !strcmp(m, "rank 0 stopped"));
    json_decref(o);
    /* a second witness does not record over the first either */
    CHECK(rundir_record_failure(tmpdir, 1, "rank 1 died", &recorded, &err) == CU_OK &&
          recorded == 0);
    snprintf(p, sizeof p, "%s/state.lock", tmpdir);
    CHECK(access(p, F_OK) == 0);
    rundir_close(&d);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    CHECK(system(cmd) == 0);
}

TEST_MAIN(TEST(test_keys), TEST(test_auth), TEST(test_metrics_render), TEST(test_job_ids),
          TEST(test_jobdir), TEST(test_fifo_run_files), TEST(test_trace_and_problem),
          TEST(test_config), TEST(test_rundir_events_and_ends))
