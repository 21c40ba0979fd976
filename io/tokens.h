/*
 * Token sources: where training sequences come from. A source is a token
 * stream cut into windows of seq_len + 1 tokens (inputs and their shifted
 * targets) at stride seq_len. The window of global sample g is a pure function
 * of (seed, epoch, g): epoch = g / windows, and within an epoch a keyed
 * pseudo-random permutation picks the window. So any rank can compute any
 * sample, the same global batch gives the same samples on any number of
 * ranks, and a resumed job sees exactly what an uninterrupted one would.
 *
 * Sources: "random" (seeded uniform tokens: benchmarks without a dataset),
 * "text" (a UTF-8 file, tokenised in memory), "tokens" (raw little-endian
 * uint16 or uint32 ids), "hdf5" (a dataset from `codexctl prepare`, read
 * window by window through hyperslabs; see io/dataset.h).
 */
#ifndef CU_IO_TOKENS_H
#define CU_IO_TOKENS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "tokenizer/tokenizer.h"

typedef struct token_source token_source_t;

int tokens_open_random(token_source_t **out, int vocab, uint64_t seed, cu_error_t *err);
/* Takes ownership of ids (malloc'd). Every id must be in [0, vocab). */
int tokens_open_ids(token_source_t **out, int32_t *ids, size_t n, int vocab, uint64_t seed,
                    const char *origin, cu_error_t *err);
/* Tokenises text in memory (origin names it in messages); an end-of-text
 * token closes it. Every id must be below vocab. */
int tokens_open_buffer(token_source_t **out, const uint8_t *text, size_t len, cu_tokenizer_t *tok,
                       int vocab, uint64_t seed, const char *origin, cu_error_t *err);
/* Reads and tokenises a text file; an end-of-text token closes it. */
int tokens_open_text(token_source_t **out, const char *path, cu_tokenizer_t *tok, uint64_t seed,
                     cu_error_t *err);
/* Reads raw ids: bytes_per_token 2 (uint16) or 4 (uint32), little-endian. */
int tokens_open_file(token_source_t **out, const char *path, int bytes_per_token, int vocab,
                     uint64_t seed, cu_error_t *err);
/* One split ("train" or "val") of a dataset written by codexctl prepare.
 * The file stays open until tokens_free; each tokens_sample reads just its
 * seq_len + 1 tokens. An error (CU_EINVAL) if the dataset's tokenizer has
 * more ids than the model's vocab; ids >= vocab met while sampling are
 * CU_EFORMAT naming the file and index. */
int tokens_open_h5(token_source_t **out, const char *path, const char *split, int vocab,
                   uint64_t seed, cu_error_t *err);
void tokens_free(token_source_t *src);

/* Windows of seq_len + 1 tokens per epoch (LONG_MAX for "random"); an error
 * if the source is too short for one window. */
int tokens_windows(const token_source_t *src, int seq_len, long *windows, cu_error_t *err);
size_t tokens_count(const token_source_t *src);
const char *tokens_origin(const token_source_t *src);

/* Writes the seq_len + 1 tokens of global sample g to out; *epoch (if
 * non-NULL) receives the epoch g falls in. Sources that read from a file
 * can fail (CU_EIO); in-memory ones never do. */
int tokens_sample(const token_source_t *src, long g, int seq_len, int32_t *out, long *epoch,
                  cu_error_t *err);

/* Splits off the last `fraction` of src's windows (at least one when
 * fraction > 0) as a held-out source *val; src keeps the rest. A "random"
 * source gets an independent random source with another seed. With fraction
 * 0, *val is NULL. An error if either part would hold no window. An
 * "hdf5" source has a real validation split: *val is NULL and CU_OK (open
 * its "val" split with tokens_open_h5). */
int tokens_split(token_source_t *src, int seq_len, float fraction, token_source_t **val,
                 cu_error_t *err);

/* A keyed bijection of [0, n): the shuffle of one epoch. */
uint64_t tokens_permute(uint64_t i, uint64_t n, uint64_t key);

#endif
