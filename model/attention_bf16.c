/*
 * Causal self-attention with bf16 products (see attention_bf16.h).
 *
 * One query block q0 .. q0+nq-1 sees keys k0 .. k0+nk-1 (k0 > 0 only with
 * a sliding window). The batch of a block's products is (B, NKV, G) with
 * G = NH / NKV query heads per kv head: the kv operand is broadcast over G
 * (a zero stride), so GQA needs no copies of K and V. The block's scores,
 * probabilities and their gradients for all heads are dense
 * (B, NKV, G, nq, nk) arrays in the backend's workspace.
 */
#include "model/attention_bf16.h"

#include <math.h>
#include <string.h>

#define ATT16_BLOCK 64 /* query rows per block, as the fp32 attention's */

/* The workspace's regions, in elements of their type. */
typedef struct {
    uint16_t *q, *k, *v, *dO; /* dense bf16 copies: (B, T, NH*hs) or (B, T, NKV*hs) */
    float *S;                 /* a block's scores / probabilities, (B, NH, nq, nk) */
    uint16_t *P;              /* the same rounded to bf16 */
    float *dP;                /* backward: dO V^T, then dS */
    uint16_t *dS;             /* dS rounded to bf16 */
    float *D;                 /* backward: dO . O per row, (B, NH, nq) */
} att_work_t;

/* The next `bytes` of the workspace at *at, 64-byte aligned. */
static void *carve(char **at, size_t bytes) {
    void *p = *at;
    *at += (bytes + 63) & ~(size_t)63;
    return p;
}

/* Carves the workspace (the backward's regions only for the backward); 0
 * when out of memory (gemm_status says so). Two passes: sizes, then
 * pointers. */
static int work_get(gemm_t *g, const att_shape_t *s, int backward, att_work_t *w) {
    size_t rows = (size_t)s->B * s->T, C = (size_t)s->NH * s->hs, KVC = (size_t)s->NKV * s->hs;
    size_t blk = (size_t)s->B * s->NH * ATT16_BLOCK * s->T;
    char *base = NULL;
    for (int pass = 0; pass < 2; pass++) {
        char *at = base;
        w->q = carve(&at, 2 * rows * C);
        w->k = carve(&at, 2 * rows * KVC);
        w->v = carve(&at, 2 * rows * KVC);
        w->S = carve(&at, 4 * blk);
        w->P = carve(&at, 2 * blk);
        w->dO = backward ? carve(&at, 2 * rows * C) : NULL;
        w->dP = backward ? carve(&at, 4 * blk) : NULL;
        w->dS = backward ? carve(&at, 2 * blk) : NULL;
        w->D = backward ? carve(&at, 4 * (size_t)s->B * s->NH * ATT16_BLOCK) : NULL;
        if (!pass && !(base = gemm_workspace(g, (size_t)(at - base)))) return 0;
    }
    return 1;
}

/* dst (B*T, cols) dense = src's rows (stride ld) rounded to bf16. */
static void round_rows(uint16_t *dst, const float *src, long rows, int cols, int ld) {
#pragma omp parallel for schedule(static)
    for (long r = 0; r < rows; r++) gemm_to_bf16(dst + r * cols, src + r * ld, (size_t)cols);
}

/* Query rows q0 .. q0+nq-1 and the keys k0 .. k0+nk-1 they see. */
typedef struct {
    int q0, nq, k0, nk;
} att_block_t;

static att_block_t block_at(const att_shape_t *s, int q0) {
    att_block_t k = {.q0 = q0, .nq = s->T - q0 < ATT16_BLOCK ? s->T - q0 : ATT16_BLOCK};
    k.k0 = attention_first_key(q0, s->window);
    k.nk = q0 + k.nq - k.k0;
    return k;
}

/* Row r of a block's (B, NH, nq) rows: its batch row and head; returns
 * its query position. */
static int row_at(const att_shape_t *s, const att_block_t *k, long r, int *b, int *h) {
    int bh = (int)(r / k->nq);
    *b = bh / s->NH, *h = bh % s->NH;
    return k->q0 + (int)(r % k->nq);
}

/* A block's product descriptor over the batch (B, NKV, G): only the sizes
 * and alpha/beta here; the callers fill the strides. */
static gemm_batch_t batch_of(const att_shape_t *s, int M, int K, int N, float alpha, float beta) {
    gemm_batch_t d;
    memset(&d, 0, sizeof d);
    d.batch[0] = s->B;
    d.batch[1] = s->NKV;
    d.batch[2] = s->NH / s->NKV;
    d.M = M, d.K = K, d.N = N;
    d.alpha = alpha, d.beta = beta;
    return d;
}

