/*
 * Tokenizers (see tokenizer.h): the byte-level one, which is simple enough
 * to live here whole, and the front of the GPT-2 BPE one, whose work is done
 * in bpe.c (merging, cache, loading) and bpe_pretok.c (pre-tokenising).
 */
#include "tokenizer/tokenizer.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/bpe.h"
#include "tokenizer/unicode_class.h"

#define BYTE_VOCAB 257
#define BYTE_EOT 256

static const char EOT_TEXT[] = "<|endoftext|>";

struct cu_tokenizer {
    cu_tokenizer_kind_t kind;
    int vocab_size;
    int eot;
    char hash[65];
    cu_bpe_t *bpe; /* GPT-2 only */
    int bos, pad;  /* -1: none */
    int add_bos;
    /* non-special added tokens matched in the text (GPT-2 kind only) */
    tokenizer_added_token_t *added; /* contents owned */
    size_t n_added;
    uint8_t added_first[256]; /* 1: some added token starts with this byte */
};

/* The byte tokenizer's hash: its definition is its name and vocabulary. */
static int hash_byte_kind(char hex[65], cu_error_t *err) {
    static const char def[] = "cu-tokenizer/1\0byte\0vocab=257,eot=256";
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_Digest(def, sizeof def, digest, &len, EVP_sha256(), NULL) || len != 32)
        return cu_error_set(err, CU_EINTERNAL, "sha256 failed");
    for (unsigned int i = 0; i < len; i++) snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    return CU_OK;
}

int tokenizer_open_byte(cu_tokenizer_t **out, cu_error_t *err) {
    *out = NULL;
    cu_tokenizer_t *tok = calloc(1, sizeof *tok);
    if (!tok) return cu_error_set(err, CU_ENOMEM, "out of memory opening the byte tokenizer");
    tok->kind = CU_TOKENIZER_BYTE;
    tok->bos = tok->pad = -1;
    tok->vocab_size = BYTE_VOCAB;
    tok->eot = BYTE_EOT;
    int rc = hash_byte_kind(tok->hash, err);
    if (rc) {
        free(tok);
        return rc;
    }
    *out = tok;
    return CU_OK;
}

/* new hash = sha256(old hash, `def`): the old hash stays when nothing is
 * added to the definition. */
static int hash_extend(char hash[65], const char *def, size_t def_len, cu_error_t *err) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, hash, 64) &&
             EVP_DigestUpdate(ctx, def, def_len) && EVP_DigestFinal_ex(ctx, digest, &len) &&
             len == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok) return cu_error_set(err, CU_EINTERNAL, "sha256 failed");
    for (unsigned int i = 0; i < len; i++) snprintf(hash + 2 * i, 3, "%02x", digest[i]);
    return CU_OK;
}

/* Copies the matched added tokens into tok and folds them (in order:
 * content, id, flags) into the hash. */
static int added_set(cu_tokenizer_t *tok, const tokenizer_added_token_t *list, size_t n,
                     const char *name, cu_error_t *err) {
    tok->added = calloc(n, sizeof *tok->added);
    if (!tok->added) return cu_error_set(err, CU_ENOMEM, "out of memory");
    size_t def_len = 16;
    for (size_t k = 0; k < n; k++) {
        const tokenizer_added_token_t *a = &list[k];
        if (!a->content || !a->content[0] || a->id < 0 || a->id >= tok->vocab_size)
            return cu_error_set(err, CU_EFORMAT,
                                "%s: added token %zu (\"%.60s\", id %d) needs content and an id "
                                "in the vocabulary (0..%d)",
                                name, k, a->content ? a->content : "", a->id, tok->vocab_size - 1);
        tok->added[k] = *a;
        tok->added[k].content = strdup(a->content);
        tok->n_added = k + 1;
        if (!tok->added[k].content) return cu_error_set(err, CU_ENOMEM, "out of memory");
        tok->added_first[(uint8_t)a->content[0]] = 1;
        def_len += strlen(a->content) + 48;
    }
    char *def = malloc(def_len);
    if (!def) return cu_error_set(err, CU_ENOMEM, "out of memory");
    size_t k = (size_t)snprintf(def, def_len, "\nadded %zu", n);
    for (size_t i = 0; i < n; i++) {
        const tokenizer_added_token_t *a = &tok->added[i];
        k += (size_t)snprintf(def + k, def_len - k, "\n%d %d%d%d %zu:%s", a->id, !!a->single_word,
                              !!a->lstrip, !!a->rstrip, strlen(a->content), a->content);
    }
    int rc = hash_extend(tok->hash, def, k, err);
    free(def);
    return rc;
}

