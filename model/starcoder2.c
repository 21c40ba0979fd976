/*
 * The StarCoder2 architecture of the model object (gpt.h): Llama's
 * attention (grouped-query, rotary embeddings in HF's rotate_half layout,
 * optionally a sliding window) in a GPT-2-like block: LayerNorm with bias,
 * biases on every linear, and a GELU-tanh MLP of two linears. gpt.c
 * dispatches here on cfg.arch as it does to llama.c.
 *
 * A block, with N = B*T rows, C = n_embd, KV = n_kv_head * head size and
 * F = ffn_hidden:
 *   ln1 = layernorm(x) * w1 + b1
 *   q = ln1 Wq^T + bq, k = ln1 Wk^T + bk, v = ln1 Wv^T + bv (plus LoRA), rope(q), rope(k)
 *   x2 = x + attention(q, k, v) Wo^T + bo
 *   ln2 = layernorm(x2) * w2 + b2
 *   x3 = x2 + gelu(ln2 Wfc^T + bfc) Wproj^T + bproj
 * then logits = layernorm(x_L) @ lm_head^T (tied to the embedding unless
 * the folder says otherwise). The adapted linears are the sites q, k, v, o,
 * c_fc, c_proj (SC2_*), numbered layer * 6 + target. Tensor names are
 * Hugging Face's without the `model.` prefix (`layers.0.mlp.c_fc.bias`,
 * `norm.weight`), matrices (out, in) as nn.Linear.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gpt_impl.h"
#include "model/ops.h"
#include "model/ops_llama.h"

/* Per-layer tensor kinds, stacked over layers in this order. */
enum {
    K_LN1W,
    K_LN1B,
    K_Q,
    K_QB,
    K_K,
    K_KB,
    K_V,
    K_VB,
    K_O,
    K_OB,
    K_LN2W,
    K_LN2B,
    K_FC,
    K_FCB,
    K_PROJ,
    K_PROJB,
    N_KINDS
};

typedef struct {
    int L, C, NH, NKV, hs, KV, F, V;
} dims_t;

static dims_t dims(const gpt_t *m) {
    const gpt_config_t *c = &m->cfg;
    dims_t d = {c->n_layer, c->n_embd,     c->n_head,    c->n_kv_head, c->n_embd / c->n_head,
                0,          c->ffn_hidden, c->vocab_size};
    d.KV = d.NKV * d.hs;
    return d;
}

void starcoder2_target_dims(const gpt_config_t *c, int t, int *in, int *out) {
    int C = c->n_embd, KV = c->n_kv_head * (C / c->n_head), F = c->ffn_hidden;
    static const int in_f[SC2_N_TARGETS] = {0, 0, 0, 0, 0, 1};
    static const int out_kind[SC2_N_TARGETS] = {0, 1, 1, 0, 2, 0};
    *in = in_f[t] ? F : C;
    *out = out_kind[t] == 0 ? C : out_kind[t] == 1 ? KV : F;
}

/* ---------------------------------------------------------------- layout */

