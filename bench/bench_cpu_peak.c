/*
 * The ceiling of one core: its clock and its peak fp32 FMA and bf16
 * dot-product throughput, to read bench_train_step's figures against
 * (docs/performance.md, issue 14).
 *
 *  - clock: a chain of dependent integer adds, one cycle each;
 *  - fp32: 16 independent chains of vfmadd132ps on zmm registers (16 lanes,
 *    2 FLOP each);
 *  - bf16: 16 independent chains of vdpbf16ps on zmm registers (16 lanes,
 *    2 products, 4 FLOP each).
 *
 * Each figure is the best of many windows of a few milliseconds, so on a
 * shared machine the moments without interference set it. Virtual machines
 * often hide the cycle counter from perf stat; the add chain needs none.
 * A CPU without AVX-512 (or without AVX512_BF16) gets those lines skipped.
 *
 * usage: bench_cpu_peak [--windows N]
 */
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/timer.h"

#define R16(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define ITERS 100000L

static double clock_ghz(int windows) {
    const long n = 2000000;
    double best = 1e30;
    for (int w = 0; w < windows; w++) {
        unsigned long x = 0;
        double t0 = cu_now();
        for (long i = 0; i < n; i++)
            __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
        double t = cu_now() - t0;
        if (t < best) best = t;
    }
    return 4.0 * n / best / 1e9;
}

/* Seconds of ITERS x 16 independent vfmadd132ps zmm, best window. */
__attribute__((target("avx512f"))) static double fma_seconds(int windows, float *sink) {
    double best = 1e30;
    for (int w = 0; w < windows; w++) {
#define DECL(k) __m512 a##k = _mm512_set1_ps((float)(k));
        R16(DECL)
        __m512 b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
        double t0 = cu_now();
        for (long i = 0; i < ITERS; i++) {
#define FMA(k) __asm__ volatile("vfmadd132ps %1, %2, %0" : "+v"(a##k) : "v"(b), "v"(c));
            R16(FMA)
        }
        double t = cu_now() - t0;
        if (t < best) best = t;
#define SINK(k) *sink += _mm512_reduce_add_ps(a##k);
        R16(SINK)
    }
    return best;
}

/* Seconds of ITERS x 16 independent vdpbf16ps zmm, best window. */
__attribute__((target("avx512f,avx512bf16"))) static double dpbf16_seconds(int windows,
                                                                           float *sink) {
    double best = 1e30;
    for (int w = 0; w < windows; w++) {
        R16(DECL)
        __m512i p = _mm512_set1_epi16(0x3f80), q = _mm512_set1_epi16(0x3f80); /* 1.0 */
        double t0 = cu_now();
        for (long i = 0; i < ITERS; i++) {
#define DOT(k) __asm__ volatile("vdpbf16ps %1, %2, %0" : "+v"(a##k) : "v"(p), "v"(q));
            R16(DOT)
        }
        double t = cu_now() - t0;
        if (t < best) best = t;
        R16(SINK)
    }
    return best;
}

int main(int argc, char **argv) {
    int windows = 400;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--windows") && i + 1 < argc) {
            windows = atoi(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--windows N]\n", argv[0]);
            return !!strcmp(argv[i], "--help");
        }
    }
    if (windows < 1) windows = 1;
    __builtin_cpu_init();
    double ghz = clock_ghz(windows);
    printf("clock (dependent adds)        %6.3f GHz\n", ghz);
    float sink = 0.0f;
    if (__builtin_cpu_supports("avx512f")) {
        double gf = 16.0 * ITERS * 32 / fma_seconds(windows, &sink) / 1e9;
        printf("fp32 vfmadd132ps zmm          %6.1f GFLOP/s  %5.1f FLOP/cycle\n", gf, gf / ghz);
    } else {
        printf("fp32 vfmadd132ps zmm          skipped (no AVX-512)\n");
    }
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16")) {
        double gf = 16.0 * ITERS * 64 / dpbf16_seconds(windows, &sink) / 1e9;
        printf("bf16 vdpbf16ps zmm            %6.1f GFLOP/s  %5.1f FLOP/cycle\n", gf, gf / ghz);
    } else {
        printf("bf16 vdpbf16ps zmm            skipped (no AVX512_BF16)\n");
    }
    return sink == 12345.0f; /* keeps the chains' results alive */
}
