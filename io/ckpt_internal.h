/*
 * What io/ckpt.c (one writer) and io/ckpt_par.c (every rank at once) share:
 * the loop-state text and the chunked checksum.
 *
 * The checksum (root attribute sha256_scheme "sha256-chunks-4096"): each of
 * /tensors, /adam_m, /adam_v in turn, each tensor in table order, is cut at
 * the multiples of CKPT_CHUNK floats of the trainable buffer (a tensor at
 * offset o covering [o, o + len) gives the pieces between consecutive cuts);
 * each piece's float32 bytes are hashed with sha256, and the file's sha256 is
 * the sha256 of all piece digests in that order followed by the state text.
 * Owner slices start at multiples of CKPT_CHUNK, so every piece lies in one
 * rank's slice whatever the world size, and the result does not depend on
 * who hashed what. Files without the attribute carry the earlier checksum,
 * one sha256 over all the bytes, and are still verified as such.
 */
#ifndef CU_IO_CKPT_INTERNAL_H
#define CU_IO_CKPT_INTERNAL_H

#include <stddef.h>

#include "io/ckpt.h"

#define CKPT_CHUNK 4096
#define CKPT_SCHEME "sha256-chunks-4096"

void ckpt_meta_text(const ckpt_meta_t *m, char *buf, size_t len);
int ckpt_meta_parse(const char *s, ckpt_meta_t *m);

/* Pieces of one group (the same for /tensors, /adam_m, /adam_v). */
size_t ckpt_chunk_count(const gpt_tensor_t *t, int n);
/* The digests (32 bytes each, at their place in the 3 * count list) of the
 * pieces that start in [lo, hi); group g's element i is bufs[g][i - bases[g]].
 * Other places are left as they are. */
void ckpt_chunk_digests(const float *const bufs[3], const size_t bases[3], const gpt_tensor_t *t,
                        int n, size_t lo, size_t hi, unsigned char *out);
/* sha256 of the digests followed by the state text, as hex. */
void ckpt_chunks_final(const unsigned char *digests, size_t n_digests, const char *meta,
                       char hex[65]);
/* The floats the tensors span: max offset + length. */
size_t ckpt_span(const gpt_tensor_t *t, int n);

#endif