int starcoder2_layout_params(gpt_t *m, cu_error_t *err) {
    dims_t d = dims(m);
    int tied = m->cfg.tie_embeddings;
    m->ptensors = calloc((size_t)(4 + N_KINDS * d.L), sizeof(gpt_tensor_t));
    if (!m->ptensors) return cu_error_set(err, CU_ENOMEM, "out of memory (tensor table)");
    size_t off = 0;
    int n = 0;
    gpt_impl_add_tensor(m->ptensors, &n, &off, "embed_tokens.weight", d.V, d.C);
    const struct {
        const char *fmt;
        int rows, cols; /* cols 0 = vector */
    } kinds[N_KINDS] = {
        {"layers.%d.input_layernorm.weight", d.C, 0},
        {"layers.%d.input_layernorm.bias", d.C, 0},
        {"layers.%d.self_attn.q_proj.weight", d.C, d.C},
        {"layers.%d.self_attn.q_proj.bias", d.C, 0},
        {"layers.%d.self_attn.k_proj.weight", d.KV, d.C},
        {"layers.%d.self_attn.k_proj.bias", d.KV, 0},
        {"layers.%d.self_attn.v_proj.weight", d.KV, d.C},
        {"layers.%d.self_attn.v_proj.bias", d.KV, 0},
        {"layers.%d.self_attn.o_proj.weight", d.C, d.C},
        {"layers.%d.self_attn.o_proj.bias", d.C, 0},
        {"layers.%d.post_attention_layernorm.weight", d.C, 0},
        {"layers.%d.post_attention_layernorm.bias", d.C, 0},
        {"layers.%d.mlp.c_fc.weight", d.F, d.C},
        {"layers.%d.mlp.c_fc.bias", d.F, 0},
        {"layers.%d.mlp.c_proj.weight", d.C, d.F},
        {"layers.%d.mlp.c_proj.bias", d.C, 0},
    };
    size_t start[N_KINDS];
    char name[64];
    for (int k = 0; k < N_KINDS; k++) {
        start[k] = off;
        for (int l = 0; l < d.L; l++) {
            snprintf(name, sizeof name, kinds[k].fmt, l);
            gpt_impl_add_tensor(m->ptensors, &n, &off, name, kinds[k].rows, kinds[k].cols);
        }
    }
    size_t norm_off = off;
    gpt_impl_add_tensor(m->ptensors, &n, &off, "norm.weight", d.C, 0);
    gpt_impl_add_tensor(m->ptensors, &n, &off, "norm.bias", d.C, 0);
    size_t head_off = off;
    if (!tied) gpt_impl_add_tensor(m->ptensors, &n, &off, "lm_head.weight", d.V, d.C);
    m->n_ptensors = n;
    m->n_params = off;
    m->params = gpt_impl_alloc_lazy(off * sizeof(float), err);
    if (!m->params) return err ? err->code : CU_ENOMEM;
    float *p = m->params;
    float **named[N_KINDS] = {&m->ln1w, &m->ln1b, &m->wq,      &m->bq,     &m->wk,   &m->bk,
                              &m->wv,   &m->bv,   &m->wo,      &m->bo,     &m->ln2w, &m->ln2b,
                              &m->fcw,  &m->fcb,  &m->fcprojw, &m->fcprojb};
    for (int k = 0; k < N_KINDS; k++) *named[k] = p + start[k];
    m->embed = p;
    m->lnfw = p + norm_off;
    m->lnfb = m->lnfw + d.C;
    m->lm_head = tied ? m->embed : p + head_off;
    long half = (long)m->cfg.max_seq_len * (d.hs / 2);
    m->rope_cos = cu_alloc_aligned((size_t)(2 * half + 1) * sizeof(float), err);
    if (!m->rope_cos) return err ? err->code : CU_ENOMEM;
    m->rope_sin = m->rope_cos + half;
    return llama_family_rope(m, d.hs, err);
}

/* ----------------------------------------------------------- activations */

