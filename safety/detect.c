/*
 * The detector (see detect.h): compiles the rule table with PCRE2 JIT,
 * builds the keyword automaton, and scans buffers.
 *
 * The automaton is a dense DFA over byte classes: bytes that occur in no
 * keyword share class 0, letters are folded to lower case and digits to one
 * class, so the transition table stays small enough for the L1/L2 cache.
 * Each state knows the rules whose keywords end there (through the failure
 * links). The scan loop is one table lookup per byte; on a state with
 * outputs it runs each of those rules once over the current line and marks
 * the rule as covered up to the end of that line.
 */
#include "safety/detect.h"

#include "safety/decode.h"
#include "safety/examples.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DIGIT_SYMBOL '0' /* every digit maps to this before classing */
#define MATCH_LIMIT 2000000
/* internal flags: how deep in derived text (decoded, joined) a scan is */
#define DEPTH_SHIFT 16
#define DEPTH_MASK (3u << DEPTH_SHIFT)
#define MAX_DEPTH 2

static int trigger_count(void) {
    int n = 0;
    while (safety_carrier_triggers()[n].keyword) n++;
    return n;
}

typedef struct {
    uint32_t first; /* into out_rules */
    uint32_t count;
} ac_out_t;

struct safety_scanner {
    int nrules;
    pcre2_code **code; /* per rule; NULL when disabled */
    int all_jit;
    pcre2_code **allow_re; /* allow regexes */
    size_t n_allow;
    char **stopwords; /* lower case */
    size_t n_stop;
    int allow_inline;
    pcre2_code **example_code; /* per example entry (examples.h) */
    /* keyword automaton */
    uint8_t cls[256];
    uint32_t ncls;
    uint32_t nstates;
    uint32_t *delta;  /* nstates * ncls; entries are state * ncls */
    uint8_t *has_out; /* per state, indexed by state * ncls / ncls */
    ac_out_t *out;    /* per state */
    uint16_t *out_rules;
};

void safety_scan_config_init(safety_scan_config_t *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->allow_inline = 1;
}

void safety_findings_free(safety_findings_t *f) {
    if (!f) return;
    free(f->items);
    f->items = NULL;
    f->count = f->cap = f->limit_hits = 0;
}

int safety_findings_push(safety_findings_t *f, const safety_finding_t *item, cu_error_t *err) {
    if (f->count == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        safety_finding_t *p = realloc(f->items, cap * sizeof *p);
        if (!p) return cu_error_set(err, CU_ENOMEM, "out of memory growing findings");
        f->items = p;
        f->cap = cap;
    }
    f->items[f->count++] = *item;
    return CU_OK;
}

/* ---- the keyword automaton ---- */

static uint8_t fold(uint8_t c) {
    if (c >= 'A' && c <= 'Z') return (uint8_t)(c - 'A' + 'a');
    if (c >= '0' && c <= '9') return DIGIT_SYMBOL;
    return c;
}

typedef struct {
    uint32_t *go; /* trie edges, nstates * ncls, 0 = none (root is never a target) */
    uint32_t *fail;
    uint8_t **rules; /* per state, a bitmap over rules */
    uint32_t n, cap;
} trie_t;

static int trie_add_state(trie_t *t, uint32_t ncls, size_t rule_bytes) {
    if (t->n == t->cap) {
        uint32_t cap = t->cap ? t->cap * 2 : 256;
        uint32_t *go = realloc(t->go, (size_t)cap * ncls * sizeof *go);
        if (!go) return -1;
        t->go = go;
        uint8_t **rules = realloc(t->rules, cap * sizeof *rules);
        if (!rules) return -1;
        t->rules = rules;
        t->cap = cap;
    }
    memset(t->go + (size_t)t->n * ncls, 0, ncls * sizeof *t->go);
    t->rules[t->n] = calloc(rule_bytes, 1);
    if (!t->rules[t->n]) return -1;
    return (int)t->n++;
}

static void trie_free(trie_t *t) {
    for (uint32_t i = 0; i < t->n; i++) free(t->rules[i]);
    free(t->rules);
    free(t->go);
    free(t->fail);
}