int tokenizer_open_gpt2_named(cu_tokenizer_t **out, const char *vocab_json, size_t vocab_len,
                              const char *vocab_name, const char *merges, size_t merges_len,
                              const char *merges_name, cu_error_t *err) {
    return tokenizer_open_bpe(out, vocab_json, vocab_len, vocab_name, merges, merges_len,
                              merges_name, NULL, err);
}

int tokenizer_open_bpe(cu_tokenizer_t **out, const char *vocab_json, size_t vocab_len,
                       const char *vocab_name, const char *merges, size_t merges_len,
                       const char *merges_name, const tokenizer_bpe_options_t *opts,
                       cu_error_t *err) {
    *out = NULL;
    cu_tokenizer_t *tok = calloc(1, sizeof *tok);
    if (!tok) return cu_error_set(err, CU_ENOMEM, "out of memory opening the GPT-2 tokenizer");
    tok->bos = tok->pad = -1;
    int rc = bpe_open_opts(&tok->bpe, vocab_json, vocab_len, vocab_name, merges, merges_len,
                           merges_name, opts, err);
    if (rc) {
        free(tok);
        return rc;
    }
    tok->kind = CU_TOKENIZER_GPT2;
    tok->vocab_size = bpe_vocab_size(tok->bpe);
    tok->eot = bpe_eot(tok->bpe);
    memcpy(tok->hash, bpe_hash(tok->bpe), sizeof tok->hash);
    if (opts && opts->n_matched) {
        rc = added_set(tok, opts->matched, opts->n_matched, vocab_name, err);
        if (rc) {
            tokenizer_free(tok);
            return rc;
        }
    }
    *out = tok;
    return CU_OK;
}

int tokenizer_open_gpt2(cu_tokenizer_t **out, const char *vocab_json, size_t vocab_len,
                        const char *merges, size_t merges_len, cu_error_t *err) {
    return tokenizer_open_gpt2_named(out, vocab_json, vocab_len, "vocabulary JSON", merges,
                                     merges_len, "merges", err);
}

void tokenizer_free(cu_tokenizer_t *tok) {
    if (!tok) return;
    bpe_free(tok->bpe);
    for (size_t k = 0; k < tok->n_added; k++) free((char *)tok->added[k].content);
    free(tok->added);
    free(tok);
}

int tokenizer_set_specials(cu_tokenizer_t *tok, int bos, int eos, int pad, int add_bos,
                           cu_error_t *err) {
    const int ids[3] = {bos, eos, pad};
    static const char *const names[3] = {"bos", "eos", "pad"};
    for (int i = 0; i < 3; i++)
        if (ids[i] < -1 || ids[i] >= tok->vocab_size || (i == 1 && ids[i] < 0))
            return cu_error_set(err, CU_EINVAL, "%s token id %d is outside the vocabulary (0..%d)",
                                names[i], ids[i], tok->vocab_size - 1);
    if (add_bos && bos < 0)
        return cu_error_set(err, CU_EINVAL, "add_bos_token is true but there is no bos token");
    int same_framing = eos == tok->eot && !!add_bos == tok->add_bos;
    tok->bos = bos;
    tok->pad = pad;
    if (same_framing) return CU_OK; /* bos and pad alone change no token sequence */
    tok->eot = eos;
    tok->add_bos = !!add_bos;
    /* new hash = sha256(old hash, the framing): two tokenizers with equal
     * hashes still frame documents alike */
    char def[96];
    int k = snprintf(def, sizeof def, "\nframing eos=%d bos=%d", eos, tok->add_bos ? bos : -1);
    return hash_extend(tok->hash, def, (size_t)k, err);
}

int tokenizer_token_id(const cu_tokenizer_t *tok, const char *text) {
    if (tok->kind == CU_TOKENIZER_BYTE) return !strcmp(text, EOT_TEXT) ? BYTE_EOT : -1;
    return bpe_token_id(tok->bpe, (const uint8_t *)text, strlen(text));
}

int tokenizer_bos(const cu_tokenizer_t *tok) {
    return tok->bos;
}
int tokenizer_pad(const cu_tokenizer_t *tok) {
    return tok->pad;
}
int tokenizer_doc_start(const cu_tokenizer_t *tok) {
    return tok->add_bos ? tok->bos : -1;
}

cu_bpe_t *tokenizer_bpe(cu_tokenizer_t *tok) {
    return tok->bpe;
}

