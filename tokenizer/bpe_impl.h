/*
 * The inside of cu_bpe_t (tokenizer/bpe.h), shared by the two files that
 * implement it: bpe_load.c builds it from the vocabulary and merges, bpe.c
 * encodes and decodes with it. Private to those two files.
 */
#ifndef CU_TOKENIZER_BPE_IMPL_H
#define CU_TOKENIZER_BPE_IMPL_H

#include <stdint.h>
#include <string.h>

#include "tokenizer/bpe.h"

#define MERGE_EMPTY UINT64_MAX

/* One merge: the pair (left, right) of token ids, its rank (its line in the
 * merges, 0 first) and the id of the token it makes. */
typedef struct {
    uint64_t key; /* left id << 32 | right id; MERGE_EMPTY if unused */
    int32_t rank;
    int32_t merged;
} merge_slot_t;

/* A cache slot: 32 bytes, and for most pre-tokens (up to CACHE_INLINE_KEY
 * bytes, up to CACHE_INLINE_IDS ids) self-contained, so a hit touches one
 * cache line; longer keys and id lists live in the arenas. */
#define CACHE_INLINE_KEY 12
#define CACHE_INLINE_IDS 3
typedef struct {
    uint32_t hash;
    uint8_t key_len; /* 0: empty slot (cached keys have 2..CACHE_MAX_KEY bytes) */
    uint8_t n_ids;
    uint16_t unused;
    union {
        uint8_t bytes[CACHE_INLINE_KEY];
        uint32_t off; /* into cache_keys */
    } key;
    union {
        int32_t ids[CACHE_INLINE_IDS];
        uint32_t off; /* into cache_ids */
    } val;
} cache_slot_t;

struct cu_bpe {
    int vocab_size;
    int eot;
    int32_t byte_id[256]; /* the token of each single byte */

    /* id -> bytes: token i is tok_bytes[tok_off[i] .. tok_off[i + 1]) */
    uint8_t *tok_bytes;
    size_t *tok_off;
    uint8_t *present; /* 0 for ids the vocabulary skips */

    merge_slot_t *merges;
    size_t merge_mask;

    char hash[65];

    /* tokenizer.json's extras (bpe_options_t) */
    void *re;         /* pcre2_code_32 *, NULL: GPT-2's hand-written pre-tokeniser */
    void *re_match;   /* pcre2_match_data_32 * */
    int re_then_gpt2; /* split each regex piece again with GPT-2's pattern */
    uint32_t *cps;    /* scratch: the text's code points */
    size_t *cp_off;   /* scratch: byte offset of each code point (+ the end) */
    size_t cps_cap;
    int32_t *whole; /* ignore_merges: open-addressed token bytes -> id, -1 empty */
    size_t whole_mask;
    int nfc, digits; /* see bpe_options_t */
    /* SentencePiece-style (bpe_options_t.sp): tok_bytes hold the decoded
     * text (▁ as a space, <0xXX> as its byte), byte_id the <0xXX> tokens
     * (-1 where missing), `whole` every other token's bytes -> id */
    int sp, sp_prepend, sp_split, byte_fallback, fuse_unk, decode_strip, ignore_merges;
    int32_t unk;   /* -1: none */
    uint8_t *norm; /* scratch: the NFC of the text being encoded */
    size_t norm_cap;

    cache_slot_t *cache;
    size_t cache_mask, cache_count;
    uint8_t *cache_keys;
    size_t keys_len, keys_cap;
    int32_t *cache_ids;
    size_t cids_len, cids_cap;
    uint64_t hits, misses;

    /* Scratch for the merge loops, scratch_cap symbols long. */
    int32_t *sym, *prv, *nxt;
    uint64_t *heap, *pend;
    size_t scratch_cap;
};

/* MurmurHash3's 64-bit finaliser: spreads a key's bits over the word. */
static inline uint64_t mix64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* bpe_normalize.c: NFC of text[0..len) into bpe->norm (*out, *out_len);
 * bytes that are not valid UTF-8 pass through unchanged. */
int bpe_nfc(cu_bpe_t *bpe, const uint8_t *text, size_t len, const uint8_t **out, size_t *out_len,
            cu_error_t *err);
/* Digits(individual_digits): calls piece for every run of non-numeric
 * characters and every numeric character (\p{N}) alone, in order. */
int bpe_digit_split(const uint8_t *text, size_t len,
                    int (*piece)(void *ctx, size_t start, size_t end), void *ctx);

/* bpe_regex.c: the Split pre-tokeniser of tokenizer.json. */
int bpe_regex_compile(cu_bpe_t *bpe, const char *pattern, int then_gpt2, const char *name,
                      cu_error_t *err);
void bpe_regex_free(cu_bpe_t *bpe);
/* Calls piece(ctx, start, end) for each pre-token of text, in order. */
int bpe_regex_split(cu_bpe_t *bpe, const uint8_t *text, size_t len,
                    int (*piece)(void *ctx, size_t start, size_t end), void *ctx, cu_error_t *err);

/* "<0xXX>" (exactly; hex digits upper case, as Hugging Face writes them):
 * the byte, else -1. */
static inline int sp_byte_token(const char *s) {
    static const char HEX[] = "0123456789ABCDEF";
    if (strlen(s) != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    const char *hi = strchr(HEX, s[3]), *lo = strchr(HEX, s[4]);
    if (!s[3] || !s[4] || !hi || !lo) return -1;
    return (int)(hi - HEX) * 16 + (int)(lo - HEX);
}

/* The token whose bytes are p[0..n) in the `whole` table, -1 for none. */
static inline int32_t bpe_whole_find(const cu_bpe_t *bpe, const uint8_t *p, size_t n);

/* A hash of a byte string (pre-token cache, ignore_merges table). */
static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (uint64_t)n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 29;
        p += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, p, n);
    return mix64(h ^ w);
}

/* The merge of the pair (a, b), or NULL if they do not merge. */
static inline const merge_slot_t *merge_find(const cu_bpe_t *bpe, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t i = (size_t)mix64(key) & bpe->merge_mask;
    for (;;) {
        const merge_slot_t *s = &bpe->merges[i];
        if (s->key == key) return s;
        if (s->key == MERGE_EMPTY) return NULL;
        i = (i + 1) & bpe->merge_mask;
    }
}

static inline int32_t bpe_whole_find(const cu_bpe_t *bpe, const uint8_t *p, size_t n) {
    if (!bpe->whole) return -1;
    size_t i = (size_t)hash_bytes(p, n) & bpe->whole_mask;
    for (; bpe->whole[i] >= 0; i = (i + 1) & bpe->whole_mask) {
        int32_t id = bpe->whole[i];
        size_t tl = bpe->tok_off[id + 1] - bpe->tok_off[id];
        if (tl == n && !memcmp(bpe->tok_bytes + bpe->tok_off[id], p, n)) return id;
    }
    return -1;
}

#endif
