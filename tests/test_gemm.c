/*
 * The bf16 matrix-product backend (model/gemm.h): weights registered as
 * packable (kept in oneDNN's own layout) give the same products, in both
 * orientations and with accumulation, as the same weights read in place;
 * after gemm_bf16_changed the packed copy follows new values; and the
 * products agree with fp32 arithmetic on the bf16-rounded operands. The
 * small products (gemm_small, LoRA's in bf16) do too in every transposition,
 * with alpha and beta, give the same bits on 1 and 2 threads, and reuse the
 * last activation's rounding only when it is that activation. A bias added
 * in the kernel, and an activation whose bf16 values the caller made
 * (lent), give what they should.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "core/rng.h"
#include "harness.h"
#include "model/gemm.h"

enum { M = 40, K = 96, N = 160 };

static void fill(float *p, int n, uint64_t seed) {
    cu_rng_t rng;
    cu_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) p[i] = cu_rng_normal(&rng);
}

/* Two backends over the same bf16 weights, one packed, one in place. */
typedef struct {
    gemm_t *packed, *plain;
    float w[K * N];
    uint16_t w16[K * N];
} pair_t;

static int pair_open(pair_t *p, uint64_t seed) {
    cu_error_t err;
    fill(p->w, K * N, seed);
    gemm_to_bf16(p->w16, p->w, K * N);
    int ok = gemm_create(&p->packed, &err) == CU_OK && gemm_create(&p->plain, &err) == CU_OK &&
             gemm_add_bf16_packed(p->packed, p->w, p->w16, K * N, 1, &err) == CU_OK &&
             gemm_add_bf16(p->plain, p->w, p->w16, K * N, &err) == CU_OK;
    CHECK_MSG(ok, "%s", err.msg);
    return ok;
}

static void pair_close(pair_t *p) {
    gemm_free(p->packed);
    gemm_free(p->plain);
}

/* out (M, n_out) from both backends, bitwise equal, and close to fp32 on
 * the rounded operands. */
static void check_same(pair_t *p, int trans, float beta, uint64_t seed) {
    int kin = trans ? K : N, nout = trans ? N : K;
    float *x = malloc(sizeof(float) * M * kin), *a = malloc(sizeof(float) * M * nout);
    float *b = malloc(sizeof(float) * M * nout), *ref = malloc(sizeof(float) * M * nout);
    uint16_t *x16 = malloc(sizeof(uint16_t) * M * kin);
    float *xr = malloc(sizeof(float) * M * kin), *wr = malloc(sizeof(float) * K * N);
    fill(x, M * kin, seed);
    fill(a, M * nout, seed + 1);
    memcpy(b, a, sizeof(float) * M * nout);
    memcpy(ref, a, sizeof(float) * M * nout);
    if (trans) {
        gemm_xwt(p->packed, a, x, p->w, M, K, N, beta);
        gemm_xwt(p->plain, b, x, p->w, M, K, N, beta);
    } else {
        gemm_xw(p->packed, a, x, p->w, M, N, K, beta);
        gemm_xw(p->plain, b, x, p->w, M, N, K, beta);
    }
    CHECK(gemm_status(p->packed, NULL) == CU_OK && gemm_status(p->plain, NULL) == CU_OK);
    CHECK_MSG(!memcmp(a, b, sizeof(float) * M * nout), "trans %d beta %g: packed != in place",
              trans, beta);
    gemm_to_bf16(x16, x, M * kin);
    gemm_from_bf16(xr, x16, M * kin);
    gemm_from_bf16(wr, p->w16, K * N);
    double maxrel = 0.0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < nout; j++) {
            double s = 0.0, mag = 0.0;
            for (int k = 0; k < kin; k++) {
                double wv = trans ? wr[j * K + k] : wr[k * K + j]; /* w (N, K) */
                s += (double)xr[i * kin + k] * wv;
                mag += fabs((double)xr[i * kin + k] * wv);
            }
            s += beta * ref[i * nout + j];
            mag += fabs(beta * ref[i * nout + j]);
            double rel = fabs(s - a[i * nout + j]) / (mag > 1e-6 ? mag : 1e-6);
            if (rel > maxrel) maxrel = rel;
        }
    CHECK_MSG(maxrel < 1e-5, "trans %d: off fp32 arithmetic by %.3g", trans, maxrel);
    free(x), free(a), free(b), free(ref), free(x16), free(xr), free(wr);
}

