/*
 * Causal self-attention with its matrix products in bf16 (train.precision
 * bf16): the same algorithm as attention_forward/backward (ops.h) and the
 * GQA ones (ops_llama.h) — query blocks of 64 rows against the keys they
 * can see, probabilities recomputed in the backward from the saved
 * log-sum-exp — but each block's products run for all heads at once as one
 * batched oneDNN matmul (gemm_batched) on bf16 copies of q, k, v, dO and the
 * probabilities, with fp32 accumulation. Softmax, the log-sum-exp, the
 * dO.O dots and dS stay fp32 (rows summed in lanes when order says so).
 *
 * Heads: NH query heads of size hs, NKV key/value heads (NH a multiple of
 * NKV; query head h reads kv head h / (NH / NKV)). GPT-2: NKV = NH. A
 * sliding window W > 0 lets query position p see keys p - W < j <= p.
 *
 * Operands are row-major (B, T, ld) buffers with head h's columns at
 * h * hs: q and dq of width NH * hs, k, v, dk, dv of width NKV * hs, each
 * with its own row stride (GPT-2's q, k, v are one qkv buffer: ld 3C).
 * out and dout are (B, T, NH * hs) dense.
 *
 * No result depends on the thread count as long as oneDNN's batched
 * products do not (tests/test_attention_bf16.c checks 1 vs 2 threads).
 */
#ifndef CU_MODEL_ATTENTION_BF16_H
#define CU_MODEL_ATTENTION_BF16_H

#include <stdint.h>

#include "model/gemm.h"
#include "model/ops.h"

typedef struct {
    int B, T, NH, NKV, hs;
    int window; /* 0: every earlier key */
} att_shape_t;

/* out (and out16 when non-NULL: out rounded to bf16, for the projection
 * product, see gemm_lend_activation) and lse (B, NH, T). */
void attention_bf16_forward(gemm_t *g, float *out, uint16_t *out16, float *lse, const float *q,
                            int ldq, const float *k, const float *v, int ldkv, const att_shape_t *s,
                            cu_sum_t order);

/* dq is written; dk and dv are written too (zeroed, then accumulated over
 * the query blocks and the heads of each group). dqkv16, when non-NULL,
 * receives the (B, T, ldd) gradient buffer rounded to bf16 after all is
 * done (GPT-2's dqkv, whose dq, dk, dv share one buffer with row stride
 * lddq == lddkv). */
void attention_bf16_backward(gemm_t *g, float *dq, int lddq, float *dk, float *dv, int lddkv,
                             uint16_t *dqkv16, const float *dout, const float *q, int ldq,
                             const float *k, const float *v, int ldkv, const float *out,
                             const float *lse, const att_shape_t *s, cu_sum_t order);

#endif
