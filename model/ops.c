/*
 * Transformer layers as forward/backward pairs (see ops.h for conventions).
 *
 * Matrix products go to OpenBLAS's sgemm; everything else is written as
 * simple loops over contiguous rows that the compiler vectorises. The two
 * pieces that matter for memory are here too: attention that recomputes its
 * probabilities in the backward from a saved log-sum-exp (flash-attention's
 * idea, done with blocked sgemm), and the LM head fused with cross-entropy
 * over row chunks.
 *
 * Threads (OpenMP, as many as omp_get_max_threads(), which train.threads
 * sets): rows of the norms and of the loss, elements of GELU, heads of the
 * attention. Every output element is computed by exactly one thread with
 * the same arithmetic as a single thread would, and sums over rows (weight
 * gradients of the norms, the loss) stay serial in row order, so results do
 * not depend on the thread count.
 */
#include "model/ops.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <omp.h>
#include <string.h>

/* ---------------------------------------------------------------- encoder */

void encoder_forward(float *out, const int32_t *inp, const float *wte, const float *wpe, int B,
                     int T, int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            float *o = out + ((long)b * T + t) * C;
            const float *e = wte + (long)inp[b * T + t] * C;
            const float *p = wpe + (long)t * C;
            for (int i = 0; i < C; i++) o[i] = e[i] + p[i];
        }
    }
}

void encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp, int B, int T,
                      int C) {
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < T; t++) {
            const float *d = dout + ((long)b * T + t) * C;
            if (dwte) {
                float *e = dwte + (long)inp[b * T + t] * C;
                for (int i = 0; i < C; i++) e[i] += d[i];
            }
            if (dwpe) {
                float *p = dwpe + (long)t * C;
                for (int i = 0; i < C; i++) p[i] += d[i];
            }
        }
    }
}

/* -------------------------------------------------------------- layernorm */

void layernorm_forward(float *out, uint16_t *out16, float *mean, float *rstd, const float *inp,
                       const float *w, const float *b, int N, int C, cu_sum_t order) {
    const float eps = 1e-5f;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (long)n * C;
        float m = cu_sum(x, C, order) / (float)C;
        float v = cu_sum_sqdev(x, m, C, order) / (float)C;
        float s = 1.0f / sqrtf(v + eps);
        float *o = out + (long)n * C;
        for (int i = 0; i < C; i++) o[i] = (x[i] - m) * s * w[i] + b[i];
        if (out16) gemm_to_bf16(out16 + (long)n * C, o, C);
        mean[n] = m;
        rstd[n] = s;
    }
}

/* The backward's two row means, mean(dout * w) and mean(dout * w * xhat),
 * with the sums in lanes (CU_SUM_LANES). */
static void ln_back_means_lanes(const float *d, const float *x, const float *w, float m, float s,
                                int C, float *mean_d, float *mean_dx) {
    float ad[CU_LANES] = {0}, adx[CU_LANES] = {0};
    int i = 0;
    for (; i + CU_LANES <= C; i += CU_LANES)
        for (int l = 0; l < CU_LANES; l++) {
            float dn = d[i + l] * w[i + l];
            ad[l] += dn;
            adx[l] += dn * ((x[i + l] - m) * s);
        }
    for (int l = 0; i + l < C; l++) {
        float dn = d[i + l] * w[i + l];
        ad[l] += dn;
        adx[l] += dn * ((x[i + l] - m) * s);
    }
    *mean_d = cu_lanes_total(ad) / (float)C;
    *mean_dx = cu_lanes_total(adx) / (float)C;
}

