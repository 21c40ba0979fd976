/*
 * GPT-2's pre-tokeniser, written out by hand over code points instead of run
 * through a regex engine. The pattern of the reference encoder is
 *
 *     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *
 * applied with findall, so at each position the first alternative that
 * matches wins and the next search starts where it ended. Since every code
 * point is exactly one of letter, number, whitespace or other
 * (tokenizer/unicode_class.h), that reduces to:
 *
 *   - an ASCII apostrophe followed by s, t, m, d, re, ve or ll (case
 *     sensitive) is a contraction token;
 *   - a space followed by a letter, number or other starts a run of that
 *     class, space included; a letter, number or other starts a run of its own
 *     class (an apostrophe that is no contraction is "other" and joins a
 *     punctuation run);
 *   - whitespace: the whole run if it reaches the end of the text; else, for
 *     a run of two or more, all but its last character (\s+(?!\S) backs off
 *     one so the last one can prefix the next word); else the single char.
 *
 * Invalid UTF-8 follows Python's bytes.decode('utf-8', 'surrogateescape'):
 * each byte that is not part of a well-formed sequence (overlong forms,
 * surrogates and code points past U+10FFFF are not) is one code point
 * U+DC80..U+DCFF, whose class is "other".
 */
#include "tokenizer/bpe.h"
#include "tokenizer/unicode_class.h"

size_t bpe_utf8_char(const uint8_t *s, size_t n, size_t i, uint32_t *cp) {
    uint8_t b0 = s[i];
    if (b0 < 0x80) {
        *cp = b0;
        return 1;
    }
    size_t avail = n - i;
    /* Second-byte bounds per lead byte exclude overlongs (E0, F0),
     * surrogates (ED) and code points past U+10FFFF (F4). */
    uint8_t lo = 0x80, hi = 0xBF;
    size_t len;
    uint32_t c;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
        c = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        c = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        c = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        goto invalid;
    }
    if (avail < len || s[i + 1] < lo || s[i + 1] > hi) goto invalid;
    c = (c << 6) | (s[i + 1] & 0x3F);
    for (size_t k = 2; k < len; k++) {
        if ((s[i + k] & 0xC0) != 0x80) goto invalid;
        c = (c << 6) | (s[i + k] & 0x3F);
    }
    *cp = c;
    return len;
invalid:
    *cp = 0xDC00u | b0;
    return 1;
}

/* Class and length of the character at s[i]; ASCII without the tables. */
static inline cu_uclass_t char_class(const uint8_t *s, size_t n, size_t i, size_t *len) {
    if (s[i] < 0x80) {
        *len = 1;
        return unicode_class_ascii(s[i]);
    }
    uint32_t cp;
    *len = bpe_utf8_char(s, n, i, &cp);
    return unicode_class(cp);
}

/* End of the run of class `cls` that continues at s[j]. */
static size_t run_end(const uint8_t *s, size_t n, size_t j, cu_uclass_t cls) {
    while (j < n) {
        size_t len;
        if (char_class(s, n, j, &len) != cls) break;
        j += len;
    }
    return j;
}

static int is_contraction(const uint8_t *s, size_t n, size_t i, size_t *end) {
    if (i + 1 >= n) return 0;
    uint8_t a = s[i + 1];
    if (a == 's' || a == 't' || a == 'm' || a == 'd') {
        *end = i + 2;
        return 1;
    }
    if (i + 2 >= n) return 0;
    uint8_t b = s[i + 2];
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) {
        *end = i + 3;
        return 1;
    }
    return 0;
}

size_t bpe_pretoken_end(const uint8_t *s, size_t n, size_t i) {
    size_t end;
    if (s[i] == '\'' && is_contraction(s, n, i, &end)) return end;

    size_t len;
    cu_uclass_t cls = char_class(s, n, i, &len);
    size_t next = i + len;
    if (s[i] == ' ' && next < n) {
        size_t len1;
        cu_uclass_t cls1 = char_class(s, n, next, &len1);
        if (cls1 != CU_UCLASS_SPACE) return run_end(s, n, next + len1, cls1);
    }
    if (cls != CU_UCLASS_SPACE) return run_end(s, n, next, cls);

    /* A whitespace run: find its end and the start of its last character. */
    size_t last = i, j = next;
    while (j < n) {
        size_t l;
        if (char_class(s, n, j, &l) != CU_UCLASS_SPACE) break;
        last = j;
        j += l;
    }
    if (j == n) return n;
    if (last > i) return last;
    return j;
}