static int build_automaton(safety_scanner_t *sc, const unsigned char *enabled, cu_error_t *err) {
    const safety_rule_t *rules = safety_rules();
    int nr = sc->nrules, nt = trigger_count(), nall = nr + nt;
    size_t rule_bytes = (size_t)(nall + 7) / 8;
    /* classes: one per distinct folded byte used by a keyword */
    memset(sc->cls, 0, sizeof sc->cls);
    uint8_t symbol_class[256] = {0};
    uint32_t ncls = 1;
    symbol_class[DIGIT_SYMBOL] = (uint8_t)ncls++;
    for (int r = 0; r < nr; r++)
        for (int k = 0; k < SAFETY_MAX_KEYWORDS && rules[r].keywords[k]; k++)
            for (const char *p = rules[r].keywords[k]; *p; p++) {
                uint8_t f = fold((uint8_t)*p);
                if (!symbol_class[f]) symbol_class[f] = (uint8_t)ncls++;
            }
    for (int t = 0; t < nt; t++)
        for (const char *p = safety_carrier_triggers()[t].keyword; *p; p++) {
            uint8_t f = fold((uint8_t)*p);
            if (!symbol_class[f]) symbol_class[f] = (uint8_t)ncls++;
        }
    for (int c = 0; c < 256; c++) sc->cls[c] = symbol_class[fold((uint8_t)c)];
    sc->ncls = ncls;

    trie_t t = {0};
    int rc = CU_ENOMEM;
    if (trie_add_state(&t, ncls, rule_bytes) < 0) goto done;
    for (int r = 0; r < nall; r++) {
        if (r < nr && enabled && !enabled[r]) continue;
        const char *digits[] = {"0000", NULL};
        const char *trig[] = {r >= nr ? safety_carrier_triggers()[r - nr].keyword : NULL, NULL};
        const char *const *kws = r >= nr                                     ? trig
                                 : rules[r].trigger == SAFETY_TRIGGER_DIGITS ? digits
                                                                             : rules[r].keywords;
        for (int k = 0; kws[k]; k++) {
            uint32_t s = 0;
            for (const char *p = kws[k]; *p; p++) {
                uint32_t c = sc->cls[(uint8_t)*p];
                if (!t.go[(size_t)s * ncls + c]) {
                    int ns = trie_add_state(&t, ncls, rule_bytes);
                    if (ns < 0) goto done;
                    t.go[(size_t)s * ncls + c] = (uint32_t)ns;
                }
                s = t.go[(size_t)s * ncls + c];
            }
            t.rules[s][r / 8] |= (uint8_t)(1u << (r % 8));
        }
    }
    /* breadth-first: failure links, output union, dense transitions */
    t.fail = calloc(t.n, sizeof *t.fail);
    uint32_t *queue = malloc(t.n * sizeof *queue);
    sc->delta = malloc((size_t)t.n * ncls * sizeof *sc->delta);
    if (!t.fail || !queue || !sc->delta) {
        free(queue);
        goto done;
    }
    uint32_t head = 0, tail = 0;
    for (uint32_t c = 0; c < ncls; c++) {
        uint32_t nx = t.go[c];
        sc->delta[c] = nx * ncls;
        if (nx) {
            t.fail[nx] = 0;
            queue[tail++] = nx;
        }
    }
    while (head < tail) {
        uint32_t s = queue[head++];
        for (size_t b = 0; b < rule_bytes; b++) t.rules[s][b] |= t.rules[t.fail[s]][b];
        for (uint32_t c = 0; c < ncls; c++) {
            uint32_t nx = t.go[(size_t)s * ncls + c];
            uint32_t via_fail = sc->delta[(size_t)t.fail[s] * ncls + c] / ncls;
            if (nx) {
                t.fail[nx] = via_fail;
                queue[tail++] = nx;
                sc->delta[(size_t)s * ncls + c] = nx * ncls;
            } else {
                sc->delta[(size_t)s * ncls + c] = via_fail * ncls;
            }
        }
    }
    free(queue);
    /* outputs as flat lists */
    sc->nstates = t.n;
    sc->has_out = calloc(t.n, 1);
    sc->out = calloc(t.n, sizeof *sc->out);
    size_t total = 0;
    for (uint32_t s = 0; s < t.n; s++)
        for (int r = 0; r < nall; r++)
            if (t.rules[s][r / 8] & (1u << (r % 8))) total++;
    sc->out_rules = malloc((total ? total : 1) * sizeof *sc->out_rules);
    if (!sc->has_out || !sc->out || !sc->out_rules) goto done;
    uint32_t pos = 0;
    for (uint32_t s = 0; s < t.n; s++) {
        sc->out[s].first = pos;
        for (int r = 0; r < nall; r++)
            if (t.rules[s][r / 8] & (1u << (r % 8))) sc->out_rules[pos++] = (uint16_t)r;
        sc->out[s].count = pos - sc->out[s].first;
        sc->has_out[s] = sc->out[s].count > 0;
    }
    rc = CU_OK;
done:
    trie_free(&t);
    if (rc) cu_error_set(err, rc, "out of memory building the keyword automaton");
    return rc;
}