int starcoder2_reserve(gpt_t *m, int B, int T, cu_error_t *err) {
    dims_t d = dims(m);
    long L = d.L, C = d.C, KV = d.KV, F = d.F, NH = d.NH;
    long N = (long)B * T, r = m->lora.enabled ? m->lora.r : 0;
    long in_max = F > C ? F : C;
    long La = m->ckpt ? 1 : L; /* layers of intermediate activations kept */
    gpt_impl_span_t parts[] = {
        {&m->encoded, N * C},
        {&m->ln1, La * N * C},
        {&m->ln1_mean, La * N},
        {&m->ln1_rstd, La * N},
        {&m->q, La * N * C},
        {&m->k, La * N * KV},
        {&m->v, La * N * KV},
        {&m->atty, La * N * C},
        {&m->lse, La * N * NH},
        {&m->residual2, La * N * C},
        {&m->ln2, La * N * C},
        {&m->ln2_mean, La * N},
        {&m->ln2_rstd, La * N},
        {&m->fch, La * N * F},
        {&m->fch_gelu, La * N * F},
        {&m->residual3, L * N * C},
        {&m->lnf, N * C},
        {&m->lnf_mean, N},
        {&m->lnf_rstd, N},
        {&m->xa, La * SC2_N_TARGETS * N * r},
        {&m->dresidual, N * C},
        {&m->dsmall, N * C},
        {&m->dbig, N * F},
        {&m->dq, N * C},
        {&m->dk, N * KV},
        {&m->dv, N * KV},
        {&m->dxa, N * r},
        {&m->drop_x, N * in_max},
        {&m->drop_dx, N * in_max},
        {&m->dlnf, N * C},
        {&m->att_scratch, attention_scratch_floats(T)},
        {&m->head_scratch, lm_head_scratch_floats((int)N, d.V)},
    };
    return gpt_impl_carve_acts(m, parts, (int)(sizeof parts / sizeof parts[0]), B, T, err);
}

/* ---------------------------------------------------------------- forward */

/* out = beta * out + x W^T + b, plus the site's adapter. */
static void linear(gpt_t *m, int l, int t, float *out, const float *x, const float *w,
                   const float *b, int N, int in, int outc, float beta) {
    matmul_forward_on(m->gemm, out, x, w, b, N, in, outc, beta);
    gpt_impl_lora_forward(m, l, t, x, out, N, gpt_impl_site_xa(m, l, t));
}

static void block_forward(gpt_t *m, int l, const float *residual) {
    dims_t d = dims(m);
    int B = m->cur_B, T = m->cur_T, N = B * T, C = d.C, KV = d.KV, F = d.F;
    float *ln1 = ACT(m, m->ln1, l, N * C), *q = ACT(m, m->q, l, N * C);
    float *k = ACT(m, m->k, l, N * KV), *v = ACT(m, m->v, l, N * KV);
    float *atty = ACT(m, m->atty, l, N * C), *res2 = ACT(m, m->residual2, l, N * C);
    float *ln2 = ACT(m, m->ln2, l, N * C), *fch = ACT(m, m->fch, l, N * F);
    float *fchg = ACT(m, m->fch_gelu, l, N * F), *res3 = LAYER(m->residual3, l, N * C);

    layernorm_forward(ln1, gemm_lend_activation(m->gemm, ln1, (size_t)N * C),
                      ACT(m, m->ln1_mean, l, N), ACT(m, m->ln1_rstd, l, N), residual,
                      LAYER(m->ln1w, l, C), LAYER(m->ln1b, l, C), N, C, gpt_impl_sum(m));
    linear(m, l, SC2_Q, q, ln1, LAYER(m->wq, l, C * C), LAYER(m->bq, l, C), N, C, C, 0.0f);
    linear(m, l, SC2_K, k, ln1, LAYER(m->wk, l, KV * C), LAYER(m->bk, l, KV), N, C, KV, 0.0f);
    linear(m, l, SC2_V, v, ln1, LAYER(m->wv, l, KV * C), LAYER(m->bv, l, KV), N, C, KV, 0.0f);
    rope_forward(q, m->rope_cos, m->rope_sin, B, T, d.NH, d.hs, 0);
    rope_forward(k, m->rope_cos, m->rope_sin, B, T, d.NKV, d.hs, 0);
    gpt_impl_gqa_forward(m, l, atty, q, k, v, d.hs);
    memcpy(res2, residual, sizeof(float) * (size_t)N * C);
    linear(m, l, SC2_O, res2, atty, LAYER(m->wo, l, C * C), LAYER(m->bo, l, C), N, C, C, 1.0f);

    layernorm_forward(ln2, gemm_lend_activation(m->gemm, ln2, (size_t)N * C),
                      ACT(m, m->ln2_mean, l, N), ACT(m, m->ln2_rstd, l, N), res2,
                      LAYER(m->ln2w, l, C), LAYER(m->ln2b, l, C), N, C, gpt_impl_sum(m));
    linear(m, l, SC2_FC, fch, ln2, LAYER(m->fcw, l, F * C), LAYER(m->fcb, l, F), N, C, F, 0.0f);
    gelu_forward(fchg, gemm_lend_activation(m->gemm, fchg, (size_t)N * F), fch, (long)N * F);
    memcpy(res3, res2, sizeof(float) * (size_t)N * C);
    linear(m, l, SC2_PROJ, res3, fchg, LAYER(m->fcprojw, l, C * F), LAYER(m->fcprojb, l, C), N, F,
           C, 1.0f);
}

