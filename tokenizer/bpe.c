/*
 * GPT-2 byte-level BPE: encoding and decoding (loading is in bpe_load.c).
 * Encoding gives the same ids as OpenAI's reference encoder on any input;
 * tests/reference/gpt2_parity.py checks that against an independent Python
 * oracle.
 *
 * How encoding works:
 *   - the text is cut into pre-tokens (bpe_pretok.c);
 *   - a one-byte pre-token is its byte's token; a longer one is looked up in
 *     a cache (open addressing over the pre-token's bytes) and, on a miss,
 *     merged and added to it;
 *   - merging starts from one symbol per byte (the token of that byte, via
 *     GPT-2's bytes_to_unicode table) and repeatedly takes the adjacent pair
 *     of lowest merge rank and merges every occurrence of it from left to
 *     right, as the reference does. Symbols are token ids: the reference
 *     works on strings, but every symbol it can form is a byte or a merge
 *     result, both of which bpe_open requires to be in the vocabulary, so
 *     ids stand in for strings one to one. Pairs are found by hashing the
 *     two ids. Short words use that loop literally (merge_plain); long ones
 *     use a min-heap of (rank, position) over a linked list of symbols
 *     (merge_heap), which pops each rank's occurrences in position order and
 *     holds back the pairs a merge creates until that rank is done, so it
 *     makes the same choices in O(n log n) instead of O(n^2).
 *
 * Not thread-safe: the cache and the scratch arrays live in cu_bpe_t.
 */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/bpe_impl.h"

/* Words up to this many bytes use the plain reference loop. */
#define BPE_PLAIN_MAX 24
/* Pre-tokens longer than this are not cached: long ones are rare and each
 * would pin its whole text in the cache. */
#define CACHE_MAX_KEY 64
#define CACHE_MIN_SLOTS (1u << 12)
#define CACHE_MAX_SLOTS (1u << 20)
/* Scratch grown past this for one huge word is released afterwards. */
#define SCRATCH_KEEP (1u << 16)

#define DEAD (-1)
#define NONE (-1)

/* ---- output ----------------------------------------------------------- */

static int ids_reserve(int32_t **ids, size_t *n, size_t *cap, size_t extra, cu_error_t *err) {
    if (*n + extra <= *cap && *ids) return CU_OK;
    size_t want = *cap ? *cap : 256;
    while (want < *n + extra) want *= 2;
    int32_t *p = realloc(*ids, want * sizeof *p);
    if (!p) return cu_error_set(err, CU_ENOMEM, "out of memory growing the token buffer");
    *ids = p;
    *cap = want;
    return CU_OK;
}

/* ---- merge loops ------------------------------------------------------ */

static int scratch_reserve(cu_bpe_t *bpe, size_t len, cu_error_t *err) {
    if (len <= bpe->scratch_cap) return CU_OK;
    size_t want = bpe->scratch_cap ? bpe->scratch_cap : 64;
    while (want < len) want *= 2;
    int32_t *sym = realloc(bpe->sym, want * sizeof *sym);
    if (sym) bpe->sym = sym;
    int32_t *prv = realloc(bpe->prv, want * sizeof *prv);
    if (prv) bpe->prv = prv;
    int32_t *nxt = realloc(bpe->nxt, want * sizeof *nxt);
    if (nxt) bpe->nxt = nxt;
    /* The heap holds the first pairs plus at most two per merge; a rank's
     * pass holds back at most two per merge. */
    uint64_t *heap = realloc(bpe->heap, 3 * want * sizeof *heap);
    if (heap) bpe->heap = heap;
    uint64_t *pend = realloc(bpe->pend, 2 * want * sizeof *pend);
    if (pend) bpe->pend = pend;
    if (!sym || !prv || !nxt || !heap || !pend)
        return cu_error_set(err, CU_ENOMEM, "out of memory merging a %zu-byte word", len);
    bpe->scratch_cap = want;
    return CU_OK;
}

static void scratch_release(cu_bpe_t *bpe) {
    free(bpe->sym);
    free(bpe->prv);
    free(bpe->nxt);
    free(bpe->heap);
    free(bpe->pend);
    bpe->sym = bpe->prv = bpe->nxt = NULL;
    bpe->heap = bpe->pend = NULL;
    bpe->scratch_cap = 0;
}