void layernorm_backward(float *dinp, uint16_t *dinp16, float *dw, float *db, const float *dout,
                        const float *inp, const float *w, const float *mean, const float *rstd,
                        int N, int C, cu_sum_t order) {
    /* rows in parallel only when no weight gradient sums over them */
#pragma omp parallel for schedule(static) if (!dw && !db)
    for (int n = 0; n < N; n++) {
        const float *d = dout + (long)n * C;
        const float *x = inp + (long)n * C;
        float m = mean[n], s = rstd[n];
        /* dnorm = dout * w; dx = s * (dnorm - mean(dnorm) - xhat * mean(dnorm * xhat)) */
        float mean_d = 0.0f, mean_dx = 0.0f;
        if (order == CU_SUM_LANES) {
            ln_back_means_lanes(d, x, w, m, s, C, &mean_d, &mean_dx);
        } else {
            for (int i = 0; i < C; i++) {
                float xhat = (x[i] - m) * s;
                float dn = d[i] * w[i];
                mean_d += dn;
                mean_dx += dn * xhat;
            }
            mean_d /= (float)C;
            mean_dx /= (float)C;
        }
        if (dinp) {
            float *dx = dinp + (long)n * C;
            for (int i = 0; i < C; i++) {
                float xhat = (x[i] - m) * s;
                dx[i] += s * (d[i] * w[i] - mean_d - xhat * mean_dx);
            }
            if (dinp16) gemm_to_bf16(dinp16 + (long)n * C, dx, C);
        }
        if (dw) {
            for (int i = 0; i < C; i++) dw[i] += d[i] * (x[i] - m) * s;
        }
        if (db) {
            for (int i = 0; i < C; i++) db[i] += d[i];
        }
    }
}

/* ----------------------------------------------------------------- matmul */

void matmul_forward_on(gemm_t *g, float *out, const float *inp, const float *w, const float *bias,
                       int N, int IC, int OC, float beta) {
    gemm_xwt_bias(g, out, inp, w, bias, N, IC, OC, beta);
}

void matmul_forward(float *out, const float *inp, const float *w, const float *bias, int N, int IC,
                    int OC, float beta) {
    matmul_forward_on(NULL, out, inp, w, bias, N, IC, OC, beta);
}

void matmul_backward_on(gemm_t *g, float *dinp, float *dw, float *dbias, const float *dout,
                        const float *inp, const float *w, int N, int IC, int OC, float dinp_beta) {
    if (dinp) gemm_xw(g, dinp, dout, w, N, OC, IC, dinp_beta);
    if (dw) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, IC, N, 1.0f, dout, OC, inp, IC,
                    1.0f, dw, IC);
    }
    if (dbias) {
        for (int n = 0; n < N; n++) {
            const float *d = dout + (long)n * OC;
            for (int i = 0; i < OC; i++) dbias[i] += d[i];
        }
    }
}

void matmul_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                     const float *w, int N, int IC, int OC, float dinp_beta) {
    matmul_backward_on(NULL, dinp, dw, dbias, dout, inp, w, N, IC, OC, dinp_beta);
}

/* ------------------------------------------------------------------- gelu */

#define GELU_K 0.7978845608028654f /* sqrt(2 / pi) */

static inline float gelu_of(float x) {
    float u = GELU_K * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + cu_tanhf(u));
}

static inline float gelu_grad_of(float x) {
    float u = GELU_K * (x + 0.044715f * x * x * x);
    float th = cu_tanhf(u);
    float sech2 = 1.0f - th * th;
    return 0.5f * (1.0f + th) + 0.5f * x * sech2 * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
}

void gelu_forward(float *out, uint16_t *out16, const float *inp, long n) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        out[i] = gelu_of(inp[i]);
        if (out16) out16[i] = gemm_bf16_of(out[i]);
    }
}

void gelu_backward(float *dinp, uint16_t *dinp16, const float *inp, const float *dout, long n) {
#pragma omp parallel for schedule(static)
    for (long i = 0; i < n; i++) {
        dinp[i] = dout[i] * gelu_grad_of(inp[i]);
        if (dinp16) dinp16[i] = gemm_bf16_of(dinp[i]);
    }
}

/* -------------------------------------------------------------- attention */

/* Query rows handled together: big enough for sgemm to be efficient, small
 * enough that the (block x T) score tile stays in cache. */
#define ATT_BLOCK 64
/* Threads the attention uses at most: its scratch holds one block's tiles
 * per thread. */
#define ATT_MAX_THREADS 8

long attention_thread_floats(int T) {
    /* scores/probabilities and their gradient, plus one row of dO.O dots */
    return 2L * ATT_BLOCK * T + ATT_BLOCK;
}