static void test_packed_equals_in_place(void) {
    pair_t p;
    if (!pair_open(&p, 3)) return;
    for (int trans = 0; trans < 2; trans++) {
        check_same(&p, trans, 0.0f, 10 + trans);
        check_same(&p, trans, 1.0f, 20 + trans);
        check_same(&p, trans, 0.0f, 30 + trans); /* again: the kept copy */
    }
    pair_close(&p);
}

static void test_packed_follows_changes(void) {
    pair_t p;
    if (!pair_open(&p, 5)) return;
    check_same(&p, 1, 0.0f, 40);
    check_same(&p, 0, 0.0f, 41);
    fill(p.w, K * N, 6); /* new values in the same buffers */
    gemm_to_bf16(p.w16, p.w, K * N);
    gemm_bf16_changed(p.packed);
    check_same(&p, 1, 0.0f, 42);
    check_same(&p, 0, 0.0f, 43);
    /* and without the notice the kept copy is what is read: the check can fail */
    float *a = malloc(sizeof(float) * M * N), *b = malloc(sizeof(float) * M * N);
    float x[M * K];
    fill(x, M * K, 44);
    gemm_xwt(p.packed, a, x, p.w, M, K, N, 0.0f);
    size_t kept = gemm_packed_bytes(p.packed);
    printf("packed copies: %zu bytes (%s)\n", kept, gemm_kernel_name(p.packed));
    for (int i = 0; i < K * N; i++) p.w16[i] ^= 0x0100; /* perturb every weight */
    gemm_xwt(p.packed, b, x, p.w, M, K, N, 0.0f);
    if (kept > 0) CHECK(!memcmp(a, b, sizeof(float) * M * N));
    gemm_bf16_changed(p.packed);
    gemm_xwt(p.packed, b, x, p.w, M, K, N, 0.0f);
    CHECK(memcmp(a, b, sizeof(float) * M * N) != 0);
    free(a), free(b);
    pair_close(&p);
}

/* out = beta * out + alpha * op(a) op(b) in double on the bf16-rounded
 * operands; the largest error relative to the sum of |terms|. */
static double small_err(const float *out, const float *out0, const float *a, int ta, const float *b,
                        int tb, int m, int n, int k, float alpha, float beta) {
    double worst = 0.0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double s = 0.0, mag = 0.0;
            for (int q = 0; q < k; q++) {
                uint16_t h[2];
                float v[2] = {ta ? a[q * m + i] : a[i * k + q], tb ? b[j * k + q] : b[q * n + j]};
                gemm_to_bf16(h, v, 2);
                gemm_from_bf16(v, h, 2);
                s += (double)v[0] * v[1];
                mag += fabs((double)v[0] * v[1]);
            }
            s = alpha * s + beta * out0[i * n + j];
            mag = fabs(alpha) * mag + fabs(beta * out0[i * n + j]);
            double e = fabs(s - out[i * n + j]) / (mag > 1e-6 ? mag : 1e-6);
            if (e > worst) worst = e;
        }
    return worst;
}

static void test_small_products(void) {
    enum { SM = 48, SN = 8, SK = 72 };
    gemm_t *g;
    cu_error_t err;
    CHECK(gemm_create(&g, &err) == CU_OK);
    float a[SM * SK], b[SK * SN], out0[SM * SN], out[SM * SN], again[SM * SN];
    fill(a, SM * SK, 50);
    fill(b, SK * SN, 51);
    fill(out0, SM * SN, 52);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int acc = 0; acc < 2; acc++) {
                float alpha = acc ? 0.75f : 1.0f, beta = acc ? 1.0f : 0.0f;
                memcpy(out, out0, sizeof out);
                gemm_small(g, out, a, ta, 0, b, tb, SM, SN, SK, alpha, beta);
                double e = small_err(out, out0, a, ta, b, tb, SM, SN, SK, alpha, beta);
                CHECK_MSG(e < 1e-5, "ta %d tb %d alpha %g beta %g: off by %.3g", ta, tb, alpha,
                          beta, e);
                /* two threads: the same bits */
                int threads = omp_get_max_threads();
                omp_set_num_threads(2);
                memcpy(again, out0, sizeof again);
                gemm_small(g, again, a, ta, 0, b, tb, SM, SN, SK, alpha, beta);
                omp_set_num_threads(threads);
                CHECK_MSG(!memcmp(out, again, sizeof out), "ta %d tb %d: 1 vs 2 threads differ", ta,
                          tb);
            }
    CHECK(gemm_status(g, NULL) == CU_OK);
    gemm_free(g);
}

