/*
 * The inside of the model object (gpt.h), shared by the two files that
 * implement it: gpt.c (buffers, LoRA, GPT-2) and llama.c (the Llama
 * blocks). Nothing outside model/ includes this header.
 */
#ifndef CU_MODEL_GPT_IMPL_H
#define CU_MODEL_GPT_IMPL_H

#include "model/gemm.h"
#include "model/gpt.h"
#include "model/ops.h"

struct gpt {
    gpt_config_t cfg;
    lora_config_t lora;
    float lora_scale;

    float *params;
    size_t n_params;
    gpt_tensor_t *ptensors;
    int n_ptensors;
    /* named base weights; per-layer tensors are stacked (L, ...) */
    float *wte, *wpe, *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb;
    float *ln2w, *ln2b, *fcw, *fcb, *fcprojw, *fcprojb, *lnfw, *lnfb;

    float *lora_buf;
    size_t n_lora;
    gpt_tensor_t *ltensors;
    int n_ltensors;
    long *lora_off;  /* (L, 4): offset of A in lora_buf, or -1 if not adapted */
    int lowest_site; /* smallest trainable site index, -1 in full fine-tuning */

    float *grads;
    size_t n_grads;
    gpt_grad_ready_fn ready;
    void *ready_ctx;

    /* activations of the last forward, for micro-batches up to B x T */
    int B, T; /* reserved size */
    int cur_B, cur_T, cur_train;
    float cur_grad_scale;
    uint64_t cur_dropout_key, dropout_row0;
    float *acts;
    int32_t *inputs;
    float *encoded, *ln1, *ln1_mean, *ln1_rstd, *qkv, *atty, *lse, *residual2;
    float *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu, *residual3, *lnf, *lnf_mean, *lnf_rstd;
    float *xa; /* (L, 4, N, r) adapter intermediates */
    /* backward scratch */
    float *dresidual, *dsmall, *dbig, *dqkv, *dxa, *drop_x, *drop_dx, *dlnf;
    float *att_scratch, *head_scratch;

    /* KV cache for single-sequence inference */
    int kv_max, kv_len;
    float *kv;
    float *kv_k, *kv_v, *kv_x, *kv_xn, *kv_qkv, *kv_att, *kv_h, *kv_hg, *kv_scores, *kv_xa;

    /* ---- Llama (llama.c); the GPT-2 names above that mean the same thing
     * (ln1, ln1_rstd, atty, lse, residual2, ln2, ln2_rstd, residual3, lnf,
     * lnf_rstd, encoded, xa and the backward scratch) are shared */
    int n_targets; /* adapted linears per block: 4 (GPT-2) or 7 (Llama) */
    float *embed, *attn_norm, *wq, *wk, *wv, *wo, *mlp_norm, *wgate, *wup, *wdown, *norm;
    float *lm_head;             /* = embed when tied */
    float *rope_cos, *rope_sin; /* (max_seq_len, head_size / 2) */
    float *q, *k, *v, *gate, *up, *hmlp;
    float *dq, *dk, *dv, *dgate, *dup;
    float *kv_gate;
    float *bq, *bk, *bv; /* Qwen2's q/k/v biases (L, Q), (L, KV), (L, KV); NULL without */
    float *bo;           /* StarCoder2's o_proj bias (L, C) */

    /* ---- precision (gpt_precision.c): the backend of the products with
     * base weights, NULL in fp32; in bf16 a copy of params, refreshed
     * before the next forward whenever params may have changed */
    gemm_t *gemm;
    int precision;
    uint16_t *params_bf16;
    int bf16_stale;
    /* per base tensor: 1 when gpt_map_bf16_tensor registered it (read in
     * place from the caller's mapping, neither copied nor converted); NULL
     * when none is */
    unsigned char *bf16_mapped;
    /* gpt_shard_master: fp32 values of the matrices read only in bf16 are
     * held in the caller's range only, and the caller keeps params_bf16
     * current */
    int master_sharded;

