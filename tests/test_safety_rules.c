/*
 * The detector: every rule's true- and false-positive samples, the
 * prefilter's equivalence with a plain regex scan on a mixed corpus,
 * entropy, Luhn, validators, allowlists (stopwords, regexes, the inline
 * `codex:allow` comment), positions and the generic-rule overlap rule.
 */
#include "harness.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "safety/detect.h"
#include "safety/examples.h"

static safety_scanner_t *new_scanner(const safety_scan_config_t *cfg) {
    safety_scanner_t *sc = NULL;
    cu_error_t err = {0};
    int rc = safety_scanner_new(cfg, &sc, &err);
    CHECK_MSG(rc == CU_OK, "%s", err.msg);
    return sc;
}

static int count_rule(const safety_findings_t *f, int rule) {
    int n = 0;
    for (size_t i = 0; i < f->count; i++) n += f->items[i].rule == rule;
    return n;
}

static void scan_text(const safety_scanner_t *sc, const char *text, unsigned flags,
                      safety_findings_t *f) {
    cu_error_t err = {0};
    int rc = safety_scan(sc, text, strlen(text), flags, f, &err);
    CHECK_MSG(rc == CU_OK, "%s", err.msg);
}

static void test_table_is_sane(void) {
    const safety_rule_t *rules = safety_rules();
    int n = safety_rule_count(), secrets = 0, pii = 0;
    CHECK(n >= 67);
    for (int i = 0; i < n; i++) {
        CHECK_MSG(safety_rule_find(rules[i].id) == i, "duplicate id %s", rules[i].id);
        CHECK_MSG(rules[i].tp[0] != NULL, "%s has no true-positive sample", rules[i].id);
        CHECK_MSG(rules[i].fp[0] != NULL, "%s has no false-positive sample", rules[i].id);
        if (rules[i].trigger == SAFETY_TRIGGER_KEYWORDS)
            CHECK_MSG(rules[i].keywords[0] != NULL, "%s has no keyword", rules[i].id);
        for (int k = 0; rules[i].keywords[k]; k++)
            for (const char *p = rules[i].keywords[k]; *p; p++)
                CHECK_MSG(!(*p >= 'A' && *p <= 'Z'), "%s keyword not lower case", rules[i].id);
        secrets += rules[i].category == SAFETY_CAT_SECRET;
        pii += rules[i].category == SAFETY_CAT_PII;
    }
    CHECK(secrets >= 60);
    CHECK(pii >= 5);
    CHECK(safety_rule_find("no_such_rule") == -1);
}

/* Each tp sample is found by its rule, with and without the prefilter, and
 * the secret lies inside the match; each fp sample is not. */
static void test_rule_samples(void) {
    safety_scanner_t *sc = new_scanner(NULL);
    if (!sc) return;
    CHECK(safety_scanner_jit(sc));
    const safety_rule_t *rules = safety_rules();
    for (int r = 0; r < safety_rule_count(); r++) {
        for (int k = 0; k < SAFETY_MAX_SAMPLES && rules[r].tp[k]; k++) {
            for (unsigned flags = 0; flags <= SAFETY_SCAN_NO_PREFILTER; flags++) {
                safety_findings_t f = {0};
                scan_text(sc, rules[r].tp[k], flags, &f);
                CHECK_MSG(count_rule(&f, r) == 1, "%s: tp[%d] found %d times (flags %u)",
                          rules[r].id, k, count_rule(&f, r), flags);
                for (size_t i = 0; i < f.count; i++) {
                    CHECK(f.items[i].start <= f.items[i].secret_start);
                    CHECK(f.items[i].secret_end <= f.items[i].end);
                    CHECK(f.items[i].secret_start < f.items[i].secret_end);
                }
                safety_findings_free(&f);
            }
        }
        for (int k = 0; k < SAFETY_MAX_SAMPLES && rules[r].fp[k]; k++) {
            safety_findings_t f = {0};
            scan_text(sc, rules[r].fp[k], SAFETY_SCAN_NO_PREFILTER, &f);
            CHECK_MSG(count_rule(&f, r) == 0, "%s: fp[%d] \"%s\" matched", rules[r].id, k,
                      rules[r].fp[k]);
            safety_findings_free(&f);
        }
    }
    safety_scanner_free(sc);
}

