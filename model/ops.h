/*
 * The layers of a decoder-only transformer as forward/backward pairs.
 *
 * Argument order follows llm.c: outputs first, then inputs, then sizes
 * (N = B*T rows, C channels, OC output channels). Shapes sit beside each
 * pointer. Weight matrices are stored (OC, IC) row-major, so a linear layer
 * computes out = inp @ w^T + bias.
 *
 * Gradient conventions, chosen so the backward needs no zeroing passes:
 *  - a weight or bias gradient pointer may be NULL (frozen: nothing computed)
 *    and is otherwise ACCUMULATED into (+=);
 *  - an input gradient is written as dinp = beta * dinp + ..., with beta
 *    given by the caller (0 to overwrite, 1 to accumulate), or NULL to skip.
 */
#ifndef CU_MODEL_OPS_H
#define CU_MODEL_OPS_H

#include <stdint.h>
#include <string.h>

#include "model/gemm.h"

/* The order a row's sums (norms, softmax) are taken in. Either is fixed, so
 * no result depends on the thread count or the world size:
 *  - CU_SUM_SEQ: one accumulator in index order, fp32's path (the bits the
 *    reference tests pin);
 *  - CU_SUM_LANES: CU_LANES accumulators, element i into lane i % CU_LANES,
 *    the lanes then added pairwise (cu_lanes_total). The compiler keeps the
 *    lanes in vector registers, so a row's sum is no longer a chain of
 *    dependent adds (about 10x faster on a 768-wide row). The bf16 path's:
 *    its products round to bf16 anyway. */
typedef enum { CU_SUM_SEQ = 0, CU_SUM_LANES = 1 } cu_sum_t;

#define CU_LANES 64

/* The lanes' total, added pairwise (lane l + lane l + w, w halving). */
static inline float cu_lanes_total(float *acc) {
    for (int w = CU_LANES / 2; w > 0; w /= 2)
        for (int l = 0; l < w; l++) acc[l] += acc[l + w];
    return acc[0];
}

/* out = wte[inp] + wpe[t] */
void encoder_forward(float *out,                         // (B, T, C)
                     const int32_t *inp,                 // (B, T)
                     const float *wte, const float *wpe, // (V, C), (maxT, C)
                     int B, int T, int C);
void encoder_backward(float *dwte, float *dwpe, // (V, C), (maxT, C), may be NULL
                      const float *dout,        // (B, T, C)
                      const int32_t *inp, int B, int T, int C);

/* out16, when non-NULL, also receives out rounded to bf16 (see gelu_forward). */
void layernorm_forward(float *out, uint16_t *out16,    // (N, C), (N, C) or NULL
                       float *mean, float *rstd,       // (N), (N)
                       const float *inp,               // (N, C)
                       const float *w, const float *b, // (C), (C)
                       int N, int C, cu_sum_t order);
/* dinp += ...; dw, db accumulated when non-NULL. dinp16, when non-NULL,
 * receives dinp's new values rounded to bf16 (see gelu_forward). */
void layernorm_backward(float *dinp, uint16_t *dinp16,       // (N, C), (N, C) or NULL
                        float *dw, float *db,                // (C), (C)
                        const float *dout, const float *inp, // (N, C), (N, C)
                        const float *w, const float *mean, const float *rstd, int N, int C,
                        cu_sum_t order);

/* out = beta * out + inp @ w^T + bias (bias may be NULL). */
void matmul_forward(float *out,        // (N, OC)
                    const float *inp,  // (N, IC)
                    const float *w,    // (OC, IC)
                    const float *bias, // (OC)
                    int N, int IC, int OC, float beta);
/* dinp = dinp_beta * dinp + dout @ w (skipped if dinp NULL); dw += dout^T @ inp;
 * dbias += column sums of dout. */
void matmul_backward(float *dinp, float *dw, float *dbias, // (N, IC), (OC, IC), (OC)
                     const float *dout,                    // (N, OC)
                     const float *inp, const float *w,     // (N, IC), (OC, IC)
                     int N, int IC, int OC, float dinp_beta);
/* The same two on a matrix-product backend (gemm.h): the products with w
 * (forward and dinp) run in its precision; dw and dbias stay fp32. With g
 * NULL they are matmul_forward and matmul_backward. */
