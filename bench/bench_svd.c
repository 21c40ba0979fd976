/*
 * The distributed SVD of mpi/grid.c: seconds for the thin SVD (U, S, V^T) of
 * an M x N matrix of N(0, 1) entries on the process grid of however many
 * ranks run it, median of a few repetitions. bench/bench_pissa.sh runs it on
 * 1, 2 and 4 ranks and prints the ratios.
 *
 * usage: mpirun -n P bench_svd [M N [REPS]]   (default 2304 768 3)
 *        bench_svd M N REPS --lapack          single-process LAPACK dgesvd instead
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/timer.h"
#include "mpi/grid.h"
#include "mpi/world.h"

void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
             const int *lda, double *s, double *u, const int *ldu, double *vt, const int *ldvt,
             double *work, const int *lwork, int *info, size_t, size_t);

/* The single-process LAPACK reference on the same matrix. */
static int lapack_svd(double *a, int m, int n, double *u, double *s, double *vt) {
    int k = m < n ? m : n, lwork = -1, info = 0;
    double query = 0;
    dgesvd_("S", "S", &m, &n, a, &m, s, u, &m, vt, &k, &query, &lwork, &info, 1, 1);
    lwork = (int)query;
    double *work = malloc(sizeof(double) * (size_t)lwork);
    if (!work) return -1;
    dgesvd_("S", "S", &m, &n, a, &m, s, u, &m, vt, &k, work, &lwork, &info, 1, 1);
    free(work);
    return info;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    cu_world_t w;
    cu_error_t err = {0};
    if (world_init(&w, &argc, &argv, &err)) {
        fprintf(stderr, "bench_svd: %s\n", err.msg);
        return 1;
    }
    int m = argc > 2 ? atoi(argv[1]) : 2304, n = argc > 2 ? atoi(argv[2]) : 768;
    int reps = argc > 3 ? atoi(argv[3]) : 3, k = m < n ? m : n;
    if (m < 1 || n < 1 || reps < 1 || reps > 100) {
        fprintf(stderr, "usage: bench_svd [M N [REPS]]\n");
        return 2;
    }
    double *a = malloc(sizeof(double) * (size_t)m * n), *u = malloc(sizeof(double) * (size_t)m * k);
    double *s = malloc(sizeof(double) * k), *vt = malloc(sizeof(double) * (size_t)k * n);
    double *times = malloc(sizeof(double) * reps);
    cu_rng_t rng;
    cu_rng_seed(&rng, 2304);
    for (size_t i = 0; i < (size_t)m * n; i++) a[i] = cu_rng_normal(&rng);
    if (argc > 4 && !strcmp(argv[4], "--lapack")) {
        for (int r = 0; r < reps; r++) {
            double *copy = malloc(sizeof(double) * (size_t)m * n);
            memcpy(copy, a, sizeof(double) * (size_t)m * n);
            double t0 = cu_now();
            if (lapack_svd(copy, m, n, u, s, vt) != 0) return 1;
            times[r] = cu_now() - t0;
            free(copy);
        }
        qsort(times, reps, sizeof(double), cmp);
        printf("svd %d x %d, single-process LAPACK dgesvd: %.3f s (median of %d), s[0] %.4f\n", m,
               n, times[reps / 2], reps, s[0]);
        free(a), free(u), free(s), free(vt), free(times);
        world_finalize(&w);
        return 0;
    }
    cu_grid_t *g = NULL;
    int rc = grid_create(&g, &w, &err);
    for (int r = 0; rc == CU_OK && r < reps; r++) {
        world_barrier(&w);
        double t0 = cu_now();
        rc = grid_svd(g, a, m, n, u, s, vt, &err);
        world_barrier(&w);
        times[r] = cu_now() - t0;
    }
    if (rc) {
        fprintf(stderr, "bench_svd: %s\n", err.msg);
    } else if (w.rank == 0) {
        int p, q;
        grid_shape(g, &p, &q);
        qsort(times, reps, sizeof(double), cmp);
        printf("svd %d x %d on %d rank%s (%d x %d grid): %.3f s (median of %d), s[0] %.4f\n", m, n,
               w.size, w.size == 1 ? "" : "s", p, q, times[reps / 2], reps, s[0]);
    }
    grid_free(g);
    free(a), free(u), free(s), free(vt), free(times);
    world_finalize(&w);
    return rc ? 1 : 0;
}