/* A corpus of every sample, embedded in code-like noise with various line
 * layouts, scanned with and without the prefilter: identical findings. */
static char *mixed_corpus(size_t *len) {
    const safety_rule_t *rules = safety_rules();
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    if (!buf) return NULL;
    const char *noise[] = {
        "int tokens = 1234; /* token count 5678 */\n",
        "static const char *s = \"secret sauce\"; // password policy\n",
        "#define VERSION 0x00012345\n",
        "x = y + 1; email me @ the usual place\n",
        "call 800 555 1212 or\n",
        "    return api_key_len > 32 ? aws_region : NULL;\n",
        "key-value store; sk_live_; ghp_; AKIA;\n",
        "",
    };
    unsigned seed = 12345;
    for (int pass = 0; pass < 3; pass++)
        for (int r = 0; r < safety_rule_count(); r++)
            for (int k = 0; k < SAFETY_MAX_SAMPLES; k++) {
                const char *parts[4];
                parts[0] = noise[(seed = seed * 1103515245u + 12345u) >> 16 & 7];
                parts[1] = rules[r].tp[k] ? rules[r].tp[k] : "";
                parts[2] = (seed >> 20) & 1 ? " trailing text " : "\n";
                parts[3] = rules[r].fp[k] ? rules[r].fp[k] : "";
                for (int j = 0; j < 4; j++) {
                    size_t m = strlen(parts[j]);
                    if (n + m + 2 > cap) {
                        cap *= 2;
                        char *nb = realloc(buf, cap);
                        if (!nb) {
                            free(buf);
                            return NULL;
                        }
                        buf = nb;
                    }
                    memcpy(buf + n, parts[j], m);
                    n += m;
                }
                buf[n++] = pass == 1 ? ' ' : '\n';
            }
    *len = n;
    return buf;
}

static void test_prefilter_equivalence(void) {
    safety_scanner_t *sc = new_scanner(NULL);
    size_t len = 0;
    char *corpus = mixed_corpus(&len);
    CHECK(corpus != NULL);
    if (!sc || !corpus) return;
    safety_findings_t a = {0}, b = {0};
    cu_error_t err = {0};
    CHECK(safety_scan(sc, corpus, len, 0, &a, &err) == CU_OK);
    CHECK(safety_scan(sc, corpus, len, SAFETY_SCAN_NO_PREFILTER, &b, &err) == CU_OK);
    CHECK(a.count > 150);
    CHECK_MSG(a.count == b.count, "prefilter %zu vs full %zu", a.count, b.count);
    size_t m = a.count < b.count ? a.count : b.count;
    for (size_t i = 0; i < m; i++) {
        const safety_finding_t *x = &a.items[i], *y = &b.items[i];
        int same = x->rule == y->rule && x->start == y->start && x->end == y->end &&
                   x->secret_start == y->secret_start && x->line == y->line &&
                   x->column == y->column;
        CHECK_MSG(same, "finding %zu: %s@%zu vs %s@%zu", i, safety_rules()[x->rule].id, x->start,
                  safety_rules()[y->rule].id, y->start);
        if (!same) break;
    }
    /* every rule is represented */
    for (int r = 0; r < safety_rule_count(); r++)
        CHECK_MSG(count_rule(&a, r) > 0, "%s not found in the corpus", safety_rules()[r].id);
    safety_findings_free(&a);
    safety_findings_free(&b);
    free(corpus);
    safety_scanner_free(sc);
}

/* Random text built from rule samples cut at random points, keywords,
 * digit runs, separators, CRLF, NUL and high bytes: the prefilter still
 * finds exactly what the full scan finds. */
