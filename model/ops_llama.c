/*
 * Llama's layers (see ops_llama.h): RMSNorm, rotary embeddings, SwiGLU and
 * grouped-query attention.
 *
 * The attention follows ops.c's: 64 query rows at a time against the keys
 * up to the block's last row, one sgemm for the scores and one for P V; the
 * backward recomputes P from the saved log-sum-exp. Query head h simply
 * points its key/value reads at head h / (NH / NKV) with the key/value
 * tensor's own row stride, so grouped heads share K and V without copies,
 * and their dK, dV contributions accumulate into the shared head's rows.
 *
 * Threads as in ops.c: rows, elements, and heads of the attention; in the
 * backward a thread takes a whole key/value group (its query heads in
 * order), because the group's dK and dV are sums over those heads.
 */
#include "model/ops_llama.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "model/ops.h"

/* ---------------------------------------------------------------- RMSNorm */

void rmsnorm_forward(float *out, uint16_t *out16, float *rstd, const float *inp, const float *w,
                     int N, int C, float eps, cu_sum_t order) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C;
        float ss = cu_dot(x, x, C, order);
        float s = 1.0f / sqrtf(ss / (float)C + eps);
        float *o = out + (long)n * C;
        for (int i = 0; i < C; i++) o[i] = x[i] * s * w[i];
        if (out16) gemm_to_bf16(out16 + (long)n * C, o, C);
        rstd[n] = s;
    }
}

void rmsnorm_backward(float *dinp, uint16_t *dinp16, float *dw, const float *dout, const float *inp,
                      const float *w, const float *rstd, int N, int C, cu_sum_t order) {
    /* rows in parallel only when no weight gradient sums over them */
#pragma omp parallel for schedule(static) if (!dw)
    for (int n = 0; n < N; n++) {
        const float *d = dout + (long)n * C;
        const float *x = inp + (long)n * C;
        float s = rstd[n];
        /* g = dout * w; dx = s * (g - xhat * mean(g * xhat)), xhat = x * s */
        float mean_gx = 0.0f;
        if (order == CU_SUM_LANES) {
            float acc[CU_LANES] = {0};
            int i = 0;
            for (; i + CU_LANES <= C; i += CU_LANES)
                for (int l = 0; l < CU_LANES; l++) acc[l] += d[i + l] * w[i + l] * x[i + l] * s;
            for (int l = 0; i + l < C; l++) acc[l] += d[i + l] * w[i + l] * x[i + l] * s;
            mean_gx = cu_lanes_total(acc);
        } else {
            for (int i = 0; i < C; i++) mean_gx += d[i] * w[i] * x[i] * s;
        }
        mean_gx /= (float)C;
        if (dinp) {
            float *dx = dinp + (long)n * C;
            for (int i = 0; i < C; i++) dx[i] += s * (d[i] * w[i] - x[i] * s * mean_gx);
            if (dinp16) gemm_to_bf16(dinp16 + (long)n * C, dx, C);
        }
        if (dw) {
            for (int i = 0; i < C; i++) dw[i] += d[i] * x[i] * s;
        }
    }
}

/* ------------------------------------------------------------------- RoPE */

void rope_tables_freq(float *cos_t, float *sin_t, int maxT, int hs, const double *inv_freq) {
    int h2 = hs / 2;
    for (int i = 0; i < h2; i++) {
        for (int p = 0; p < maxT; p++) {
            double a = (double)p * inv_freq[i];
            cos_t[(long)p * h2 + i] = (float)cos(a);
            sin_t[(long)p * h2 + i] = (float)sin(a);
        }
    }
}

void rope_tables(float *cos_t, float *sin_t, int maxT, int hs, double theta) {
    int h2 = hs / 2;
    for (int i = 0; i < h2; i++) {
        double inv_freq = pow(theta, -2.0 * i / (double)hs);
        for (int p = 0; p < maxT; p++) {
            double a = (double)p * inv_freq;
            cos_t[(long)p * h2 + i] = (float)cos(a);
            sin_t[(long)p * h2 + i] = (float)sin(a);
        }
    }
}

/* sign +1 rotates by +angle (forward), -1 by -angle (the transpose). */
static void rope_apply(float *x, const float *cos_t, const float *sin_t, int B, int T, int nh,
                       int hs, int pos0, float sign) {
    int h2 = hs / 2;
#pragma omp parallel for schedule(static) collapse(2)
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *c = cos_t + (long)(pos0 + t) * h2;
            const float *sn = sin_t + (long)(pos0 + t) * h2;
            float *row = x + ((long)b * T + t) * nh * hs;
            for (int h = 0; h < nh; h++) {
                float *x1 = row + h * hs, *x2 = x1 + h2;
                for (int i = 0; i < h2; i++) {
                    float a = x1[i], bb = x2[i], s = sign * sn[i];
                    x1[i] = a * c[i] - bb * s;
                    x2[i] = bb * c[i] + a * s;
                }
            }
        }
    }
}

void rope_forward(float *x, const float *cos_t, const float *sin_t, int B, int T, int nh, int hs,
                  int pos0) {
    rope_apply(x, cos_t, sin_t, B, T, nh, hs, pos0, 1.0f);
}

void rope_backward(float *dx, const float *cos_t, const float *sin_t, int B, int T, int nh, int hs,
                   int pos0) {
    rope_apply(dx, cos_t, sin_t, B, T, nh, hs, pos0, -1.0f);
}

/* ----------------------------------------------------------------- SwiGLU */

void swiglu_forward(float *h, const float *gate, const float *up, long n) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float g = gate[i];
        h[i] = g / (1.0f + cu_expf(-g)) * up[i];
    }
}

