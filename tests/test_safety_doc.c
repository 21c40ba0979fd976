/*
 * docs/safety.md lists the detector rules between two markers; this test
 * checks the list matches the rule table, so the documentation cannot
 * drift from the code. To regenerate the list after changing rules.c:
 *
 *   build/tests/test_safety_doc --write docs/safety.md
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#include "safety/rules.h"

#define BEGIN_MARK "<!-- rules:begin -->\n"
#define END_MARK "<!-- rules:end -->\n"

static const char *checks_of(const safety_rule_t *r, char *buf, size_t cap) {
    static const char *const VALID[] = {
        "", "Luhn, issuer", "IBAN mod-97", "letters and digits", "8-15 digits", "not a file name"};
    size_t n = 0;
    buf[0] = '\0';
    if (r->min_entropy > 0)
        n += (size_t)snprintf(buf + n, cap - n, "entropy >= %.1f", r->min_entropy);
    if (r->validator != SAFETY_VALID_NONE)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? "; " : "", VALID[r->validator]);
    if (r->generic) n += (size_t)snprintf(buf + n, cap - n, "%sgeneric", n ? "; " : "");
    if (r->multiline) snprintf(buf + n, cap - n, "%smulti-line", n ? "; " : "");
    return buf[0] ? buf : "-";
}

/* The generated block, markers included. Caller frees. */
static char *generate(void) {
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    n += (size_t)snprintf(out + n, cap - n,
                          BEGIN_MARK "| rule | category | severity | finds | prefilter | checks |\n"
                                     "|---|---|---|---|---|---|\n");
    const safety_rule_t *rules = safety_rules();
    for (int i = 0; i < safety_rule_count(); i++) {
        const safety_rule_t *r = &rules[i];
        char kw[512] = "", checks[128];
        size_t k = 0;
        if (r->trigger == SAFETY_TRIGGER_DIGITS)
            snprintf(kw, sizeof kw, "4 digits in a row");
        else
            for (int j = 0; r->keywords[j]; j++)
                k +=
                    (size_t)snprintf(kw + k, sizeof kw - k, "%s`%s`", j ? " " : "", r->keywords[j]);
        n += (size_t)snprintf(out + n, cap - n, "| `%s` | %s | %s | %s | %s | %s |\n", r->id,
                              safety_category_name(r->category), safety_severity_name(r->severity),
                              r->description, kw, checks_of(r, checks, sizeof checks));
        if (n + 2048 > cap) {
            cap *= 2;
            char *nb = realloc(out, cap);
            if (!nb) {
                free(out);
                return NULL;
            }
            out = nb;
        }
    }
    snprintf(out + n, cap - n, END_MARK);
    return out;
}

static char *read_all(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 20);
    if (buf) buf[fread(buf, 1, (1 << 20) - 1, f)] = '\0';
    fclose(f);
    return buf;
}

static char doc_path[1024];

static void test_doc_matches_table(void) {
    char *doc = read_all(doc_path);
    CHECK_MSG(doc != NULL, "cannot read %s", doc_path);
    char *want = generate();
    if (!doc || !want) {
        free(doc);
        free(want);
        return;
    }
    const char *b = strstr(doc, BEGIN_MARK), *e = strstr(doc, END_MARK);
    CHECK_MSG(b && e && e > b, "%s lacks the rules markers", doc_path);
    if (b && e && e > b) {
        size_t len = (size_t)(e - b) + strlen(END_MARK);
        int same = len == strlen(want) && !memcmp(b, want, len);
        CHECK_MSG(same, "the rule list in %s is out of date: run test_safety_doc --write %s",
                  doc_path, doc_path);
    }
    free(doc);
    free(want);
}

static int write_doc(const char *path) {
    char *doc = read_all(path), *want = generate();
    if (!doc || !want) return 1;
    char *b = strstr(doc, BEGIN_MARK), *e = strstr(doc, END_MARK);
    if (!b || !e || e < b) {
        fprintf(stderr, "%s: no rules markers\n", path);
        return 1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    fwrite(doc, 1, (size_t)(b - doc), f);
    fputs(want, f);
    fputs(e + strlen(END_MARK), f);
    fclose(f);
    free(doc);
    free(want);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write")) return write_doc(argv[2]);
    const char *src = getenv("CU_SOURCE_DIR");
    snprintf(doc_path, sizeof doc_path, "%s/docs/safety.md", src ? src : ".");
    static const cu_test_case_t cases[] = {TEST(test_doc_matches_table)};
    return cu_test_run(cases, 1);
}
