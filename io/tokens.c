/*
 * Token sources and deterministic data order (see tokens.h).
 */
#include "io/tokens.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hdf5.h>

#include "core/fileio.h"
#include "core/rng.h"
#include "io/dataset.h"

struct token_source {
    int random; /* uniform tokens from (seed, g, position) */
    int vocab;
    uint64_t seed;
    int32_t *ids;
    size_t n;
    char origin[512];
    /* "hdf5": tokens stay in the file; windows are read as hyperslabs */
    int h5;
    hid_t h5_file, h5_tokens;
    char h5_path[4096];
};

static int source_new(token_source_t **out, const char *origin, int vocab, uint64_t seed,
                      cu_error_t *err) {
    token_source_t *s = calloc(1, sizeof *s);
    if (!s) return cu_error_set(err, CU_ENOMEM, "out of memory (token source)");
    snprintf(s->origin, sizeof s->origin, "%s", origin);
    s->vocab = vocab;
    s->seed = seed;
    *out = s;
    return CU_OK;
}

int tokens_open_random(token_source_t **out, int vocab, uint64_t seed, cu_error_t *err) {
    if (vocab < 1) return cu_error_set(err, CU_EINVAL, "random data needs a vocabulary size >= 1");
    int rc = source_new(out, "random", vocab, seed, err);
    if (rc == CU_OK) (*out)->random = 1;
    return rc;
}

int tokens_open_ids(token_source_t **out, int32_t *ids, size_t n, int vocab, uint64_t seed,
                    const char *origin, cu_error_t *err) {
    *out = NULL;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= vocab) {
            int32_t bad = ids[i];
            free(ids);
            return cu_error_set(err, CU_EINVAL,
                                "%s: token %zu has id %d, outside the model's vocabulary of %d",
                                origin, i, bad, vocab);
        }
    }
    int rc = source_new(out, origin, vocab, seed, err);
    if (rc) {
        free(ids);
        return rc;
    }
    (*out)->ids = ids;
    (*out)->n = n;
    return CU_OK;
}

int tokens_open_buffer(token_source_t **out, const uint8_t *text, size_t len, cu_tokenizer_t *tok,
                       int vocab, uint64_t seed, const char *origin, cu_error_t *err) {
    *out = NULL;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc = tokenizer_encode_doc(tok, text, len, &ids, &n, &cap, err);
    if (rc == CU_OK && n + 1 > cap) {
        int32_t *grown = realloc(ids, sizeof(int32_t) * (n + 1));
        if (!grown)
            rc = cu_error_set(err, CU_ENOMEM, "out of memory tokenising %s", origin);
        else
            ids = grown;
    }
    if (rc) {
        free(ids);
        return cu_error_prefix(err, "%s", origin);
    }
    ids[n++] = tokenizer_eot(tok);
    return tokens_open_ids(out, ids, n, vocab, seed, origin, err);
}

int tokens_open_text(token_source_t **out, const char *path, cu_tokenizer_t *tok, uint64_t seed,
                     cu_error_t *err) {
    *out = NULL;
    uint8_t *text;
    size_t len;
    int rc = cu_read_file(path, 0, &text, &len, err);
    if (rc) return rc;
    rc = tokens_open_buffer(out, text, len, tok, tokenizer_vocab_size(tok), seed, path, err);
    free(text);
    return rc;
}

int tokens_open_file(token_source_t **out, const char *path, int bytes_per_token, int vocab,
                     uint64_t seed, cu_error_t *err) {
    *out = NULL;
    if (bytes_per_token != 2 && bytes_per_token != 4)
        return cu_error_set(err, CU_EINVAL, "token files hold uint16 or uint32 ids");
    uint8_t *raw;
    size_t len;
    int rc = cu_read_file(path, 0, &raw, &len, err);
    if (rc) return rc;
    if (len % (size_t)bytes_per_token != 0) {
        free(raw);
        return cu_error_set(err, CU_EINVAL,
                            "%s: %zu bytes is not a whole number of %d-byte tokens (wrong "
                            "data.token_dtype?)",
                            path, len, bytes_per_token);
    }
    size_t n = len / (size_t)bytes_per_token;
    int32_t *ids = malloc(sizeof(int32_t) * (n ? n : 1));
    if (!ids) {
        free(raw);
        return cu_error_set(err, CU_ENOMEM, "out of memory reading %s", path);
    }
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = raw + i * (size_t)bytes_per_token;
        uint32_t v = bytes_per_token == 2 ? (uint32_t)p[0] | (uint32_t)p[1] << 8
                                          : (uint32_t)p[0] | (uint32_t)p[1] << 8 |
                                                (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        ids[i] = v > INT32_MAX ? -1 : (int32_t)v;
    }
    free(raw);
    return tokens_open_ids(out, ids, n, vocab, seed, path, err);
}

