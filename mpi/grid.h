/*
 * A ScaLAPACK process grid over the job's ranks, and the dense
 * factorisations better adapters need (PiSSA's SVD, OLoRA's QR, resizing and
 * merging adapters), computed by all ranks together instead of one.
 *
 * Matrices cross this interface column-major and in double precision, whole
 * and identical on every rank: each rank copies its own block-cyclic blocks
 * out of the input, ScaLAPACK factorises, and the results are gathered on
 * rank 0 and broadcast, so every rank ends with bit-identical factors (data
 * parallel training checks that its weights are identical everywhere).
 *
 * Every function here is collective over the world the grid was made from.
 */
#ifndef CU_MPI_GRID_H
#define CU_MPI_GRID_H

#include "core/error.h"
#include "mpi/world.h"

typedef struct cu_grid cu_grid_t;

/* Builds a near-square P x Q grid (P <= Q, P * Q = ranks) over w's ranks.
 * Allocates *out; free with grid_free. */
int grid_create(cu_grid_t **out, const cu_world_t *w, cu_error_t *err);
void grid_free(cu_grid_t *g);
void grid_shape(const cu_grid_t *g, int *p, int *q);

/* Thin SVD a = u diag(s) vt of a (m, n), k = min(m, n): u (m, k), s (k)
 * descending, vt (k, n), all column-major. */
int grid_svd(cu_grid_t *g, const double *a, int m, int n, double *u, double *s, double *vt,
             cu_error_t *err);

/* Thin QR a = q r of a (m, n), k = min(m, n): q (m, k) with orthonormal
 * columns, r (k, n) upper trapezoidal, column-major. Signs as LAPACK's
 * Householder convention gives them. */
int grid_qr(cu_grid_t *g, const double *a, int m, int n, double *q, double *r, cu_error_t *err);

/* Rank-k factorisation of the product b a (b (m, r1), a (r1, n), column
 * major) without forming its SVD at full size: QR of b and of a^T, SVD of
 * the small core. Writes the top k triplets: u (m, k), s (k), vt (k, n),
 * with k <= min(m, n, r1); s_all (min(m, n, r1)) receives every singular
 * value (for the energy kept). */
int grid_svd_product(cu_grid_t *g, const double *b, const double *a, int m, int r1, int n, int k,
                     double *u, double *s, double *vt, double *s_all, cu_error_t *err);

#endif