static void test_prefilter_equivalence_random(void) {
    safety_scanner_t *sc = new_scanner(NULL);
    if (!sc) return;
    const safety_rule_t *rules = safety_rules();
    const char *pieces[] = {" ",          "\n",
                            "\r\n",       "\t",
                            "=",          ": ",
                            "\"",         "'",
                            "@",          "+",
                            "-",          ".",
                            "/",          "://",
                            "\0",         "\xc3\xa9",
                            "\xff",       "1234",
                            "(415) ",     "555-0132",
                            "token",      "secret",
                            "password",   "key-",
                            "-----BEGIN", "PRIVATE KEY-----",
                            "-----END",   "https://",
                            "x@y.io",     "AKIA",
                            "eyJ"};
    size_t npieces = sizeof pieces / sizeof pieces[0];
    size_t cap = 3u << 20, n = 0;
    char *buf = malloc(cap);
    if (!buf) return;
    unsigned long long x = 0x9e3779b97f4a7c15ull;
    while (n + 512 < cap) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned r = (unsigned)(x >> 33);
        const char *src;
        size_t len;
        if (r % 3 == 0) {
            int rule = (int)((r / 3) % (unsigned)safety_rule_count());
            src = rules[rule].tp[0];
            len = strlen(src);
            size_t cut = (r >> 12) % (len + 1); /* a prefix or the whole sample */
            len = (r >> 20) & 1 ? len : cut;
        } else {
            src = pieces[(r / 3) % npieces];
            len = src[0] ? strlen(src) : 1;
        }
        memcpy(buf + n, src, len);
        n += len;
    }
    safety_findings_t a = {0}, b = {0};
    cu_error_t err = {0};
    CHECK(safety_scan(sc, buf, n, 0, &a, &err) == CU_OK);
    CHECK(safety_scan(sc, buf, n, SAFETY_SCAN_NO_PREFILTER, &b, &err) == CU_OK);
    CHECK(a.count > 1000);
    CHECK_MSG(a.count == b.count, "prefilter %zu vs full %zu", a.count, b.count);
    for (size_t i = 0; i < a.count && i < b.count; i++) {
        int same = a.items[i].rule == b.items[i].rule && a.items[i].start == b.items[i].start &&
                   a.items[i].end == b.items[i].end && a.items[i].line == b.items[i].line;
        CHECK_MSG(same, "finding %zu: %s@%zu vs %s@%zu", i, rules[a.items[i].rule].id,
                  a.items[i].start, rules[b.items[i].rule].id, b.items[i].start);
        if (!same) break;
    }
    safety_findings_free(&a);
    safety_findings_free(&b);
    free(buf);
    safety_scanner_free(sc);
}

static void test_entropy_and_luhn(void) {
    CHECK(safety_entropy("", 0) == 0.0);
    CHECK(safety_entropy("aaaa", 4) == 0.0);
    CHECK_REL(safety_entropy("ab", 2), 1.0, 1e-12, 1e-12);
    CHECK_REL(safety_entropy("abcd", 4), 2.0, 1e-12, 1e-12);
    CHECK_REL(safety_entropy("0123456789abcdef", 16), 4.0, 1e-12, 1e-12);
    CHECK(safety_luhn_valid("4111111111111111", 16));
    CHECK(safety_luhn_valid("4111 1111 1111 1111", 19));
    CHECK(!safety_luhn_valid("4111111111111112", 16));
    CHECK(safety_luhn_valid("378282246310005", 15));
    CHECK(!safety_luhn_valid("0000", 4)); /* too short to be a card */
    CHECK(safety_validate(SAFETY_VALID_IBAN, "GB82WEST12345698765432", 22));
    CHECK(!safety_validate(SAFETY_VALID_IBAN, "GB82WEST12345698765433", 22));
    CHECK(safety_validate(SAFETY_VALID_MIXED, "abc123", 6));
    CHECK(!safety_validate(SAFETY_VALID_MIXED, "abcdef", 6));
    CHECK(!safety_validate(SAFETY_VALID_EMAIL, "icon@2x.png", 11));
    CHECK(safety_validate(SAFETY_VALID_EMAIL, "a@b.io", 6));
}

