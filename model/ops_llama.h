/*
 * The layers Llama adds to ops.h, as forward/backward pairs with the same
 * conventions (outputs first, shapes beside pointers, weight gradients
 * accumulated, NULL to skip):
 *  - RMSNorm: y = w * x / sqrt(mean(x^2) + eps), no centring, no bias;
 *  - rotary position embeddings in Hugging Face's rotate_half layout: the
 *    first and second halves of each head's dimensions form the rotated
 *    pairs (i, i + hs/2), not adjacent (2i, 2i+1);
 *  - SwiGLU: h = silu(gate) * up;
 *  - causal grouped-query attention: NH query heads share NKV key/value
 *    heads (query head h reads key/value head h / (NH / NKV)), read in place
 *    from separate q, k, v tensors, so nothing is copied per query head.
 */
#ifndef CU_MODEL_OPS_LLAMA_H
#define CU_MODEL_OPS_LLAMA_H

#include <stdint.h>

#include "model/ops.h"

/* out16, when non-NULL, also receives out rounded to bf16 (as in
 * gelu_forward). */
void rmsnorm_forward(float *out, uint16_t *out16, // (N, C), (N, C) or NULL
                     float *rstd,                 // (N)
                     const float *inp,            // (N, C)
                     const float *w,              // (C)
                     int N, int C, float eps, cu_sum_t order);
/* dinp += ...; dw accumulated when non-NULL; dinp16 as in
 * layernorm_backward. */
void rmsnorm_backward(float *dinp, uint16_t *dinp16,       // (N, C), (N, C) or NULL
                      float *dw,                           // (C)
                      const float *dout, const float *inp, // (N, C), (N, C)
                      const float *w, const float *rstd, int N, int C, cu_sum_t order);

/* Tables for rope: cos/sin of pos * theta^(-2i/hs), i < hs/2, pos < maxT. */
void rope_tables(float *cos_t, float *sin_t, // (maxT, hs/2) each
                 int maxT, int hs, double theta);
/* The same from given frequencies: cos/sin of pos * inv_freq[i]. */
void rope_tables_freq(float *cos_t, float *sin_t, // (maxT, hs/2) each
                      int maxT, int hs, const double *inv_freq /* (hs/2) */);
/* Rotates x in place: row n of the (B, T) grid sits at position pos0 + t.
 * rope_backward applies the inverse rotation to a gradient in place. */
void rope_forward(float *x, // (B, T, nh * hs)
                  const float *cos_t, const float *sin_t, int B, int T, int nh, int hs, int pos0);
void rope_backward(float *dx, // (B, T, nh * hs)
                   const float *cos_t, const float *sin_t, int B, int T, int nh, int hs, int pos0);

/* h = silu(gate) * up */
void swiglu_forward(float *h,                           // (n)
                    const float *gate, const float *up, // (n), (n)
                    long n);
/* dgate and dup are overwritten; they may not alias dh. */
void swiglu_backward(float *dgate, float *dup,           // (n), (n)
                     const float *dh,                    // (n)
                     const float *gate, const float *up, // (n), (n)
                     long n);

/* Causal GQA attention, memory-efficient as ops.h's attention_forward (keeps
 * the output and the per-row log-sum-exp). hs = head size; C = NH * hs and
 * KVC = NKV * hs. scratch needs attention_scratch_floats(T) floats. window
 * > 0: position i attends to positions j with i - window < j <= i only
 * (Mistral's sliding window); 0: to every j <= i. */
void attention_gqa_forward(float *out, float *lse, // (B, T, C), (B, NH, T)
                           const float *q,         // (B, T, C)
                           const float *k,         // (B, T, KVC)
                           const float *v,         // (B, T, KVC)
                           float *scratch, int B, int T, int NH, int NKV, int hs, int window,
                           cu_sum_t order);
/* dq, dk, dv are overwritten. */
void attention_gqa_backward(float *dq, float *dk, float *dv, // (B,T,C), (B,T,KVC), (B,T,KVC)
                            const float *dout,               // (B, T, C)
                            const float *q, const float *k, const float *v, const float *out,
                            const float *lse, float *scratch, int B, int T, int NH, int NKV, int hs,
                            int window, cu_sum_t order);

#endif
