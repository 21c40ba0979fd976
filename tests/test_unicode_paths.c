/*
 * One Unicode version for every path that classifies characters
 * (docs/formats.md, "Unicode version"): GPT-2's hand-written pre-tokeniser
 * (bpe_pretok.c, reading tokenizer/unicode_class.c), the Split path (PCRE2
 * over the pattern bpe_regex.c rewrites with classes from the same table)
 * and NFC (utf8proc).
 *
 *  - every code point, in a few contexts, and every byte that is not valid
 *    UTF-8 cut into the same pre-tokens by GPT-2's pattern whichever path
 *    runs it;
 *  - utf8proc's general category agrees with the table on letters (L*) and
 *    numbers (N*) for every code point, and its Unicode version is the
 *    table's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "harness.h"
#include "tok_tiny_vocab.h"
#include "tokenizer/bpe_impl.h"
#include "tokenizer/unicode_class.h"

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Each code point is tried in all of these, '%' standing for it: inside a
 * word, doubled before a number, after an apostrophe, at a line start before
 * a space, alone. */
static const char *const CONTEXTS[] = {"a%b", " %%1", "'%s ", "\n% x", "%"};
#define BATCH 4096

static size_t put_utf8(uint8_t *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (cp >> 18));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* The text of code points [lo, hi) (surrogates skipped) in every context;
 * raw: each "code point" below 0x100 is that byte itself (invalid UTF-8
 * for 0x80..0xFF). Returns its length. */
static size_t build_text(uint8_t *text, uint32_t lo, uint32_t hi, int raw) {
    size_t n = 0;
    for (uint32_t cp = lo; cp < hi; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        for (size_t c = 0; c < sizeof CONTEXTS / sizeof CONTEXTS[0]; c++)
            for (const char *p = CONTEXTS[c]; *p; p++) {
                if (*p != '%')
                    text[n++] = (uint8_t)*p;
                else if (raw)
                    text[n++] = (uint8_t)cp;
                else
                    n += put_utf8(text + n, cp);
            }
    }
    return n;
}

typedef struct {
    size_t *ends;
    size_t n;
} ends_t;

static int collect(void *ctx, size_t start, size_t end) {
    (void)start;
    ends_t *e = ctx;
    e->ends[e->n++] = end;
    return CU_OK;
}

/* 1 if both paths cut text[0..n) alike. */
static int paths_agree(cu_bpe_t *bpe, const uint8_t *text, size_t n, ends_t *hand, ends_t *re) {
    hand->n = re->n = 0;
    for (size_t i = 0; i < n;) {
        i = bpe_pretoken_end(text, n, i);
        hand->ends[hand->n++] = i;
    }
    cu_error_t err = {0};
    int rc = bpe_regex_split(bpe, text, n, collect, re, &err);
    CHECK_MSG(rc == CU_OK, "regex split: %s", err.msg);
    return rc == CU_OK && hand->n == re->n &&
           !memcmp(hand->ends, re->ends, hand->n * sizeof *hand->ends);
}

static cu_bpe_t *open_split(const char *pattern) {
    char *vocab = tiny_vocab_json(NULL, 0);
    bpe_options_t opts = {.split_regex = pattern};
    cu_bpe_t *bpe = NULL;
    cu_error_t err = {0};
    int rc = bpe_open_opts(&bpe, vocab, strlen(vocab), "tiny", "", 0, "no merges", &opts, &err);
    CHECK_MSG(rc == CU_OK, "open: %s", err.msg);
    free(vocab);
    return bpe;
}

/* Runs [lo, hi) in batches; on a batch that differs, finds and reports its
 * first code point that does. Returns the code points checked. */
