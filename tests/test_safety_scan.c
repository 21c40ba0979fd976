/*
 * `codexctl scan` run in-process: exit codes (0 clean, 1 findings, 2 usage
 * and unreadable input), the tree walk (.git and binary files skipped),
 * inline allow comments, text and JSON output, SARIF 2.1.0 checked for the
 * fields code-scanning tools require, and --diff from a file and from stdin
 * reporting only added lines at their new-file positions.
 */
#include "harness.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ctl_scan(int argc, char **argv);

#include "safety_samples.h"

static char root[256];

static void write_file(const char *rel, const char *data, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    CHECK(system(cmd) == 0);
    *slash = '/';
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static void make_tree(void) {
    snprintf(root, sizeof root, "/tmp/cu_scan_test_XXXXXX");
    CHECK(mkdtemp(root) != NULL);
    const char *a = "import os\n\nAWS = \"" AWS "\"\n";
    write_file("repo/src/a.py", a, strlen(a));
    const char *b = "int main(void) { return 0; }\n";
    write_file("repo/src/b.c", b, strlen(b));
    const char *allowed = "TOKEN = \"" GHP "\"  # codex:allow documented fake\n";
    write_file("repo/src/allowed.py", allowed, strlen(allowed));
    const char *git = "[remote]\n  token = " GHP "\n";
    write_file("repo/.git/config", git, strlen(git));
    const char bin[] = "\x7f"
                       "ELF\0\0\0" AWS;
    write_file("repo/bin/tool", bin, sizeof bin - 1);
    const char *clean = "nothing to see\n";
    write_file("clean/readme.txt", clean, strlen(clean));
    const char *diff = "diff --git a/app/settings.py b/app/settings.py\n"
                       "index 1111111..2222222 100644\n"
                       "--- a/app/settings.py\n"
                       "+++ b/app/settings.py\n"
                       "@@ -10,4 +10,5 @@ DEBUG = False\n"
                       " DATABASES = {}\n"
                       "-OLD_KEY = \"" AWS "\"\n"
                       "+NEW_TOKEN = \"" GHP "\"\n"
                       " SECRET_NAME = 'x'\n"
                       "+\n"
                       "+ADMIN = 'jane@corp.io'\n"
                       "diff --git a/gone.txt b/gone.txt\n"
                       "deleted file mode 100644\n"
                       "--- a/gone.txt\n"
                       "+++ /dev/null\n"
                       "@@ -1 +0,0 @@\n"
                       "-" AWS "\n";
    write_file("change.diff", diff, strlen(diff));
    const char *bad = "version: 1\nrules:\n  nope: {data: block}\n";
    write_file("bad.yaml", bad, strlen(bad));
}

/* Runs ctl_scan with stdout captured into *out (malloc'd). */
static int run(char **out, const char *stdin_file, int argc, ...) {
    char *argv[16] = {"scan"};
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc && i < 14; i++) argv[i + 1] = va_arg(ap, char *);
    va_end(ap);
    char cap[512];
    snprintf(cap, sizeof cap, "%s/stdout.txt", root);
    fflush(stdout);
    int saved = dup(1), saved_in = -1;
    int fd = open(cap, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(fd, 1);
    close(fd);
    if (stdin_file) {
        saved_in = dup(0);
        int in = open(stdin_file, O_RDONLY);
        dup2(in, 0);
        close(in);
        clearerr(stdin);
    }
    int rc = ctl_scan(argc + 1, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    if (saved_in >= 0) {
        dup2(saved_in, 0);
        close(saved_in);
        clearerr(stdin);
    }
    FILE *f = fopen(cap, "rb");
    *out = calloc(1, 1 << 20);
    if (f && *out) {
        size_t n = fread(*out, 1, (1 << 20) - 1, f);
        (*out)[n] = '\0';
    }
    if (f) fclose(f);
    return rc;
}

static char *path_of(const char *rel) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, rel);
    return buf[k];
}