/* ---- compilation ---- */

static pcre2_code *compile(const char *pattern, cu_error_t *err, const char *what) {
    int ec;
    PCRE2_SIZE eo;
    pcre2_code *code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
    if (!code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        cu_error_set(err, CU_EINVAL, "%s /%s/: %s at offset %zu", what, pattern, (char *)msg,
                     (size_t)eo);
    }
    return code;
}

/* The example table's patterns, each anchored at both ends. */
static int compile_examples(safety_scanner_t *sc, cu_error_t *err) {
    int n = safety_example_count();
    sc->example_code = calloc((size_t)n, sizeof *sc->example_code);
    if (!sc->example_code) return cu_error_set(err, CU_ENOMEM, "out of memory compiling examples");
    for (int i = 0; i < n; i++) {
        int ec;
        PCRE2_SIZE eo;
        sc->example_code[i] =
            pcre2_compile((PCRE2_SPTR)safety_examples()[i].pattern, PCRE2_ZERO_TERMINATED,
                          PCRE2_ANCHORED | PCRE2_ENDANCHORED, &ec, &eo, NULL);
        if (!sc->example_code[i]) /* the table is ours: a bad pattern is a bug */
            return cu_error_set(err, CU_EINTERNAL, "example %d: pattern does not compile at %zu", i,
                                (size_t)eo);
        pcre2_jit_compile(sc->example_code[i], PCRE2_JIT_COMPLETE);
    }
    return CU_OK;
}

int safety_scanner_new(const safety_scan_config_t *cfg, safety_scanner_t **out, cu_error_t *err) {
    safety_scan_config_t defaults;
    if (!cfg) {
        safety_scan_config_init(&defaults);
        cfg = &defaults;
    }
    *out = NULL;
    safety_scanner_t *sc = calloc(1, sizeof *sc);
    if (!sc) return cu_error_set(err, CU_ENOMEM, "out of memory creating a scanner");
    sc->nrules = safety_rule_count();
    sc->allow_inline = cfg->allow_inline;
    sc->all_jit = 1;
    int rc = CU_ENOMEM;
    sc->code = calloc((size_t)sc->nrules, sizeof *sc->code);
    if (!sc->code) goto fail;
    const safety_rule_t *rules = safety_rules();
    for (int r = 0; r < sc->nrules; r++) {
        if (cfg->enabled && !cfg->enabled[r]) continue;
        sc->code[r] = compile(rules[r].pattern, err, rules[r].id);
        if (!sc->code[r]) {
            rc = CU_EINTERNAL; /* the table is ours: a bad pattern is a bug */
            err->code = rc;
            goto fail;
        }
        if (pcre2_jit_compile(sc->code[r], PCRE2_JIT_COMPLETE) != 0) sc->all_jit = 0;
    }
    if (cfg->n_allow_regexes) {
        sc->allow_re = calloc(cfg->n_allow_regexes, sizeof *sc->allow_re);
        if (!sc->allow_re) goto fail;
        for (size_t i = 0; i < cfg->n_allow_regexes; i++) {
            sc->allow_re[i] = compile(cfg->allow_regexes[i], err, "allow regex");
            if (!sc->allow_re[i]) {
                rc = CU_EINVAL;
                goto fail;
            }
            sc->n_allow++;
            pcre2_jit_compile(sc->allow_re[i], PCRE2_JIT_COMPLETE);
        }
    }
    if (cfg->n_stopwords) {
        sc->stopwords = calloc(cfg->n_stopwords, sizeof *sc->stopwords);
        if (!sc->stopwords) goto fail;
        for (size_t i = 0; i < cfg->n_stopwords; i++) {
            char *w = strdup(cfg->stopwords[i]);
            if (!w) goto fail;
            for (char *p = w; *p; p++)
                if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
            sc->stopwords[sc->n_stop++] = w;
        }
    }
    rc = compile_examples(sc, err);
    if (rc) goto fail;
    rc = build_automaton(sc, cfg->enabled, err);
    if (rc) goto fail;
    *out = sc;
    return CU_OK;
fail:
    if (rc == CU_ENOMEM && (!err || err->code != CU_ENOMEM))
        cu_error_set(err, CU_ENOMEM, "out of memory compiling the safety rules");
    safety_scanner_free(sc);
    return rc;
}

