/*
 * The Split pre-tokeniser of Hugging Face tokenizer.json files (Llama-3 and
 * similar byte-level BPE tokenizers): a regex whose matches, and the text
 * between them, are the pre-tokens (Split's "Isolated" behaviour).
 *
 * The text is decoded to code points first, the way Python's
 * bytes.decode("utf-8", "surrogateescape") does (bpe_utf8_char): each byte
 * of invalid UTF-8 becomes a lone surrogate U+DC80..U+DCFF, a character that
 * is neither letter, number nor space. PCRE2's 32-bit library, without UTF
 * checking (lone surrogates are not valid UTF) but with Unicode properties
 * (PCRE2_UCP), matches over those code points, and the pieces map back to
 * exact byte ranges. \p{L}, \p{N} and \s are not PCRE2's: translate() spells
 * them out as classes from tokenizer/unicode_class.c, the table GPT-2's
 * hand-written pre-tokeniser reads (one Unicode version for both paths).
 * GPT-2's own pattern never comes here: bpe_pretok.c handles it by hand,
 * faster.
 */
#define PCRE2_CODE_UNIT_WIDTH 32
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>

#include "tokenizer/bpe_impl.h"
#include "tokenizer/unicode_class.h"

/* The ranges of one class of unicode_class.c as PCRE2 class items
 * ("\x{41}-\x{5a}\x{61}-\x{7a}..."), so \p{L}, \p{N} and \s mean exactly
 * what GPT-2's hand-written pre-tokeniser means by them (one Unicode
 * version, docs/formats.md) rather than PCRE2's own tables. Allocates. */
static char *class_items(cu_uclass_t cls) {
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    for (uint32_t cp = 0; out && cp < CU_UCLASS_MAX_CP; cp++) {
        if (unicode_class(cp) != cls) continue;
        uint32_t hi = cp;
        while (hi + 1 < CU_UCLASS_MAX_CP && unicode_class(hi + 1) == cls) hi++;
        if (len + 32 > cap) {
            char *bigger = realloc(out, cap *= 2);
            if (!bigger) free(out);
            out = bigger;
            if (!out) break;
        }
        len += (size_t)(hi > cp ? snprintf(out + len, 32, "\\x{%x}-\\x{%x}", cp, hi)
                                : snprintf(out + len, 32, "\\x{%x}", cp));
        cp = hi;
    }
    return out;
}

/* Which class an escape at pattern[i] (just past the backslash) names, and
 * how many bytes it takes: \s \S, \p{L} \pL \P{L} \PL, the same with N.
 * Returns 0 for any other escape. */
static size_t class_escape(const char *p, size_t n, size_t i, cu_uclass_t *cls, int *neg) {
    if (p[i] == 's' || p[i] == 'S') {
        *cls = CU_UCLASS_SPACE;
        *neg = p[i] == 'S';
        return 1;
    }
    if (p[i] != 'p' && p[i] != 'P') return 0;
    *neg = p[i] == 'P';
    size_t at = i + 1, len = 2; /* \pL */
    if (at < n && p[at] == '{') {
        if (at + 2 >= n || p[at + 2] != '}') return 0; /* \p{Lu}, \p{Greek}: PCRE2's */
        at++;
        len = 4;
    }
    if (at >= n || (p[at] != 'L' && p[at] != 'N')) return 0;
    *cls = p[at] == 'L' ? CU_UCLASS_LETTER : CU_UCLASS_NUMBER;
    return len;
}

static size_t put_ascii(uint32_t *out, size_t m, const char *s) {
    while (*s) out[m++] = (uint8_t)*s++;
    return m;
}

/* The pattern's code points with \s, \p{L} and \p{N} (and their negations
 * outside classes) spelled out from unicode_class.c. Allocates *out; a
 * negated one inside a class is refused (no way to spell it). */
static int translate(const char *pattern, uint32_t **out, size_t *len, const char *name,
                     cu_error_t *err) {
    char *items[4] = {NULL, class_items(CU_UCLASS_LETTER), class_items(CU_UCLASS_NUMBER),
                      class_items(CU_UCLASS_SPACE)};
    size_t n = strlen(pattern), longest = 0;
    for (int k = 1; k < 4; k++) {
        if (!items[k]) {
            for (int j = 1; j < 4; j++) free(items[j]);
            return cu_error_set(err, CU_ENOMEM, "%s: out of memory", name);
        }
        if (strlen(items[k]) > longest) longest = strlen(items[k]);
    }
    uint32_t *cps = malloc((n * (longest + 4) + 1) * sizeof *cps);
    int rc = cps ? CU_OK : cu_error_set(err, CU_ENOMEM, "%s: out of memory", name);
    size_t m = 0;
    int in_class = 0;
    for (size_t i = 0; rc == CU_OK && i < n;) {
        uint32_t cp;
        cu_uclass_t cls;
        int neg;
        size_t esc;
        i += bpe_utf8_char((const uint8_t *)pattern, n, i, &cp);
        if (cp == '\\' && i < n && (esc = class_escape(pattern, n, i, &cls, &neg))) {
            i += esc;
            if (in_class && neg) {
                rc = cu_error_set(err, CU_EFORMAT,
                                  "%s: the Split pattern negates \\s, \\p{L} or \\p{N} inside a "
                                  "character class (not supported)",
                                  name);
                break;
            }
            if (!in_class) m = put_ascii(cps, m, neg ? "[^" : "[");
            m = put_ascii(cps, m, items[cls]);
            if (!in_class) m = put_ascii(cps, m, "]");
            continue;
        }
        cps[m++] = cp;
        if (cp == '\\' && i < n) { /* any other escape: copy its character */
            i += bpe_utf8_char((const uint8_t *)pattern, n, i, &cp);
            cps[m++] = cp;
        } else if (cp == '[' && !in_class) {
            in_class = 1;
            if (i < n && pattern[i] == '^') cps[m++] = (uint8_t)pattern[i++];
            if (i < n && pattern[i] == ']') cps[m++] = (uint8_t)pattern[i++]; /* literal ] */
        } else if (cp == ']' && in_class) {
            in_class = 0;
        }
    }
    for (int k = 1; k < 4; k++) free(items[k]);
    if (rc) {
        free(cps);
        return rc;
    }
    *out = cps;
    *len = m;
    return CU_OK;
}