/* The reference loop, literally: find the lowest-ranked adjacent pair, merge
 * each of its occurrences left to right, repeat. Returns the new length. */
static size_t merge_plain(const cu_bpe_t *bpe, int32_t *sym, size_t m) {
    while (m > 1) {
        const merge_slot_t *best = NULL;
        for (size_t k = 0; k + 1 < m; k++) {
            const merge_slot_t *s = merge_find(bpe, sym[k], sym[k + 1]);
            if (s && (!best || s->rank < best->rank)) best = s;
        }
        if (!best) break;
        int32_t left = (int32_t)(best->key >> 32), right = (int32_t)(uint32_t)best->key;
        size_t w = 0;
        for (size_t k = 0; k < m;) {
            if (k + 1 < m && sym[k] == left && sym[k + 1] == right) {
                sym[w++] = best->merged;
                k += 2;
            } else {
                sym[w++] = sym[k++];
            }
        }
        m = w;
    }
    return m;
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent] <= v) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n) {
    uint64_t top = h[0], v = h[--*n];
    size_t m = *n, i = 0;
    if (m == 0) return top;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1] < h[c]) c++;
        if (v <= h[c]) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = v;
    return top;
}

static inline uint64_t heap_entry(int32_t rank, size_t pos) {
    return ((uint64_t)(uint32_t)rank << 32) | (uint64_t)pos;
}

/* The pair starting at symbol p if it is still the pair of that rank. */
static inline const merge_slot_t *heap_entry_valid(const cu_bpe_t *bpe, uint64_t e) {
    size_t p = (size_t)(uint32_t)e;
    if (bpe->sym[p] == DEAD || bpe->nxt[p] == NONE) return NULL;
    const merge_slot_t *s = merge_find(bpe, bpe->sym[p], bpe->sym[bpe->nxt[p]]);
    return s && s->rank == (int32_t)(e >> 32) ? s : NULL;
}

/* Merges the pair at p into p; queues the two pairs it creates. */
static void heap_merge_at(cu_bpe_t *bpe, size_t p, int32_t merged, size_t *npend) {
    int32_t *sym = bpe->sym, *prv = bpe->prv, *nxt = bpe->nxt;
    int32_t q = nxt[p];
    sym[p] = merged;
    sym[q] = DEAD;
    nxt[p] = nxt[q];
    if (nxt[q] != NONE) prv[nxt[q]] = (int32_t)p;
    const merge_slot_t *s;
    if (prv[p] != NONE && (s = merge_find(bpe, sym[prv[p]], merged)))
        bpe->pend[(*npend)++] = heap_entry(s->rank, (size_t)prv[p]);
    if (nxt[p] != NONE && (s = merge_find(bpe, merged, sym[nxt[p]])))
        bpe->pend[(*npend)++] = heap_entry(s->rank, p);
}

/* Same result as merge_plain in O(m log m). Entries are (rank, position of
 * the left symbol); a merged symbol keeps its left position, so positions
 * keep the symbols' order and one rank's entries pop left to right. Pairs a
 * merge creates wait in `pend` until the rank is done, because the
 * reference merges every occurrence of a pair before looking at new ones. */
static size_t merge_heap(cu_bpe_t *bpe, size_t m) {
    int32_t *sym = bpe->sym, *prv = bpe->prv, *nxt = bpe->nxt;
    uint64_t *heap = bpe->heap;
    size_t nheap = 0, npend = 0;
    for (size_t k = 0; k < m; k++) {
        prv[k] = k ? (int32_t)k - 1 : NONE;
        nxt[k] = k + 1 < m ? (int32_t)k + 1 : NONE;
        const merge_slot_t *s;
        if (k + 1 < m && (s = merge_find(bpe, sym[k], sym[k + 1])))
            heap_push(heap, &nheap, heap_entry(s->rank, k));
    }
    while (nheap > 0) {
        uint64_t e = heap_pop(heap, &nheap);
        const merge_slot_t *s = heap_entry_valid(bpe, e);
        if (!s) continue;
        uint32_t rank = (uint32_t)(e >> 32);
        heap_merge_at(bpe, (uint32_t)e, s->merged, &npend);
        while (nheap > 0 && (uint32_t)(heap[0] >> 32) == rank) {
            e = heap_pop(heap, &nheap);
            if ((s = heap_entry_valid(bpe, e))) heap_merge_at(bpe, (uint32_t)e, s->merged, &npend);
        }
        for (size_t k = 0; k < npend; k++) heap_push(heap, &nheap, bpe->pend[k]);
        npend = 0;
    }
    size_t w = 0;
    for (int32_t k = 0; k != NONE; k = nxt[k]) sym[w++] = sym[k];
    return w;
}