void starcoder2_forward(gpt_t *m, const int32_t *targets, gpt_loss_t *loss) {
    dims_t d = dims(m);
    int N = m->cur_B * m->cur_T, C = d.C;
    for (int n = 0; n < N; n++)
        memcpy(m->encoded + (long)n * C, m->embed + (long)m->inputs[n] * C, sizeof(float) * C);
    const float *residual = m->encoded;
    for (int l = 0; l < d.L; l++) {
        block_forward(m, l, residual);
        residual = LAYER(m->residual3, l, N * C);
    }
    layernorm_forward(m->lnf, NULL, m->lnf_mean, m->lnf_rstd, residual, m->lnfw, m->lnfb, N, C,
                      gpt_impl_sum(m));
    gpt_loss_t out = {0};
    if (targets) {
        int train = m->cur_train;
        float *dhead = train ? gpt_impl_pgrad(m, m->lm_head) : NULL;
        out.loss_sum = lm_head_loss_on(m->gemm, train ? m->dlnf : NULL, dhead, &out.n_valid,
                                       &out.n_correct, m->lnf, m->lm_head, targets, m->head_scratch,
                                       N, C, d.V, m->cur_grad_scale);
    }
    if (loss) *loss = out;
}

/* --------------------------------------------------------------- backward */

/* linear's backward: W's and b's gradients when they train, the site's
 * adapter gradients, and dx = beta * dx + dout W plus the adapter's share
 * (dx NULL: nothing below needs it). */
static void linear_backward(gpt_t *m, int l, int t, float *dx, const float *dout, const float *x,
                            float *w, float *b, int N, int in, int outc, float beta) {
    matmul_backward_on(m->gemm, dx, gpt_impl_pgrad(m, w), gpt_impl_pgrad(m, b), dout, x, w, N, in,
                       outc, beta);
    gpt_impl_lora_backward(m, l, t, dout, x, dx, N);
}

/* The MLP's backward: dres holds dloss/dx3; on return dsmall holds
 * dloss/dln2. Returns 0 when nothing below needs a gradient. */
static int mlp_backward(gpt_t *m, int l) {
    dims_t d = dims(m);
    int N = m->cur_B * m->cur_T, C = d.C, F = d.F, base = l * SC2_N_TARGETS;
    int below = gpt_impl_need_below(m, base + SC2_PROJ);
    linear_backward(m, l, SC2_PROJ, below ? m->dbig : NULL, m->dresidual,
                    ACT(m, m->fch_gelu, l, N * F), LAYER(m->fcprojw, l, C * F),
                    LAYER(m->fcprojb, l, C), N, F, C, 0.0f);
    if (!below) return 0;
    gelu_backward(m->dbig, gemm_lend_activation(m->gemm, m->dbig, (size_t)N * F),
                  ACT(m, m->fch, l, N * F), m->dbig, (long)N * F);
    below = gpt_impl_need_below(m, base + SC2_FC);
    linear_backward(m, l, SC2_FC, below ? m->dsmall : NULL, m->dbig, ACT(m, m->ln2, l, N * C),
                    LAYER(m->fcw, l, F * C), LAYER(m->fcb, l, F), N, C, F, 0.0f);
    return below;
}