long attention_scratch_floats(int T) {
    return attention_thread_floats(T) * ATT_MAX_THREADS;
}

int attention_threads(void) {
    int n = omp_get_max_threads();
    return n < ATT_MAX_THREADS ? n : ATT_MAX_THREADS;
}

void attention_softmax_row(float *s, int p, int k0, int nk, int window, float *lse, int recompute,
                           cu_sum_t order) {
    int lo = attention_first_key(p, window) - k0, valid = p + 1 - k0;
    for (int j = 0; j < lo; j++) s[j] = 0.0f;
    if (recompute) {
        float li = *lse;
        for (int j = lo; j < valid; j++) s[j] = cu_expf(s[j] - li);
    } else {
        float m = -FLT_MAX;
        for (int j = lo; j < valid; j++) m = s[j] > m ? s[j] : m;
        float sum = cu_exp_sum(s + lo, valid - lo, m, order);
        float inv = 1.0f / sum;
        for (int j = lo; j < valid; j++) s[j] *= inv;
        *lse = m + logf(sum);
    }
    for (int j = valid; j < nk; j++) s[j] = 0.0f;
}

/* S = scale * Q_blk K[0:nk]^T for rows [q0, q0+nq), with q/k rows strided by ld. */
static void att_scores(float *S, const float *q, const float *k, int q0, int nq, int nk, int ld,
                       int hs, float scale) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hs, scale, q + (long)q0 * ld, ld,
                k, ld, 0.0f, S, nk);
}

void attention_forward(float *out, uint16_t *out16, float *lse, const float *qkv, float *scratch,
                       int B, int T, int C, int NH, cu_sum_t order) {
    int hs = C / NH;
    int ld = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for schedule(static) num_threads(attention_threads())
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        float *S = scratch + attention_thread_floats(T) * omp_get_thread_num();
        const float *q = qkv + (long)b * T * ld + h * hs;
        const float *k = q + C;
        const float *v = q + 2 * C;
        float *o = out + (long)b * T * C + h * hs;
        float *l = lse + ((long)b * NH + h) * T;
        for (int q0 = 0; q0 < T; q0 += ATT_BLOCK) {
            int nq = T - q0 < ATT_BLOCK ? T - q0 : ATT_BLOCK;
            int nk = q0 + nq; /* causal: keys up to the block's last query */
            att_scores(S, q, k, q0, nq, nk, ld, hs, scale);
            for (int i = 0; i < nq; i++)
                attention_softmax_row(S + (long)i * nk, q0 + i, 0, nk, 0, &l[q0 + i], 0, order);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, nk, 1.0f, S, nk, v, ld,
                        0.0f, o + (long)q0 * C, C);
            for (int i = 0; out16 && i < nq; i++) {
                long at = (long)(q0 + i) * C;
                gemm_to_bf16(out16 + (o - out) + at, o + at, hs);
            }
        }
    }
}

