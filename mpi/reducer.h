/*
 * Gradient reduction in buckets, started while the backward is still
 * running. The model reports ranges of its gradient buffer as they become
 * final (last layer first); adjacent ranges are coalesced into buckets of
 * about `bucket_bytes`, and each full bucket is started at once. Outstanding
 * requests are tested whenever a new range arrives, so they progress between
 * layers; reducer_finish starts what is left and waits for everything.
 *
 * The sums are made in one fixed order, whatever MPI's collective algorithms
 * do: the buffer is cut into W contiguous owner slices (reducer_slice), each
 * bucket is sent piece by piece to the owners (a non-blocking alltoallv),
 * and an owner adds the W contributions of each element in rank order,
 * ((g0 + g1) + g2) + ... + g(W-1). Unsharded training then all-gathers the
 * reduced slices, so every rank holds the whole sum; sharded training
 * (train.shard_optimizer) keeps only its own slice reduced and updates only
 * that. Both see the same bits for every element, which is what makes the
 * two bit-identical. On one rank nothing is sent and the buffer is left as
 * it is.
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

/* Allocates a reducer over buf (n floats). With gather_all each rank ends
 * with the whole reduced buffer; without it only with its own slice. */
int reducer_create(grad_reducer_t **out, const cu_world_t *w, float *buf, size_t n,
                   size_t bucket_bytes, int gather_all, cu_error_t *err);
void reducer_free(grad_reducer_t *r);

/* Starts a new round: nothing of buf is reduced yet. */
void reducer_begin(grad_reducer_t *r);
/* buf[offset, offset + count) holds this rank's final contribution. */
void reducer_ready(grad_reducer_t *r, size_t offset, size_t count);
/* Reduces every range not yet reported and waits for all of them. */
int reducer_finish(grad_reducer_t *r, cu_error_t *err);

/* How many bucket exchanges the last round made (for tests and benchmarks). */
int reducer_calls(const grad_reducer_t *r);

/* Whether buf holds the same bytes on every rank (collective). */
int world_identical(const cu_world_t *w, const void *buf, size_t bytes, int *same, cu_error_t *err);

/* Every rank's slice (reducer_slice) of buf, n floats, copied to every
 * rank: after a sharded update each rank holds the whole buffer again.
 * Collective. */
int world_allgather_slices(const cu_world_t *w, float *buf, size_t n, cu_error_t *err);

/* The global L2 norm of a buffer whose owner slices lie on their ranks:
 * each rank's sum of squares in double, then added in rank order. With
 * `whole` every rank holds all of buf and computes every slice's sum itself
 * (no communication); the result is bitwise the same either way. */
int world_slices_norm(const cu_world_t *w, const float *buf, size_t n, int whole, double *norm,
                      cu_error_t *err);

#endif