static void test_positions(void) {
    safety_scanner_t *sc = new_scanner(NULL);
    if (!sc) return;
    const char *text = "first line\n"
                       "  second: ghp_"
                       "Fak3Xq7Lm2Pz9KwT4nB8Rc5Hy6Jd1VFAKE01\n"
                       "third AKIA"
                       "Q3EGRT7PLXW5M2ND\n";
    safety_findings_t f = {0};
    scan_text(sc, text, 0, &f);
    CHECK(f.count == 2);
    if (f.count == 2) {
        CHECK(!strcmp(safety_rules()[f.items[0].rule].id, "github_pat"));
        CHECK(f.items[0].line == 2 && f.items[0].column == 11);
        CHECK(f.items[0].start == 11 + 10);
        CHECK(f.items[0].end - f.items[0].start == 40);
        CHECK(!strcmp(safety_rules()[f.items[1].rule].id, "aws_access_key"));
        CHECK(f.items[1].line == 3 && f.items[1].column == 7);
    }
    safety_findings_free(&f);
    /* empty input and input with no newline at the end */
    scan_text(sc, "", 0, &f);
    CHECK(f.count == 0);
    scan_text(sc,
              "AKIA"
              "Q3EGRT7PLXW5M2ND",
              0, &f);
    CHECK(f.count == 1 && f.items[0].line == 1 && f.items[0].column == 1);
    safety_findings_free(&f);
    safety_scanner_free(sc);
}

static void test_generic_overlap(void) {
    safety_scanner_t *sc = new_scanner(NULL);
    if (!sc) return;
    /* the generic assignment rule also matches, but the specific rule wins */
    safety_findings_t f = {0};
    scan_text(sc,
              "github_token = \"ghp_"
              "Fak3Xq7Lm2Pz9KwT4nB8Rc5Hy6Jd1VFAKE01\"\n",
              0, &f);
    CHECK(f.count == 1);
    CHECK(f.count && !strcmp(safety_rules()[f.items[0].rule].id, "github_pat"));
    safety_findings_free(&f);
    /* alone, the generic rule reports */
    scan_text(sc, "my_secret_value = \"Zx81Qw72Er63Ty54\"\n", 0, &f);
    CHECK(f.count == 1);
    CHECK(f.count && !strcmp(safety_rules()[f.items[0].rule].id, "generic_secret_assignment"));
    safety_findings_free(&f);
    safety_scanner_free(sc);
}

static void test_allowlists(void) {
    const char *text = "a = \"AKIA"
                       "Q3EGRT7PLXW5M2ND\"\n"
                       "b = \"AKIA"
                       "Q3EGRT7PLXW5M2ND\" // codex:allow test fixture\n"
                       "mail jane@acme.com and joe@corp.io\n"
                       "key glpat-"
                       "QQSTOPWORDXabcd12345\n";
    /* inline allow on */
    safety_scanner_t *sc = new_scanner(NULL);
    if (!sc) return;
    safety_findings_t f = {0};
    scan_text(sc, text, 0, &f);
    int aws = safety_rule_find("aws_access_key"), email = safety_rule_find("email"),
        glpat = safety_rule_find("gitlab_pat");
    CHECK(count_rule(&f, aws) == 1);
    CHECK(count_rule(&f, email) == 2);
    CHECK(count_rule(&f, glpat) == 1);
    safety_findings_free(&f);
    scan_text(sc, text, SAFETY_SCAN_NO_ALLOWLIST, &f);
    CHECK(count_rule(&f, aws) == 2);
    safety_findings_free(&f);
    safety_scanner_free(sc);

    /* inline allow off, an allow regex and a stopword on */
    const char *regexes[] = {"@acme\\.com$"};
    const char *stop[] = {"qqstopword"};
    safety_scan_config_t cfg;
    safety_scan_config_init(&cfg);
    cfg.allow_inline = 0;
    cfg.allow_regexes = regexes;
    cfg.n_allow_regexes = 1;
    cfg.stopwords = stop;
    cfg.n_stopwords = 1;
    sc = new_scanner(&cfg);
    if (!sc) return;
    scan_text(sc, text, 0, &f);
    CHECK(count_rule(&f, aws) == 2);
    CHECK(count_rule(&f, email) == 1);
    CHECK(count_rule(&f, glpat) == 0);
    safety_findings_free(&f);
    safety_scanner_free(sc);

    /* a bad allow regex is an error naming the pattern */
    const char *bad[] = {"([unclosed"};
    cfg.allow_regexes = bad;
    safety_scanner_t *none = NULL;
    cu_error_t err = {0};
    CHECK(safety_scanner_new(&cfg, &none, &err) == CU_EINVAL);
    CHECK(none == NULL);
    CHECK(strstr(err.msg, "[unclosed") != NULL);
    CHECK(strstr(err.msg, "offset") != NULL);
}