void attention_backward(float *dqkv, uint16_t *dqkv16, const float *dout, const float *qkv,
                        const float *out, const float *lse, float *scratch, int B, int T, int C,
                        int NH, cu_sum_t order) {
    int hs = C / NH;
    int ld = 3 * C;
    float scale = 1.0f / sqrtf((float)hs);
    /* dK and dV accumulate over query blocks; dQ is written once per block. */
    for (int b = 0; b < B; b++) {
        float *dq_b = dqkv + (long)b * T * ld;
        for (int t = 0; t < T; t++) memset(dq_b + (long)t * ld + C, 0, sizeof(float) * 2 * C);
    }
    /* each (b, h) owns its columns of dQ, dK, dV */
#pragma omp parallel for schedule(static) num_threads(attention_threads())
    for (int bh = 0; bh < B * NH; bh++) {
        int b = bh / NH, h = bh % NH;
        float *P = scratch + attention_thread_floats(T) * omp_get_thread_num();
        float *dP = P + (long)ATT_BLOCK * T;
        float *D = dP + (long)ATT_BLOCK * T;
        const float *q = qkv + (long)b * T * ld + h * hs;
        const float *k = q + C;
        const float *v = q + 2 * C;
        float *dq = dqkv + (long)b * T * ld + h * hs;
        float *dk = dq + C;
        float *dv = dq + 2 * C;
        const float *o = out + (long)b * T * C + h * hs;
        const float *dO = dout + (long)b * T * C + h * hs;
        const float *l = lse + ((long)b * NH + h) * T;
        for (int q0 = 0; q0 < T; q0 += ATT_BLOCK) {
            int nq = T - q0 < ATT_BLOCK ? T - q0 : ATT_BLOCK;
            int nk = q0 + nq;
            att_scores(P, q, k, q0, nq, nk, ld, hs, scale);
            for (int i = 0; i < nq; i++) {
                float li = l[q0 + i];
                attention_softmax_row(P + (long)i * nk, q0 + i, 0, nk, 0, &li, 1, order);
                const float *oi = o + (long)(q0 + i) * C;
                const float *di = dO + (long)(q0 + i) * C;
                D[i] = cu_dot(oi, di, hs, order);
            }
            /* dV[0:nk] += P^T dO_blk */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hs, nq, 1.0f, P, nk,
                        dO + (long)q0 * C, C, 1.0f, dv, ld);
            /* dP = dO_blk V[0:nk]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hs, 1.0f,
                        dO + (long)q0 * C, C, v, ld, 0.0f, dP, nk);
            /* dS = P * (dP - D), kept in dP */
            for (int i = 0; i < nq; i++) {
                float *ds = dP + (long)i * nk;
                const float *p = P + (long)i * nk;
                for (int j = 0; j < nk; j++) ds[j] = p[j] * (ds[j] - D[i]);
            }
            /* dQ_blk = scale * dS K[0:nk] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hs, nk, scale, dP, nk, k, ld,
                        0.0f, dq + (long)q0 * ld, ld);
            /* dK[0:nk] += scale * dS^T Q_blk */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hs, nq, scale, dP, nk,
                        q + (long)q0 * ld, ld, 1.0f, dk, ld);
        }
        /* the head's columns of dQ, dK, dV are final now */
        for (int t = 0; dqkv16 && t < T; t++)
            for (int part = 0; part < 3; part++) {
                long at = (dq - dqkv) + (long)t * ld + (long)part * C;
                gemm_to_bf16(dqkv16 + at, dqkv + at, hs);
            }
    }
}

/* ------------------------------------------------ LM head + cross-entropy */

#define LM_HEAD_MAX_ROWS 256

/* Rows per chunk: the chunk's logits stay under ~32 MB, and at least 16 rows
 * so sgemm keeps its efficiency. */
static int lm_head_chunk_rows(int N, int V) {
    long rows = (8L << 20) / (V > 0 ? V : 1);
    if (rows < 16) rows = 16;
    if (rows > LM_HEAD_MAX_ROWS) rows = LM_HEAD_MAX_ROWS;
    return rows > N ? N : (int)rows;
}

long lm_head_scratch_floats(int N, int V) {
    return (long)lm_head_chunk_rows(N, V) * V;
}

void lm_head_logits_on(gemm_t *g, float *logits, const float *inp, const float *w, int N, int C,
                       int V) {
    gemm_xwt(g, logits, inp, w, N, C, V, 0.0f);
}

void lm_head_logits(float *logits, const float *inp, const float *w, int N, int C, int V) {
    lm_head_logits_on(NULL, logits, inp, w, N, C, V);
}

/* A row's maximum and the first index holding it, in lanes: lane l keeps the
 * maximum of elements l, l + CU_LANES, ... and where it first occurs; the
 * lanes are then merged by value, ties to the lower index. The same result
 * as one scan in index order (comparisons are exact; a NaN never wins a
 * comparison, so it only shows when z[0] is one, as in the scan). */