    int ckpt;       /* activation checkpointing (ACT below) */
    int att16_from; /* gpt_set_bf16_attention_from; 0: GPT_ATT16_FROM_T */
};

#define LAYER(p, l, size) ((p) + (long)(l) * (size))
/* A block's intermediate activations: one slot per layer, or with
 * activation checkpointing a single slot that the backward refills by
 * recomputing the block from its input (residual3 of the layer below). */
#define ACT(m, p, l, size) ((p) + (long)((m)->ckpt ? 0 : (l)) * (size))

/* LoRA on site (l, t) (see gpt.c): out += scale * dropout(x) A^T B^T, keeping
 * x A^T in xa; the backward adds the adapters' gradients and, when dx is not
 * NULL, their share of dx. No-ops for a site without an adapter. Each is
 * called right after the site's base product (forward: x W^T; backward,
 * when dx is not NULL: dout W): in bf16 the adapter's products reuse the
 * bf16 rounding of x or dout that product made. */
void gpt_impl_lora_forward(gpt_t *m, int l, int t, const float *x, float *out, int N, float *xa);
void gpt_impl_lora_backward(gpt_t *m, int l, int t, const float *dout, const float *x, float *dx,
                            int N);
float *gpt_impl_site_xa(gpt_t *m, int l, int t);
/* The gradient slot of a base weight, NULL when base weights are frozen. */
float *gpt_impl_pgrad(gpt_t *m, float *p);
/* Whether the gradient must flow below site (a trainable tensor is lower). */
int gpt_impl_need_below(const gpt_t *m, int site);
/* Reports layer l's adapter gradients to the grad-ready hook (LoRA only). */
void gpt_impl_report_lora_layer(gpt_t *m, int l);
/* Reports one tensor of the table to the grad-ready hook. */
void gpt_impl_report_tensor(gpt_t *m, const gpt_tensor_t *t);

/* One activation buffer of n floats, and where to store its address. */
typedef struct {
    float **p;
    long n;
} gpt_impl_span_t;

/* Replaces m->acts and m->inputs with buffers for B x T tokens, carving
 * m->acts into the spans (aligned); sets m->B and m->T. Allocates: the
 * buffers are freed with the model. */
int gpt_impl_carve_acts(gpt_t *m, const gpt_impl_span_t *parts, int np, int B, int T,
                        cu_error_t *err);

/* Appends a tensor of shape (d0) or (d0, d1) at *off to a table. */
void gpt_impl_add_tensor(gpt_tensor_t *t, int *n, size_t *off, const char *name, int d0, int d1);

/* Zeroed memory whose pages cost nothing until written (an anonymous
 * mapping, 64-byte aligned): the base weights, so that tensors a rank never
 * writes (a mapped bf16 base) stay out of its private memory. */
void *gpt_impl_alloc_lazy(size_t bytes, cu_error_t *err);
void gpt_impl_free_lazy(void *p, size_t bytes);

/* gpt_precision.c: brings the bf16 copy of the base weights up to date
 * (no-op in fp32 or when nothing changed); frees the precision state. */
int gpt_impl_sync_precision(gpt_t *m, cu_error_t *err);
void gpt_impl_free_precision(gpt_t *m);
/* How the model's norms and softmax rows sum (ops.h): in lanes in bf16, in
 * index order in fp32 (whose bits the reference tests pin). */
static inline cu_sum_t gpt_impl_sum(const gpt_t *m) {
    return m->precision == GPT_PREC_BF16 ? CU_SUM_LANES : CU_SUM_SEQ;
}

/* Whether this batch's attention runs its products in bf16
 * (attention_bf16.h): bf16 precision and sequences long enough. */
static inline int gpt_impl_att16(const gpt_t *m) {
    int from = m->att16_from > 0 ? m->att16_from : GPT_ATT16_FROM_T;
    return m->gemm && m->cur_T >= from;
}