static void test_enabled_subset(void) {
    unsigned char *enabled = calloc((size_t)safety_rule_count(), 1);
    if (!enabled) return;
    enabled[safety_rule_find("email")] = 1;
    safety_scan_config_t cfg;
    safety_scan_config_init(&cfg);
    cfg.enabled = enabled;
    safety_scanner_t *sc = new_scanner(&cfg);
    if (sc) {
        safety_findings_t f = {0};
        scan_text(sc,
                  "AKIA"
                  "Q3EGRT7PLXW5M2ND jane@corp.io\n",
                  0, &f);
        CHECK(f.count == 1 && f.items[0].rule == safety_rule_find("email"));
        safety_findings_free(&f);
        safety_scanner_free(sc);
    }
    free(enabled);
}

/* Thread CPU seconds of the fastest of three scans (CPU time, so other
 * processes on the machine do not count). */
static double scan_cpu_seconds(const safety_scanner_t *sc, const char *buf, size_t len) {
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        struct timespec a, b;
        safety_findings_t f = {0};
        cu_error_t err = {0};
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
        CHECK(safety_scan(sc, buf, len, 0, &f, &err) == CU_OK);
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
        safety_findings_free(&f);
        double t = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
        if (t < best) best = t;
    }
    return best;
}

/* n bytes of `line` repeated. Allocates. */
static char *repeat_line(const char *line, size_t n) {
    char *buf = malloc(n + 1);
    if (!buf) return NULL;
    size_t m = strlen(line);
    for (size_t i = 0; i < n; i++) buf[i] = line[i % m];
    buf[n] = 0;
    return buf;
}

/* Inputs built to make a pattern search far ahead from every line (issue
 * 18: unterminated `-----BEGIN RSA PRIVATE KEY-----` lines cost ~2000x a
 * normal scan) must cost about what a look-alike costs that triggers the
 * same rules on every line but cannot start a long search. Work is compared
 * as a ratio within one run, never against a wall-clock bound. */
static void test_pathological_inputs(void) {
    safety_scanner_t *sc = new_scanner(NULL);
    if (!sc) return;
    const char *pairs[][2] = {
        {"-----BEGIN RSA PRIVATE KEY-----\n", "-----BEGIN RSA PUBLIC KEY-----\n"},
        {"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n",
         "-----BEGIN OPENSSH PUBLIC KEY-----\nAAAA\n"},
        {"-----BEGIN PRIVATE KEY-----", "-----BEGIN PUBLIC KEY------"},
    };
    size_t n = 1u << 20;
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        char *bad = repeat_line(pairs[k][0], n), *good = repeat_line(pairs[k][1], n);
        CHECK(bad && good);
        if (bad && good) {
            double tb = scan_cpu_seconds(sc, bad, n), tg = scan_cpu_seconds(sc, good, n);
            /* 20x is generous: before the fix the first pair was ~1000x */
            CHECK_MSG(tb < 20 * tg + 0.05, "input %zu: %.3f s vs look-alike %.3f s", k, tb, tg);
        }
        free(bad);
        free(good);
    }
    safety_scanner_free(sc);
}

/* Every example-table entry names real rules; its sample is found by one of
 * them when examples are kept, and by none of them otherwise. */