int bpe_encode_piece(cu_bpe_t *bpe, const uint8_t *piece, size_t len, cu_bpe_merge_algo_t algo,
                     int32_t **ids, size_t *n, size_t *cap, cu_error_t *err) {
    if (len == 0) return CU_OK;
    if (len >= INT32_MAX)
        return cu_error_set(err, CU_EINVAL, "a single pre-token of %zu bytes is too long", len);
    int rc = scratch_reserve(bpe, len, err);
    if (rc) return rc;
    for (size_t k = 0; k < len; k++) bpe->sym[k] = bpe->byte_id[piece[k]];
    int plain = algo == CU_BPE_MERGE_PLAIN || (algo == CU_BPE_MERGE_AUTO && len <= BPE_PLAIN_MAX);
    size_t m = plain ? merge_plain(bpe, bpe->sym, len) : merge_heap(bpe, len);
    rc = ids_reserve(ids, n, cap, m, err);
    if (rc == CU_OK) {
        memcpy(*ids + *n, bpe->sym, m * sizeof **ids);
        *n += m;
    }
    if (bpe->scratch_cap > SCRATCH_KEEP) scratch_release(bpe);
    return rc;
}

/* ---- the cache -------------------------------------------------------- */

void bpe_cache_stats(const cu_bpe_t *bpe, uint64_t *hits, uint64_t *misses) {
    *hits = bpe->hits;
    *misses = bpe->misses;
}

static void cache_clear(cu_bpe_t *bpe) {
    memset(bpe->cache, 0, (bpe->cache_mask + 1) * sizeof *bpe->cache);
    bpe->cache_count = 0;
    bpe->keys_len = 0;
    bpe->cids_len = 0;
}

static inline const uint8_t *slot_key(const cu_bpe_t *bpe, const cache_slot_t *s) {
    return s->key_len <= CACHE_INLINE_KEY ? s->key.bytes : bpe->cache_keys + s->key.off;
}

static inline const int32_t *slot_ids(const cu_bpe_t *bpe, const cache_slot_t *s) {
    return s->n_ids <= CACHE_INLINE_IDS ? s->val.ids : bpe->cache_ids + s->val.off;
}

/* memcmp(a, b, n) == 0 for short n without a library call. */
static inline int same_bytes(const uint8_t *a, const uint8_t *b, size_t n) {
    while (n >= 8) {
        uint64_t x, y;
        memcpy(&x, a, 8);
        memcpy(&y, b, 8);
        if (x != y) return 0;
        a += 8;
        b += 8;
        n -= 8;
    }
    while (n--)
        if (*a++ != *b++) return 0;
    return 1;
}

static const cache_slot_t *cache_find(const cu_bpe_t *bpe, uint32_t h, const uint8_t *key,
                                      size_t len) {
    if (!bpe->cache) return NULL;
    for (size_t i = h & bpe->cache_mask;; i = (i + 1) & bpe->cache_mask) {
        const cache_slot_t *s = &bpe->cache[i];
        if (s->key_len == 0) return NULL;
        if (s->hash == h && s->key_len == len && same_bytes(slot_key(bpe, s), key, len)) return s;
    }
}

/* Doubles the slot array, or empties the cache once it is at its largest. */
static int cache_make_room(cu_bpe_t *bpe) {
    size_t slots = bpe->cache ? bpe->cache_mask + 1 : 0;
    if (slots && bpe->cache_count + 1 <= slots / 2) return CU_OK;
    if (slots >= CACHE_MAX_SLOTS) {
        cache_clear(bpe);
        return CU_OK;
    }
    size_t want = slots ? 2 * slots : CACHE_MIN_SLOTS;
    cache_slot_t *fresh = calloc(want, sizeof *fresh);
    if (!fresh) return CU_ENOMEM;
    for (size_t i = 0; i < slots; i++) {
        cache_slot_t *s = &bpe->cache[i];
        if (s->key_len == 0) continue;
        size_t j = s->hash & (want - 1);
        while (fresh[j].key_len) j = (j + 1) & (want - 1);
        fresh[j] = *s;
    }
    free(bpe->cache);
    bpe->cache = fresh;
    bpe->cache_mask = want - 1;
    return CU_OK;
}