static void set5(long *dst, long s0, long s1, long s2, long s3, long s4) {
    dst[0] = s0, dst[1] = s1, dst[2] = s2, dst[3] = s3, dst[4] = s4;
}

/* S (B, NKV, G, nq, nk) = scale * Q_blk K[k0 .. k0+nk)^T, from the dense
 * bf16 copies. */
static void block_scores(gemm_t *g, const att_shape_t *s, const att_work_t *w, int q0, int nq,
                         int k0, int nk) {
    int G = s->NH / s->NKV, hs = s->hs;
    long C = (long)s->NH * hs, KVC = (long)s->NKV * hs, T = s->T;
    gemm_batch_t d = batch_of(s, nq, hs, nk, 1.0f / sqrtf((float)hs), 0.0f);
    set5(d.a, T * C, (long)G * hs, hs, C, 1);
    set5(d.w, T * KVC, hs, 0, 1, KVC);
    set5(d.out, (long)s->NKV * G * nq * nk, (long)G * nq * nk, (long)nq * nk, nk, 1);
    gemm_batched(g, &d, w->S, w->q + (long)q0 * C, w->k + (long)k0 * KVC);
}

void attention_bf16_forward(gemm_t *g, float *out, uint16_t *out16, float *lse, const float *q,
                            int ldq, const float *k, const float *v, int ldkv, const att_shape_t *s,
                            cu_sum_t order) {
    att_work_t w;
    if (!work_get(g, s, 0, &w)) return;
    int T = s->T, NH = s->NH, G = NH / s->NKV, hs = s->hs;
    long rows = (long)s->B * T, C = (long)NH * hs, KVC = (long)s->NKV * hs;
    round_rows(w.q, q, rows, (int)C, ldq);
    round_rows(w.k, k, rows, (int)KVC, ldkv);
    round_rows(w.v, v, rows, (int)KVC, ldkv);
    for (int q0 = 0; q0 < T; q0 += ATT16_BLOCK) {
        att_block_t blk = block_at(s, q0);
        int nq = blk.nq, k0 = blk.k0, nk = blk.nk;
        block_scores(g, s, &w, q0, nq, k0, nk);
        /* each row's softmax over the keys it sees, on one thread */
        long nrows = (long)s->B * NH * nq;
#pragma omp parallel for schedule(static)
        for (long r = 0; r < nrows; r++) {
            int b, h, p = row_at(s, &blk, r, &b, &h);
            float *sr = w.S + r * nk;
            attention_softmax_row(sr, p, k0, nk, s->window, &lse[((long)b * NH + h) * T + p], 0,
                                  order);
            gemm_to_bf16(w.P + r * nk, sr, (size_t)nk);
        }
        /* O_blk = P V[k0 .. k0+nk) */
        gemm_batch_t d = batch_of(s, nq, nk, hs, 1.0f, 0.0f);
        set5(d.a, (long)s->NKV * G * nq * nk, (long)G * nq * nk, (long)nq * nk, nk, 1);
        set5(d.w, T * KVC, hs, 0, KVC, 1);
        set5(d.out, T * C, (long)G * hs, hs, C, 1);
        gemm_batched(g, &d, out + (long)q0 * C, w.P, w.v + (long)k0 * KVC);
        if (out16) {
#pragma omp parallel for schedule(static)
            for (int b = 0; b < s->B; b++) {
                long at = ((long)b * T + q0) * C;
                gemm_to_bf16(out16 + at, out + at, (size_t)nq * C);
            }
        }
    }
}

/* dKV[k0 .. k0+nk) += alpha * X^T Y_blk summed over the G query heads of
 * each kv head, one head of the groups at a time (a batched product cannot
 * sum over a batch dimension): X a block's (B, NKV, G, nq, nk) bf16 array
 * (P or dS), Y a dense (B, T, NH*hs) bf16 copy (dO or q), dKV fp32 rows
 * ldd apart (dK or dV). */
static void kv_grad_add(gemm_t *g, const att_shape_t *s, float *dkv, int ldd, const uint16_t *X,
                        const uint16_t *Y, int q0, int nq, int k0, int nk, float alpha) {
    int G = s->NH / s->NKV, hs = s->hs;
    long T = s->T, C = (long)s->NH * hs, blk_h = (long)nq * nk;
    for (int gi = 0; gi < G; gi++) {
        gemm_batch_t d = batch_of(s, nk, nq, hs, alpha, 1.0f);
        d.batch[2] = 1;
        set5(d.a, (long)s->NKV * G * blk_h, (long)G * blk_h, 0, 1, nk);
        set5(d.w, T * C, (long)G * hs, 0, C, 1);
        set5(d.out, T * ldd, hs, 0, ldd, 1);
        gemm_batched(g, &d, dkv + (long)k0 * ldd, X + gi * blk_h, Y + (long)q0 * C + (long)gi * hs);
    }
}