static void test_example_values(void) {
    safety_scanner_t *sc = new_scanner(NULL);
    if (!sc) return;
    for (int i = 0; i < safety_example_count(); i++) {
        const safety_example_t *e = &safety_examples()[i];
        CHECK_MSG(e->source && e->source[0] && e->category && e->sample, "example %d", i);
        if (e->rules[0] != '*') {
            char ids[256];
            snprintf(ids, sizeof ids, "%s", e->rules);
            for (char *t = strtok(ids, " "); t; t = strtok(NULL, " "))
                CHECK_MSG(safety_rule_find(t) >= 0, "example %d names unknown rule %s", i, t);
        }
        safety_findings_t kept = {0}, dropped = {0};
        scan_text(sc, e->sample, SAFETY_SCAN_KEEP_EXAMPLES, &kept);
        scan_text(sc, e->sample, 0, &dropped);
        int nk = 0, nd = 0;
        for (size_t k = 0; k < kept.count; k++) nk += safety_example_applies(e, kept.items[k].rule);
        for (size_t k = 0; k < dropped.count; k++)
            nd += safety_example_applies(e, dropped.items[k].rule);
        CHECK_MSG(nk >= 1, "example %d (%s): sample not found when kept", i, e->category);
        CHECK_MSG(nd == 0, "example %d (%s): sample still found", i, e->category);
        safety_findings_free(&kept);
        safety_findings_free(&dropped);
    }
    safety_scanner_free(sc);
}

/* base64 of s, into out (which must hold 4 * ceil(n / 3) + 1 bytes). */
static void b64(const char *s, char *out) {
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)s[i] << 16;
        if (i + 1 < n) v |= (unsigned char)s[i + 1] << 8;
        if (i + 2 < n) v |= (unsigned char)s[i + 2];
        out[o++] = A[v >> 18 & 63];
        out[o++] = A[v >> 12 & 63];
        out[o++] = i + 1 < n ? A[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? A[v & 63] : '=';
    }
    out[o] = 0;
}

#define GHP_SAMPLE                                                                                 \
    "ghp_"                                                                                         \
    "Fak3Xq7Lm2Pz9KwT4nB8Rc5Hy6Jd1VFAKE01"

/* The rule id found in text (one finding of that rule, whose match covers
 * the substring `where` of text), or none for a look-alike (rule NULL). */
static void expect_carrier(const safety_scanner_t *sc, const char *text, const char *rule,
                           const char *where) {
    safety_findings_t f = {0}, g = {0};
    scan_text(sc, text, 0, &f);
    scan_text(sc, text, SAFETY_SCAN_NO_PREFILTER, &g);
    CHECK_MSG(f.count == g.count, "prefilter %zu vs full %zu in: %s", f.count, g.count, text);
    if (!rule) {
        CHECK_MSG(f.count == 0, "look-alike found (%s) in: %s",
                  f.count ? safety_rules()[f.items[0].rule].id : "", text);
    } else {
        int r = safety_rule_find(rule), n = count_rule(&f, r);
        CHECK_MSG(n == 1, "%s found %d times in: %s", rule, n, text);
        const char *w = strstr(text, where);
        for (size_t i = 0; i < f.count && w; i++)
            if (f.items[i].rule == r)
                CHECK_MSG(f.items[i].start <= (size_t)(w - text) &&
                              f.items[i].end >= (size_t)(w - text) + strlen(where),
                          "%s at [%zu, %zu) does not cover \"%s\"", rule, f.items[i].start,
                          f.items[i].end, where);
    }
    safety_findings_free(&f);
    safety_findings_free(&g);
}