/* a_last reuses the rounding of the last product's activation: the same
 * bits as rounding anew; a different buffer of the same size, or one whose
 * last product ran in fp32 (no bf16 weight), is rounded anew. */
static void test_small_reuses_last_activation(void) {
    enum { SM = 40, SK = 96, SN = 8 };
    pair_t p;
    if (!pair_open(&p, 7)) return;
    gemm_t *g = p.plain;
    float x[SM * SK], y[SM * SK], b[SK * SN], base[SM * N], fresh[SM * SN], reused[SM * SN];
    fill(x, SM * SK, 60);
    fill(y, SM * SK, 61);
    fill(b, SK * SN, 62);
    gemm_small(g, fresh, x, 0, 0, b, 0, SM, SN, SK, 1.0f, 0.0f);
    gemm_xwt(g, base, x, p.w, SM, K, N, 0.0f); /* rounds x */
    gemm_small(g, reused, x, 0, 1, b, 0, SM, SN, SK, 1.0f, 0.0f);
    CHECK(!memcmp(fresh, reused, sizeof fresh));
    /* y is not the last activation: a_last must not hand out x's rounding */
    gemm_small(g, fresh, y, 0, 0, b, 0, SM, SN, SK, 1.0f, 0.0f);
    gemm_small(g, reused, y, 0, 1, b, 0, SM, SN, SK, 1.0f, 0.0f);
    CHECK(!memcmp(fresh, reused, sizeof fresh));
    /* x changed after an fp32 product (a weight without bf16 copy) */
    float wf[K * N];
    fill(wf, K * N, 63);
    gemm_xwt(g, base, x, p.w, SM, K, N, 0.0f);
    fill(x, SM * SK, 64);
    gemm_xwt(g, base, x, wf, SM, K, N, 0.0f); /* sgemm: nothing rounded */
    gemm_small(g, fresh, x, 0, 0, b, 0, SM, SN, SK, 1.0f, 0.0f);
    gemm_small(g, reused, x, 0, 1, b, 0, SM, SN, SK, 1.0f, 0.0f);
    CHECK(!memcmp(fresh, reused, sizeof fresh));
    pair_close(&p);
}

/* gemm_xwt_bias: in bf16 (packed and in place, with and without
 * accumulation) within fp32 rounding of beta * out + x16 w16^T + bias; in
 * fp32 (no backend) the same bits as folding the bias in and then sgemm. */
