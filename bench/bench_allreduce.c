/*
 * Benchmark: the time of one MPI_Allreduce (sum, in place) of a gradient
 * bucket, the unit codex-train's reducer sends (4 MB of floats by default),
 * between all ranks of the job. Rank 0 prints the median over the timed
 * repetitions and the bandwidths derived from it: algbw = bytes / time, and
 * busbw = algbw x 2(n-1)/n, what each link carries in a ring allreduce, to
 * compare with the link's own speed.
 *
 * usage: mpirun -n N bench_allreduce [BUCKET_BYTES [REPEATS]]
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* median of `reps` timed allreduces of n floats, after two warm-ups */
static double time_allreduce(float *buf, int n, int reps) {
    double *t = malloc(sizeof(double) * (size_t)reps), med;
    for (int i = -2; i < reps; i++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double dt = MPI_Wtime() - t0;
        /* the slowest rank's time is the collective's */
        MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (i >= 0) t[i] = dt;
    }
    qsort(t, (size_t)reps, sizeof(double), compare_double);
    med = t[reps / 2];
    free(t);
    return med;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long bytes = argc > 1 ? atol(argv[1]) : 4L << 20;
    int reps = argc > 2 ? atoi(argv[2]) : 20;
    if (bytes < 4 || bytes > (1L << 30) || reps < 1) {
        if (rank == 0) fprintf(stderr, "usage: bench_allreduce [BUCKET_BYTES [REPEATS]]\n");
        MPI_Finalize();
        return 2;
    }
    int n = (int)(bytes / 4);
    float *buf = malloc(sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++) buf[i] = (float)(rank + i % 7);
    double t = time_allreduce(buf, n, reps);
    if (rank == 0) {
        double alg = (double)n * 4 / t / 1e6;
        printf("allreduce %.1f MB x %d ranks: %.2f ms median of %d, algbw %.0f MB/s, "
               "busbw %.0f MB/s\n",
               n * 4.0 / (1 << 20), size, t * 1e3, reps, alg, alg * 2.0 * (size - 1) / size);
    }
    free(buf);
    MPI_Finalize();
    return 0;
}