/* Grows an arena of `unit`-byte items to hold `need` of them; NULL if it
 * cannot (offsets into arenas are 32-bit). */
static void *arena_grow(void *arena, size_t *cap, size_t need, size_t unit) {
    if (need <= *cap) return arena;
    size_t want = *cap ? 2 * *cap : 1 << 14;
    while (want < need) want *= 2;
    if (want > UINT32_MAX) return NULL;
    void *p = realloc(arena, want * unit);
    if (p) *cap = want;
    return p;
}

/* Best effort: a cache that cannot grow just stays as it is. */
static void cache_insert(cu_bpe_t *bpe, uint32_t h, const uint8_t *key, size_t len,
                         const int32_t *ids, size_t n) {
    if (cache_make_room(bpe) != CU_OK) return;
    cache_slot_t slot = {.hash = h, .key_len = (uint8_t)len, .n_ids = (uint8_t)n};
    if (len <= CACHE_INLINE_KEY) {
        memcpy(slot.key.bytes, key, len);
    } else {
        uint8_t *keys = arena_grow(bpe->cache_keys, &bpe->keys_cap, bpe->keys_len + len, 1);
        if (!keys) return;
        bpe->cache_keys = keys;
        memcpy(keys + bpe->keys_len, key, len);
        slot.key.off = (uint32_t)bpe->keys_len;
        bpe->keys_len += len;
    }
    if (n <= CACHE_INLINE_IDS) {
        memcpy(slot.val.ids, ids, n * sizeof *ids);
    } else {
        int32_t *all = arena_grow(bpe->cache_ids, &bpe->cids_cap, bpe->cids_len + n, sizeof *ids);
        if (!all) return;
        bpe->cache_ids = all;
        memcpy(all + bpe->cids_len, ids, n * sizeof *ids);
        slot.val.off = (uint32_t)bpe->cids_len;
        bpe->cids_len += n;
    }
    size_t i = h & bpe->cache_mask;
    while (bpe->cache[i].key_len) i = (i + 1) & bpe->cache_mask;
    bpe->cache[i] = slot;
    bpe->cache_count++;
}

static int encode_pretoken(cu_bpe_t *bpe, const uint8_t *piece, size_t len, int32_t **ids,
                           size_t *n, size_t *cap, cu_error_t *err) {
    if (len == 1) {
        int rc = ids_reserve(ids, n, cap, 1, err);
        if (rc) return rc;
        (*ids)[(*n)++] = bpe->byte_id[piece[0]];
        return CU_OK;
    }
    if (bpe->whole) { /* ignore_merges: a whole token is itself */
        size_t i = (size_t)hash_bytes(piece, len) & bpe->whole_mask;
        for (; bpe->whole[i] >= 0; i = (i + 1) & bpe->whole_mask) {
            int32_t id = bpe->whole[i];
            size_t tl = bpe->tok_off[id + 1] - bpe->tok_off[id];
            if (tl == len && !memcmp(bpe->tok_bytes + bpe->tok_off[id], piece, len)) {
                int rc = ids_reserve(ids, n, cap, 1, err);
                if (rc) return rc;
                (*ids)[(*n)++] = id;
                return CU_OK;
            }
        }
    }
    uint32_t h = 0;
    if (len <= CACHE_MAX_KEY) {
        h = (uint32_t)hash_bytes(piece, len);
        const cache_slot_t *s = cache_find(bpe, h, piece, len);
        if (s) {
            bpe->hits++;
            int rc = ids_reserve(ids, n, cap, s->n_ids, err);
            if (rc) return rc;
            const int32_t *src = slot_ids(bpe, s);
            for (size_t k = 0; k < s->n_ids; k++) (*ids)[*n + k] = src[k];
            *n += s->n_ids;
            return CU_OK;
        }
    }
    bpe->misses++;
    size_t before = *n;
    int rc = bpe_encode_piece(bpe, piece, len, CU_BPE_MERGE_AUTO, ids, n, cap, err);
    if (rc) return rc;
    if (len <= CACHE_MAX_KEY) cache_insert(bpe, h, piece, len, *ids + before, *n - before);
    return CU_OK;
}