static void test_exit_codes(void) {
    char *out;
    CHECK(run(&out, NULL, 1, path_of("clean")) == 0);
    CHECK(out && out[0] == '\0');
    free(out);
    CHECK(run(&out, NULL, 1, path_of("repo")) == 1);
    free(out);
    CHECK(run(&out, NULL, 0) == 2); /* nothing to scan */
    free(out);
    CHECK(run(&out, NULL, 3, "--format", "xml", path_of("repo")) == 2);
    free(out);
    CHECK(run(&out, NULL, 2, "--bogus", path_of("repo")) == 2);
    free(out);
    CHECK(run(&out, NULL, 1, "--format") == 2);
    free(out);
    CHECK(run(&out, NULL, 3, "--policy", path_of("bad.yaml"), path_of("repo")) == 2);
    free(out);
    CHECK(run(&out, NULL, 3, "--policy", path_of("missing.yaml"), path_of("repo")) == 2);
    free(out);
    CHECK(run(&out, NULL, 1, path_of("does/not/exist")) == 2);
    free(out);
    CHECK(run(&out, NULL, 1, "--list-rules") == 0);
    CHECK(out && strstr(out, "aws_access_key ") && strstr(out, "credit_card "));
    free(out);
    CHECK(run(&out, NULL, 1, "--help") == 0);
    CHECK(out && strstr(out, "usage: codexctl scan"));
    free(out);
}

static void test_text_output(void) {
    char *out;
    CHECK(run(&out, NULL, 1, path_of("repo")) == 1);
    if (!out) return;
    /* the .py finding at line 3 column 8; .git, binary and allowed lines skipped */
    char want[600];
    snprintf(want, sizeof want, "%s/repo/src/a.py:3:8: critical aws_access_key:", root);
    CHECK_MSG(strstr(out, want) != NULL, "output:\n%s", out);
    CHECK(strstr(out, ".git") == NULL);
    CHECK(strstr(out, "bin/tool") == NULL);
    CHECK(strstr(out, "allowed.py") == NULL);
    CHECK(strstr(out, "Q3EGRT7PLXW5M2ND") == NULL); /* never print the secret */
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    CHECK(lines == 1);
    free(out);
}

static void test_json_output(void) {
    char *out;
    CHECK(run(&out, NULL, 3, "--format", "json", path_of("repo")) == 1);
    json_error_t je;
    json_t *j = out ? json_loads(out, 0, &je) : NULL;
    CHECK_MSG(j != NULL, "not JSON: %s", out ? out : "");
    free(out);
    if (!j) return;
    json_t *fs = json_object_get(j, "findings");
    CHECK(json_array_size(fs) == 1);
    json_t *f0 = json_array_get(fs, 0);
    CHECK(!strcmp(json_string_value(json_object_get(f0, "rule")), "aws_access_key"));
    CHECK(json_integer_value(json_object_get(f0, "line")) == 3);
    CHECK(json_integer_value(json_object_get(j, "files_scanned")) == 3);
    CHECK(json_integer_value(json_object_get(j, "skipped_binary")) == 1);
    CHECK(strlen(json_string_value(json_object_get(json_object_get(j, "policy"), "sha256"))) == 64);
    json_decref(j);
}