void safety_scanner_free(safety_scanner_t *sc) {
    if (!sc) return;
    if (sc->code)
        for (int r = 0; r < sc->nrules; r++) pcre2_code_free(sc->code[r]);
    free(sc->code);
    for (size_t i = 0; i < sc->n_allow; i++) pcre2_code_free(sc->allow_re[i]);
    free(sc->allow_re);
    for (size_t i = 0; i < sc->n_stop; i++) free(sc->stopwords[i]);
    free(sc->stopwords);
    if (sc->example_code)
        for (int i = 0; i < safety_example_count(); i++) pcre2_code_free(sc->example_code[i]);
    free(sc->example_code);
    free(sc->delta);
    free(sc->has_out);
    free(sc->out);
    free(sc->out_rules);
    free(sc);
}

int safety_scanner_jit(const safety_scanner_t *sc) {
    return sc->all_jit;
}

/* ---- scanning ---- */

typedef struct {
    const safety_scanner_t *sc;
    const char *buf;
    size_t len;
    unsigned flags;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit_stack;
    safety_findings_t *out;
    cu_error_t *err;
    safety_carrier_hit_t *hits; /* carrier triggers seen, in order */
    size_t nhits, hits_cap;
    int want_hits;
    /* the last line checked for `codex:allow`: findings cluster on lines */
    size_t allow_ls, allow_le;
    int allow_cached, allow_has;
} scan_t;

static int contains_ci(const char *hay, size_t n, const char *needle) {
    size_t m = strlen(needle);
    if (m == 0 || m > n) return 0;
    for (size_t i = 0; i + m <= n; i++) {
        size_t j = 0;
        while (j < m) {
            char c = hay[i + j];
            if (c >= 'A' && c <= 'Z') c = (char)(c - 'A' + 'a');
            if (c != needle[j]) break;
            j++;
        }
        if (j == m) return 1;
    }
    return 0;
}

static int line_has_inline_allow(scan_t *s, size_t pos) {
    if (s->allow_cached && pos >= s->allow_ls && pos <= s->allow_le) return s->allow_has;
    size_t ls = pos, le = pos;
    while (ls > 0 && s->buf[ls - 1] != '\n') ls--;
    while (le < s->len && s->buf[le] != '\n') le++;
    s->allow_ls = ls;
    s->allow_le = le;
    s->allow_cached = 1;
    s->allow_has = contains_ci(s->buf + ls, le - ls, "codex:allow");
    return s->allow_has;
}

static int allowlisted(scan_t *s, const safety_finding_t *f) {
    const safety_scanner_t *sc = s->sc;
    if (s->flags & SAFETY_SCAN_NO_ALLOWLIST) return 0;
    for (size_t i = 0; i < sc->n_stop; i++)
        if (contains_ci(s->buf + f->secret_start, f->secret_end - f->secret_start,
                        sc->stopwords[i]))
            return 1;
    for (size_t i = 0; i < sc->n_allow; i++) {
        int rc = pcre2_match(sc->allow_re[i], (PCRE2_SPTR)(s->buf + f->start), f->end - f->start, 0,
                             0, s->md, s->mctx);
        if (rc >= 0) return 1;
    }
    if (sc->allow_inline && line_has_inline_allow(s, f->start)) return 1;
    return 0;
}

/* 1 when the secret of a finding of rule r is a published example value
 * or a placeholder (examples.h). */
static int is_example(scan_t *s, int r, const char *sec, size_t sn) {
    if (s->flags & SAFETY_SCAN_KEEP_EXAMPLES) return 0;
    char norm[512];
    for (int i = 0; i < safety_example_count(); i++) {
        const safety_example_t *e = &safety_examples()[i];
        if (!safety_example_applies(e, r)) continue;
        size_t m = safety_example_normalise(e->norm, sec, sn, norm, sizeof norm);
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(s->sc->example_code[i], NULL);
        if (!md) return 0;
        int rc = pcre2_match(s->sc->example_code[i], (PCRE2_SPTR)norm, m, 0, 0, md, s->mctx);
        pcre2_match_data_free(md);
        if (rc >= 0) return 1;
    }
    return 0;
}

