/*
 * The gradient reducer's fixed order (mpi/reducer.c): whatever the buckets,
 * the order ranges arrive in and whether the result is gathered or left in
 * owner slices, every element is ((g0 + g1) + g2) + ... in float, in rank
 * order; the slice norm is the same bits computed whole or by slices. Run on
 * 1 rank (unit) and under mpirun on 3 and 4 ranks (mpi).
 */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "harness.h"
#include "mpi/reducer.h"
#include "mpi/world.h"

static cu_world_t W;

/* Rank r's contribution: magnitudes from 1e-3 to 1e5 with mixed signs, so
 * the float sum depends on the order of the terms. */
static void contribution(float *g, size_t n, int r) {
    cu_rng_t rng;
    cu_rng_seed(&rng, 1000u + (uint64_t)r);
    for (size_t i = 0; i < n; i++) {
        double u = cu_rng_normal(&rng);
        g[i] = (float)(u * ((i + (size_t)r) % 3 == 0 ? 1e5 : (i % 5 == 0 ? 1e-3 : 1.0)));
    }
}

/* Reports buf's ranges last to first in uneven pieces, as a backward does. */
static void report_backwards(grad_reducer_t *r, size_t n) {
    size_t hi = n, piece = 1531;
    while (hi > 0) {
        size_t lo = hi > piece ? hi - piece : 0;
        reducer_ready(r, lo, hi - lo);
        hi = lo;
        piece = piece * 7 % 5003 + 100;
    }
}

static void check_mode(int gather_all) {
    size_t n = 3 * REDUCER_ALIGN * (size_t)W.size + 777;
    float *buf = malloc(n * sizeof(float)), *want = calloc(n, sizeof(float));
    float *other = malloc(n * sizeof(float)), *rev = calloc(n, sizeof(float));
    for (int q = 0; q < W.size; q++) {
        contribution(other, n, q);
        for (size_t i = 0; i < n; i++) want[i] = q == 0 ? other[i] : want[i] + other[i];
    }
    for (int q = W.size - 1; q >= 0; q--) {
        contribution(other, n, q);
        for (size_t i = 0; i < n; i++) rev[i] = q == W.size - 1 ? other[i] : rev[i] + other[i];
    }
    if (W.size >= 3) /* the order is visible in the bits: the test can fail */
        CHECK(memcmp(want, rev, n * sizeof(float)) != 0);
    contribution(buf, n, W.rank);
    grad_reducer_t *r;
    cu_error_t err;
    CHECK(reducer_create(&r, &W, buf, n, 4096, gather_all, &err) == CU_OK);
    for (int round = 0; round < 2; round++) {
        if (round == 1) contribution(buf, n, W.rank);
        reducer_begin(r);
        report_backwards(r, n);
        CHECK(reducer_finish(r, &err) == CU_OK);
        size_t lo = 0, hi = n;
        if (!gather_all) reducer_slice(n, W.size, W.rank, &lo, &hi);
        CHECK_MSG(memcmp(buf + lo, want + lo, (hi - lo) * sizeof(float)) == 0,
                  "rank %d gather_all %d round %d: sums not in rank order", W.rank, gather_all,
                  round);
        if (W.size > 1) CHECK(reducer_calls(r) > 1);
    }
    reducer_free(r);
    free(buf);
    free(want);
    free(other);
    free(rev);
}

static void test_gathered_sums_in_rank_order(void) {
    check_mode(1);
}

static void test_owner_slices_in_rank_order(void) {
    check_mode(0);
}

static void test_slices_tile_the_buffer(void) {
    size_t sizes[] = {0, 1, 4095, 4096, 4097, 100000, 124439808};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
        for (int w = 1; w <= 8; w++) {
            size_t end = 0;
            for (int r = 0; r < w; r++) {
                size_t lo, hi;
                reducer_slice(sizes[k], w, r, &lo, &hi);
                CHECK(lo == end && hi >= lo && (lo % REDUCER_ALIGN == 0 || lo == sizes[k]));
                end = hi;
            }
            CHECK(end == sizes[k]);
        }
}

static void test_norm_whole_equals_slices(void) {
    size_t n = 5 * REDUCER_ALIGN + 123;
    float *g = malloc(n * sizeof(float));
    contribution(g, n, 7); /* the same on every rank */
    double whole = -1, sliced = -2;
    cu_error_t err;
    CHECK(world_slices_norm(&W, g, n, 1, &whole, &err) == CU_OK);
    CHECK(world_slices_norm(&W, g, n, 0, &sliced, &err) == CU_OK);
    CHECK(memcmp(&whole, &sliced, sizeof whole) == 0);
    double s = 0.0; /* on one rank: the plain sequential sum */
    for (size_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    if (W.size == 1) CHECK(sqrt(s) == whole);
    CHECK_REL(sqrt(s), whole, 1e-12, 1e-30);
    free(g);
}

static void test_allgather_slices(void) {
    size_t n = 2 * REDUCER_ALIGN * (size_t)W.size + 5;
    float *b = calloc(n, sizeof(float));
    size_t lo, hi;
    reducer_slice(n, W.size, W.rank, &lo, &hi);
    for (size_t i = lo; i < hi; i++) b[i] = (float)i;
    cu_error_t err;
    CHECK(world_allgather_slices(&W, b, n, &err) == CU_OK);
    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= b[i] == (float)i;
    CHECK(ok);
    free(b);
}

int main(int argc, char **argv) {
    cu_error_t err;
    if (world_init(&W, &argc, &argv, &err)) return 1;
    static const cu_test_case_t cases[] = {
        TEST(test_gathered_sums_in_rank_order), TEST(test_owner_slices_in_rank_order),
        TEST(test_slices_tile_the_buffer), TEST(test_norm_whole_equals_slices),
        TEST(test_allgather_slices)};
    int rc = cu_test_run(cases, (int)(sizeof cases / sizeof cases[0]));
    int all = rc;
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    world_finalize(&W);
    return all;
}
