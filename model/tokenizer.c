/*
 * Tokenizers (see tokenizer.h): the byte-level one, which is simple enough
 * to live here whole, and the front of the GPT-2 BPE one, whose work is done
 * in bpe.c (merging, cache, loading) and bpe_pretok.c (pre-tokenising).
 */
#include "model/tokenizer.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/bpe.h"

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
    char def[160];
    int k = snprintf(def, sizeof def, "%s\nframing eos=%d bos=%d", tok->hash, eos,
                     tok->add_bos ? bos : -1);
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!EVP_Digest(def, (size_t)k, digest, &len, EVP_sha256(), NULL) || len != 32)
        return cu_error_set(err, CU_EINTERNAL, "sha256 failed");
    for (unsigned int i = 0; i < len; i++) snprintf(tok->hash + 2 * i, 3, "%02x", digest[i]);
    return CU_OK;
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

int tokenizer_encode(cu_tokenizer_t *tok, const uint8_t *text, size_t len, int32_t **ids, size_t *n,
                     size_t *cap, cu_error_t *err) {
    if (len && !text) return cu_error_set(err, CU_EINVAL, "tokenizer_encode: NULL text");
    if (tok->kind == CU_TOKENIZER_GPT2) return bpe_encode(tok->bpe, text, len, ids, n, cap, err);
    return encode_bytes(text, len, ids, n, cap, err);
}

int tokenizer_encode_doc(cu_tokenizer_t *tok, const uint8_t *text, size_t len, int32_t **ids,
                         size_t *n, size_t *cap, cu_error_t *err) {
    int start = tokenizer_doc_start(tok);
    if (start >= 0) {
        if (*n + 1 > *cap || !*ids) {
            size_t want = *cap > *n + 1 ? *cap : *n + 256;
            int32_t *p = realloc(*ids, want * sizeof *p);
            if (!p) return cu_error_set(err, CU_ENOMEM, "out of memory encoding");
            *ids = p;
            *cap = want;
        }
        (*ids)[(*n)++] = start;
    }
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