void matmul_forward_on(gemm_t *g, float *out, const float *inp, const float *w, const float *bias,
                       int N, int IC, int OC, float beta);
void matmul_backward_on(gemm_t *g, float *dinp, float *dw, float *dbias, const float *dout,
                        const float *inp, const float *w, int N, int IC, int OC, float dinp_beta);

/* GELU, tanh approximation (GPT-2's). When out16 is non-NULL the output is
 * also written rounded to bf16 there (the next product's operand, lent by
 * gemm_lend_activation), in the same pass. */
void gelu_forward(float *out, uint16_t *out16, const float *inp, long n);
/* dinp = dout * gelu'(inp); dinp may alias dout. dinp16 as out16 above. */
void gelu_backward(float *dinp, uint16_t *dinp16, const float *inp, const float *dout, long n);

/* Causal multi-head self-attention over a fused (B, T, 3C) q|k|v tensor.
 * Memory-efficient: the forward keeps only the output and the per-row
 * log-sum-exp of the scores; the backward recomputes probabilities block by
 * block, so nothing of size B*NH*T*T is ever held. `scratch` needs
 * attention_scratch_floats(T) floats: attention_thread_floats(T) for each
 * of up to attention_threads() threads working on separate heads. */
/* The first key query position p sees: every earlier one, or with a
 * sliding window W > 0 the last W of them (Mistral's p - W < j <= p). */
static inline int attention_first_key(int p, int window) {
    return window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
}
/* One query row's probabilities in place: s holds the scaled scores of
 * keys k0 .. k0+nk-1 for query position p and becomes the softmax over
 * the keys p sees, zero elsewhere. recompute 0: the row's maximum and sum
 * (in `order`) are taken and its log-sum-exp written to *lse; 1:
 * P = exp(S - *lse) is recomputed (the backward). Every attention here,
 * fp32 and bf16, GPT-2's and GQA, runs its rows through this. */
void attention_softmax_row(float *s, int p, int k0, int nk, int window, float *lse, int recompute,
                           cu_sum_t order);
long attention_scratch_floats(int T);
long attention_thread_floats(int T);
int attention_threads(void);
/* out16 and dqkv16, when non-NULL, receive out and dqkv rounded to bf16 too
 * (see gelu_forward). */
void attention_forward(float *out, uint16_t *out16, // (B, T, C), (B, T, C) or NULL
                       float *lse,                  // (B, NH, T)
                       const float *qkv,            // (B, T, 3C)
                       float *scratch, int B, int T, int C, int NH, cu_sum_t order);
/* dqkv is overwritten. */
void attention_backward(float *dqkv, uint16_t *dqkv16, // (B, T, 3C), (B, T, 3C) or NULL
                        const float *dout,             // (B, T, C)
                        const float *qkv, const float *out, const float *lse, float *scratch, int B,
                        int T, int C, int NH, cu_sum_t order);

/* The language-model head fused with softmax cross-entropy, in row chunks so
 * the (N, V) logits are never held whole. Targets < 0 are ignored.
 * Returns the SUM of per-token losses over valid targets; *n_valid and
 * *n_correct (argmax == target) are set when non-NULL. When dinp is non-NULL
 * it receives grad_scale * dloss/dinp (overwritten), and dw (if non-NULL)
 * accumulates grad_scale * dloss/dw. `scratch` needs lm_head_scratch_floats
 * floats. */
long lm_head_scratch_floats(int N, int V);
double lm_head_loss(float *dinp, float *dw, // (N, C), (V, C)
                    long *n_valid, long *n_correct,
                    const float *inp,       // (N, C)
                    const float *w,         // (V, C): the tied token embedding
                    const int32_t *targets, // (N)
                    float *scratch, int N, int C, int V, float grad_scale);
/* logits = inp @ w^T for N rows (no loss). */
void lm_head_logits(float *logits, // (N, V)
                    const float *inp, const float *w, int N, int C, int V);
/* The same two with the head's products (logits and dinp) on a backend;
 * softmax, the loss and dw stay fp32. g NULL: as above. With g (bf16) the
 * softmax sums in lanes (CU_SUM_LANES), and without dw the gradient is
 * rounded to bf16 as it is made, straight into dinp's product operand. */
