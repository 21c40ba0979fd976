/*
 * The matrix-product backend of the model: every product of an activation
 * with a base weight matrix (the linear layers and the LM head) goes
 * through here, so the weights' precision is one setting.
 *
 *  - fp32 (g == NULL, or a weight without a bf16 copy): OpenBLAS's sgemm,
 *    the exact call the layers always made, so fp32 results are unchanged
 *    bit for bit.
 *  - bf16: the weight's bf16 copy (registered with gemm_add_bf16) and the
 *    activation rounded to bf16 are multiplied by a oneDNN matmul with fp32
 *    accumulation and an fp32 result. oneDNN picks its kernel at run time
 *    (AVX-512 BF16, AMX, ...). Each (shape, accumulate) gets its primitive
 *    created once and kept in the backend's cache. Weights registered as
 *    packable are reordered once into the layout the kernel reads and kept
 *    so (gemm_add_bf16_packed).
 *
 * If oneDNN offers no bf16 matmul on this CPU (e.g. an ISA limit below
 * AVX-512, DNNL_MAX_CPU_ISA=AVX2), the backend still computes the same
 * bf16 products by emulation: bf16 operands widened to fp32 exactly, then
 * sgemm with fp32 accumulation. gemm_kernel_name says which one runs.
 *
 * A backend is not thread-safe: one per model.
 */
#ifndef CU_MODEL_GEMM_H
#define CU_MODEL_GEMM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/error.h"

typedef struct gemm gemm_t;

/* Creates a bf16 backend (allocates; gemm_free releases it). Fails only when
 * oneDNN cannot start (no CPU engine) or memory runs out. */
int gemm_create(gemm_t **out, cu_error_t *err);
void gemm_free(gemm_t *g);

/* Registers bf16, the bf16 copy of the n floats at f32: a weight pointer
 * inside [f32, f32 + n) is then read at the same offset in bf16. Any number
 * of ranges (a base can live in several buffers, or one tensor per mapped
 * file region); where ranges overlap the one registered last wins. Not
 * owned. */
int gemm_add_bf16(gemm_t *g, const float *f32, const uint16_t *bf16, size_t n, cu_error_t *err);
/* gemm_add_bf16, and with pack = 1 the backend may keep private copies of
 * these weights in the layout oneDNN's kernel reads (blocked, pairs of rows
 * interleaved), made on first use, one per orientation (x W^T, x W): the
 * kernel then skips re-blocking the weights on every call. Costs up to
 * twice the range's bf16 bytes; for weights that are the caller's own copy,
 * not for a shared mapping. gemm_bf16_changed must follow any change of
 * the bf16 values. */
int gemm_add_bf16_packed(gemm_t *g, const float *f32, const uint16_t *bf16, size_t n, int pack,
                         cu_error_t *err);
/* The bf16 values of the registered ranges changed: packed copies are
 * remade at their next use. */
void gemm_bf16_changed(gemm_t *g);
/* Bytes held in packed copies. */
size_t gemm_packed_bytes(const gemm_t *g);
/* Forgets every registered range (and the packed copies). */
void gemm_clear_bf16(gemm_t *g);

/* out (M, N) = beta * out + x (M, K) @ w^T with w (N, K) row-major. */
void gemm_xwt(gemm_t *g, float *out, const float *x, const float *w, int M, int K, int N,
              float beta);
/* gemm_xwt plus bias (N) added to every row, NULL: none. In bf16 oneDNN adds
 * it inside the kernel (out = beta * out + (x w^T + bias)); in fp32 it is
 * folded into out first (out = beta * out + bias, then += x w^T), the order
 * the layers always had. */
void gemm_xwt_bias(gemm_t *g, float *out, const float *x, const float *w, const float *bias, int M,
                   int K, int N, float beta);
/* out (M, N) = beta * out + x (M, K) @ w with w (K, N) row-major. */
void gemm_xw(gemm_t *g, float *out, const float *x, const float *w, int M, int K, int N,
             float beta);

