/*
 * Gradient reduction in buckets, started while the backward is still
 * running. The model reports ranges of its gradient buffer as they become
 * final (last layer first); adjacent ranges are coalesced into buckets of
 * about `bucket_bytes`, and each full bucket is started at once. Outstanding
 * requests are tested whenever a new range arrives, so they progress between
 * layers; reducer_end_micro_batch starts what is left and waits for it.
 *
 * The sums are made in one fixed order, whatever MPI's collective algorithms
 * do: the buffer is cut into W contiguous owner slices (reducer_slice), each
 * bucket is sent piece by piece to the owners (a non-blocking alltoallv),
 * and an owner adds the W contributions of each element in rank order into
 * a separate sum buffer, after what the earlier micro-batches of the step
 * left there. Every micro-batch is exchanged on its own (ZeRO-2): with rank r
 * taking global micro-batches r, r + W, r + 2W, ... (jobs/train.c), an
 * element's sum is ((m0 + m1) + m2) + ... over the global micro-batch
 * index, whatever W (>= 2) is, so runs on 2, 3 or 4 ranks add the same terms
 * in the same order.
 *
 * Once a bucket is exchanged its part of the gradient buffer is dead; each
 * 2 MB block of the buffer whose floats have all been exchanged is cleared
 * with its pages given back (cu_zero_release), so a rank holds only the
 * buckets not yet exchanged (at most IN_FLIGHT in flight), what the backward
 * has not reported yet and the partly exchanged blocks, and the buffer is
 * all zeros again for the next micro-batch (no zeroing pass that would
 * fault it back in). Unsharded training then all-gathers the reduced
 * slices into the buffer, so every rank holds the whole sum; sharded training
 * (train.shard_optimizer) keeps only its own slice of the sum and updates
 * only that. Both see the same bits for every element, which is what makes
 * the two bit-identical. On one rank nothing is sent: the backward's own
 * accumulation in the buffer is the sum (reducer_sum is the buffer).
 */
#ifndef CU_MPI_REDUCER_H
#define CU_MPI_REDUCER_H

#include <stddef.h>

#include "core/error.h"
#include "mpi/world.h"

/* Owner slices start at multiples of this many floats (io/ckpt.h's
 * checksum chunk, so no chunk straddles two owners). */
#define REDUCER_ALIGN 4096

typedef struct grad_reducer grad_reducer_t;

/* The slice [*lo, *hi) of n floats that `rank` of `size` owns: contiguous,
 * in rank order, aligned to REDUCER_ALIGN, possibly empty for tiny n. */
void reducer_slice(size_t n, int size, int rank, size_t *lo, size_t *hi);

/* Allocates a reducer over buf (n floats, private anonymous memory: its
 * pages are given back as buckets complete), and on more than one rank a
 * sum buffer of n floats of which only this rank's slice is ever written
 * (and takes memory). With gather_all each rank ends with the whole sum,
 * gathered into buf (cleared again by the next reducer_begin); without it
 * only with its own slice, in the sum buffer. */
int reducer_create(grad_reducer_t **out, const cu_world_t *w, float *buf, size_t n,
                   size_t bucket_bytes, int gather_all, cu_error_t *err);
void reducer_free(grad_reducer_t *r);

/* Starts a new round (an optimizer step): the sum is empty. */
void reducer_begin(grad_reducer_t *r);
/* buf[offset, offset + count) holds this rank's final contribution for the
 * current micro-batch. Every float of buf must be reported once per
 * micro-batch. */
void reducer_ready(grad_reducer_t *r, size_t offset, size_t count);
/* Starts what is pending, waits for every bucket of this micro-batch and
 * adds it to the sum; buf is all zeros afterwards. Collective. */
int reducer_end_micro_batch(grad_reducer_t *r, cu_error_t *err);
/* Ends the last micro-batch if still open and, with gather_all, gathers
 * the whole sum on every rank. Collective. */
int reducer_finish(grad_reducer_t *r, cu_error_t *err);
/* The summed gradient (n floats; without gather_all only this rank's
 * slice holds it). On one rank or with gather_all: buf itself. */
float *reducer_sum(grad_reducer_t *r);

/* How many bucket exchanges the last round made (for tests and benchmarks). */
int reducer_calls(const grad_reducer_t *r);

/* Whether buf holds the same bytes on every rank (collective). */
int world_identical(const cu_world_t *w, const void *buf, size_t bytes, int *same, cu_error_t *err);

/* Every rank's slice (reducer_slice) of buf, n floats, copied to every
 * rank: after a sharded update each rank holds the whole buffer again.
 * Collective. */
int world_allgather_slices(const cu_world_t *w, float *buf, size_t n, cu_error_t *err);
/* The same for [a, b) of a buffer of n values of `elem` bytes (4: floats,
 * 2: bf16), sliced as reducer_slice slices n: each rank's part of [a, b)
 * (possibly none) copied to every rank. Collective. */
int world_allgather_span(const cu_world_t *w, void *buf, size_t elem, size_t n, size_t a, size_t b,
                         cu_error_t *err);
/* Rank 0 receives [a, b) of a float buffer of n values sliced the same way
 * into dst (b - a floats), every rank sending its own part of it from buf;
 * dst is not used on the other ranks. Collective. */
int world_gather_span(const cu_world_t *w, const float *buf, size_t n, size_t a, size_t b,
                      float *dst, cu_error_t *err);

/* The global L2 norm of a buffer whose owner slices lie on their ranks. On
 * several ranks: a double sum of squares for every REDUCER_ALIGN chunk,
 * gathered and added in chunk order, so the bits do not depend on W. With
 * `whole` every rank holds all of buf and computes every chunk itself (no
 * communication); the result is bitwise the same either way. On one rank:
 * the plain sequential double sum over buf. */
int world_slices_norm(const cu_world_t *w, const float *buf, size_t n, int whole, double *norm,
                      cu_error_t *err);

#endif
