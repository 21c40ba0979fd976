/*
 * `codexctl scan`: the hygiene scanner for trees and diffs. Walks files and
 * directories (skipping .git, binary files and symbolic links) or reads a
 * unified diff and scans only its added lines, and reports the safety
 * layer's findings as text, JSON or SARIF 2.1.0 (for code-scanning tools).
 * Scanning and the reports live in safety/hits.h, shared with ITA's
 * POST /v1/hygiene/scan; this file walks trees and handles the options.
 *
 * Exit codes: 0 nothing found, 1 findings, 2 bad usage, an unreadable
 * path or policy.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jobs/ctl.h"
#include "safety/hits.h"

#define MAX_FILE_BYTES (64u << 20)
#define BINARY_PROBE 8000

enum { FMT_TEXT, FMT_JSON, FMT_SARIF };

typedef struct {
    const safety_engine_t *eng;
    safety_stage_t stage;
    safety_hits_t hits;
    size_t skipped_binary, skipped_large, unreadable;
    cu_error_t err;
} scan_state_t;

int ctl_scan(int argc, char **argv);

static void usage(FILE *out) {
    fputs("usage: codexctl scan [OPTIONS] PATH...\n"
          "       codexctl scan [OPTIONS] --diff [FILE|-]\n\n"
          "Scans files and directories (recursively; .git, binary files and symbolic\n"
          "links are skipped) for credentials and personal data, or with --diff only\n"
          "the lines a unified diff adds (from FILE, or stdin when FILE is - or absent).\n\n"
          "options:\n"
          "  --format text|json|sarif  output format (default text; sarif is SARIF 2.1.0)\n"
          "  --policy FILE             safety policy (default: built-in, the shipped\n"
          "                            configs/safety/policy.yaml compiled in)\n"
          "  --stage data|prompt|output  report findings the policy does not allow at\n"
          "                            this stage (default data)\n"
          "  --list-rules              list the detector rules and exit\n"
          "  --help                    this text\n\n"
          "exit status: 0 clean, 1 findings, 2 bad usage or unreadable input.\n"
          "A `codex:allow` comment on a line silences findings on it.\n",
          out);
}

/* ---- trees ---- */

static int read_file(const char *path, char **out, size_t *len, scan_state_t *st) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "codexctl scan: %s: %s\n", path, strerror(errno));
        st->unreadable++;
        return 0;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || (size_t)sb.st_size > MAX_FILE_BYTES) {
        fprintf(stderr, "codexctl scan: %s: skipped (larger than %u MB)\n", path,
                MAX_FILE_BYTES >> 20);
        st->skipped_large++;
        fclose(f);
        return 0;
    }
    char *buf = malloc((size_t)sb.st_size + 1);
    if (!buf) {
        fclose(f);
        return cu_error_set(&st->err, CU_ENOMEM, "out of memory reading %s", path);
    }
    size_t n = fread(buf, 1, (size_t)sb.st_size, f);
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

static int is_binary(const char *buf, size_t len) {
    return memchr(buf, '\0', len < BINARY_PROBE ? len : BINARY_PROBE) != NULL;
}

static int scan_path(scan_state_t *st, const char *path, int depth);