/* llama.c */
/* Layer l's grouped-query attention, Llama's and StarCoder2's: the fp32
 * attention (ops_llama.h) or, when gpt_impl_att16, attention_bf16.h's;
 * the output's bf16 rounding lent to the output projection in bf16. The
 * backward writes m->dq, m->dk, m->dv. */
void gpt_impl_gqa_forward(gpt_t *m, int l, float *atty, const float *q, const float *k,
                          const float *v, int hs);
void gpt_impl_gqa_backward(gpt_t *m, int l, const float *dout, const float *q, const float *k,
                           const float *v, const float *atty, int hs);
void llama_block_forward(gpt_t *m, int l, const float *residual);
int llama_layout_params(gpt_t *m, cu_error_t *err);
int llama_reserve(gpt_t *m, int B, int T, cu_error_t *err);
void llama_forward(gpt_t *m, const int32_t *targets, gpt_loss_t *loss);
void llama_backward(gpt_t *m);
int llama_kv_reserve(gpt_t *m, int max_len, cu_error_t *err);
int llama_kv_step(gpt_t *m, int32_t token, float *logits, cu_error_t *err);
double llama_flops_per_step(const gpt_t *m, int B, int T);

/* starcoder2.c: the same entry points for StarCoder2 */
void starcoder2_target_dims(const gpt_config_t *c, int t, int *in, int *out);
int starcoder2_layout_params(gpt_t *m, cu_error_t *err);
int starcoder2_reserve(gpt_t *m, int B, int T, cu_error_t *err);
void starcoder2_forward(gpt_t *m, const int32_t *targets, gpt_loss_t *loss);
void starcoder2_backward(gpt_t *m);
int starcoder2_kv_reserve(gpt_t *m, int max_len, cu_error_t *err);
int starcoder2_kv_step(gpt_t *m, int32_t token, float *logits, cu_error_t *err);
double starcoder2_flops_per_step(const gpt_t *m, int B, int T);

/* llama_family.c: the Hugging Face families' additions to the Llama block */
int llama_family_check(const gpt_config_t *c, cu_error_t *err);
/* Fills m->rope_cos/sin (allocated) with cfg's rope scaling applied. */
int llama_family_rope(gpt_t *m, int hs, cu_error_t *err);
/* Per-layer kinds of tensor the family adds after Llama's (0 or 3). */
int llama_family_kinds(const gpt_t *m);
/* Appends the family's per-layer tensors to the table; llama_family_bind
 * points the named pointers at them once params exist (off: where the
 * first one starts). Q = query width (n_head * head size), KV = key/value
 * width. */
void llama_family_layout(gpt_tensor_t *t, int *n, size_t *off, const gpt_config_t *c, int Q,
                         int KV);
void llama_family_bind(gpt_t *m, size_t off, int Q, int KV);
/* Qwen2: q, k, v (N rows) += their biases; the backward adds the biases'
 * gradients (full fine-tuning) from dq, dk, dv, taken before the rotary
 * embedding. No-ops without qkv_bias. */
void llama_family_qkv_bias(gpt_t *m, int l, float *q, float *k, float *v, int N, int Q, int KV);
void llama_family_qkv_bias_backward(gpt_t *m, int l, const float *dq, const float *dk,
                                    const float *dv, int N, int Q, int KV);

/* The common tail of the Llama-layout backward passes (Llama and its
 * families, StarCoder2): blocks from the top while a gradient still flows
 * (block_backward returns 0 when nothing below needs one), each layer's
 * gradients reported to the grad-ready hook as soon as they are final, then
 * the embedding (full fine-tuning) and the ends. Parameter tensors are laid
 * out as [embedding, kinds x n_layer stacked, ends...]; m->dresidual holds
 * dloss/d(top block output) on entry. */
void gpt_impl_backward_blocks(gpt_t *m, int kinds, int (*block_backward)(gpt_t *, int));

#endif