typedef struct {
    cu_bpe_t *bpe;
    const uint8_t *text;
    int32_t **ids;
    size_t *n, *cap;
    cu_error_t *err;
} regex_ctx_t;

static int encode_regex_piece(void *ctx, size_t start, size_t end) {
    regex_ctx_t *c = ctx;
    return encode_pretoken(c->bpe, c->text + start, end - start, c->ids, c->n, c->cap, c->err);
}

/* GPT-2's pre-tokeniser over text[start..end): a Digits piece. */
static int encode_gpt2_piece(void *ctx, size_t start, size_t end) {
    regex_ctx_t *c = ctx;
    for (size_t i = start; i < end;) {
        size_t j = start + bpe_pretoken_end(c->text + start, end - start, i - start);
        int rc = encode_pretoken(c->bpe, c->text + i, j - i, c->ids, c->n, c->cap, c->err);
        if (rc) return rc;
        i = j;
    }
    return CU_OK;
}

/* ---- SentencePiece-style -------------------------------------------- */

static int push_one(int32_t id, int32_t **ids, size_t *n, size_t *cap, cu_error_t *err) {
    int rc = ids_reserve(ids, n, cap, 1, err);
    if (rc == CU_OK) (*ids)[(*n)++] = id;
    return rc;
}

/* The symbols a piece starts from, into bpe->sym: each character's token,
 * else its bytes' <0xXX> tokens (byte_fallback), else unk (consecutive ones
 * fused with fuse_unk), else nothing. Returns how many. */
static size_t sp_symbols(cu_bpe_t *bpe, const uint8_t *p, size_t len) {
    size_t m = 0;
    int last_unk = 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t l = bpe_utf8_char(p, len, i, &cp), k = 0;
        int32_t id = bpe_whole_find(bpe, p + i, l);
        if (id < 0 && bpe->byte_fallback)
            while (k < l && bpe->byte_id[p[i + k]] >= 0) k++;
        if (id >= 0) {
            bpe->sym[m++] = id;
        } else if (bpe->byte_fallback && k == l) {
            for (k = 0; k < l; k++) bpe->sym[m++] = bpe->byte_id[p[i + k]];
        } else if (bpe->unk >= 0) {
            if (!(bpe->fuse_unk && last_unk)) bpe->sym[m++] = bpe->unk;
            last_unk = 1;
            i += l;
            continue;
        }
        last_unk = 0;
        i += l;
    }
    return m;
}

/* One piece (▁ as a space): ignore_merges' whole token, the cache, else
 * sp_symbols merged by rank. */
static int sp_piece(cu_bpe_t *bpe, const uint8_t *p, size_t len, int32_t **ids, size_t *n,
                    size_t *cap, cu_error_t *err) {
    int32_t whole = bpe->ignore_merges ? bpe_whole_find(bpe, p, len) : -1;
    if (whole >= 0) return push_one(whole, ids, n, cap, err);
    uint32_t h = 0;
    int rc;
    if (len <= CACHE_MAX_KEY) {
        h = (uint32_t)hash_bytes(p, len);
        const cache_slot_t *s = cache_find(bpe, h, p, len);
        if (s) {
            bpe->hits++;
            if ((rc = ids_reserve(ids, n, cap, s->n_ids, err))) return rc;
            memcpy(*ids + *n, slot_ids(bpe, s), s->n_ids * sizeof **ids);
            *n += s->n_ids;
            return CU_OK;
        }
    }
    bpe->misses++;
    if (len >= INT32_MAX)
        return cu_error_set(err, CU_EINVAL, "a single pre-token of %zu bytes is too long", len);
    if ((rc = scratch_reserve(bpe, len, err))) return rc;
    size_t m = sp_symbols(bpe, p, len);
    m = m <= BPE_PLAIN_MAX ? merge_plain(bpe, bpe->sym, m) : merge_heap(bpe, m);
    rc = ids_reserve(ids, n, cap, m, err);
    if (rc == CU_OK) {
        memcpy(*ids + *n, bpe->sym, m * sizeof **ids);
        *n += m;
        if (len <= CACHE_MAX_KEY) cache_insert(bpe, h, p, len, bpe->sym, m);
    }
    if (bpe->scratch_cap > SCRATCH_KEEP) scratch_release(bpe);
    return rc;
}