static long compare_range(cu_bpe_t *bpe, uint32_t lo, uint32_t hi, int raw, int *reported) {
    size_t cap = (size_t)BATCH * 40;
    uint8_t *text = malloc(cap);
    ends_t hand = {malloc(cap * sizeof(size_t)), 0}, re = {malloc(cap * sizeof(size_t)), 0};
    long checked = 0;
    for (uint32_t a = lo; text && hand.ends && re.ends && a < hi; a += BATCH) {
        uint32_t b = hi - a < BATCH ? hi : a + BATCH;
        size_t n = build_text(text, a, b, raw);
        checked += b - a;
        if (paths_agree(bpe, text, n, &hand, &re)) continue;
        for (uint32_t cp = a; cp < b && *reported < 5; cp++) {
            n = build_text(text, cp, cp + 1, raw);
            if (n && !paths_agree(bpe, text, n, &hand, &re)) {
                CHECK_MSG(0, "U+%04X%s: GPT-2's pre-tokeniser cuts %zu pieces, the Split path %zu",
                          cp, raw ? " (a raw byte)" : "", hand.n, re.n);
                ++*reported;
                break;
            }
        }
    }
    CHECK(text && hand.ends && re.ends);
    free(text);
    free(hand.ends);
    free(re.ends);
    return checked;
}

static void test_gpt2_pattern_both_paths(void) {
    cu_bpe_t *bpe = open_split(GPT2_PATTERN);
    if (!bpe) return;
    int reported = 0;
    long n = compare_range(bpe, 0, CU_UCLASS_MAX_CP, 0, &reported);
    n += compare_range(bpe, 0x80, 0x100, 1, &reported);
    CHECK(n == CU_UCLASS_MAX_CP + 0x80);
    CHECK_MSG(reported == 0, "%d code points cut differently", reported);
    bpe_free(bpe);
}

/* The rewriting itself: a negated class inside a class is refused; \p{Lu}
 * and friends are left to PCRE2. */
static void test_translate_edges(void) {
    char *vocab = tiny_vocab_json(NULL, 0);
    cu_bpe_t *bpe = NULL;
    cu_error_t err = {0};
    bpe_options_t bad = {.split_regex = "[^\\P{L}x]"};
    CHECK(bpe_open_opts(&bpe, vocab, strlen(vocab), "tiny", "", 0, "-", &bad, &err) == CU_EFORMAT);
    CHECK(strstr(err.msg, "inside a character class") != NULL);
    bpe_options_t lu = {.split_regex = "\\p{Lu}+|\\pN{1,3}|[\\p{L}]+"};
    CHECK(bpe_open_opts(&bpe, vocab, strlen(vocab), "tiny", "", 0, "-", &lu, &err) == CU_OK);
    bpe_free(bpe);
    free(vocab);
}

static void test_utf8proc_agrees(void) {
    CHECK_MSG(!strcmp(utf8proc_unicode_version(), unicode_class_version),
              "utf8proc (NFC) is Unicode %s, tokenizer/unicode_class.c %s: regenerate it with "
              "tools/gen_unicode_class.py from the unicode-data of the same version",
              utf8proc_unicode_version(), unicode_class_version);
    long bad = 0;
    for (uint32_t cp = 0; cp < CU_UCLASS_MAX_CP; cp++) {
        utf8proc_category_t c = utf8proc_category((utf8proc_int32_t)cp);
        int letter = c >= UTF8PROC_CATEGORY_LU && c <= UTF8PROC_CATEGORY_LO;
        int number = c >= UTF8PROC_CATEGORY_ND && c <= UTF8PROC_CATEGORY_NO;
        cu_uclass_t k = unicode_class(cp);
        if (letter != (k == CU_UCLASS_LETTER) || number != (k == CU_UCLASS_NUMBER)) {
            if (bad++ < 5)
                fprintf(stderr, "U+%04X: utf8proc category %d, table class %d\n", cp, c, k);
        }
    }
    CHECK_MSG(bad == 0, "%ld code points classified differently by utf8proc", bad);
}

TEST_MAIN(TEST(test_utf8proc_agrees), TEST(test_translate_edges),
          TEST(test_gpt2_pattern_both_paths))