double lm_head_loss_on(gemm_t *g, float *dinp, float *dw, long *n_valid, long *n_correct,
                       const float *inp, const float *w, const int32_t *targets, float *scratch,
                       int N, int C, int V, float grad_scale);
void lm_head_logits_on(gemm_t *g, float *logits, const float *inp, const float *w, int N, int C,
                       int V);

/* exp with ~1e-7 relative error, written so loops over it vectorise:
 * round-to-nearest by adding and subtracting 1.5 * 2^23 (floorf would not
 * vectorise without -fno-trapping-math), then 2^n built in the exponent bits. */
static inline float cu_expf(float x) {
    x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
    float t = x * 1.44269504088896341f;
    float n = (t + 12582912.0f) - 12582912.0f;
    float f = x - n * 0.693145751953125f - n * 1.428606765330187045e-06f;
    float p =
        1.0f +
        f * (1.0f + f * (0.5f + f * (0.166666667f +
                                     f * (0.0416666667f +
                                          f * (0.00833333333f +
                                               f * (0.00138888889f + f * 0.000198412698f))))));
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

static inline float cu_tanhf(float x) {
    return 1.0f - 2.0f / (1.0f + cu_expf(2.0f * x));
}

/* s[j] = exp(s[j] - m) for j < n; returns their sum, taken in `order`. */
static inline float cu_exp_sum(float *s, int n, float m, cu_sum_t order) {
    if (order == CU_SUM_SEQ) {
        float sum = 0.0f;
        for (int j = 0; j < n; j++) {
            s[j] = cu_expf(s[j] - m);
            sum += s[j];
        }
        return sum;
    }
    float acc[CU_LANES] = {0};
    int j = 0;
    for (; j + CU_LANES <= n; j += CU_LANES)
        for (int l = 0; l < CU_LANES; l++) acc[l] += (s[j + l] = cu_expf(s[j + l] - m));
    for (int l = 0; j + l < n; l++) acc[l] += (s[j + l] = cu_expf(s[j + l] - m));
    return cu_lanes_total(acc);
}

/* The sum of x[i], i < n, taken in `order`. */
static inline float cu_sum(const float *x, int n, cu_sum_t order) {
    if (order == CU_SUM_SEQ) {
        float sum = 0.0f;
        for (int i = 0; i < n; i++) sum += x[i];
        return sum;
    }
    float acc[CU_LANES] = {0};
    int i = 0;
    for (; i + CU_LANES <= n; i += CU_LANES)
        for (int l = 0; l < CU_LANES; l++) acc[l] += x[i + l];
    for (int l = 0; i + l < n; l++) acc[l] += x[i + l];
    return cu_lanes_total(acc);
}

/* The sum of (x[i] - m)^2, i < n, taken in `order`. */
static inline float cu_sum_sqdev(const float *x, float m, int n, cu_sum_t order) {
    if (order == CU_SUM_SEQ) {
        float v = 0.0f;
        for (int i = 0; i < n; i++) {
            float d = x[i] - m;
            v += d * d;
        }
        return v;
    }
    float acc[CU_LANES] = {0};
    int i = 0;
    for (; i + CU_LANES <= n; i += CU_LANES)
        for (int l = 0; l < CU_LANES; l++) {
            float d = x[i + l] - m;
            acc[l] += d * d;
        }
    for (int l = 0; i + l < n; l++) {
        float d = x[i + l] - m;
        acc[l] += d * d;
    }
    return cu_lanes_total(acc);
}

/* The sum of a[i] * b[i], i < n, taken in `order`. */
static inline float cu_dot(const float *a, const float *b, int n, cu_sum_t order) {
    if (order == CU_SUM_SEQ) {
        float dot = 0.0f;
        for (int i = 0; i < n; i++) dot += a[i] * b[i];
        return dot;
    }
    float acc[CU_LANES] = {0};
    int i = 0;
    for (; i + CU_LANES <= n; i += CU_LANES)
        for (int l = 0; l < CU_LANES; l++) acc[l] += a[i + l] * b[i + l];
    for (int l = 0; i + l < n; l++) acc[l] += a[i + l] * b[i + l];
    return cu_lanes_total(acc);
}

#endif