int bpe_regex_compile(cu_bpe_t *bpe, const char *pattern, int then_gpt2, const char *name,
                      cu_error_t *err) {
    uint32_t *cps;
    size_t m;
    int trc = translate(pattern, &cps, &m, name, err);
    if (trc) return trc;
    int code;
    PCRE2_SIZE at;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)cps, m, PCRE2_UCP, &code, &at, NULL);
    free(cps);
    if (!re) {
        PCRE2_UCHAR msg[256];
        char text[256];
        int k = pcre2_get_error_message(code, msg, 256);
        for (int i = 0; i < k && i < 255; i++) text[i] = msg[i] < 128 ? (char)msg[i] : '?';
        text[k > 0 ? (k < 255 ? k : 255) : 0] = '\0';
        return cu_error_set(err, CU_EFORMAT,
                            "%s: the Split pattern does not compile at character %zu: %s", name,
                            (size_t)at, text);
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* faster when available; else interpreted */
    bpe->re_match = pcre2_match_data_create_from_pattern(re, NULL);
    if (!bpe->re_match) {
        pcre2_code_free(re);
        return cu_error_set(err, CU_ENOMEM, "%s: out of memory", name);
    }
    bpe->re = re;
    bpe->re_then_gpt2 = then_gpt2;
    return CU_OK;
}

void bpe_regex_free(cu_bpe_t *bpe) {
    pcre2_match_data_free(bpe->re_match);
    pcre2_code_free(bpe->re);
    free(bpe->cps);
    free(bpe->cp_off);
    bpe->re = bpe->re_match = NULL;
    bpe->cps = NULL;
    bpe->cp_off = NULL;
}

/* Hands on [s, e) as one piece, or as GPT-2's pieces inside it. */
static int emit(cu_bpe_t *bpe, const uint8_t *text, size_t s, size_t e,
                int (*piece)(void *, size_t, size_t), void *ctx) {
    if (s >= e) return CU_OK;
    if (!bpe->re_then_gpt2) return piece(ctx, s, e);
    for (size_t i = s; i < e;) {
        size_t j = s + bpe_pretoken_end(text + s, e - s, i - s);
        int rc = piece(ctx, i, j);
        if (rc) return rc;
        i = j;
    }
    return CU_OK;
}

int bpe_regex_split(cu_bpe_t *bpe, const uint8_t *text, size_t len,
                    int (*piece)(void *ctx, size_t start, size_t end), void *ctx, cu_error_t *err) {
    if (len + 1 > bpe->cps_cap) {
        size_t cap = len + 1 > 4096 ? len + 1 : 4096;
        uint32_t *cps = realloc(bpe->cps, cap * sizeof *cps);
        if (cps) bpe->cps = cps;
        size_t *off = realloc(bpe->cp_off, cap * sizeof *off);
        if (off) bpe->cp_off = off;
        if (!cps || !off) return cu_error_set(err, CU_ENOMEM, "out of memory pre-tokenising");
        bpe->cps_cap = cap;
    }
    size_t m = 0;
    for (size_t i = 0; i < len;) {
        bpe->cp_off[m] = i;
        i += bpe_utf8_char(text, len, i, &bpe->cps[m]);
        m++;
    }
    bpe->cp_off[m] = len;
    pcre2_code *re = bpe->re;
    pcre2_match_data *md = bpe->re_match;
    size_t pos = 0, gap = 0; /* in code points; gap: start of unmatched text */
    while (pos < m) {
        /* empty matches are no pieces: ask for a non-empty one */
        int r = pcre2_match(re, (PCRE2_SPTR)bpe->cps, m, pos, PCRE2_NOTEMPTY, md, NULL);
        if (r == PCRE2_ERROR_NOMATCH) break;
        if (r < 0) return cu_error_set(err, CU_EINTERNAL, "pre-tokeniser regex failed (%d)", r);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        int rc = emit(bpe, text, bpe->cp_off[gap], bpe->cp_off[ov[0]], piece, ctx);
        if (rc == CU_OK) rc = emit(bpe, text, bpe->cp_off[ov[0]], bpe->cp_off[ov[1]], piece, ctx);
        if (rc) return rc;
        pos = gap = ov[1];
    }
    return emit(bpe, text, bpe->cp_off[gap], len, piece, ctx);
}