cu_tokenizer_kind_t tokenizer_kind(const cu_tokenizer_t *tok) {
    return tok->kind;
}
int tokenizer_vocab_size(const cu_tokenizer_t *tok) {
    return tok->vocab_size;
}
int tokenizer_eot(const cu_tokenizer_t *tok) {
    return tok->eot;
}
const char *tokenizer_hash(const cu_tokenizer_t *tok) {
    return tok->hash;
}

static int encode_bytes(const uint8_t *text, size_t len, int32_t **ids, size_t *n, size_t *cap,
                        cu_error_t *err) {
    if (*n + len > *cap || !*ids) {
        size_t want = *cap ? *cap : 256;
        while (want < *n + len) want *= 2;
        int32_t *p = realloc(*ids, want * sizeof *p);
        if (!p) return cu_error_set(err, CU_ENOMEM, "out of memory encoding %zu bytes", len);
        *ids = p;
        *cap = want;
    }
    for (size_t i = 0; i < len; i++) (*ids)[*n + i] = text[i];
    *n += len;
    return CU_OK;
}

/* The code point that ends just before s[pos] (pos > 0), as Python's
 * surrogateescape decoding of s sees it; returns its length in bytes. */
static size_t prev_char(const uint8_t *s, size_t pos, uint32_t *cp) {
    size_t p = pos - 1;
    while (p > 0 && pos - p < 4 && (s[p] & 0xC0) == 0x80) p--;
    if (p + bpe_utf8_char(s, pos, p, cp) == pos) return pos - p;
    return bpe_utf8_char(s, pos, pos - 1, cp); /* a lone byte */
}

static int is_word(uint32_t cp) {
    cu_uclass_t c = unicode_class(cp);
    return cp == '_' || c == CU_UCLASS_LETTER || c == CU_UCLASS_NUMBER;
}

/* single_word: no word character right before s[start] or at s[stop]. */
static int stands_alone(const uint8_t *s, size_t len, size_t start, size_t stop) {
    uint32_t cp;
    if (start > 0 && (prev_char(s, start, &cp), is_word(cp))) return 0;
    if (stop < len && (bpe_utf8_char(s, len, stop, &cp), is_word(cp))) return 0;
    return 1;
}

/* The longest added token at the leftmost position >= *at where one starts;
 * sets *at to that position. NULL when none is left. */
static const tokenizer_added_token_t *added_find(const cu_tokenizer_t *tok, const uint8_t *s,
                                                 size_t len, size_t *at, size_t *match_len) {
    for (size_t i = *at; i < len; i++) {
        if (!tok->added_first[s[i]]) continue;
        const tokenizer_added_token_t *best = NULL;
        size_t best_len = 0;
        for (size_t k = 0; k < tok->n_added; k++) {
            size_t l = strlen(tok->added[k].content);
            if (l > best_len && l <= len - i && !memcmp(s + i, tok->added[k].content, l)) {
                best = &tok->added[k];
                best_len = l;
            }
        }
        if (best) {
            *at = i;
            *match_len = best_len;
            return best;
        }
    }
    return NULL;
}

static int push_id(int32_t id, int32_t **ids, size_t *n, size_t *cap, cu_error_t *err) {
    if (*n + 1 > *cap || !*ids) {
        size_t want = *cap > *n + 1 ? *cap : 2 * *n + 256;
        int32_t *p = realloc(*ids, want * sizeof *p);
        if (!p) return cu_error_set(err, CU_ENOMEM, "out of memory encoding");
        *ids = p;
        *cap = want;
    }
    (*ids)[(*n)++] = id;
    return CU_OK;
}

/* Hugging Face's AddedVocabulary split for non-special tokens: matches are
 * found leftmost-longest, each search resuming where the last match (taken
 * or refused by single_word) ended; lstrip / rstrip widen a taken match over
 * whitespace (never back into the previous one). The text between matches
 * is BPE-encoded alone, so pre-tokenising restarts after each match. A match
 * starting inside whitespace an rstrip took is dropped (Hugging Face would
 * emit overlapping pieces there; only tokens that start with whitespace can
 * meet this). */