static void test_bias(void) {
    pair_t p;
    if (!pair_open(&p, 11)) return;
    float *x = malloc(sizeof(float) * M * K), *bias = malloc(sizeof(float) * N);
    float *out0 = malloc(sizeof(float) * M * N), *out = malloc(sizeof(float) * M * N);
    float *ref = malloc(sizeof(float) * M * N);
    fill(x, M * K, 70);
    fill(bias, N, 71);
    fill(out0, M * N, 72);
    gemm_t *gs[2] = {p.packed, p.plain};
    for (int gi = 0; gi < 2; gi++)
        for (int acc = 0; acc < 2; acc++) {
            float beta = acc ? 1.0f : 0.0f;
            memcpy(out, out0, sizeof(float) * M * N);
            gemm_xwt_bias(gs[gi], out, x, p.w, bias, M, K, N, beta);
            double worst = 0.0;
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    double s = 0.0, mag = 0.0;
                    for (int k = 0; k < K; k++) {
                        float xr, wr;
                        uint16_t a16 = gemm_bf16_of(x[i * K + k]);
                        gemm_from_bf16(&xr, &a16, 1);
                        gemm_from_bf16(&wr, &p.w16[j * K + k], 1);
                        s += (double)xr * wr;
                        mag += fabs((double)xr * wr);
                    }
                    s += bias[j] + beta * out0[i * N + j];
                    mag += fabs(bias[j]) + fabs(beta * out0[i * N + j]);
                    double e = fabs(s - out[i * N + j]) / mag;
                    if (e > worst) worst = e;
                }
            CHECK_MSG(worst < 1e-5, "%s, beta %g: off by %.3g", gi ? "in place" : "packed", beta,
                      worst);
            /* fp32 */
            memcpy(out, out0, sizeof(float) * M * N);
            gemm_xwt_bias(NULL, out, x, p.w, bias, M, K, N, beta);
            memcpy(ref, out0, sizeof(float) * M * N);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) ref[i * N + j] = beta * ref[i * N + j] + bias[j];
            if (!acc)
                for (int i = 0; i < M; i++) memcpy(ref + i * N, bias, sizeof(float) * N);
            gemm_xwt(NULL, ref, x, p.w, M, K, N, 1.0f);
            CHECK(!memcmp(out, ref, sizeof(float) * M * N));
        }
    CHECK(gemm_status(p.packed, NULL) == CU_OK && gemm_status(p.plain, NULL) == CU_OK);
    free(x), free(bias), free(out0), free(out), free(ref);
    pair_close(&p);
}

/* gemm_lend_activation: the product reads the lent values instead of x (x's
 * own rounding lent: the same bits as the product rounding x), and a lend
 * lasts for the next product only: any other call of the backend first
 * (here gemm_small) makes the product round x itself. */
static void test_lent_activation(void) {
    pair_t p;
    if (!pair_open(&p, 13)) return;
    gemm_t *g = p.plain;
    float x[M * K], b[K * 8], small[M * 8];
    float *own = malloc(sizeof(float) * M * N), *lent = malloc(sizeof(float) * M * N);
    fill(x, M * K, 80);
    fill(b, K * 8, 81);
    gemm_xwt(g, own, x, p.w, M, K, N, 0.0f);
    uint16_t *x16 = gemm_lend_activation(g, x, (size_t)M * K);
    CHECK(x16 != NULL);
    gemm_to_bf16(x16, x, (size_t)M * K);
    gemm_xwt(g, lent, x, p.w, M, K, N, 0.0f);
    CHECK(!memcmp(own, lent, sizeof(float) * M * N));
    /* lent zeros: the product reads them, not x */
    x16 = gemm_lend_activation(g, x, (size_t)M * K);
    memset(x16, 0, sizeof(uint16_t) * M * K);
    gemm_xwt(g, lent, x, p.w, M, K, N, 0.0f);
    CHECK(lent[0] == 0.0f && lent[M * N - 1] == 0.0f);
    /* the lend expires at the next call */
    x16 = gemm_lend_activation(g, x, (size_t)M * K);
    memset(x16, 0, sizeof(uint16_t) * M * K);
    gemm_small(g, small, x, 0, 0, b, 0, M, 8, K, 1.0f, 0.0f);
    gemm_xwt(g, lent, x, p.w, M, K, N, 0.0f);
    CHECK(!memcmp(own, lent, sizeof(float) * M * N));
    /* a different size is not x's: rounded anew */
    x16 = gemm_lend_activation(g, x, (size_t)M * K - 1);
    memset(x16, 0, sizeof(uint16_t) * (M * K - 1));
    gemm_xwt(g, lent, x, p.w, M, K, N, 0.0f);
    CHECK(!memcmp(own, lent, sizeof(float) * M * N));
    CHECK(gemm_lend_activation(NULL, x, 4) == NULL);
    free(own), free(lent);
    pair_close(&p);
}

TEST_MAIN(TEST(test_packed_equals_in_place), TEST(test_packed_follows_changes),
          TEST(test_small_products), TEST(test_small_reuses_last_activation), TEST(test_bias),
          TEST(test_lent_activation))