/* Records the match in s->md (pcre2_match returned rc) as a finding of
 * rule r if it passes the rule's judges and no allowlist. */
static int take_match(scan_t *s, int r, int rc) {
    const safety_rule_t *rule = &safety_rules()[r];
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
    safety_finding_t f = {
        .rule = r, .start = ov[0], .end = ov[1], .secret_start = ov[0], .secret_end = ov[1]};
    if (rc >= 2 && ov[2] != PCRE2_UNSET) {
        f.secret_start = ov[2];
        f.secret_end = ov[3];
    }
    const char *sec = s->buf + f.secret_start;
    size_t sn = f.secret_end - f.secret_start;
    f.entropy = safety_entropy(sec, sn);
    if (f.entropy >= rule->min_entropy && safety_validate(rule->validator, sec, sn) &&
        !is_example(s, r, sec, sn) && !allowlisted(s, &f))
        return safety_findings_push(s->out, &f, s->err);
    return CU_OK;
}

/* Runs rule r over buf[ws..subject_end). Returns the end of the last
 * match (or ws) through *last_end. */
static int run_rule(scan_t *s, int r, size_t ws, size_t subject_end, size_t *last_end) {
    pcre2_code *code = s->sc->code[r];
    *last_end = ws;
    while (ws < subject_end) {
        int rc = pcre2_match(code, (PCRE2_SPTR)s->buf, subject_end, ws, 0, s->md, s->mctx);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) { /* a limit: the rest of this window goes unsearched */
            s->out->limit_hits++;
            break;
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
        size_t ms = ov[0], me = ov[1];
        int e = take_match(s, r, rc);
        if (e) return e;
        *last_end = me;
        ws = me > ms ? me : ms + 1;
    }
    return CU_OK;
}

/* Where the keyword of rule r that ends at i begins, or (size_t)-1. */
static size_t keyword_start(const scan_t *s, int r, size_t i) {
    const safety_rule_t *rule = &safety_rules()[r];
    for (int k = 0; k < SAFETY_MAX_KEYWORDS && rule->keywords[k]; k++) {
        size_t m = strlen(rule->keywords[k]);
        if (m > i + 1) continue;
        size_t st = i + 1 - m, j = 0;
        while (j < m && fold((uint8_t)s->buf[st + j]) == fold((uint8_t)rule->keywords[k][j])) j++;
        if (j == m) return st;
    }
    return (size_t)-1;
}

/* A multi-line rule's match begins with its keyword (rules.h), so one
 * anchored attempt where the keyword begins finds it; scanning ahead for
 * other starts would make many unterminated blocks quadratic. */
static int run_multiline(scan_t *s, int r, size_t i, size_t *covered) {
    size_t st = keyword_start(s, r, i);
    if (st == (size_t)-1 || st < *covered) return CU_OK;
    size_t end = s->len - st > SAFETY_MAX_SPAN ? st + SAFETY_MAX_SPAN : s->len;
    int rc =
        pcre2_match(s->sc->code[r], (PCRE2_SPTR)s->buf, end, st, PCRE2_ANCHORED, s->md, s->mctx);
    if (rc < 0) {
        if (rc != PCRE2_ERROR_NOMATCH) s->out->limit_hits++;
        return CU_OK;
    }
    *covered = pcre2_get_ovector_pointer(s->md)[1];
    return take_match(s, r, rc);
}

static int push_hit(scan_t *s, int t, size_t end) {
    if (s->nhits == s->hits_cap) {
        size_t cap = s->hits_cap ? s->hits_cap * 2 : 64;
        safety_carrier_hit_t *h = realloc(s->hits, cap * sizeof *h);
        if (!h) return cu_error_set(s->err, CU_ENOMEM, "out of memory scanning");
        s->hits = h;
        s->hits_cap = cap;
    }
    s->hits[s->nhits++] = (safety_carrier_hit_t){(unsigned)t, end};
    return CU_OK;
}

/* The automaton alone, for the carrier triggers (the unfiltered scan). */
static int collect_hits(scan_t *s) {
    const safety_scanner_t *sc = s->sc;
    uint32_t st = 0;
    for (size_t i = 0; i < s->len; i++) {
        st = sc->delta[st + sc->cls[(uint8_t)s->buf[i]]];
        if (!sc->has_out[st / sc->ncls]) continue;
        const ac_out_t *o = &sc->out[st / sc->ncls];
        for (uint32_t k = 0; k < o->count; k++) {
            int r = sc->out_rules[o->first + k];
            if (r >= sc->nrules) {
                int rc = push_hit(s, r - sc->nrules, i);
                if (rc) return rc;
            }
        }
    }
    return CU_OK;
}