/* Backward of block l: m->dresidual holds dloss/d(block output) and on
 * return dloss/d(block input). Returns 0 when nothing below needs a
 * gradient. */
static int block_backward(gpt_t *m, int l) {
    dims_t d = dims(m);
    int B = m->cur_B, T = m->cur_T, N = B * T, C = d.C, KV = d.KV;
    int base = l * SC2_N_TARGETS;
    float *dres = m->dresidual, *dsmall = m->dsmall;
    const float *residual = l == 0 ? m->encoded : LAYER(m->residual3, l - 1, N * C);
    float *ln1 = ACT(m, m->ln1, l, N * C), *q = ACT(m, m->q, l, N * C);
    float *k = ACT(m, m->k, l, N * KV), *v = ACT(m, m->v, l, N * KV);
    float *atty = ACT(m, m->atty, l, N * C), *res2 = ACT(m, m->residual2, l, N * C);
    /* with activation checkpointing the slot still holds the top block's
     * activations from the forward: recompute this block's */
    if (m->ckpt && l < d.L - 1) block_forward(m, l, residual);

    if (!mlp_backward(m, l)) return 0;
    float *w = LAYER(m->ln2w, l, C);
    layernorm_backward(dres, gemm_lend_activation(m->gemm, dres, (size_t)N * C),
                       gpt_impl_pgrad(m, w), gpt_impl_pgrad(m, LAYER(m->ln2b, l, C)), dsmall, res2,
                       w, ACT(m, m->ln2_mean, l, N), ACT(m, m->ln2_rstd, l, N), N, C,
                       gpt_impl_sum(m));

    int below = gpt_impl_need_below(m, base + SC2_O);
    linear_backward(m, l, SC2_O, below ? dsmall : NULL, dres, atty, LAYER(m->wo, l, C * C),
                    LAYER(m->bo, l, C), N, C, C, 0.0f);
    if (!below) return 0;
    gpt_impl_gqa_backward(m, l, dsmall, q, k, v, atty, d.hs);
    rope_backward(m->dq, m->rope_cos, m->rope_sin, B, T, d.NH, d.hs, 0);
    rope_backward(m->dk, m->rope_cos, m->rope_sin, B, T, d.NKV, d.hs, 0);

    /* q, k, v read ln1: their input gradients sum into dsmall */
    below = gpt_impl_need_below(m, base + SC2_Q);
    float *dln = below ? dsmall : NULL;
    linear_backward(m, l, SC2_Q, dln, m->dq, ln1, LAYER(m->wq, l, C * C), LAYER(m->bq, l, C), N, C,
                    C, 0.0f);
    linear_backward(m, l, SC2_K, dln, m->dk, ln1, LAYER(m->wk, l, KV * C), LAYER(m->bk, l, KV), N,
                    C, KV, 1.0f);
    linear_backward(m, l, SC2_V, dln, m->dv, ln1, LAYER(m->wv, l, KV * C), LAYER(m->bv, l, KV), N,
                    C, KV, 1.0f);
    if (!below) return 0;
    w = LAYER(m->ln1w, l, C);
    layernorm_backward(dres, gemm_lend_activation(m->gemm, dres, (size_t)N * C),
                       gpt_impl_pgrad(m, w), gpt_impl_pgrad(m, LAYER(m->ln1b, l, C)), dsmall,
                       residual, w, ACT(m, m->ln1_mean, l, N), ACT(m, m->ln1_rstd, l, N), N, C,
                       gpt_impl_sum(m));
    return 1;
}

