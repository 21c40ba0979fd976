/*
 * GPT-2 byte-level BPE internals, behind tokenizer/tokenizer.h. Split out so the
 * tests can reach the pieces one at a time: the pre-tokeniser, the two merge
 * loops (a plain one that follows the reference algorithm literally, and the
 * heap-based one long words use), the cache.
 *
 * Not part of the public interface: code outside tokenizer/ uses tokenizer.h
 * (tests and tok_encode aside).
 */
#ifndef CU_TOKENIZER_BPE_H
#define CU_TOKENIZER_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

typedef struct cu_bpe cu_bpe_t;

/* Parses the vocabulary (token->id JSON object) and the merges list. Error
 * messages name the inputs as `vocab_name` and `merges_name` (file paths, or
 * descriptions). Allocates; free with bpe_free. */
int bpe_open(cu_bpe_t **out, const char *vocab_json, size_t vocab_len, const char *vocab_name,
             const char *merges, size_t merges_len, const char *merges_name, cu_error_t *err);
void bpe_free(cu_bpe_t *bpe);

/* What a Hugging Face tokenizer.json adds to the vocabulary and merges:
 * eot_text, the token that separates documents (NULL: "<|endoftext|>");
 * added_json, added_tokens as a JSON object token -> id, merged into the
 * vocabulary (for decoding and ids), never produced by the BPE itself and
 * never used by ignore_merges (tokenizer_encode matches the non-special
 * ones, `matched`, in front of it: tokenizer/tokenizer.c); split_regex, NULL for GPT-2's
 * hand-written pre-tokeniser, else a Split pattern (bpe_regex.c) whose matches and the gaps between
 * them are the pieces; split_then_gpt2, GPT-2's pattern then inside each piece (ByteLevel
 * use_regex); ignore_merges, a piece that is a whole vocabulary token is that token. */
typedef tokenizer_bpe_options_t bpe_options_t;

/* bpe_open with tokenizer.json's options (opts may be NULL). With default
 * options the tokenizer, and its hash, equal bpe_open's. */
int bpe_open_opts(cu_bpe_t **out, const char *vocab_json, size_t vocab_len, const char *vocab_name,
                  const char *merges, size_t merges_len, const char *merges_name,
                  const bpe_options_t *opts, cu_error_t *err);

int bpe_vocab_size(const cu_bpe_t *bpe);
/* The lowest id whose bytes are s[0..n), -1 for none (a linear search). */
int bpe_token_id(const cu_bpe_t *bpe, const uint8_t *s, size_t n);
int bpe_eot(const cu_bpe_t *bpe);
/* sha256 hex of the vocabulary (by id) and the merges (in rank order). */
const char *bpe_hash(const cu_bpe_t *bpe);

/* Appends the ids of `text` to *ids (see tokenizer_encode). Not thread-safe:
 * it uses the cache and scratch space inside `bpe`. */
int bpe_encode(cu_bpe_t *bpe, const uint8_t *text, size_t len, int32_t **ids, size_t *n,
               size_t *cap, cu_error_t *err);
/* bpe_encode of a stretch of text between added tokens; at_start: it begins
 * the text (Metaspace prepend_scheme first). */
int bpe_encode_segment(cu_bpe_t *bpe, const uint8_t *text, size_t len, int at_start, int32_t **ids,
                       size_t *n, size_t *cap, cu_error_t *err);
/* Leading spaces the tokenizer's decoder strips from a whole text (0 but
 * for SentencePiece-style tokenizers). */
int bpe_decode_strip(const cu_bpe_t *bpe);
int bpe_decode(const cu_bpe_t *bpe, const int32_t *ids, size_t n, uint8_t **out, size_t *len,
               size_t *cap, cu_error_t *err);

/* The byte offset just past the pre-token that starts at s[i] (i < n), by
 * GPT-2's pattern  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * over code points, where each byte of invalid UTF-8 is one code point of
 * class "other" (Python's surrogateescape). */
size_t bpe_pretoken_end(const uint8_t *s, size_t n, size_t i);

/* The UTF-8 character at s[i] (i < n) as Python's decoder with
 * surrogateescape sees it: sets *cp (U+DC80..U+DCFF for an invalid byte) and
 * returns its length in bytes (1 for an invalid byte). */
size_t bpe_utf8_char(const uint8_t *s, size_t n, size_t i, uint32_t *cp);

typedef enum {
    CU_BPE_MERGE_AUTO = 0,  /* plain loop for short words, heap for long ones */
    CU_BPE_MERGE_PLAIN = 1, /* the reference loop: O(len^2) */
    CU_BPE_MERGE_HEAP = 2,  /* priority queue over a linked list: O(len log len) */
} cu_bpe_merge_algo_t;

/* Encodes one pre-token's bytes without the cache, appending to *ids like
 * bpe_encode. For tests that compare the merge loops. */
int bpe_encode_piece(cu_bpe_t *bpe, const uint8_t *piece, size_t len, cu_bpe_merge_algo_t algo,
                     int32_t **ids, size_t *n, size_t *cap, cu_error_t *err);

/* The BPE inside a GPT-2 tokenizer (NULL for other kinds), for tests that
 * drive the pieces above on a tokenizer from io_tokenizer_load. */
struct cu_tokenizer;
cu_bpe_t *tokenizer_bpe(struct cu_tokenizer *tok);

/* Cache statistics since open: lookups that hit and that missed. */
void bpe_cache_stats(const cu_bpe_t *bpe, uint64_t *hits, uint64_t *misses);

#endif