static int scan_full(scan_t *s) {
    if (s->want_hits) {
        int rc = collect_hits(s);
        if (rc) return rc;
    }
    for (int r = 0; r < s->sc->nrules; r++) {
        if (!s->sc->code[r]) continue;
        size_t last;
        int rc = run_rule(s, r, 0, s->len, &last);
        if (rc) return rc;
    }
    return CU_OK;
}

static int scan_prefiltered(scan_t *s) {
    const safety_scanner_t *sc = s->sc;
    const uint8_t *p = (const uint8_t *)s->buf;
    const uint8_t *cls = sc->cls;
    const uint32_t *delta = sc->delta;
    const uint8_t *has_out = sc->has_out;
    uint32_t ncls = sc->ncls;
    size_t n = s->len;
    size_t *covered = calloc((size_t)sc->nrules, sizeof *covered);
    if (!covered) return cu_error_set(s->err, CU_ENOMEM, "out of memory scanning");
    size_t ls = 0, le = 0; /* current line [ls, le), le at '\n' or n; empty until a hit */
    int have_line = 0;
    uint32_t st = 0;
    int rc = CU_OK;
    for (size_t i = 0; i < n; i++) {
        st = delta[st + cls[p[i]]];
        if (!has_out[st / ncls]) continue;
        const ac_out_t *o = &sc->out[st / ncls];
        if (!have_line || i >= le) {
            size_t from = have_line ? le : 0;
            const uint8_t *nl = i > from ? memrchr(p + from, '\n', i - from) : NULL;
            ls = nl ? (size_t)(nl - p) + 1 : (have_line ? le + 1 : 0);
            if (ls > i) ls = i;
            const uint8_t *ne = memchr(p + i, '\n', n - i);
            le = ne ? (size_t)(ne - p) : n;
            have_line = 1;
        }
        for (uint32_t k = 0; k < o->count; k++) {
            int r = sc->out_rules[o->first + k];
            if (r >= sc->nrules) {
                if (s->want_hits && (rc = push_hit(s, r - sc->nrules, i))) goto done;
                continue;
            }
            if (covered[r] > i) continue;
            const safety_rule_t *rule = &safety_rules()[r];
            size_t ws = ls > covered[r] ? ls : covered[r];
            size_t line_end = le < n ? le + 1 : n;
            size_t last;
            if (rule->multiline) {
                rc = run_multiline(s, r, i, &covered[r]);
                if (rc) goto done;
                continue;
            }
            rc = run_rule(s, r, ws, line_end, &last);
            if (rc) goto done;
            covered[r] = last > line_end ? last : line_end;
        }
    }
done:
    free(covered);
    return rc;
}

static int cmp_finding(const void *a, const void *b) {
    const safety_finding_t *x = a, *y = b;
    if (x->start != y->start) return x->start < y->start ? -1 : 1;
    if (x->rule != y->rule) return x->rule < y->rule ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Drops generic findings that overlap a specific one; fills line/column. */
static int finish(scan_t *s, size_t first) {
    safety_findings_t *f = s->out;
    size_t n = f->count - first;
    safety_finding_t *it = f->items + first;
    if (n == 0) return CU_OK;
    qsort(it, n, sizeof *it, cmp_finding);
    size_t nspec = 0;
    size_t *starts = malloc(n * sizeof *starts), *maxend = malloc(n * sizeof *maxend);
    if (!starts || !maxend) {
        free(starts);
        free(maxend);
        return cu_error_set(s->err, CU_ENOMEM, "out of memory scanning");
    }
    for (size_t i = 0; i < n; i++)
        if (!safety_rules()[it[i].rule].generic) {
            starts[nspec] = it[i].start;
            maxend[nspec] =
                (nspec && maxend[nspec - 1] > it[i].end) ? maxend[nspec - 1] : it[i].end;
            nspec++;
        }
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (safety_rules()[it[i].rule].generic && nspec) {
            size_t lo = 0, hi = nspec; /* first specific start >= end */
            while (lo < hi) {
                size_t mid = (lo + hi) / 2;
                if (starts[mid] < it[i].end)
                    lo = mid + 1;
                else
                    hi = mid;
            }
            if (lo > 0 && maxend[lo - 1] > it[i].start) continue;
        }
        it[kept++] = it[i];
    }
    free(starts);
    free(maxend);
    f->count = first + kept;
    size_t line = 1, line_start = 0, pos = 0;
    for (size_t i = 0; i < kept; i++) {
        while (pos < it[i].start) {
            const char *nl = memchr(s->buf + pos, '\n', it[i].start - pos);
            if (!nl) {
                pos = it[i].start;
                break;
            }
            line++;
            pos = (size_t)(nl - s->buf) + 1;
            line_start = pos;
        }
        it[i].line = line;
        it[i].column = it[i].start - line_start + 1;
    }
    return CU_OK;
}