/* Opens the split's token dataset and checks that it holds integers. */
static int h5_open_tokens(token_source_t *s, const char *split, cu_error_t *err) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    s->h5_file = H5Fopen(s->h5_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (s->h5_file < 0) return cu_error_set(err, CU_EFORMAT, "cannot open %s as HDF5", s->h5_path);
    char name[32];
    snprintf(name, sizeof name, "%s/tokens", split);
    s->h5_tokens = H5Dopen2(s->h5_file, name, H5P_DEFAULT);
    if (s->h5_tokens < 0)
        return cu_error_set(err, CU_EFORMAT, "%s: no /%s dataset", s->h5_path, name);
    return CU_OK;
}

int tokens_open_h5(token_source_t **out, const char *path, const char *split, int vocab,
                   uint64_t seed, cu_error_t *err) {
    *out = NULL;
    int which = dataset_split_index(split);
    if (which < 0)
        return cu_error_set(err, CU_EINVAL, "%s: split '%s' is neither train nor val", path,
                            split ? split : "(null)");
    dataset_meta_t meta;
    int rc = dataset_read_meta(path, &meta, err);
    if (rc) return rc;
    if (meta.vocab_size > vocab)
        return cu_error_set(err, CU_EINVAL,
                            "%s was tokenised with a vocabulary of %d (%s tokenizer), larger "
                            "than the model's vocab of %d: use the same tokenizer for "
                            "prepare and training",
                            path, meta.vocab_size, meta.tokenizer_kind, vocab);
    char origin[512];
    snprintf(origin, sizeof origin, "%s:/%s/tokens", path, split);
    if ((rc = source_new(out, origin, vocab, seed, err))) return rc;
    token_source_t *s = *out;
    s->h5 = 1;
    s->h5_file = s->h5_tokens = -1;
    s->n = (size_t)meta.tokens[which];
    snprintf(s->h5_path, sizeof s->h5_path, "%s", path);
    if ((rc = h5_open_tokens(s, split, err))) {
        tokens_free(s);
        *out = NULL;
    }
    return rc;
}

/* Reads tokens [start, start + count) into out (as uint32, then checked). */
static int h5_read_window(const token_source_t *src, uint64_t start, int count, int32_t *out,
                          cu_error_t *err) {
    hsize_t off = start, cnt = (hsize_t)count;
    hid_t fspace = H5Dget_space(src->h5_tokens);
    hid_t mspace = H5Screate_simple(1, &cnt, NULL);
    herr_t rc = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &off, NULL, &cnt, NULL);
    /* int32_t and uint32_t may alias; HDF5 widens uint16 on the way */
    if (rc >= 0) rc = H5Dread(src->h5_tokens, H5T_NATIVE_UINT32, mspace, fspace, H5P_DEFAULT, out);
    H5Sclose(mspace);
    H5Sclose(fspace);
    if (rc < 0)
        return cu_error_set(err, CU_EIO, "%s: cannot read tokens %llu..%llu", src->origin,
                            (unsigned long long)start, (unsigned long long)(start + cnt - 1));
    for (int i = 0; i < count; i++) {
        uint32_t v = (uint32_t)out[i];
        if (v >= (uint32_t)src->vocab)
            return cu_error_set(
                err, CU_EFORMAT, "%s: token %llu has id %u, outside the model's vocabulary of %d",
                src->origin, (unsigned long long)(start + (uint64_t)i), v, src->vocab);
    }
    return CU_OK;
}

void tokens_free(token_source_t *src) {
    if (!src) return;
    if (src->h5) {
        if (src->h5_tokens >= 0) H5Dclose(src->h5_tokens);
        if (src->h5_file >= 0) H5Fclose(src->h5_file);
    }
    free(src->ids);
    free(src);
}