static int row_argmax(const float *z, int V) {
    float mx[CU_LANES];
    int ix[CU_LANES];
    for (int l = 0; l < CU_LANES; l++) mx[l] = z[0], ix[l] = 0;
    int j = 0;
    for (; j + CU_LANES <= V; j += CU_LANES)
        for (int l = 0; l < CU_LANES; l++) {
            int gt = z[j + l] > mx[l];
            mx[l] = gt ? z[j + l] : mx[l];
            ix[l] = gt ? j + l : ix[l];
        }
    for (int l = 0; j + l < V; l++)
        if (z[j + l] > mx[l]) mx[l] = z[j + l], ix[l] = j + l;
    float m = mx[0];
    int arg = ix[0];
    for (int l = 1; l < CU_LANES; l++)
        if (mx[l] > m || (mx[l] == m && ix[l] < arg)) m = mx[l], arg = ix[l];
    return arg;
}

/* Turns one row of logits into dloss/dlogits * grad_scale; returns the
 * row's loss and sets *correct when the argmax is the target. The gradient
 * goes to z (in place) and, when p16 is non-NULL, rounded to bf16 into p16
 * instead: z then holds exp(z - max) only. */
static double ce_row(float *z, uint16_t *p16, int V, int target, float grad_scale, int *correct,
                     cu_sum_t order) {
    int arg = row_argmax(z, V);
    float m = z[arg];
    float zt = z[target];
    float sum = cu_exp_sum(z, V, m, order);
    float inv = grad_scale / sum;
    if (p16) {
        for (int j = 0; j < V; j++) p16[j] = gemm_bf16_of(z[j] * inv);
        p16[target] = gemm_bf16_of(z[target] * inv - grad_scale);
    } else {
        for (int j = 0; j < V; j++) z[j] *= inv;
        z[target] -= grad_scale;
    }
    *correct = (arg == target);
    return (double)logf(sum) + (double)m - (double)zt;
}

double lm_head_loss(float *dinp, float *dw, long *n_valid, long *n_correct, const float *inp,
                    const float *w, const int32_t *targets, float *scratch, int N, int C, int V,
                    float grad_scale) {
    return lm_head_loss_on(NULL, dinp, dw, n_valid, n_correct, inp, w, targets, scratch, N, C, V,
                           grad_scale);
}

double lm_head_loss_on(gemm_t *g, float *dinp, float *dw, long *n_valid, long *n_correct,
                       const float *inp, const float *w, const int32_t *targets, float *scratch,
                       int N, int C, int V, float grad_scale) {
    int chunk = lm_head_chunk_rows(N, V);
    double loss = 0.0;
    long valid = 0, correct = 0;
    for (int r0 = 0; r0 < N; r0 += chunk) {
        int nr = N - r0 < chunk ? N - r0 : chunk;
        lm_head_logits_on(g, scratch, inp + (long)r0 * C, w, nr, C, V);
        /* in bf16 the gradient goes straight to the bf16 operand of dinp's
         * product (dw, full fine-tuning's, reads it in fp32) */
        uint16_t *p16 = dinp && !dw && gemm_has_bf16(g, w)
                            ? gemm_lend_activation(g, scratch, (size_t)nr * V)
                            : NULL;
        double row_loss[LM_HEAD_MAX_ROWS];
        int row_ok[LM_HEAD_MAX_ROWS];
#pragma omp parallel for schedule(static)
        for (int i = 0; i < nr; i++) {
            float *z = scratch + (long)i * V;
            uint16_t *p = p16 ? p16 + (long)i * V : NULL;
            int t = targets[r0 + i];
            row_ok[i] = -1;
            if (t < 0) {
                if (p)
                    memset(p, 0, sizeof(uint16_t) * V);
                else
                    memset(z, 0, sizeof(float) * V);
                continue;
            }
            row_loss[i] = ce_row(z, p, V, t, grad_scale, &row_ok[i], g ? CU_SUM_LANES : CU_SUM_SEQ);
        }
        /* the sum in row order, whatever the thread count */
        for (int i = 0; i < nr; i++) {
            if (row_ok[i] < 0) continue;
            loss += row_loss[i];
            valid++;
            correct += row_ok[i];
        }
        if (dinp) gemm_xw(g, dinp + (long)r0 * C, scratch, w, nr, V, C, 0.0f);
        if (dw) {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, nr, 1.0f, scratch, V,
                        inp + (long)r0 * C, C, 1.0f, dw, C);
        }
    }
    if (n_valid) *n_valid = valid;
    if (n_correct) *n_correct = correct;
    return loss;
}
