/*
 * The knowledge index (ita/kb.h): the identifier splitter, search through
 * the code-aware tokenizer (whole identifiers and their words), kind and
 * path filters, incremental refresh (unchanged, changed, touched, removed
 * files), the runs directory (configs, events, evaluation samples), a
 * planted secret that must never reach the database file, and relevance
 * (MRR) of a labelled query set over this repository's own docs and code.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "harness.h"
#include "ita/kb.h"

/* a GitHub token shape the built-in policy redacts (not a real token) */
#define PLANTED "ghp_Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2"

static void put(const char *dir, const char *name, const char *text) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void split_case(const char *s, const char *want) {
    int b[64], n = ita_kb_split_ident(s, 0, (int)strlen(s), b, 32);
    char got[256] = "";
    for (int k = 0; k < n; k++) {
        size_t o = strlen(got);
        snprintf(got + o, sizeof got - o, "%s%.*s", k ? "|" : "", b[2 * k + 1] - b[2 * k],
                 s + b[2 * k]);
    }
    CHECK_MSG(!strcmp(got, want), "%s split as %s, want %s", s, got, want);
}

static void test_split(void) {
    split_case("getHTTPResponse", "get|HTTP|Response");
    split_case("parse_http_header", "parse|http|header");
    split_case("Utf8Decoder2", "Utf|8|Decoder|2");
    split_case("__init__", "init");
    split_case("plain", "plain");
}

/* The sources of the top_k results for query, joined by ' '. */
static int search(ita_kb_t *kb, const char *query, const char *kind, char *out, size_t cap) {
    const char *kinds[1] = {kind};
    ita_kb_query_t q = {.query = query, .top_k = 10, .kinds = kinds, .n_kinds = kind ? 1 : 0};
    json_t *res = NULL;
    cu_error_t err;
    int rc = ita_kb_search(kb, &q, &res, &err);
    out[0] = 0;
    size_t i;
    json_t *r;
    json_array_foreach(res, i, r) {
        const char *src = json_string_value(json_object_get(r, "source"));
        const char *base = strrchr(src, '/');
        size_t o = strlen(out);
        snprintf(out + o, cap - o, "%s%s", o ? " " : "", base ? base + 1 : src);
    }
    int n = (int)json_array_size(res);
    json_decref(res);
    return rc ? -1 : n;
}

static int file_has(const char *path, const char *needle) {
    uint8_t *buf = NULL;
    size_t len = 0;
    cu_error_t err;
    if (cu_read_file(path, 64 << 20, &buf, &len, &err)) return 0;
    int hit = memmem(buf, len, needle, strlen(needle)) != NULL;
    free(buf);
    return hit;
}