int tokens_windows(const token_source_t *src, int seq_len, long *windows, cu_error_t *err) {
    if (src->random) {
        *windows = LONG_MAX;
        return CU_OK;
    }
    if (src->n < (size_t)seq_len + 1)
        return cu_error_set(err, CU_EINVAL,
                            "%s has %zu tokens, fewer than one window of data.seq_len + 1 = %d",
                            src->origin, src->n, seq_len + 1);
    *windows = (long)((src->n - 1) / (size_t)seq_len);
    return CU_OK;
}

size_t tokens_count(const token_source_t *src) {
    return src->n;
}
const char *tokens_origin(const token_source_t *src) {
    return src->origin;
}

int tokens_split(token_source_t *src, int seq_len, float fraction, token_source_t **val,
                 cu_error_t *err) {
    *val = NULL;
    if (fraction <= 0.0f || src->h5) return CU_OK;
    if (src->random) return tokens_open_random(val, src->vocab, cu_hash64(src->seed, 0x7a1), err);
    long windows = 0;
    int rc = tokens_windows(src, seq_len, &windows, err);
    if (rc) return rc;
    long n_val = (long)((double)windows * fraction);
    if (n_val < 1) n_val = 1;
    if (n_val >= windows)
        return cu_error_set(err, CU_EINVAL,
                            "%s has %ld windows of %d tokens: too few to hold out %.0f%% for "
                            "evaluation (lower data.val_fraction or data.seq_len)",
                            src->origin, windows, seq_len + 1, 100.0 * fraction);
    /* train keeps windows [0, windows - n_val): tokens up to the last one's end */
    size_t cut = (size_t)(windows - n_val) * (size_t)seq_len;
    size_t n_tail = src->n - cut;
    int32_t *tail = malloc(sizeof(int32_t) * n_tail);
    if (!tail) return cu_error_set(err, CU_ENOMEM, "out of memory (validation split)");
    memcpy(tail, src->ids + cut, sizeof(int32_t) * n_tail);
    char origin[600];
    snprintf(origin, sizeof origin, "%s (held out)", src->origin);
    rc = tokens_open_ids(val, tail, n_tail, src->vocab, cu_hash64(src->seed, 0x7a1), origin, err);
    if (rc) return rc;
    src->n = cut + 1; /* the last training window ends one token into the cut */
    return CU_OK;
}

/* Feistel network over `bits` bits (even split), keyed; a bijection there. */
static uint64_t feistel(uint64_t x, int bits, uint64_t key) {
    int half = (bits + 1) / 2;
    uint64_t mask = (1ULL << half) - 1;
    uint64_t l = x >> half, r = x & mask;
    for (int round = 0; round < 4; round++) {
        uint64_t f = cu_hash64(key + (uint64_t)round, r) & mask;
        uint64_t nl = r;
        r = (l ^ f) & mask;
        l = nl;
    }
    return (l << half) | r;
}

uint64_t tokens_permute(uint64_t i, uint64_t n, uint64_t key) {
    if (n <= 1) return 0;
    int bits = 2;
    while ((1ULL << bits) < n) bits++;
    if (bits % 2) bits++;
    /* cycle-walk: re-apply until the value falls back inside [0, n) */
    uint64_t x = i;
    do {
        x = feistel(x, bits, key);
    } while (x >= n);
    return x;
}

int tokens_sample(const token_source_t *src, long g, int seq_len, int32_t *out, long *epoch,
                  cu_error_t *err) {
    if (src->random) {
        uint64_t key = cu_hash64(src->seed, (uint64_t)g);
        for (int i = 0; i <= seq_len; i++)
            out[i] = (int32_t)(cu_hash64(key, (uint64_t)i) % (uint64_t)src->vocab);
        if (epoch) *epoch = 0;
        return CU_OK;
    }
    long windows = (long)((src->n - 1) / (size_t)seq_len);
    long e = g / windows, i = g % windows;
    uint64_t w = tokens_permute((uint64_t)i, (uint64_t)windows, cu_hash64(src->seed, (uint64_t)e));
    if (epoch) *epoch = e;
    if (src->h5) return h5_read_window(src, w * (uint64_t)seq_len, seq_len + 1, out, err);
    memcpy(out, src->ids + w * (uint64_t)seq_len, sizeof(int32_t) * ((size_t)seq_len + 1));
    return CU_OK;
}
