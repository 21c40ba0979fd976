/*
 * docs/safety.md lists the detector rules and the example-value table
 * between markers; this test checks both lists match the tables, so the
 * documentation cannot drift from the code. To regenerate them after
 * changing rules.c or examples.c:
 *
 *   build/tests/test_safety_doc --write docs/safety.md
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>

#include "safety/examples.h"
#include "safety/rules.h"

#define BEGIN_MARK "<!-- rules:begin -->\n"
#define END_MARK "<!-- rules:end -->\n"
#define EX_BEGIN_MARK "<!-- examples:begin -->\n"
#define EX_END_MARK "<!-- examples:end -->\n"

static const char *checks_of(const safety_rule_t *r, char *buf, size_t cap) {
    static const char *const VALID[] = {"",
                                        "Luhn, issuer",
                                        "IBAN mod-97",
                                        "letters and digits",
                                        "8-15 digits",
                                        "not a file name",
                                        "9-11 digits"};
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

/* The generated rules block, markers included. Caller frees. */
static char *generate_rules(void) {
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

static const char *const NORMS[] = {"as found", "digits only", "letters and digits"};

/* The generated example-value block, markers included. Caller frees. */
static char *generate_examples(void) {
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    if (!out) return NULL;
    n += (size_t)snprintf(out + n, cap - n,
                          EX_BEGIN_MARK "| category | rules | compared | source |\n"
                                        "|---|---|---|---|\n");
    for (int i = 0; i < safety_example_count() && n + 2048 < cap; i++) {
        const safety_example_t *e = &safety_examples()[i];
        n += (size_t)snprintf(out + n, cap - n, "| %s | `%s` | %s | %s |\n", e->category, e->rules,
                              NORMS[e->norm], e->source);
    }
    snprintf(out + n, cap - n, EX_END_MARK);
    return out;
}

typedef struct {
    const char *begin, *end;
    char *(*generate)(void);
} block_t;

static const block_t BLOCKS[] = {{BEGIN_MARK, END_MARK, generate_rules},
                                 {EX_BEGIN_MARK, EX_END_MARK, generate_examples}};

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
    for (size_t k = 0; doc && k < sizeof BLOCKS / sizeof BLOCKS[0]; k++) {
        char *want = BLOCKS[k].generate();
        const char *b = strstr(doc, BLOCKS[k].begin), *e = strstr(doc, BLOCKS[k].end);
        CHECK_MSG(b && e && e > b, "%s lacks the markers %s", doc_path, BLOCKS[k].begin);
        if (want && b && e && e > b) {
            size_t len = (size_t)(e - b) + strlen(BLOCKS[k].end);
            int same = len == strlen(want) && !memcmp(b, want, len);
            CHECK_MSG(same, "the list at %s in %s is out of date: run test_safety_doc --write %s",
                      BLOCKS[k].begin, doc_path, doc_path);
        }
        free(want);
    }
    free(doc);
}

static int write_block(const char *path, const block_t *blk) {
    char *doc = read_all(path), *want = blk->generate();
    if (!doc || !want) return 1;
    char *b = strstr(doc, blk->begin), *e = strstr(doc, blk->end);
    if (!b || !e || e < b) {
        fprintf(stderr, "%s: no markers %s", path, blk->begin);
        return 1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    fwrite(doc, 1, (size_t)(b - doc), f);
    fputs(want, f);
    fputs(e + strlen(blk->end), f);
    fclose(f);
    free(doc);
    free(want);
    return 0;
}

static int write_doc(const char *path) {
    for (size_t k = 0; k < sizeof BLOCKS / sizeof BLOCKS[0]; k++)
        if (write_block(path, &BLOCKS[k])) return 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write")) return write_doc(argv[2]);
    const char *src = getenv("CU_SOURCE_DIR");
    snprintf(doc_path, sizeof doc_path, "%s/docs/safety.md", src ? src : ".");
    static const cu_test_case_t cases[] = {TEST(test_doc_matches_table)};
    return cu_test_run(cases, 1);
}