void swiglu_backward(float *dgate, float *dup, const float *dh, const float *gate, const float *up,
                     long n) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        float g = gate[i];
        float sg = 1.0f / (1.0f + cu_expf(-g));
        float silu = g * sg;
        dup[i] = dh[i] * silu;
        dgate[i] = dh[i] * up[i] * sg * (1.0f + g * (1.0f - sg));
    }
}

/* -------------------------------------------------------------- attention */

#define GQA_BLOCK 64 /* query rows per block, as ops.c's ATT_BLOCK */

void attention_gqa_forward(float *out, float *lse, const float *q, const float *k, const float *v,
                           float *scratch, int B, int T, int NH, int NKV, int hs, int window,
                           cu_sum_t order) {
    int C = NH * hs, KVC = NKV * hs, group = NH / NKV;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static) num_threads(attention_threads())
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        float *S = scratch + attention_thread_floats(T) * omp_get_thread_num();
        const float *qh = q + (long)b * T * C + h * hs;
        const float *kh = k + (long)b * T * KVC + (h / group) * hs;
        const float *vh = v + (long)b * T * KVC + (h / group) * hs;
        float *o = out + (long)b * T * C + h * hs;
        float *l = lse + ((long)b * NH + h) * T;
        for (int q0 = 0; q0 < T; q0 += GQA_BLOCK) {
            int nq = T - q0 < GQA_BLOCK ? T - q0 : GQA_BLOCK;
            int k0 = attention_first_key(q0, window), nk = q0 + nq - k0;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hs, scale,
                        qh + (long)q0 * C, C, kh + (long)k0 * KVC, KVC, 0.0f, S, nk);
            for (int i = 0; i < nq; i++)
                attention_softmax_row(S + (long)i * nk, q0 + i, k0, nk, window, &l[q0 + i], 0,
                                      order);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, nk, 1.0f, S, nk,
                        vh + (long)k0 * KVC, KVC, 0.0f, o + (long)q0 * C, C);
        }
    }
}

/* The backward of query head h of batch row b (see attention_gqa_backward);
 * adds its share of the key/value head's dK and dV. */
static void gqa_head_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                              const float *k, const float *v, const float *out, const float *lse,
                              float *scratch, int b, int h, int T, int NH, int NKV, int hs,
                              int window, cu_sum_t order) {
    int C = NH * hs, KVC = NKV * hs, group = NH / NKV;
    float scale = 1.0f / sqrtf((float)hs);
    float *P = scratch;
    float *dP = scratch + (long)GQA_BLOCK * T;
    float *D = dP + (long)GQA_BLOCK * T;
    long qoff = (long)b * T * C + h * hs, kvoff = (long)b * T * KVC + (h / group) * hs;
    const float *qh = q + qoff;
    const float *o = out + qoff, *dO = dout + qoff;
    float *dqh = dq + qoff;
    const float *l = lse + ((long)b * NH + h) * T;
    for (int q0 = 0; q0 < T; q0 += GQA_BLOCK) {
        int nq = T - q0 < GQA_BLOCK ? T - q0 : GQA_BLOCK;
        /* keys from k0: K, V and their gradients start there */
        int k0 = attention_first_key(q0, window), nk = q0 + nq - k0;
        long koff = kvoff + (long)k0 * KVC;
        const float *kh = k + koff, *vh = v + koff;
        float *dkh = dk + koff, *dvh = dv + koff;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hs, scale, qh + (long)q0 * C,
                    C, kh, KVC, 0.0f, P, nk);
        for (int i = 0; i < nq; i++) {
            float li = l[q0 + i];
            attention_softmax_row(P + (long)i * nk, q0 + i, k0, nk, window, &li, 1, order);
            const float *oi = o + (long)(q0 + i) * C, *di = dO + (long)(q0 + i) * C;
            D[i] = cu_dot(oi, di, hs, order);
        }
        /* dV[0:nk] += P^T dO_blk */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hs, nq, 1.0f, P, nk,
                    dO + (long)q0 * C, C, 1.0f, dvh, KVC);
        /* dP = dO_blk V[0:nk]^T, then dS = P * (dP - D) in place */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hs, 1.0f, dO + (long)q0 * C, C,
                    vh, KVC, 0.0f, dP, nk);
        for (int i = 0; i < nq; i++) {
            float *ds = dP + (long)i * nk;
            const float *p = P + (long)i * nk;
            for (int j = 0; j < nk; j++) ds[j] = p[j] * (ds[j] - D[i]);
        }
        /* dQ_blk = scale * dS K[0:nk]; dK[0:nk] += scale * dS^T Q_blk */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, nk, scale, dP, nk, kh, KVC,
                    0.0f, dqh + (long)q0 * C, C);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hs, nq, scale, dP, nk,
                    qh + (long)q0 * C, C, 1.0f, dkh, KVC);
    }
}

void attention_gqa_backward(float *dq, float *dk, float *dv, const float *dout, const float *q,
                            const float *k, const float *v, const float *out, const float *lse,
                            float *scratch, int B, int T, int NH, int NKV, int hs, int window,
                            cu_sum_t order) {
    int KVC = NKV * hs, group = NH / NKV;
    memset(dk, 0, sizeof(float) * (size_t)B * T * KVC);
    memset(dv, 0, sizeof(float) * (size_t)B * T * KVC);
    /* a thread per key/value group: its query heads in order, as one thread */
#pragma omp parallel for schedule(static) num_threads(attention_threads())
    for (int bg = 0; bg < B * NKV; bg++) {
        int b = bg / NKV, g = bg % NKV;
        float *S = scratch + attention_thread_floats(T) * omp_get_thread_num();
        for (int h = g * group; h < (g + 1) * group; h++)
            gqa_head_backward(dq, dk, dv, dout, q, k, v, out, lse, S, b, h, T, NH, NKV, hs, window,
                              order);
    }
}
