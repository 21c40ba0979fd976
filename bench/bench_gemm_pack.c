/*
 * oneDNN's bf16 products through the model's backend (model/gemm.h) at one
 * shape, with the weights read in place (as a mapped, shared base is) and
 * with the backend's packed copies (oneDNN's own layout, what a base held
 * in private memory gets), in both orientations the model uses: the
 * forward's x W^T and the input gradient's dY W. Also the cost of remaking
 * the packed copies (a reorder, then the product), which tells whether
 * packing a matrix for a single use would pay. docs/performance.md.
 *
 * usage: bench_gemm_pack [--threads N] [M K N]
 *   W is N x K; default 512 4096 11008 (Llama-2-7B's MLP at T = 512), 1 thread
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/timer.h"
#include "model/blas.h"
#include "model/gemm.h"

static float *filled(long n, int mul) {
    float *p = malloc(sizeof(float) * (size_t)n);
    if (!p) {
        fprintf(stderr, "bench_gemm_pack: out of memory\n");
        exit(1);
    }
    for (long i = 0; i < n; i++) p[i] = (float)((i * mul) % 1000) / 1000.0f - 0.5f;
    return p;
}

/* best of 4: x W^T and dY W, seconds each */
static void best_of(gemm_t *g, float *o, float *di, const float *x, const float *dy, const float *w,
                    int M, int K, int N, double *fwd, double *bwd) {
    *fwd = *bwd = 1e30;
    for (int i = 0; i < 4; i++) {
        double t0 = cu_now();
        gemm_xwt(g, o, x, w, M, K, N, 0.0f);
        double t1 = cu_now();
        gemm_xw(g, di, dy, w, M, N, K, 0.0f);
        double t2 = cu_now();
        if (t1 - t0 < *fwd) *fwd = t1 - t0;
        if (t2 - t1 < *bwd) *bwd = t2 - t1;
    }
}

int main(int argc, char **argv) {
    blas_prefer_avx512(argv);
    int dims[3] = {512, 4096, 11008}, nd = 0, threads = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            threads = atoi(argv[++i]);
        } else if (nd < 3 && argv[i][0] != '-') {
            dims[nd++] = atoi(argv[i]);
        } else {
            fprintf(stderr,
                    "usage: %s [--threads N] [M K N]   (W is N x K; default 512 4096 11008, "
                    "1 thread)\n",
                    argv[0]);
            return strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    int M = dims[0], K = dims[1], N = dims[2];
    if (M <= 0 || K <= 0 || N <= 0 || threads <= 0 || (nd != 0 && nd != 3)) {
        fprintf(stderr, "bench_gemm_pack: give all three of M, K, N (positive) and threads > 0\n");
        return 2;
    }
    blas_set_threads(threads);
    float *w = filled((long)N * K, 7919), *x = filled((long)M * K, 31);
    float *dy = filled((long)M * N, 17), *o = filled((long)M * N, 1), *di = filled((long)M * K, 1);
    uint16_t *w16 = malloc(sizeof(uint16_t) * (size_t)N * K);
    if (!w16) return 1;
    gemm_to_bf16(w16, w, (size_t)N * K);
    cu_error_t err;
    gemm_t *plain = NULL, *packed = NULL;
    if (gemm_create(&plain, &err) || gemm_create(&packed, &err) ||
        gemm_add_bf16(plain, w, w16, (size_t)N * K, &err) ||
        gemm_add_bf16_packed(packed, w, w16, (size_t)N * K, 1, &err)) {
        fprintf(stderr, "bench_gemm_pack: %s\n", err.msg);
        return 1;
    }
    char about[128];
    gemm_describe(about, sizeof about);
    double flops = 2.0 * M * N * K, f, b;
    printf("M=%d K=%d N=%d, %d thread(s), %s\n", M, K, N, threads, about);
    best_of(plain, o, di, x, dy, w, M, K, N, &f, &b);
    printf("weights in place  x W^T %7.1f GFLOP/s (%7.1f ms)   dY W %7.1f GFLOP/s (%7.1f ms)\n",
           flops / f / 1e9, f * 1e3, flops / b / 1e9, b * 1e3);
    best_of(packed, o, di, x, dy, w, M, K, N, &f, &b);
    printf("packed copies     x W^T %7.1f GFLOP/s (%7.1f ms)   dY W %7.1f GFLOP/s (%7.1f ms)\n",
           flops / f / 1e9, f * 1e3, flops / b / 1e9, b * 1e3);
    gemm_bf16_changed(packed); /* both copies remade at their next use */
    double t0 = cu_now();
    gemm_xwt(packed, o, x, w, M, K, N, 0.0f);
    double t1 = cu_now();
    gemm_xw(packed, di, dy, w, M, N, K, 0.0f);
    double t2 = cu_now();
    printf("repack + product  x W^T %7.1f ms                       dY W %7.1f ms\n",
           (t1 - t0) * 1e3, (t2 - t1) * 1e3);
    gemm_free(plain);
    gemm_free(packed);
    free(w), free(x), free(dy), free(o), free(di), free(w16);
    return 0;
}
