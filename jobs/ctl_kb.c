/*
 * codexctl kb: builds, refreshes and searches codex-ita's knowledge index
 * (ita/kb.h) from the command line, with the same sources and database as
 * the service when given its ita.yaml (kb.db, kb.sources, runs_dir).
 *
 *   codexctl kb index  [--config ita.yaml] [--db F] [--runs DIR] [--policy P] [PATH...]
 *   codexctl kb search [--config ita.yaml] [--db F] [--top-k N] [--kind K]... [--json] QUERY
 *
 * `index` is incremental: unchanged files (size, mtime, then SHA-256) are
 * skipped and removed files dropped; run it from cron or after a change.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ita/config.h"
#include "ita/kb.h"

static void usage(FILE *out) {
    fputs("usage: codexctl kb index  [--config ita.yaml] [--db FILE] [--runs DIR] [--no-runs]\n"
          "                          [--policy FILE] [PATH...]\n"
          "       codexctl kb search [--config ita.yaml] [--db FILE] [--top-k N] [--kind K]...\n"
          "                          [--path PREFIX]... [--json] QUERY...\n"
          "\n"
          "The knowledge index codex-ita searches (POST /v1/kb/search, the MCP tool\n"
          "kb_search): SQLite FTS5 with BM25 over docs and code (PATHs, or kb.sources of\n"
          "ita.yaml) and the runs directory (job configs, events, evaluation samples).\n"
          "Every text is redacted by the safety policy (--policy, default built-in)\n"
          "before it is stored. `index` re-reads only changed files and drops removed\n"
          "ones. Kinds: doc, code, config, events, eval. Exit: 0, 1 failure, 2 usage.\n",
          out);
}

typedef struct {
    ita_config_t cfg;
    const char *db, *runs, *policy;
    int no_runs, json, top_k;
    const char *kinds[8], *paths[16], *words[64];
    size_t n_kinds, n_paths, n_words;
} kb_args_t;

static int parse_args(int argc, char **argv, kb_args_t *a) {
    ita_config_defaults(&a->cfg);
    a->top_k = 10;
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        cu_error_t err;
        if (!strcmp(s, "--help") || !strcmp(s, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(s, "--config") && v) {
            if (ita_config_load(v, &a->cfg, &err)) {
                fprintf(stderr, "codexctl kb: %s\n", err.msg);
                return 2;
            }
            i++;
        } else if (!strcmp(s, "--db") && v)
            a->db = argv[++i];
        else if (!strcmp(s, "--runs") && v)
            a->runs = argv[++i];
        else if (!strcmp(s, "--policy") && v)
            a->policy = argv[++i];
        else if (!strcmp(s, "--top-k") && v)
            a->top_k = atoi(argv[++i]);
        else if (!strcmp(s, "--kind") && v && a->n_kinds < 8)
            a->kinds[a->n_kinds++] = argv[++i];
        else if (!strcmp(s, "--path") && v && a->n_paths < 16)
            a->paths[a->n_paths++] = argv[++i];
        else if (!strcmp(s, "--no-runs"))
            a->no_runs = 1;
        else if (!strcmp(s, "--json"))
            a->json = 1;
        else if (s[0] == '-' && s[1]) {
            fprintf(stderr, "codexctl kb: unknown option '%s' (codexctl kb --help)\n", s);
            return 2;
        } else if (a->n_words < 64)
            a->words[a->n_words++] = s;
    }
    if (!a->db) a->db = a->cfg.kb_db[0] ? a->cfg.kb_db : "kb.sqlite";
    if (!a->runs && !a->no_runs) a->runs = a->cfg.runs_dir;
    if (a->top_k < 1 || a->top_k > 100) {
        fprintf(stderr, "codexctl kb: --top-k is 1-100\n");
        return 2;
    }
    return 0;
}

static int kb_index(kb_args_t *a) {
    ita_kb_source_t src[ITA_KB_MAX_SOURCES];
    char buf[8192];
    int n = 0;
    if (a->n_words) {
        for (size_t i = 0; i < a->n_words && i < ITA_KB_MAX_SOURCES; i++)
            src[n++] = (ita_kb_source_t){.path = a->words[i], .kind = NULL};
    } else {
        n = ita_kb_parse_sources(a->cfg.kb_sources, a->cfg.config_dir, buf, sizeof buf, src,
                                 ITA_KB_MAX_SOURCES);
        if (n < 0) {
            fprintf(stderr, "codexctl kb: kb.sources: at most %d paths\n", ITA_KB_MAX_SOURCES);
            return 2;
        }
    }
    cu_error_t err;
    safety_engine_t *eng = NULL;
    ita_kb_t *kb = NULL;
    ita_kb_stats_t st;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = safety_engine_new(a->policy, &eng, &err);
    if (!rc) rc = ita_kb_open(a->db, 1, &kb, &err);
    if (!rc) rc = ita_kb_refresh(kb, src, (size_t)n, a->runs, eng, &st, &err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ita_kb_close(kb);
    safety_engine_free(eng);
    if (rc) {
        fprintf(stderr, "codexctl kb index: %s\n", err.msg);
        return 1;
    }
    double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    printf("indexed %zu files (%zu chunks, %.1f MB) of %zu seen; %zu unchanged, %zu removed, "
           "%zu blocked by the policy, %zu secrets redacted; %.2f s\n",
           st.files_indexed, st.chunks, (double)st.bytes / 1e6, st.files_seen, st.files_unchanged,
           st.files_removed, st.files_blocked, st.redactions, dt);
    return 0;
}

static int kb_search(kb_args_t *a) {
    if (!a->n_words) {
        fprintf(stderr, "codexctl kb search: give a query (codexctl kb --help)\n");
        return 2;
    }
    char query[1024] = "";
    for (size_t i = 0; i < a->n_words; i++) {
        size_t o = strlen(query);
        snprintf(query + o, sizeof query - o, "%s%s", i ? " " : "", a->words[i]);
    }
    ita_kb_query_t q = {.query = query,
                        .top_k = a->top_k,
                        .kinds = a->n_kinds ? a->kinds : NULL,
                        .n_kinds = a->n_kinds,
                        .paths = a->n_paths ? a->paths : NULL,
                        .n_paths = a->n_paths};
    cu_error_t err;
    ita_kb_t *kb = NULL;
    json_t *res = NULL;
    int rc = ita_kb_open(a->db, 0, &kb, &err);
    if (!rc) rc = ita_kb_search(kb, &q, &res, &err);
    ita_kb_close(kb);
    if (rc) {
        fprintf(stderr, "codexctl kb search: %s\n", err.msg);
        return rc == CU_EINVAL ? 2 : 1;
    }
    if (a->json) {
        json_dumpf(res, stdout, JSON_COMPACT);
        putchar('\n');
    } else {
        size_t i;
        json_t *r;
        json_array_foreach(res, i, r) {
            printf("%.3f  %s:%lld-%lld  [%s] %s\n      %s\n",
                   json_real_value(json_object_get(r, "score")),
                   json_string_value(json_object_get(r, "source")),
                   json_integer_value(json_object_get(r, "line_start")),
                   json_integer_value(json_object_get(r, "line_end")),
                   json_string_value(json_object_get(r, "kind")),
                   json_string_value(json_object_get(r, "title")),
                   json_string_value(json_object_get(r, "snippet")));
        }
    }
    json_decref(res);
    return 0;
}

int ctl_kb(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "index") && strcmp(argv[1], "search"))) {
        usage(argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? stdout
                                                                                  : stderr);
        return argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) ? 0 : 2;
    }
    kb_args_t a;
    memset(&a, 0, sizeof a);
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    return !strcmp(argv[1], "index") ? kb_index(&a) : kb_search(&a);
}
