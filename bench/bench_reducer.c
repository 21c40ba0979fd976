/*
 * Benchmark: the gradient reduction of one training step on its own, old
 * path against new. A buffer of N floats is handed over in 64k-float
 * pieces from its end to its start (the order the backward reports layers)
 * with no computation in between, so the figure is the reduction's whole
 * cost, none of it hidden behind the backward:
 *   iallreduce  MPI_Iallreduce per 4 MB bucket, then MPI_Waitall (the
 *               reducer before a303488's range)
 *   exchange    grad_reducer with gather_all: MPI_Ialltoallv of each bucket
 *               to its slice owners, the owner's sum in rank order, then
 *               one MPI_Allgatherv of the reduced slices (unsharded, now)
 *   sharded     the same without the allgather (train.shard_optimizer,
 *               whose allgather moves the updated weights instead)
 * Rank 0 prints the median over the repetitions of the slowest rank's time.
 *
 * usage: mpirun -n W bench_reducer [N_FLOATS [REPEATS]]
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

#include "mpi/reducer.h"
#include "mpi/world.h"

enum { PIECE = 1 << 16, BUCKET_BYTES = 4 << 20 };

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void fill(float *buf, size_t n, int rank) {
    for (size_t i = 0; i < n; i++) buf[i] = 1e-3f * (float)((i + (size_t)rank) % 101);
}

/* the old reducer's pattern: a bucket starts as soon as it is full */
static int run_iallreduce(float *buf, size_t n) {
    size_t bucket = BUCKET_BYTES / sizeof(float), nb = (n + bucket - 1) / bucket;
    MPI_Request *req = malloc(sizeof *req * (nb ? nb : 1));
    int k = 0, ok = req != NULL;
    size_t hi = n;
    for (size_t end = n; ok && end > 0;) {
        size_t lo = end > PIECE ? end - PIECE : 0;
        end = lo;
        if (hi - lo >= bucket || lo == 0) {
            ok = MPI_Iallreduce(MPI_IN_PLACE, buf + lo, (int)(hi - lo), MPI_FLOAT, MPI_SUM,
                                MPI_COMM_WORLD, &req[k++]) == MPI_SUCCESS;
            hi = lo;
        }
        int flag;
        if (ok) MPI_Testall(k, req, &flag, MPI_STATUSES_IGNORE);
    }
    if (ok) ok = MPI_Waitall(k, req, MPI_STATUSES_IGNORE) == MPI_SUCCESS;
    free(req);
    return ok ? 0 : 1;
}

static int run_reducer(grad_reducer_t *r, size_t n) {
    cu_error_t err;
    reducer_begin(r);
    for (size_t end = n; end > 0;) {
        size_t lo = end > PIECE ? end - PIECE : 0;
        reducer_ready(r, lo, end - lo);
        end = lo;
    }
    if (reducer_finish(r, &err)) {
        fprintf(stderr, "bench_reducer: %s\n", err.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    cu_world_t w;
    cu_error_t err;
    if (world_init(&w, &argc, &argv, &err)) {
        fprintf(stderr, "bench_reducer: %s\n", err.msg);
        return 1;
    }
    size_t n = argc > 1 ? (size_t)atol(argv[1]) : (size_t)124439808; /* GPT-2 124M */
    int reps = argc > 2 ? atoi(argv[2]) : 9;
    if (reps < 1) reps = 1;
    float *buf = malloc(n * sizeof(float));
    double *t = malloc(sizeof(double) * (size_t)reps);
    grad_reducer_t *all = NULL, *own = NULL;
    int rc = buf && t ? 0 : 1;
    if (!rc)
        rc = reducer_create(&all, &w, buf, n, BUCKET_BYTES, 1, &err) ||
             reducer_create(&own, &w, buf, n, BUCKET_BYTES, 0, &err);
    const char *names[] = {"iallreduce", "exchange", "sharded"};
    for (int mode = 0; !rc && mode < 3; mode++) {
        for (int i = -2; !rc && i < reps; i++) { /* two warm-ups */
            fill(buf, n, w.rank);
            world_barrier(&w);
            double t0 = MPI_Wtime();
            rc = mode == 0 ? run_iallreduce(buf, n) : run_reducer(mode == 1 ? all : own, n);
            double dt = MPI_Wtime() - t0;
            MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            if (i >= 0) t[i] = dt;
        }
        if (rc) break;
        qsort(t, (size_t)reps, sizeof(double), compare_double);
        if (w.rank == 0)
            printf("%d ranks  %10zu floats (%7.1f MB)  %-10s  median %8.3f ms  (min %8.3f, max "
                   "%8.3f)\n",
                   w.size, n, (double)n * 4 / 1e6, names[mode], 1e3 * t[reps / 2], 1e3 * t[0],
                   1e3 * t[reps - 1]);
    }
    reducer_free(all);
    reducer_free(own);
    free(buf);
    free(t);
    world_finalize(&w);
    return rc;
}
