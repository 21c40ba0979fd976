/*
 * The gradient reducer's fixed order (mpi/reducer.c): whatever the buckets,
 * the order ranges arrive in, the number of ranks and whether the result is
 * gathered or left in owner slices, every element is ((m0 + m1) + m2) + ...
 * in float over the global micro-batches; the exchanged buffer is left
 * cleared with its pages given back; the slice norm is the same bits
 * computed whole or by slices. Run on 1 rank (unit) and under mpirun on 3
 * and 4 ranks (mpi).
 */
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

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

/* Sum of the global micro-batches j = 0 .. M-1, in float: ((c0 + c1) + c2)
 * + ..., forwards or backwards. */
static void global_sum(float *out, float *tmp, size_t n, int M, int backwards) {
    for (int k = 0; k < M; k++) {
        int j = backwards ? M - 1 - k : k;
        contribution(tmp, n, j);
        for (size_t i = 0; i < n; i++) out[i] = k == 0 ? tmp[i] : out[i] + tmp[i];
    }
}

static int all_zero(const float *b, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0.0f) return 0;
    return 1;
}

/* M = 12 global micro-batches, rank r taking r, r + W, ...: every element
 * ends as the same sum in global micro-batch order on 1, 3 or 4 ranks. */
static void check_mode(int gather_all) {
    const int M = 12;
    size_t n = 3 * REDUCER_ALIGN * (size_t)W.size + 777;
    cu_error_t err;
    float *buf = cu_alloc_pages(n * sizeof(float), &err), *want = calloc(n, sizeof(float));
    float *other = malloc(n * sizeof(float)), *rev = calloc(n, sizeof(float));
    global_sum(want, other, n, M, 0);
    global_sum(rev, other, n, M, 1);
    /* the order is visible in the bits: the test can fail */
    CHECK(memcmp(want, rev, n * sizeof(float)) != 0);
    grad_reducer_t *r;
    CHECK(reducer_create(&r, &W, buf, n, 4096, gather_all, &err) == CU_OK);
    for (int round = 0; round < 2; round++) {
        reducer_begin(r);
        for (int a = 0; a < M / W.size; a++) {
            contribution(other, n, a * W.size + W.rank);
            if (W.size > 1) CHECK(all_zero(buf, n)); /* the last exchange cleared it */
            /* as the backward does: added to what the buffer holds */
            for (size_t i = 0; i < n; i++) buf[i] += other[i];
            report_backwards(r, n);
            CHECK(reducer_end_micro_batch(r, &err) == CU_OK);
        }
        CHECK(reducer_finish(r, &err) == CU_OK);
        const float *got = reducer_sum(r);
        size_t lo = 0, hi = n;
        if (!gather_all) reducer_slice(n, W.size, W.rank, &lo, &hi);
        CHECK_MSG(memcmp(got + lo, want + lo, (hi - lo) * sizeof(float)) == 0,
                  "rank %d gather_all %d round %d: sums not in global micro-batch order", W.rank,
                  gather_all, round);
        if (W.size > 1) CHECK(reducer_calls(r) > 1);
        /* gathered into buf, or buf left all zeros */
        if (W.size > 1) CHECK(gather_all ? got == buf : all_zero(buf, n));
        if (W.size == 1) memset(buf, 0, n * sizeof(float)); /* the caller's gpt_zero_grad */
    }
    reducer_free(r);
    cu_free_pages(buf, n * sizeof(float));
    free(want);
    free(other);
    free(rev);
}

/* A micro-batch whose backward skipped a range is an error, not a sum
 * with an old value left in it. */
static void test_gap_reported(void) {
    if (W.size == 1) return; /* nothing is exchanged on one rank */
    size_t n = 2 * REDUCER_ALIGN * (size_t)W.size;
    cu_error_t err;
    float *buf = cu_alloc_pages(n * sizeof(float), &err);
    grad_reducer_t *r;
    CHECK(reducer_create(&r, &W, buf, n, 4096, 1, &err) == CU_OK);
    reducer_begin(r);
    reducer_ready(r, 0, n - 10);
    CHECK(reducer_end_micro_batch(r, &err) == CU_EINTERNAL);
    CHECK(strstr(err.msg, "reported") != NULL);
    reducer_free(r);
    cu_free_pages(buf, n * sizeof(float));
}

/* cu_zero_release clears exactly its range and gives back the whole pages
 * inside it (mincore: not resident any more). */
static void test_zero_release_gives_pages_back(void) {
    long page = sysconf(_SC_PAGESIZE);
    size_t bytes = 16 * (size_t)page;
    cu_error_t err;
    unsigned char *p = cu_alloc_pages(bytes, &err);
    CHECK(p != NULL);
    memset(p, 0xab, bytes);
    size_t a = (size_t)page + 100, b = 12 * (size_t)page + 7;
    cu_zero_release(p + a, b - a);
    /* before reading them (a read maps the shared zero page): pages 2 .. 11
     * are not resident any more, the partial pages 1 and 12 still are */
    unsigned char vec[16];
    CHECK(mincore(p, bytes, vec) == 0);
    int resident = 0;
    for (int k = 2; k < 12; k++) resident += vec[k] & 1;
    CHECK_MSG(resident == 0, "%d released pages resident", resident);
    CHECK((vec[1] & 1) && (vec[12] & 1));
    int ok = 1;
    for (size_t i = 0; i < bytes; i++) ok &= p[i] == ((i >= a && i < b) ? 0 : 0xab);
    CHECK(ok);
    cu_free_pages(p, bytes);
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
    double c = 0.0; /* on several: chunk sums in chunk order, whatever W */
    for (size_t k = 0; k * REDUCER_ALIGN < n; k++) {
        double part = 0.0;
        for (size_t i = k * REDUCER_ALIGN; i < n && i < (k + 1) * REDUCER_ALIGN; i++)
            part += (double)g[i] * g[i];
        c += part;
    }
    if (W.size > 1) CHECK(sqrt(c) == whole);
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
    static const cu_test_case_t cases[] = {TEST(test_gathered_sums_in_rank_order),
                                           TEST(test_owner_slices_in_rank_order),
                                           TEST(test_slices_tile_the_buffer),
                                           TEST(test_norm_whole_equals_slices),
                                           TEST(test_allgather_slices),
                                           TEST(test_gap_reported),
                                           TEST(test_zero_release_gives_pages_back)};
    int rc = cu_test_run(cases, (int)(sizeof cases / sizeof cases[0]));
    int all = rc;
    MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    world_finalize(&W);
    return all;
}