/* The stretch with every ▁ as a space (so a literal ▁ is one too) and the
 * leading space sp_prepend asks for, into bpe->norm; then cut before each
 * space when sp_split (Metaspace's MergedWithNext), else one piece. */
static int sp_encode(cu_bpe_t *bpe, const uint8_t *text, size_t len, int at_start, int32_t **ids,
                     size_t *n, size_t *cap, cu_error_t *err) {
    if (len == 0) return CU_OK;
    if (len + 1 > bpe->norm_cap) {
        uint8_t *p = realloc(bpe->norm, len + 1);
        if (!p) return cu_error_set(err, CU_ENOMEM, "out of memory normalizing %zu bytes", len);
        bpe->norm = p;
        bpe->norm_cap = len + 1;
    }
    uint8_t *t = bpe->norm;
    size_t m = 1; /* t[0] is the prepended space, if any */
    for (size_t i = 0; i < len; i++) {
        int meta = i + 2 < len && text[i] == 0xE2 && text[i + 1] == 0x96 && text[i + 2] == 0x81;
        t[m++] = meta ? ' ' : text[i];
        i += meta ? 2 : 0;
    }
    int mode = bpe->sp_prepend, lead = t[1] == ' ';
    int pre = mode == TOKENIZER_SP_PREPEND_ALWAYS || (mode == TOKENIZER_SP_PREPEND_META && !lead) ||
              (mode == TOKENIZER_SP_PREPEND_FIRST && at_start && !lead);
    t[0] = ' ';
    if (!pre) t++, m--;
    size_t start = 0;
    for (size_t i = 1; bpe->sp_split && i < m; i++) {
        if (t[i] != ' ') continue;
        int rc = sp_piece(bpe, t + start, i - start, ids, n, cap, err);
        if (rc) return rc;
        start = i;
    }
    return sp_piece(bpe, t + start, m - start, ids, n, cap, err);
}

int bpe_decode_strip(const cu_bpe_t *bpe) {
    return bpe->sp ? bpe->decode_strip : 0;
}

int bpe_encode_segment(cu_bpe_t *bpe, const uint8_t *text, size_t len, int at_start, int32_t **ids,
                       size_t *n, size_t *cap, cu_error_t *err) {
    if (bpe->sp) return sp_encode(bpe, text, len, at_start, ids, n, cap, err);
    return bpe_encode(bpe, text, len, ids, n, cap, err);
}

int bpe_encode(cu_bpe_t *bpe, const uint8_t *text, size_t len, int32_t **ids, size_t *n,
               size_t *cap, cu_error_t *err) {
    if (bpe->sp) return sp_encode(bpe, text, len, 1, ids, n, cap, err);
    if (bpe->nfc) {
        int rc = bpe_nfc(bpe, text, len, &text, &len, err);
        if (rc) return rc;
    }
    if (bpe->digits) {
        regex_ctx_t c = {bpe, text, ids, n, cap, err};
        return bpe_digit_split(text, len, encode_gpt2_piece, &c);
    }
    if (bpe->re) {
        regex_ctx_t c = {bpe, text, ids, n, cap, err};
        return bpe_regex_split(bpe, text, len, encode_regex_piece, &c, err);
    }
    for (size_t i = 0; i < len;) {
        size_t j = bpe_pretoken_end(text, len, i);
        int rc = encode_pretoken(bpe, text + i, j - i, ids, n, cap, err);
        if (rc) return rc;
        i = j;
    }
    return CU_OK;
}

/* ---- decoding --------------------------------------------------------- */

int bpe_decode(const cu_bpe_t *bpe, const int32_t *ids, size_t n, uint8_t **out, size_t *len,
               size_t *cap, cu_error_t *err) {
    size_t total = 0;
    for (size_t k = 0; k < n; k++) {
        int32_t id = ids[k];
        if (id < 0 || id >= bpe->vocab_size || !bpe->present[id])
            return cu_error_set(err, CU_EINVAL,
                                "token id %d at position %zu is not in the vocabulary (0..%d)", id,
                                k, bpe->vocab_size - 1);
        total += bpe->tok_off[id + 1] - bpe->tok_off[id];
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
        size_t a = bpe->tok_off[ids[k]], b = bpe->tok_off[ids[k] + 1];
        memcpy(*out + *len, bpe->tok_bytes + a, b - a);
        *len += b - a;
    }
    return CU_OK;
}
