/*
 * Gradient reduction in buckets, started while the backward is still
 * running. The model reports ranges of its gradient buffer as they become
 * final (last layer first); adjacent ranges are coalesced into buckets of
 * about `bucket_bytes`, and each full bucket is summed over the ranks with a
 * non-blocking allreduce. Outstanding requests are tested whenever a new
 * range arrives, so they progress between layers; reducer_finish starts
 * what is left and waits for everything.
 */
#ifndef CU_MPI_REDUCER_H
#define CU_MPI_REDUCER_H

#include <stddef.h>

#include "core/error.h"
#include "mpi/world.h"

typedef struct grad_reducer grad_reducer_t;

/* Allocates a reducer over buf (n floats). */
int reducer_create(grad_reducer_t **out, const cu_world_t *w, float *buf, size_t n,
                   size_t bucket_bytes, cu_error_t *err);
void reducer_free(grad_reducer_t *r);

/* Starts a new round: nothing of buf is reduced yet. */
void reducer_begin(grad_reducer_t *r);
/* buf[offset, offset + count) holds this rank's final contribution. */
void reducer_ready(grad_reducer_t *r, size_t offset, size_t count);
/* Reduces every range not yet reported and waits for all of them. */
int reducer_finish(grad_reducer_t *r, cu_error_t *err);

/* How many allreduce calls the last round made (for tests and benchmarks). */
int reducer_calls(const grad_reducer_t *r);

/* Whether buf holds the same bytes on every rank (collective). */
int world_identical(const cu_world_t *w, const void *buf, size_t bytes, int *same, cu_error_t *err);

#endif
