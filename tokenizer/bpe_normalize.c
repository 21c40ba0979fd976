/*
 * The normalizer and the Digits pre-tokenizer of tokenizer.json files
 * (see bpe_impl.h):
 *  - NFC (Qwen2's normalizer), through utf8proc (Unicode 15.0 in Debian 12's
 *    libutf8proc 2.8). Hugging Face's tokenizers only ever see valid UTF-8;
 *    we also encode files that are not, so each maximal run of valid UTF-8 is
 *    normalized and every other byte passes through as it is (the byte-level
 *    BPE then encodes it like any byte).
 *  - Digits with individual_digits (StarCoder2's): every numeric character
 *    is a piece of its own, the text between them one piece, in order; the
 *    byte-level pre-tokeniser then splits those pieces further. "Numeric" is
 *    the tables' \p{N} (tokenizer/unicode_class.h), the class GPT-2's
 *    pattern uses, so the two agree on what a digit is.
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer/bpe_impl.h"
#include "tokenizer/unicode_class.h"

/* Appends n bytes to bpe->norm at *len, growing it. */
static int norm_put(cu_bpe_t *bpe, size_t *len, const uint8_t *s, size_t n, cu_error_t *err) {
    if (*len + n > bpe->norm_cap) {
        size_t want = bpe->norm_cap ? bpe->norm_cap : 256;
        while (want < *len + n) want *= 2;
        uint8_t *p = realloc(bpe->norm, want);
        if (!p) return cu_error_set(err, CU_ENOMEM, "out of memory normalizing %zu bytes", n);
        bpe->norm = p;
        bpe->norm_cap = want;
    }
    if (n) memcpy(bpe->norm + *len, s, n);
    *len += n;
    return CU_OK;
}

/* The length of the valid UTF-8 run at s[0..n) (0 when s[0] is invalid). */
static size_t valid_run(const uint8_t *s, size_t n) {
    size_t i = 0;
    utf8proc_int32_t cp;
    while (i < n) {
        utf8proc_ssize_t k = utf8proc_iterate(s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) break;
        i += (size_t)k;
    }
    return i;
}

static int nfc_run(cu_bpe_t *bpe, size_t *len, const uint8_t *s, size_t n, cu_error_t *err) {
    utf8proc_uint8_t *out = NULL;
    utf8proc_ssize_t k =
        utf8proc_map(s, (utf8proc_ssize_t)n, &out, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    if (k < 0) {
        free(out);
        return cu_error_set(err, CU_EINTERNAL, "NFC failed: %s", utf8proc_errmsg(k));
    }
    int rc = norm_put(bpe, len, out, (size_t)k, err);
    free(out);
    return rc;
}

int bpe_nfc(cu_bpe_t *bpe, const uint8_t *text, size_t len, const uint8_t **out, size_t *out_len,
            cu_error_t *err) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t run = valid_run(text + i, len - i);
        int rc = run ? nfc_run(bpe, &n, text + i, run, err) : norm_put(bpe, &n, text + i, 1, err);
        if (rc) return rc;
        i += run ? run : 1;
    }
    *out = n ? bpe->norm : text;
    *out_len = n;
    return CU_OK;
}

int bpe_digit_split(const uint8_t *text, size_t len,
                    int (*piece)(void *ctx, size_t start, size_t end), void *ctx) {
    size_t start = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = bpe_utf8_char(text, len, i, &cp);
        if (unicode_class(cp) == CU_UCLASS_NUMBER) {
            int rc = start < i ? piece(ctx, start, i) : CU_OK;
            if (rc == CU_OK) rc = piece(ctx, i, i + k);
            if (rc) return rc;
            start = i + k;
        }
        i += k;
    }
    return start < len ? piece(ctx, start, len) : CU_OK;
}