typedef struct {
    scan_t *s;
    size_t first; /* the outer scan's first finding */
} derive_ctx_t;

/* 1 when a finding of rule r overlapping [a, b) is already in the scan. */
static int already_found(const derive_ctx_t *c, int r, size_t a, size_t b) {
    const safety_findings_t *f = c->s->out;
    for (size_t i = c->first; i < f->count; i++)
        if (f->items[i].rule == r && f->items[i].start < b && a < f->items[i].end) return 1;
    return 0;
}

/* Scans one derived text and reports its findings where its carrier is. */
static int on_derived(void *ctx, const safety_derived_t *d) {
    derive_ctx_t *c = ctx;
    scan_t *s = c->s;
    unsigned depth = ((s->flags & DEPTH_MASK) >> DEPTH_SHIFT) + 1;
    unsigned flags = (s->flags & ~DEPTH_MASK) | (depth << DEPTH_SHIFT);
    safety_findings_t sub = {0};
    int rc = safety_scan(s->sc, d->text, d->len, flags, &sub, s->err);
    for (size_t i = 0; !rc && i < sub.count; i++) {
        const safety_finding_t *f = &sub.items[i];
        safety_finding_t o = *f;
        o.start = d->from[f->start];
        o.end = d->to[f->end - 1];
        o.secret_start = d->from[f->secret_start];
        o.secret_end = d->to[f->secret_end - 1];
        if (o.end <= o.start || o.secret_end <= o.secret_start) continue;
        if (already_found(c, f->rule, o.start, o.end)) continue;
        if (!(s->flags & SAFETY_SCAN_NO_ALLOWLIST) && s->sc->allow_inline &&
            line_has_inline_allow(s, o.start))
            continue;
        rc = safety_findings_push(s->out, &o, s->err);
    }
    s->out->limit_hits += sub.limit_hits;
    safety_findings_free(&sub);
    return rc;
}

static int scan_derived(scan_t *s, size_t first) {
    derive_ctx_t c = {.s = s, .first = first};
    int rc = safety_derive(s->buf, s->len, s->hits, s->nhits, on_derived, &c);
    if (rc < 0) return cu_error_set(s->err, CU_ENOMEM, "out of memory decoding carriers");
    return rc;
}

int safety_scan(const safety_scanner_t *sc, const char *buf, size_t len, unsigned flags,
                safety_findings_t *out, cu_error_t *err) {
    scan_t s = {.sc = sc, .buf = buf, .len = len, .flags = flags, .out = out, .err = err};
    s.want_hits =
        !(flags & SAFETY_SCAN_NO_DECODE) && ((flags & DEPTH_MASK) >> DEPTH_SHIFT) < MAX_DEPTH;
    size_t first = out->count;
    int rc = CU_ENOMEM;
    s.md = pcre2_match_data_create(16, NULL);
    s.mctx = pcre2_match_context_create(NULL);
    s.jit_stack = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
    if (!s.md || !s.mctx || !s.jit_stack) {
        cu_error_set(err, CU_ENOMEM, "out of memory preparing a scan");
        goto done;
    }
    pcre2_jit_stack_assign(s.mctx, NULL, s.jit_stack);
    pcre2_set_match_limit(s.mctx, MATCH_LIMIT);
    rc = (flags & SAFETY_SCAN_NO_PREFILTER) ? scan_full(&s) : scan_prefiltered(&s);
    if (!rc && s.nhits) rc = scan_derived(&s, first);
    if (!rc) rc = finish(&s, first);
done:
    pcre2_jit_stack_free(s.jit_stack);
    pcre2_match_context_free(s.mctx);
    pcre2_match_data_free(s.md);
    free(s.hits);
    return rc;
}
