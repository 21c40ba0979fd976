/*
 * The MPI world of a job: which rank this process is, how many there are,
 * where they run, and the collective operations training needs.
 */
#ifndef CU_MPI_WORLD_H
#define CU_MPI_WORLD_H

#include <stddef.h>

#include "core/error.h"

typedef struct {
    int rank, size;
    char host[256];
    int owns_mpi; /* this process called MPI_Init and must finalise */
} cu_world_t;

/* Initialises MPI (errors are returned, not fatal) and fills w. */
int world_init(cu_world_t *w, int *argc, char ***argv, cu_error_t *err);
void world_finalize(cu_world_t *w);
/* Ends every rank of the job with this exit code (after a message is out). */
void world_abort(const cu_world_t *w, int code);

/* In-place sums over all ranks. */
int world_sum_floats(const cu_world_t *w, float *buf, size_t n, cu_error_t *err);
int world_sum_doubles(const cu_world_t *w, double *buf, int n, cu_error_t *err);
/* Copies rank 0's buffer to every rank. */
int world_bcast_floats(const cu_world_t *w, float *buf, size_t n, cu_error_t *err);
int world_bcast_doubles(const cu_world_t *w, double *buf, int n, cu_error_t *err);
int world_bcast_bytes(const cu_world_t *w, void *buf, int n, cu_error_t *err);
/* Combines every rank's return code: the largest wins, so a failure on any
 * rank is seen by all of them. */
int world_agree(const cu_world_t *w, int rc);
void world_barrier(const cu_world_t *w);

/* This rank's place among the ranks of its node (those sharing memory,
 * MPI_COMM_TYPE_SHARED): 0 for the lowest world rank of each node.
 * Collective. */
int world_node_rank(const cu_world_t *w, int *node_rank, cu_error_t *err);

/* The distinct host names of all ranks, comma-separated, in rank order of
 * first appearance. Collective. */
int world_hosts(const cu_world_t *w, char *buf, size_t len, cu_error_t *err);

/* How many blocking collective calls this process has entered (every
 * rank enters the same sequence). Read by the watchdog thread: a rank whose
 * count is behind its peers' is the one holding the job up (docs/formats.md,
 * progress deadline). world_collective_enter is called before each one. */
unsigned long world_collectives(void);
void world_collective_enter(void);

/* "Open MPI v4.1.4" etc., for provenance. */
void world_mpi_version(char *buf, size_t len);

#endif