static int encode_added(cu_tokenizer_t *tok, const uint8_t *text, size_t len, int32_t **ids,
                        size_t *n, size_t *cap, cu_error_t *err) {
    size_t done = 0, at = 0, mlen = 0;
    const tokenizer_added_token_t *a;
    while ((a = added_find(tok, text, len, &at, &mlen))) {
        size_t start = at, stop = at + mlen;
        at = stop;
        if (start < done || (a->single_word && !stands_alone(text, len, start, stop))) continue;
        uint32_t cp;
        size_t l;
        if (a->lstrip)
            while (start > done && (l = prev_char(text, start, &cp)) <= start - done &&
                   unicode_class(cp) == CU_UCLASS_SPACE)
                start -= l;
        if (a->rstrip)
            while (stop < len && (l = bpe_utf8_char(text, len, stop, &cp)) &&
                   unicode_class(cp) == CU_UCLASS_SPACE)
                stop += l;
        int rc = start > done ? bpe_encode_segment(tok->bpe, text + done, start - done, done == 0,
                                                   ids, n, cap, err)
                              : CU_OK;
        if (rc == CU_OK) rc = push_id(a->id, ids, n, cap, err);
        if (rc) return rc;
        done = stop;
    }
    return done < len
               ? bpe_encode_segment(tok->bpe, text + done, len - done, done == 0, ids, n, cap, err)
               : CU_OK;
}

int tokenizer_encode(cu_tokenizer_t *tok, const uint8_t *text, size_t len, int32_t **ids, size_t *n,
                     size_t *cap, cu_error_t *err) {
    if (len && !text) return cu_error_set(err, CU_EINVAL, "tokenizer_encode: NULL text");
    if (tok->n_added) return encode_added(tok, text, len, ids, n, cap, err);
    if (tok->kind == CU_TOKENIZER_GPT2) return bpe_encode(tok->bpe, text, len, ids, n, cap, err);
    return encode_bytes(text, len, ids, n, cap, err);
}

int tokenizer_encode_doc(cu_tokenizer_t *tok, const uint8_t *text, size_t len, int32_t **ids,
                         size_t *n, size_t *cap, cu_error_t *err) {
    int start = tokenizer_doc_start(tok), rc;
    if (start >= 0 && (rc = push_id(start, ids, n, cap, err))) return rc;
    return tokenizer_encode(tok, text, len, ids, n, cap, err);
}

static int decode_bytes(const int32_t *ids, size_t n, uint8_t **out, size_t *len, size_t *cap,
                        cu_error_t *err) {
    size_t total = 0;
    for (size_t k = 0; k < n; k++) {
        if (ids[k] < 0 || ids[k] >= BYTE_VOCAB)
            return cu_error_set(err, CU_EINVAL,
                                "token id %d at position %zu is not in the byte vocabulary (0..%d)",
                                ids[k], k, BYTE_VOCAB - 1);
        total += ids[k] == BYTE_EOT ? sizeof EOT_TEXT - 1 : 1;
    }
    if (*len + total > *cap || !*out) {
        size_t want = *cap ? *cap : 256;
        while (want < *len + total) want *= 2;
        uint8_t *p = realloc(*out, want);
        if (!p) return cu_error_set(err, CU_ENOMEM, "out of memory decoding %zu tokens", n);
        *out = p;
        *cap = want;
    }
    for (size_t k = 0; k < n; k++) {
        if (ids[k] == BYTE_EOT) {
            memcpy(*out + *len, EOT_TEXT, sizeof EOT_TEXT - 1);
            *len += sizeof EOT_TEXT - 1;
        } else {
            (*out)[(*len)++] = (uint8_t)ids[k];
        }
    }
    return CU_OK;
}

int tokenizer_decode(const cu_tokenizer_t *tok, const int32_t *ids, size_t n, uint8_t **out,
                     size_t *len, size_t *cap, cu_error_t *err) {
    if (n && !ids) return cu_error_set(err, CU_EINVAL, "tokenizer_decode: NULL ids");
    if (tok->kind == CU_TOKENIZER_GPT2) return bpe_decode(tok->bpe, ids, n, out, len, cap, err);
    return decode_bytes(ids, n, out, len, cap, err);
}

int tokenizer_decode_text(const cu_tokenizer_t *tok, const int32_t *ids, size_t n, uint8_t **out,
                          size_t *len, size_t *cap, cu_error_t *err) {
    size_t from = *len;
    int rc = tokenizer_decode(tok, ids, n, out, len, cap, err);
    int strip = rc == CU_OK && tok->kind == CU_TOKENIZER_GPT2 ? bpe_decode_strip(tok->bpe) : 0;
    size_t k = 0;
    while ((int)k < strip && from + k < *len && (*out)[from + k] == ' ') k++;
    if (k) {
        memmove(*out + from, *out + from + k, *len - from - k);
        *len -= k;
    }
    return rc;
}