void starcoder2_backward(gpt_t *m) {
    dims_t d = dims(m);
    int N = m->cur_B * m->cur_T, C = d.C;
    memset(m->dresidual, 0, sizeof(float) * (size_t)N * C);
    layernorm_backward(m->dresidual, gemm_lend_activation(m->gemm, m->dresidual, (size_t)N * C),
                       gpt_impl_pgrad(m, m->lnfw), gpt_impl_pgrad(m, m->lnfb), m->dlnf,
                       LAYER(m->residual3, d.L - 1, N * C), m->lnfw, m->lnf_mean, m->lnf_rstd, N, C,
                       gpt_impl_sum(m));
    gpt_impl_backward_blocks(m, N_KINDS, block_backward);
}

/* -------------------------------------------------------------- KV cache */

int starcoder2_kv_reserve(gpt_t *m, int max_len, cu_error_t *err) {
    free(m->kv);
    m->kv = NULL;
    dims_t d = dims(m);
    long L = d.L, C = d.C, KV = d.KV, F = d.F, r = m->lora.enabled ? m->lora.r : 1;
    long total = 2 * L * max_len * KV + 4 * C + 2 * F + max_len + r + 64;
    m->kv = cu_alloc_aligned((size_t)total * sizeof(float), err);
    if (!m->kv) return err ? err->code : CU_ENOMEM;
    float *p = m->kv;
    m->kv_k = p, p += L * max_len * KV;
    m->kv_v = p, p += L * max_len * KV;
    m->kv_x = p, p += C;
    m->kv_xn = p, p += C;
    m->kv_qkv = p, p += C; /* the query */
    m->kv_att = p, p += C;
    m->kv_h = p, p += F;  /* c_fc's output */
    m->kv_hg = p, p += F; /* its GELU */
    m->kv_scores = p, p += max_len;
    m->kv_xa = p;
    m->kv_max = max_len;
    m->kv_len = 0;
    return CU_OK;
}

static void kv_linear(gpt_t *m, int l, int t, float *out, const float *x, const float *w,
                      const float *b, int in, int outc, float beta) {
    matmul_forward_on(m->gemm, out, x, w, b, 1, in, outc, beta);
    m->cur_train = 0;
    gpt_impl_lora_forward(m, l, t, x, out, 1, m->kv_xa);
}

/* Attention of the token at pos over the cached keys of layer l (the last
 * sliding_window of them when there is a window). */
static void kv_attention(gpt_t *m, int l, int pos) {
    dims_t d = dims(m);
    int group = d.NH / d.NKV, W = m->cfg.sliding_window;
    int j0 = W > 0 && pos >= W ? pos - W + 1 : 0, n = pos + 1 - j0;
    const float *K = m->kv_k + ((long)l * m->kv_max + j0) * d.KV;
    const float *Vc = m->kv_v + ((long)l * m->kv_max + j0) * d.KV;
    float scale = 1.0f / sqrtf((float)d.hs), *s = m->kv_scores;
    for (int h = 0; h < d.NH; h++) {
        int kvh = h / group;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, n, d.hs, scale, K + kvh * d.hs, d.KV,
                    m->kv_qkv + h * d.hs, 1, 0.0f, s, 1);
        float mx = s[0], sum = 0.0f;
        for (int j = 1; j < n; j++) mx = s[j] > mx ? s[j] : mx;
        for (int j = 0; j < n; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
        }
        cblas_sgemv(CblasRowMajor, CblasTrans, n, d.hs, 1.0f / sum, Vc + kvh * d.hs, d.KV, s, 1,
                    0.0f, m->kv_att + h * d.hs, 1);
    }
}