/* dst rows (stride ld, cols wide) = 0 */
static void zero_rows(float *dst, long rows, int cols, int ld) {
    for (long r = 0; r < rows; r++) memset(dst + r * ld, 0, sizeof(float) * (size_t)cols);
}

void attention_bf16_backward(gemm_t *g, float *dq, int lddq, float *dk, float *dv, int lddkv,
                             uint16_t *dqkv16, const float *dout, const float *q, int ldq,
                             const float *k, const float *v, int ldkv, const float *out,
                             const float *lse, const att_shape_t *s, cu_sum_t order) {
    att_work_t w;
    if (!work_get(g, s, 1, &w)) return;
    int T = s->T, NH = s->NH, G = NH / s->NKV, hs = s->hs;
    long rows = (long)s->B * T, C = (long)NH * hs, KVC = (long)s->NKV * hs;
    float scale = 1.0f / sqrtf((float)hs);
    round_rows(w.q, q, rows, (int)C, ldq);
    round_rows(w.k, k, rows, (int)KVC, ldkv);
    round_rows(w.v, v, rows, (int)KVC, ldkv);
    round_rows(w.dO, dout, rows, (int)C, (int)C);
    zero_rows(dk, rows, (int)KVC, lddkv);
    zero_rows(dv, rows, (int)KVC, lddkv);
    for (int q0 = 0; q0 < T; q0 += ATT16_BLOCK) {
        att_block_t blk = block_at(s, q0);
        int nq = blk.nq, k0 = blk.k0, nk = blk.nk;
        long blk_b = (long)s->NKV * G * nq * nk, blk_kv = (long)G * nq * nk, blk_h = (long)nq * nk;
        block_scores(g, s, &w, q0, nq, k0, nk);
        /* P = exp(S - lse) (fp32 and bf16), D = dO . O per row */
        long nrows = (long)s->B * NH * nq;
#pragma omp parallel for schedule(static)
        for (long r = 0; r < nrows; r++) {
            int b, h, p = row_at(s, &blk, r, &b, &h);
            float *pr = w.S + r * nk, li = lse[((long)b * NH + h) * T + p];
            attention_softmax_row(pr, p, k0, nk, s->window, &li, 1, order);
            gemm_to_bf16(w.P + r * nk, pr, (size_t)nk);
            long at = ((long)b * T + p) * C + (long)h * hs;
            w.D[r] = cu_dot(out + at, dout + at, hs, order);
        }
        /* dV[k0 ..) += P^T dO_blk */
        kv_grad_add(g, s, dv, lddkv, w.P, w.dO, q0, nq, k0, nk, 1.0f);
        /* dP = dO_blk V[k0 ..)^T */
        gemm_batch_t d = batch_of(s, nq, hs, nk, 1.0f, 0.0f);
        set5(d.a, T * C, (long)G * hs, hs, C, 1);
        set5(d.w, T * KVC, hs, 0, 1, KVC);
        set5(d.out, blk_b, blk_kv, blk_h, nk, 1);
        gemm_batched(g, &d, w.dP, w.dO + (long)q0 * C, w.v + (long)k0 * KVC);
        /* dS = P * (dP - D), rounded to bf16 */
#pragma omp parallel for schedule(static)
        for (long r = 0; r < nrows; r++) {
            const float *pr = w.S + r * nk, *dpr = w.dP + r * nk;
            uint16_t *ds = w.dS + r * nk;
            float Dr = w.D[r];
            for (int j = 0; j < nk; j++) ds[j] = gemm_bf16_of(pr[j] * (dpr[j] - Dr));
        }
        /* dQ_blk = scale * dS K[k0 ..) */
        d = batch_of(s, nq, nk, hs, scale, 0.0f);
        set5(d.a, blk_b, blk_kv, blk_h, nk, 1);
        set5(d.w, T * KVC, hs, 0, KVC, 1);
        set5(d.out, T * lddq, (long)G * hs, hs, lddq, 1);
        gemm_batched(g, &d, dq + (long)q0 * lddq, w.dS, w.k + (long)k0 * KVC);
        /* dK[k0 ..) += scale * dS^T Q_blk */
        kv_grad_add(g, s, dk, lddkv, w.dS, w.q, q0, nq, k0, nk, scale);
    }
    if (dqkv16) round_rows(dqkv16, dq, rows, lddq, lddq);
}