static void test_carriers(void) {
    safety_scanner_t *sc = new_scanner(NULL);
    if (!sc) return;
    char enc[256], enc2[256], enc3[256], text[1024];
    b64(GHP_SAMPLE, enc);
    b64("deploy:Zq81Wx72Er63Ty54", enc2);
    b64("just some harmless text here", enc3);
    /* base64 carriers: decoding calls, pipes, k8s Secret data, docker auth, Basic */
    const char *calls[] = {"tok = base64.b64decode(\"%s\")", "const t = atob('%s');",
                           "echo %s | base64 -d > token", "Buffer.from(\"%s\", \"base64\")"};
    for (int i = 0; i < 4; i++) {
        snprintf(text, sizeof text, calls[i], enc);
        expect_carrier(sc, text, "github_pat", enc);
        snprintf(text, sizeof text, calls[i], enc3);
        expect_carrier(sc, text, NULL, NULL);
    }
    snprintf(text, sizeof text, "apiVersion: v1\nkind: Secret\ndata:\n  note: %s\n", enc);
    expect_carrier(sc, text, "github_pat", enc);
    snprintf(text, sizeof text, "apiVersion: v1\nkind: ConfigMap\ndata:\n  note: %s\n", enc);
    expect_carrier(sc, text, NULL, NULL); /* only a Secret's data is base64 by contract */
    snprintf(text, sizeof text, "{\"auths\": {\"r.corp.io\": {\"auth\": \"%s\"}}}", enc2);
    expect_carrier(sc, text, "url_basic_auth", enc2);
    snprintf(text, sizeof text, "curl -H 'Authorization: Basic %s' https://api.corp.io", enc2);
    expect_carrier(sc, text, "url_basic_auth", enc2);
    snprintf(text, sizeof text, "{\"auth\": \"%s\"}", enc3);
    expect_carrier(sc, text, NULL, NULL);
    /* URL encoding */
    expect_carrier(sc, "u = \"postgres%3A%2F%2Fapp%3As3cr3tFAKEpw%40db.internal%2Fapp\"",
                   "postgres_url_password", "s3cr3tFAKEpw");
    expect_carrier(sc, "printf(\"%3d%3d\\n\", a, b); q = a%2Fb", NULL, NULL);
    /* split literals: +, adjacency, across lines, PHP's dot */
    expect_carrier(sc,
                   "key = \"sk_"
                   "live_\" + \"Fak3Xq7Lm2Pz9KwT4nB8Rc5H\"",
                   "stripe_secret_key", "Fak3Xq7Lm2Pz9KwT4nB8Rc5H");
    expect_carrier(sc,
                   "TOKEN = (\"ghp_Fak3Xq7Lm2Pz9KwT\"\n"
                   "         \"4nB8Rc5Hy6Jd1VFAKE01\")",
                   "github_pat", "4nB8Rc5Hy6Jd1VFAKE01");
    expect_carrier(sc,
                   "$k = 'ghp_Fak3Xq7Lm2Pz9KwT' . "
                   "'4nB8Rc5Hy6Jd1VFAKE01';",
                   "github_pat", "ghp_Fak3");
    expect_carrier(sc, "msg = \"hello \" + \"world\" + name + \"!\"", NULL, NULL);
    expect_carrier(sc, "f(\"ghp_Fak3Xq7Lm2Pz9KwT\", \"4nB8Rc5Hy6Jd1VFAKE01\")", NULL, NULL);
    /* codex:allow on the carrier's line */
    snprintf(text, sizeof text, "tok = b64decode(\"%s\")  # codex:allow fixture", enc);
    expect_carrier(sc, text, NULL, NULL);
    /* no decoding when asked */
    snprintf(text, sizeof text, "tok = b64decode(\"%s\")", enc);
    safety_findings_t f = {0};
    scan_text(sc, text, SAFETY_SCAN_NO_DECODE, &f);
    CHECK(f.count == 0);
    safety_findings_free(&f);
    safety_scanner_free(sc);
}

TEST_MAIN(TEST(test_table_is_sane), TEST(test_rule_samples), TEST(test_prefilter_equivalence),
          TEST(test_prefilter_equivalence_random), TEST(test_entropy_and_luhn),
          TEST(test_positions), TEST(test_generic_overlap), TEST(test_allowlists),
          TEST(test_enabled_subset), TEST(test_pathological_inputs), TEST(test_example_values),
          TEST(test_carriers))