static int scan_dir(scan_state_t *st, const char *path, int depth) {
    struct dirent **names = NULL;
    int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "codexctl scan: %s: %s\n", path, strerror(errno));
        st->unreadable++;
        return CU_OK;
    }
    int rc = CU_OK;
    for (int i = 0; i < n; i++) {
        const char *name = names[i]->d_name;
        if (!rc && strcmp(name, ".") && strcmp(name, "..") && strcmp(name, ".git")) {
            size_t m = strlen(path) + strlen(name) + 2;
            char *child = malloc(m);
            if (!child) {
                rc = cu_error_set(&st->err, CU_ENOMEM, "out of memory");
            } else {
                int slash = path[strlen(path) - 1] == '/';
                snprintf(child, m, "%s%s%s", path, slash ? "" : "/", name);
                rc = scan_path(st, child, depth + 1);
                free(child);
            }
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

static int scan_path(scan_state_t *st, const char *path, int depth) {
    struct stat sb;
    if (lstat(path, &sb) != 0) {
        fprintf(stderr, "codexctl scan: %s: %s\n", path, strerror(errno));
        st->unreadable++;
        return CU_OK;
    }
    if (S_ISLNK(sb.st_mode) && depth > 0) return CU_OK;
    if (S_ISLNK(sb.st_mode) && stat(path, &sb) != 0) return CU_OK;
    if (S_ISDIR(sb.st_mode)) return depth > 64 ? CU_OK : scan_dir(st, path, depth);
    if (!S_ISREG(sb.st_mode)) return CU_OK;
    char *buf;
    size_t len = 0;
    int rc = read_file(path, &buf, &len, st);
    if (rc || !buf) return rc;
    if (is_binary(buf, len)) {
        st->skipped_binary++;
    } else {
        const char *shown = path;
        while (shown[0] == '.' && shown[1] == '/') shown += 2;
        rc = safety_hits_scan_text(st->eng, st->stage, shown, buf, len, &st->hits, &st->err);
    }
    free(buf);
    return rc;
}

/* ---- output ---- */

static void print_text(const scan_state_t *st) {
    const safety_policy_t *pol = safety_engine_policy(st->eng);
    for (size_t i = 0; i < st->hits.count; i++) {
        const safety_hit_t *h = &st->hits.items[i];
        const safety_rule_t *r = &safety_rules()[h->f.rule];
        printf("%s:%zu:%zu: %s %s: %s [%s]\n", h->path, h->line, h->column,
               safety_severity_name(safety_policy_severity(pol, h->f.rule)), r->id, r->description,
               h->preview);
    }
}

static int print_json(json_t *j) {
    if (!j) return -1;
    int rc = json_dumpf(j, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
    fputc('\n', stdout);
    json_decref(j);
    return rc;
}

static char *read_stream(FILE *in, size_t *len, cu_error_t *err) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n, in);
        if (n < cap) break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    if (!buf) cu_error_set(err, CU_ENOMEM, "out of memory reading the diff");
    *len = n;
    return buf;
}

/* ---- main ---- */

int ctl_scan(int argc, char **argv) {
    int format = FMT_TEXT, diff = 0;
    const char *policy = NULL;
    safety_stage_t stage = SAFETY_STAGE_DATA;
    const char **paths = calloc((size_t)argc + 1, sizeof *paths);
    size_t npaths = 0;
    if (!paths) return 2;
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            rc = 0;
            goto out;
        } else if (!strcmp(a, "--format") || !strcmp(a, "--policy") || !strcmp(a, "--stage")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "codexctl scan: %s needs a value (codexctl scan --help)\n", a);
                goto out;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--policy")) {
                policy = v;
            } else if (!strcmp(a, "--stage")) {
                int s = safety_stage_parse(v);
                if (s < 0) {
                    fprintf(stderr, "codexctl scan: unknown stage '%s' (data, prompt, output)\n",
                            v);
                    goto out;
                }
                stage = (safety_stage_t)s;
            } else if (!strcmp(v, "text")) {
                format = FMT_TEXT;
            } else if (!strcmp(v, "json")) {
                format = FMT_JSON;
            } else if (!strcmp(v, "sarif")) {
                format = FMT_SARIF;
            } else {
                fprintf(stderr, "codexctl scan: unknown format '%s' (text, json, sarif)\n", v);
                goto out;
            }
        } else if (!strcmp(a, "--list-rules")) {
            for (int r = 0; r < safety_rule_count(); r++) {
                const safety_rule_t *rule = &safety_rules()[r];
                printf("%-30s %-6s %-8s %s\n", rule->id, safety_category_name(rule->category),
                       safety_severity_name(rule->severity), rule->description);
            }
            rc = 0;
            goto out;
        } else if (!strcmp(a, "--diff")) {
            diff = 1;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "codexctl scan: unknown option '%s' (codexctl scan --help)\n", a);
            goto out;
        } else {
            paths[npaths++] = a;
        }
    }
    if (!diff && npaths == 0) {
        fprintf(stderr, "codexctl scan: nothing to scan: give a PATH or --diff\n");
        usage(stderr);
        goto out;
    }
    if (diff && npaths > 1) {
        fprintf(stderr, "codexctl scan: --diff reads one diff (a FILE or - for stdin)\n");
        goto out;
    }
    safety_engine_t *eng = NULL;
    scan_state_t st = {.stage = stage};
    if (safety_engine_new(policy, &eng, &st.err) != CU_OK) {
        fprintf(stderr, "codexctl scan: %s\n", st.err.msg);
        goto out;
    }
    st.eng = eng;
    int err = CU_OK;
    if (diff) {
        FILE *in = stdin;
        if (npaths == 1 && strcmp(paths[0], "-")) in = fopen(paths[0], "rb");
        if (!in) {
            fprintf(stderr, "codexctl scan: %s: %s\n", paths[0], strerror(errno));
            st.unreadable++;
        } else {
            size_t len = 0;
            char *text = read_stream(in, &len, &st.err);
            if (in != stdin) fclose(in);
            err =
                text ? safety_hits_scan_diff(eng, stage, text, len, &st.hits, &st.err) : CU_ENOMEM;
            free(text);
        }
    } else {
        for (size_t i = 0; i < npaths && !err; i++) err = scan_path(&st, paths[i], 0);
    }
    if (err) {
        fprintf(stderr, "codexctl scan: %s\n", st.err.msg);
        rc = 2;
    } else {
        if (format == FMT_TEXT) {
            print_text(&st);
        } else if (format == FMT_JSON) {
            json_t *j = safety_hits_json(eng, stage, &st.hits);
            json_object_set_new(j, "skipped_binary", json_integer((json_int_t)st.skipped_binary));
            print_json(j);
        } else {
            print_json(safety_hits_sarif(eng, &st.hits));
        }
        fflush(stdout);
        fprintf(stderr, "codexctl scan: %zu finding(s) in %zu file(s) scanned (%zu bytes)%s\n",
                st.hits.count, st.hits.files, st.hits.bytes,
                st.skipped_binary ? ", binary files skipped" : "");
        if (st.hits.limit_hits)
            fprintf(stderr,
                    "codexctl scan: warning: %zu pattern search(es) stopped at a PCRE2 limit; "
                    "that text was not fully searched\n",
                    st.hits.limit_hits);
        rc = st.hits.count ? 1 : st.unreadable ? 2 : 0;
    }
    safety_hits_free(&st.hits);
    safety_engine_free(eng);
out:
    free(paths);
    return rc;
}