int starcoder2_kv_step(gpt_t *m, int32_t token, float *logits, cu_error_t *err) {
    dims_t d = dims(m);
    int C = d.C, KV = d.KV, F = d.F;
    if (!m->kv) return cu_error_set(err, CU_EINVAL, "KV cache not reserved");
    if (m->kv_len >= m->kv_max)
        return cu_error_set(err, CU_EINVAL, "sequence reached the KV cache length %d", m->kv_max);
    if (token < 0 || token >= d.V)
        return cu_error_set(err, CU_EINVAL, "token id %d is outside the vocabulary (%d)", token,
                            d.V);
    int pos = m->kv_len;
    float mean, rstd, *x = m->kv_x, *xn = m->kv_xn;
    memcpy(x, m->embed + (long)token * C, sizeof(float) * C);
    for (int l = 0; l < d.L; l++) {
        float *kk = m->kv_k + ((long)l * m->kv_max + pos) * KV;
        float *vv = m->kv_v + ((long)l * m->kv_max + pos) * KV;
        layernorm_forward(xn, NULL, &mean, &rstd, x, LAYER(m->ln1w, l, C), LAYER(m->ln1b, l, C), 1,
                          C, gpt_impl_sum(m));
        kv_linear(m, l, SC2_Q, m->kv_qkv, xn, LAYER(m->wq, l, C * C), LAYER(m->bq, l, C), C, C,
                  0.0f);
        kv_linear(m, l, SC2_K, kk, xn, LAYER(m->wk, l, KV * C), LAYER(m->bk, l, KV), C, KV, 0.0f);
        kv_linear(m, l, SC2_V, vv, xn, LAYER(m->wv, l, KV * C), LAYER(m->bv, l, KV), C, KV, 0.0f);
        rope_forward(m->kv_qkv, m->rope_cos, m->rope_sin, 1, 1, d.NH, d.hs, pos);
        rope_forward(kk, m->rope_cos, m->rope_sin, 1, 1, d.NKV, d.hs, pos);
        kv_attention(m, l, pos);
        kv_linear(m, l, SC2_O, x, m->kv_att, LAYER(m->wo, l, C * C), LAYER(m->bo, l, C), C, C,
                  1.0f);
        layernorm_forward(xn, NULL, &mean, &rstd, x, LAYER(m->ln2w, l, C), LAYER(m->ln2b, l, C), 1,
                          C, gpt_impl_sum(m));
        kv_linear(m, l, SC2_FC, m->kv_h, xn, LAYER(m->fcw, l, F * C), LAYER(m->fcb, l, F), C, F,
                  0.0f);
        gelu_forward(m->kv_hg, NULL, m->kv_h, F);
        kv_linear(m, l, SC2_PROJ, x, m->kv_hg, LAYER(m->fcprojw, l, C * F), LAYER(m->fcprojb, l, C),
                  F, C, 1.0f);
    }
    layernorm_forward(xn, NULL, &mean, &rstd, x, m->lnfw, m->lnfb, 1, C, gpt_impl_sum(m));
    lm_head_logits_on(m->gemm, logits, xn, m->lm_head, 1, C, d.V);
    m->kv_len++;
    return CU_OK;
}

/* ------------------------------------------------------------------ FLOPs */

double starcoder2_flops_per_step(const gpt_t *m, int B, int T) {
    dims_t d = dims(m);
    double C = d.C, KV = d.KV, F = d.F, N = (double)B * T, r = m->lora.enabled ? m->lora.r : 0;
    double linear_f = 2.0 * N * (2.0 * C * C + 2.0 * C * KV + 2.0 * C * F);
    double attn = 2.0 * B * C * T * (T + 1.0);
    double head = 2.0 * N * C * d.V;
    double fwd = d.L * (linear_f + attn) + head, lora_fwd = 0.0;
    for (int t = 0; m->lora.enabled && t < SC2_N_TARGETS; t++) {
        if (!(m->lora.targets & (1u << t))) continue;
        int in, out;
        starcoder2_target_dims(&m->cfg, t, &in, &out);
        lora_fwd += d.L * 2.0 * N * r * (in + out);
    }
    double bwd = d.L * (linear_f + 2.5 * attn) + head + 2.0 * lora_fwd;
    if (!m->lora.enabled) bwd += d.L * linear_f + head;
    return fwd + lora_fwd + bwd;
}