/* Whether products with w run in bf16 (w lies in a registered range). */
int gemm_has_bf16(const gemm_t *g, const float *w);
/* Lends the backend's activation buffer for x (n values) to a caller that
 * makes the activation's bf16 values itself, typically rounding inside the
 * pass that computes x, which saves the product a pass over x. The caller
 * fills the n values; the next gemm_xwt/gemm_xw with this x and M*K == n
 * then reads them as its activation instead of rounding x (x's fp32 values
 * are not read at all, so a caller may skip writing them), and so may
 * gemm_small with a_last. Valid for that one product (gemm_batched calls
 * in between neither use nor expire it); NULL when g is NULL or memory runs
 * out (the product rounds x itself then). */
uint16_t *gemm_lend_activation(gemm_t *g, const float *x, size_t n);

/* out (M, N) = beta * out + alpha * op(a) (M, K) @ op(b) (K, N), row-major;
 * ta: a is held (K, M), tb: b is held (N, K). For the small products beside
 * the base weights (LoRA's rank-r ones). g NULL (fp32): OpenBLAS's sgemm on
 * the operands as they are. Else both operands rounded to bf16,
 * fp32 accumulation, on one thread whatever the thread count (so the
 * result never depends on it). a_last = 1 promises that a is the
 * activation of this backend's last gemm_xwt/gemm_xw, unchanged since: its
 * bf16 rounding is then reused (checked by address and size). */
void gemm_small(gemm_t *g, float *out, const float *a, int ta, int a_last, const float *b, int tb,
                int M, int N, int K, float alpha, float beta);

/* A batched product of operands already in bf16 (the caller rounded them):
 * for every batch index (i, j, l) below batch[0..2],
 *   out[i,j,l] (M, N) = beta * out[i,j,l] + alpha * a[i,j,l] (M, K) @ w[i,j,l] (K, N)
 * with fp32 accumulation and an fp32 out. Each operand is given by its
 * first element and its strides in elements: {batch 0, batch 1, batch 2,
 * row, column}; out's column stride must be 1. A zero batch stride of w
 * broadcasts it along that dimension. For attention's per-head products
 * (model/attention_bf16.c): strided views into the activations, no copies.
 * oneDNN's batched matmul, its primitive kept per descriptor; where oneDNN
 * has no bf16 kernel, each batch's operands widened to fp32 and sgemm.
 * Neither uses nor expires a lent activation (gemm_lend_activation), so
 * a pass may lend, run batched products, then fill the lent values. */
typedef struct {
    int batch[3], M, K, N;
    long a[5], w[5], out[5];
    float alpha, beta;
} gemm_batch_t;
void gemm_batched(gemm_t *g, const gemm_batch_t *d, float *out, const uint16_t *a,
                  const uint16_t *w);
/* A buffer of at least bytes the backend keeps for its caller's bf16 work
 * (attention's scores and rounded operands), grown on demand and reused;
 * its contents do not survive a call that grows it. NULL when memory runs
 * out (gemm_status then reports it). */
void *gemm_workspace(gemm_t *g, size_t bytes);

/* What computes the bf16 products: oneDNN's implementation name of the
 * last primitive created (e.g. "brg:avx512_core_bf16"), or the emulation;
 * "none yet" before the first product. */
const char *gemm_kernel_name(const gemm_t *g);
/* Whether the last bf16 product was emulated (oneDNN had no bf16 kernel). */
int gemm_emulated(const gemm_t *g);
/* The first failure of a product (out of memory in the emulation), sticky;
 * CU_OK when none. The product's output is zero then. */
int gemm_status(const gemm_t *g, cu_error_t *err);

/* fp32 -> bf16, round to nearest even (NaN stays NaN, quiet), and back. */
static inline uint16_t gemm_bf16_of(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    uint32_t nan = (u & 0x7fffffffu) > 0x7f800000u;
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (uint16_t)(nan ? (u >> 16) | 0x40u : r);
}
void gemm_to_bf16(uint16_t *dst, const float *src, size_t n);
void gemm_from_bf16(float *dst, const uint16_t *src, size_t n);

/* oneDNN's version and the CPU ISA it uses ("avx512_core_bf16"), for logs. */
void gemm_describe(char *buf, size_t cap);

#endif