static void test_index_and_refresh(void) {
    char dir[] = "/tmp/cu-kb-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char src[64], runs[64], job[80], db[64];
    snprintf(src, sizeof src, "%s/src", dir);
    snprintf(runs, sizeof runs, "%s/runs", dir);
    snprintf(job, sizeof job, "%s/runs/j1", dir);
    snprintf(db, sizeof db, "%s/kb.sqlite", dir);
    mkdir(src, 0755), mkdir(runs, 0755), mkdir(job, 0755);
    put(src, "http.c", "/* reads requests */\nint parseHttpHeader(const char *line);\n");
    put(src, "guide.md", "# Tuning\n\nLower the learning rate when the loss diverges.\n");
    put(src, "creds.py", "TOKEN = \"" PLANTED "\"\nprint('deploy')\n");
    put(src, "gone.txt", "ephemeral words here\n");
    put(job, "job.yaml", "job:\n  name: j1\ntrain:\n  lr: 0.0003\n");
    put(job, "events.jsonl",
        "{\"type\": \"started\", \"step\": 0, \"message\": \"2 ranks\"}\n"
        "{\"type\": \"sample\", \"step\": 100, \"text\": \"fn quicksort_partition\"}\n");
    ita_kb_t *kb = NULL;
    safety_engine_t *eng = NULL;
    cu_error_t err;
    CHECK(safety_engine_new(NULL, &eng, &err) == CU_OK);
    CHECK(ita_kb_open(db, 0, &kb, &err) == ITA_KB_ENOINDEX && !kb);
    CHECK(ita_kb_open(db, 1, &kb, &err) == CU_OK);
    ita_kb_source_t s[1] = {{src, NULL}};
    ita_kb_stats_t st;
    CHECK(ita_kb_refresh(kb, s, 1, runs, eng, &st, &err) == CU_OK);
    CHECK_MSG(st.files_indexed == 7 && st.redactions >= 1, "indexed %zu, redacted %zu",
              st.files_indexed, st.redactions);
    char got[2048];
    CHECK(search(kb, "header", NULL, got, sizeof got) >= 1 && strstr(got, "http.c"));
    CHECK(search(kb, "parseHttpHeader", NULL, got, sizeof got) >= 1 && strstr(got, "http.c"));
    CHECK(search(kb, "http_header", NULL, got, sizeof got) >= 1 && strstr(got, "http.c"));
    CHECK(search(kb, "learning rate", "doc", got, sizeof got) == 1 && strstr(got, "guide.md"));
    CHECK(search(kb, "learning rate", "code", got, sizeof got) == 0);
    CHECK(search(kb, "lr", "config", got, sizeof got) == 1 && strstr(got, "job.yaml"));
    CHECK(search(kb, "quicksort", "eval", got, sizeof got) == 1);
    CHECK(search(kb, "ranks", "events", got, sizeof got) == 1);
    CHECK_MSG(search(kb, PLANTED, NULL, got, sizeof got) == 0, "the secret is searchable: %s", got);
    CHECK(search(kb, "deploy", NULL, got, sizeof got) == 1); /* the rest of the file is indexed */
    /* nothing changed: nothing re-read */
    CHECK(ita_kb_refresh(kb, s, 1, runs, eng, &st, &err) == CU_OK);
    CHECK_MSG(st.files_indexed == 0 && st.files_unchanged == 7, "second refresh: %zu, %zu",
              st.files_indexed, st.files_unchanged);
    /* a change, a touch with the same bytes, a deletion */
    sleep(1);
    put(src, "guide.md", "# Tuning\n\nRaise the warmup when the loss spikes.\n");
    put(src, "http.c", "/* reads requests */\nint parseHttpHeader(const char *line);\n");
    char gone[128];
    snprintf(gone, sizeof gone, "%s/gone.txt", src);
    unlink(gone);
    CHECK(ita_kb_refresh(kb, s, 1, runs, eng, &st, &err) == CU_OK);
    CHECK_MSG(st.files_indexed == 1 && st.files_removed == 1 && st.files_unchanged == 5,
              "third refresh: indexed %zu removed %zu unchanged %zu", st.files_indexed,
              st.files_removed, st.files_unchanged);
    CHECK(search(kb, "ephemeral", NULL, got, sizeof got) == 0);
    CHECK(search(kb, "warmup", NULL, got, sizeof got) == 1);
    CHECK(search(kb, "learning", NULL, got, sizeof got) == 0);
    CHECK(search(kb, "!!!", NULL, got, sizeof got) == -1); /* no word: an error, not a crash */
    ita_kb_close(kb);
    char wal[96];
    snprintf(wal, sizeof wal, "%s-wal", db);
    CHECK_MSG(!file_has(db, PLANTED + 4) && !file_has(wal, PLANTED + 4),
              "the planted secret is in the database file");
    safety_engine_free(eng);
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* Relevance on this repository: each query with the files that answer it;
 * the reciprocal rank of the first such file in the top 10. */
static void test_mrr(void) {
    static const char *const QUERIES[][2] = {
        {"revoked key stops working without a restart", "auth.h ita.md keys.h ctl_keys.c"},
        {"token bucket rate limit per key", "auth.h auth.c"},
        {"openat2 RESOLVE_BENEATH symlink escape", "jobdir.h jobdir.c"},
        {"Last-Event-ID resume event stream keepalive", "sse.c ita.md"},
        {"Prometheus latency histogram buckets", "metrics.c metrics.h"},
        {"redacted placeholder per rule counts", "redact.h redact.c"},
        {"camelCase snake_case identifier tokenizer", "kb_tok.c kb.h"},
        {"MCP-Protocol-Version Origin check", "mcp_http.c"},
        {"problem details RFC 9457 application/problem+json", "problem.h problem.c"},
        {"X-Request-Id generated when invalid", "trace.h trace.c ita.md"},
        {"stdio newline-delimited JSON-RPC CODEX_ITA_KEY", "mcp_stdio.c"},
        {"squeue sacct scheduler view refresh thread", "sched.c sched.h ita.md"},
    };
    const char *srcdir = getenv("CU_SRC");
    if (!srcdir) {
        fprintf(stderr, "CU_SRC unset: relevance test skipped\n");
        return;
    }
    char dir[] = "/tmp/cu-kb-mrr-XXXXXX", db[64], p1[600], p2[600], p3[600];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(db, sizeof db, "%s/kb.sqlite", dir);
    snprintf(p1, sizeof p1, "%s/docs", srcdir);
    snprintf(p2, sizeof p2, "%s/ita", srcdir);
    snprintf(p3, sizeof p3, "%s/safety", srcdir);
    ita_kb_source_t s[3] = {{p1, NULL}, {p2, NULL}, {p3, NULL}};
    ita_kb_t *kb = NULL;
    safety_engine_t *eng = NULL;
    cu_error_t err;
    ita_kb_stats_t st;
    CHECK(safety_engine_new(NULL, &eng, &err) == CU_OK);
    CHECK(ita_kb_open(db, 1, &kb, &err) == CU_OK);
    CHECK(ita_kb_refresh(kb, s, 3, NULL, eng, &st, &err) == CU_OK);
    double mrr = 0;
    size_t nq = sizeof QUERIES / sizeof QUERIES[0];
    for (size_t i = 0; i < nq; i++) {
        char got[4096];
        search(kb, QUERIES[i][0], NULL, got, sizeof got);
        int rank = 0, r = 0;
        for (char *save = NULL, *t = strtok_r(got, " ", &save); t && !rank;
             t = strtok_r(NULL, " ", &save)) {
            r++;
            char want[256];
            snprintf(want, sizeof want, " %s ", QUERIES[i][1]);
            char tok[300];
            snprintf(tok, sizeof tok, " %s ", t);
            if (strstr(want, tok)) rank = r;
        }
        printf("  rank %2d  %s\n", rank, QUERIES[i][0]);
        if (rank) mrr += 1.0 / rank;
    }
    mrr /= (double)nq;
    printf("MRR over %zu labelled queries: %.3f\n", nq, mrr);
    CHECK_MSG(mrr >= 0.6, "MRR %.3f below 0.6", mrr);
    ita_kb_close(kb);
    safety_engine_free(eng);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

TEST_MAIN(TEST(test_split), TEST(test_index_and_refresh), TEST(test_mrr))