/* The parts of SARIF 2.1.0 that GitHub code scanning and other consumers require. */
static void check_sarif(json_t *s, size_t want_results) {
    CHECK(json_is_object(s));
    const char *version = json_string_value(json_object_get(s, "version"));
    CHECK(version && !strcmp(version, "2.1.0"));
    CHECK(json_is_string(json_object_get(s, "$schema")));
    json_t *runs = json_object_get(s, "runs");
    CHECK(json_is_array(runs) && json_array_size(runs) == 1);
    json_t *run0 = json_array_get(runs, 0);
    json_t *driver = json_object_get(json_object_get(run0, "tool"), "driver");
    CHECK(json_is_string(json_object_get(driver, "name")));
    json_t *rules = json_object_get(driver, "rules");
    CHECK(json_is_array(rules) && json_array_size(rules) > 60);
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r) {
        CHECK(json_is_string(json_object_get(r, "id")));
        CHECK(json_is_string(json_object_get(json_object_get(r, "shortDescription"), "text")));
    }
    json_t *results = json_object_get(run0, "results");
    CHECK(json_is_array(results) && json_array_size(results) == want_results);
    json_array_foreach(results, i, r) {
        const char *id = json_string_value(json_object_get(r, "ruleId"));
        CHECK(id != NULL);
        json_int_t idx = json_integer_value(json_object_get(r, "ruleIndex"));
        json_t *rule = json_array_get(rules, (size_t)idx);
        CHECK(rule && id && !strcmp(json_string_value(json_object_get(rule, "id")), id));
        const char *level = json_string_value(json_object_get(r, "level"));
        CHECK(level && (!strcmp(level, "error") || !strcmp(level, "warning") ||
                        !strcmp(level, "note") || !strcmp(level, "none")));
        CHECK(json_is_string(json_object_get(json_object_get(r, "message"), "text")));
        json_t *loc = json_array_get(json_object_get(r, "locations"), 0);
        json_t *phys = json_object_get(loc, "physicalLocation");
        CHECK(json_is_string(json_object_get(json_object_get(phys, "artifactLocation"), "uri")));
        json_t *region = json_object_get(phys, "region");
        json_int_t sl = json_integer_value(json_object_get(region, "startLine"));
        json_int_t sc = json_integer_value(json_object_get(region, "startColumn"));
        json_int_t el = json_integer_value(json_object_get(region, "endLine"));
        json_int_t ec = json_integer_value(json_object_get(region, "endColumn"));
        CHECK(sl >= 1 && sc >= 1 && el >= sl && (el > sl || ec > sc));
    }
}

static void test_sarif_output(void) {
    char *out;
    CHECK(run(&out, NULL, 3, "--format", "sarif", path_of("repo")) == 1);
    json_error_t je;
    json_t *s = out ? json_loads(out, 0, &je) : NULL;
    CHECK_MSG(s != NULL, "not JSON");
    free(out);
    if (!s) return;
    check_sarif(s, 1);
    json_t *res = json_array_get(
        json_object_get(json_array_get(json_object_get(s, "runs"), 0), "results"), 0);
    json_t *region = json_object_get(
        json_object_get(json_array_get(json_object_get(res, "locations"), 0), "physicalLocation"),
        "region");
    CHECK(json_integer_value(json_object_get(region, "startLine")) == 3);
    CHECK(json_integer_value(json_object_get(region, "startColumn")) == 8);
    CHECK(json_integer_value(json_object_get(region, "endColumn")) == 28);
    json_decref(s);
    /* a clean scan is valid SARIF with no results */
    CHECK(run(&out, NULL, 3, "--format", "sarif", path_of("clean")) == 0);
    s = out ? json_loads(out, 0, &je) : NULL;
    free(out);
    if (s) check_sarif(s, 0);
    json_decref(s);
}

static void test_diff(void) {
    char *out;
    CHECK(run(&out, NULL, 2, "--diff", path_of("change.diff")) == 1);
    if (out) {
        CHECK_MSG(strstr(out, "app/settings.py:11:14: critical github_pat:") != NULL, "%s", out);
        CHECK_MSG(strstr(out, "app/settings.py:14:10: medium email:") != NULL, "%s", out);
        CHECK(strstr(out, "aws_access_key") == NULL); /* removed lines are not scanned */
        CHECK(strstr(out, "gone.txt") == NULL);
    }
    free(out);
    /* from stdin, as JSON */
    CHECK(run(&out, path_of("change.diff"), 4, "--diff", "-", "--format", "json") == 1);
    json_error_t je;
    json_t *j = out ? json_loads(out, 0, &je) : NULL;
    CHECK(j && json_array_size(json_object_get(j, "findings")) == 2);
    json_decref(j);
    free(out);
    CHECK(run(&out, path_of("change.diff"), 1, "--diff") == 1);
    free(out);
    /* a diff that adds nothing secret */
    const char *ok = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n+new\n";
    write_file("ok.diff", ok, strlen(ok));
    CHECK(run(&out, NULL, 2, "--diff", path_of("ok.diff")) == 0);
    free(out);
}

static void cleanup(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK(system(cmd) == 0);
}

static void setup(void) {
    make_tree();
}

TEST_MAIN(TEST(setup), TEST(test_exit_codes), TEST(test_text_output), TEST(test_json_output),
          TEST(test_sarif_output), TEST(test_diff), TEST(cleanup))
