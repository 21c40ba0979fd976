/*
 * The Llama architecture of the model object (gpt.h): buffer layout,
 * forward, backward and KV-cache inference. gpt.c owns everything the two
 * architectures share (the LoRA buffers and op, the gradient bookkeeping,
 * the public entry points, which dispatch here on cfg.arch).
 *
 * A block, with N = B*T rows, C = n_embd, Q = n_head * head size (C unless
 * config.json's head_dim says otherwise), KV = n_kv_head * head size and
 * F = ffn_hidden:
 *   ln1 = rmsnorm(x) * attn_norm
 *   q = ln1 Wq^T, k = ln1 Wk^T, v = ln1 Wv^T   (plus LoRA), then rope(q), rope(k)
 *   x2 = x + attention(q, k, v) Wo^T
 *   ln2 = rmsnorm(x2) * mlp_norm
 *   x3 = x2 + (silu(ln2 Wg^T) * (ln2 Wu^T)) Wd^T
 * then logits = rmsnorm(x_L) * norm @ lm_head^T. The adapted linears are the
 * sites q, k, v, o, gate, up, down (LLAMA_*), numbered layer * 7 + target;
 * q/k/v and gate/up read the same input, so their input gradients sum into
 * one buffer. Tensor names are Hugging Face's without the `model.` prefix
 * (`layers.0.self_attn.q_proj.weight`, `embed_tokens.weight`,
 * `norm.weight`, `lm_head.weight`), matrices (out, in) as nn.Linear.
 * What Qwen2, Mistral and Llama 3.1 add (q/k/v biases, a sliding window,
 * rope scaling) is llama_family.c's, called from here.
 */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/attention_bf16.h"
#include "model/gpt_impl.h"
#include "model/ops.h"
#include "model/ops_llama.h"

/* Per-layer tensor kinds, stacked over layers in this order. */
enum { K_ATTN_NORM, K_Q, K_K, K_V, K_O, K_MLP_NORM, K_GATE, K_UP, K_DOWN, N_KINDS };

typedef struct {
    int L, C, NH, NKV, hs, Q, KV, F, V;
} dims_t;

static dims_t dims(const gpt_t *m) {
    const gpt_config_t *c = &m->cfg;
    dims_t d = {c->n_layer, c->n_embd, c->n_head,     c->n_kv_head, gpt_head_size(c),
                0,          0,         c->ffn_hidden, c->vocab_size};
    d.Q = d.NH * d.hs;
    d.KV = d.NKV * d.hs;
    return d;
}

/* ---------------------------------------------------------------- layout */

int llama_layout_params(gpt_t *m, cu_error_t *err) {
    dims_t d = dims(m);
    int tied = m->cfg.tie_embeddings;
    m->ptensors = calloc((size_t)(3 + (N_KINDS + 3) * d.L), sizeof(gpt_tensor_t));
    if (!m->ptensors) return cu_error_set(err, CU_ENOMEM, "out of memory (tensor table)");
    size_t off = 0;
    int n = 0;
    gpt_impl_add_tensor(m->ptensors, &n, &off, "embed_tokens.weight", d.V, d.C);
    const struct {
        const char *fmt;
        int rows, cols; /* cols 0 = vector */
    } kinds[N_KINDS] = {
        {"layers.%d.input_layernorm.weight", d.C, 0},
        {"layers.%d.self_attn.q_proj.weight", d.Q, d.C},
        {"layers.%d.self_attn.k_proj.weight", d.KV, d.C},
        {"layers.%d.self_attn.v_proj.weight", d.KV, d.C},
        {"layers.%d.self_attn.o_proj.weight", d.C, d.Q},
        {"layers.%d.post_attention_layernorm.weight", d.C, 0},
        {"layers.%d.mlp.gate_proj.weight", d.F, d.C},
        {"layers.%d.mlp.up_proj.weight", d.F, d.C},
        {"layers.%d.mlp.down_proj.weight", d.C, d.F},
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
    size_t family_off = off;
    llama_family_layout(m->ptensors, &n, &off, &m->cfg, d.Q, d.KV);
    size_t norm_off = off;
    gpt_impl_add_tensor(m->ptensors, &n, &off, "norm.weight", d.C, 0);
    size_t head_off = off;
    if (!tied) gpt_impl_add_tensor(m->ptensors, &n, &off, "lm_head.weight", d.V, d.C);
    m->n_ptensors = n;
    m->n_params = off;
    m->params = gpt_impl_alloc_lazy(off * sizeof(float), err);
    if (!m->params) return err ? err->code : CU_ENOMEM;
    float *p = m->params;
    float **named[N_KINDS] = {&m->attn_norm, &m->wq,    &m->wk,  &m->wv,   &m->wo,
                              &m->mlp_norm,  &m->wgate, &m->wup, &m->wdown};
    for (int k = 0; k < N_KINDS; k++) *named[k] = p + start[k];
    m->embed = p;
    m->norm = p + norm_off;
    m->lm_head = tied ? m->embed : p + head_off;
    llama_family_bind(m, family_off, d.Q, d.KV);
    /* the rotary tables: both in one allocation, freed through rope_cos */
    long half = (long)m->cfg.max_seq_len * (d.hs / 2);
    m->rope_cos = cu_alloc_aligned((size_t)(2 * half + 1) * sizeof(float), err);
    if (!m->rope_cos) return err ? err->code : CU_ENOMEM;
    m->rope_sin = m->rope_cos + half;
    return llama_family_rope(m, d.hs, err);
}

/* ----------------------------------------------------------- activations */

int llama_reserve(gpt_t *m, int B, int T, cu_error_t *err) {
    dims_t d = dims(m);
    long L = d.L, C = d.C, Q = d.Q, KV = d.KV, F = d.F, NH = d.NH;
    long N = (long)B * T, r = m->lora.enabled ? m->lora.r : 0;
    long CQ = Q > C ? Q : C, in_max = F > CQ ? F : CQ;
    long La = m->ckpt ? 1 : L; /* layers of intermediate activations kept */
    gpt_impl_span_t parts[] = {
        {&m->encoded, N * C},
        {&m->ln1, La * N * C},
        {&m->ln1_rstd, La * N},
        {&m->q, La * N * Q},
        {&m->k, La * N * KV},
        {&m->v, La * N * KV},
        {&m->atty, La * N * Q},
        {&m->lse, La * N * NH},
        {&m->residual2, La * N * C},
        {&m->ln2, La * N * C},
        {&m->ln2_rstd, La * N},
        {&m->gate, La * N * F},
        {&m->up, La * N * F},
        {&m->hmlp, La * N * F},
        {&m->residual3, L * N * C},
        {&m->lnf, N * C},
        {&m->lnf_rstd, N},
        {&m->xa, La * LLAMA_N_TARGETS * N * r},
        {&m->dresidual, N * C},
        {&m->dsmall, N * CQ}, /* dln (C) and datty (Q) */
        {&m->dbig, N * F},
        {&m->dgate, N * F},
        {&m->dup, N * F},
        {&m->dq, N * Q},
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

/* out = beta * out + x W^T, plus the site's adapter. */
static void linear(gpt_t *m, int l, int t, float *out, const float *x, const float *w, int N,
                   int in, int outc, float beta) {
    matmul_forward_on(m->gemm, out, x, w, NULL, N, in, outc, beta);
    gpt_impl_lora_forward(m, l, t, x, out, N, gpt_impl_site_xa(m, l, t));
}

void llama_block_forward(gpt_t *m, int l, const float *residual) {
    dims_t d = dims(m);
    int B = m->cur_B, T = m->cur_T, N = B * T, C = d.C, Q = d.Q, KV = d.KV, F = d.F;
    float eps = m->cfg.norm_eps;
    float *ln1 = ACT(m, m->ln1, l, N * C), *q = ACT(m, m->q, l, N * Q);
    float *k = ACT(m, m->k, l, N * KV), *v = ACT(m, m->v, l, N * KV);
    float *atty = ACT(m, m->atty, l, N * Q), *res2 = ACT(m, m->residual2, l, N * C);
    float *ln2 = ACT(m, m->ln2, l, N * C), *gate = ACT(m, m->gate, l, N * F);
    float *up = ACT(m, m->up, l, N * F), *h = ACT(m, m->hmlp, l, N * F);
    float *res3 = LAYER(m->residual3, l, N * C);

    rmsnorm_forward(ln1, gemm_lend_activation(m->gemm, ln1, (size_t)N * C),
                    ACT(m, m->ln1_rstd, l, N), residual, LAYER(m->attn_norm, l, C), N, C, eps,
                    gpt_impl_sum(m));
    linear(m, l, LLAMA_Q, q, ln1, LAYER(m->wq, l, Q * C), N, C, Q, 0.0f);
    linear(m, l, LLAMA_K, k, ln1, LAYER(m->wk, l, KV * C), N, C, KV, 0.0f);
    linear(m, l, LLAMA_V, v, ln1, LAYER(m->wv, l, KV * C), N, C, KV, 0.0f);
    llama_family_qkv_bias(m, l, q, k, v, N, Q, KV);
    rope_forward(q, m->rope_cos, m->rope_sin, B, T, d.NH, d.hs, 0);
    rope_forward(k, m->rope_cos, m->rope_sin, B, T, d.NKV, d.hs, 0);
    gpt_impl_gqa_forward(m, l, atty, q, k, v, d.hs);
    memcpy(res2, residual, sizeof(float) * (size_t)N * C);
    linear(m, l, LLAMA_O, res2, atty, LAYER(m->wo, l, C * Q), N, Q, C, 1.0f);

    rmsnorm_forward(ln2, gemm_lend_activation(m->gemm, ln2, (size_t)N * C),
                    ACT(m, m->ln2_rstd, l, N), res2, LAYER(m->mlp_norm, l, C), N, C, eps,
                    gpt_impl_sum(m));
    linear(m, l, LLAMA_GATE, gate, ln2, LAYER(m->wgate, l, F * C), N, C, F, 0.0f);
    linear(m, l, LLAMA_UP, up, ln2, LAYER(m->wup, l, F * C), N, C, F, 0.0f);
    swiglu_forward(h, gate, up, (long)N * F);
    memcpy(res3, res2, sizeof(float) * (size_t)N * C);
    linear(m, l, LLAMA_DOWN, res3, h, LAYER(m->wdown, l, C * F), N, F, C, 1.0f);
}

void llama_forward(gpt_t *m, const int32_t *targets, gpt_loss_t *loss) {
    dims_t d = dims(m);
    int N = m->cur_B * m->cur_T, C = d.C;
    for (int n = 0; n < N; n++)
        memcpy(m->encoded + (long)n * C, m->embed + (long)m->inputs[n] * C, sizeof(float) * C);
    const float *residual = m->encoded;
    for (int l = 0; l < d.L; l++) {
        llama_block_forward(m, l, residual);
        residual = LAYER(m->residual3, l, N * C);
    }
    rmsnorm_forward(m->lnf, NULL, m->lnf_rstd, residual, m->norm, N, C, m->cfg.norm_eps,
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

/* linear's backward: W's gradient when W trains, the site's adapter
 * gradients, and dx = beta * dx + dout W plus the adapter's share (dx NULL:
 * nothing below needs it). */
static void linear_backward(gpt_t *m, int l, int t, float *dx, const float *dout, const float *x,
                            float *w, int N, int in, int outc, float beta) {
    matmul_backward_on(m->gemm, dx, gpt_impl_pgrad(m, w), NULL, dout, x, w, N, in, outc, beta);
    gpt_impl_lora_backward(m, l, t, dout, x, dx, N);
}

/* Backward of block l: m->dresidual holds dloss/d(block output) and on
 * return dloss/d(block input). Returns 0 when nothing below needs a
 * gradient. */
static int block_backward(gpt_t *m, int l) {
    dims_t d = dims(m);
    int B = m->cur_B, T = m->cur_T, N = B * T, C = d.C, Q = d.Q, KV = d.KV, F = d.F;
    int base = l * LLAMA_N_TARGETS;
    float *dres = m->dresidual, *dsmall = m->dsmall;
    const float *residual = l == 0 ? m->encoded : LAYER(m->residual3, l - 1, N * C);
    float *ln1 = ACT(m, m->ln1, l, N * C), *q = ACT(m, m->q, l, N * Q);
    float *k = ACT(m, m->k, l, N * KV), *v = ACT(m, m->v, l, N * KV);
    float *atty = ACT(m, m->atty, l, N * Q), *res2 = ACT(m, m->residual2, l, N * C);
    float *ln2 = ACT(m, m->ln2, l, N * C), *gate = ACT(m, m->gate, l, N * F);
    float *up = ACT(m, m->up, l, N * F), *h = ACT(m, m->hmlp, l, N * F);
    float *w;
    /* the slot still holds the top block's activations from the forward */
    if (m->ckpt && l < d.L - 1) llama_block_forward(m, l, residual);

    /* down projection: x3 = x2 + h Wd^T */
    int below = gpt_impl_need_below(m, base + LLAMA_DOWN);
    float *dh = below ? m->dbig : NULL;
    w = LAYER(m->wdown, l, C * F);
    linear_backward(m, l, LLAMA_DOWN, dh, dres, h, w, N, F, C, 0.0f);
    if (!below) return 0;
    swiglu_backward(m->dgate, m->dup, m->dbig, gate, up, (long)N * F);

    /* gate and up read ln2: their input gradients sum into dsmall */
    below = gpt_impl_need_below(m, base + LLAMA_GATE);
    float *dln = below ? dsmall : NULL;
    w = LAYER(m->wgate, l, F * C);
    linear_backward(m, l, LLAMA_GATE, dln, m->dgate, ln2, w, N, C, F, 0.0f);
    w = LAYER(m->wup, l, F * C);
    linear_backward(m, l, LLAMA_UP, dln, m->dup, ln2, w, N, C, F, 1.0f);
    if (!below) return 0;
    w = LAYER(m->mlp_norm, l, C);
    rmsnorm_backward(dres, gemm_lend_activation(m->gemm, dres, (size_t)N * C), gpt_impl_pgrad(m, w),
                     dsmall, res2, w, ACT(m, m->ln2_rstd, l, N), N, C, gpt_impl_sum(m));

    /* output projection: x2 = x + atty Wo^T */
    below = gpt_impl_need_below(m, base + LLAMA_O);
    w = LAYER(m->wo, l, C * Q);
    linear_backward(m, l, LLAMA_O, below ? dsmall : NULL, dres, atty, w, N, Q, C, 0.0f);
    if (!below) return 0;
    gpt_impl_gqa_backward(m, l, dsmall, q, k, v, atty, d.hs);
    rope_backward(m->dq, m->rope_cos, m->rope_sin, B, T, d.NH, d.hs, 0);
    rope_backward(m->dk, m->rope_cos, m->rope_sin, B, T, d.NKV, d.hs, 0);
    llama_family_qkv_bias_backward(m, l, m->dq, m->dk, m->dv, N, Q, KV);

    /* q, k, v read ln1 */
    below = gpt_impl_need_below(m, base + LLAMA_Q);
    dln = below ? dsmall : NULL;
    w = LAYER(m->wq, l, Q * C);
    linear_backward(m, l, LLAMA_Q, dln, m->dq, ln1, w, N, C, Q, 0.0f);
    w = LAYER(m->wk, l, KV * C);
    linear_backward(m, l, LLAMA_K, dln, m->dk, ln1, w, N, C, KV, 1.0f);
    w = LAYER(m->wv, l, KV * C);
    linear_backward(m, l, LLAMA_V, dln, m->dv, ln1, w, N, C, KV, 1.0f);
    if (!below) return 0;
    w = LAYER(m->attn_norm, l, C);
    rmsnorm_backward(dres, gemm_lend_activation(m->gemm, dres, (size_t)N * C), gpt_impl_pgrad(m, w),
                     dsmall, residual, w, ACT(m, m->ln1_rstd, l, N), N, C, gpt_impl_sum(m));
    return 1;
}

void llama_backward(gpt_t *m) {
    dims_t d = dims(m);
    int N = m->cur_B * m->cur_T, C = d.C;
    memset(m->dresidual, 0, sizeof(float) * (size_t)N * C);
    rmsnorm_backward(m->dresidual, gemm_lend_activation(m->gemm, m->dresidual, (size_t)N * C),
                     gpt_impl_pgrad(m, m->norm), m->dlnf, LAYER(m->residual3, d.L - 1, N * C),
                     m->norm, m->lnf_rstd, N, C, gpt_impl_sum(m));
    gpt_impl_backward_blocks(m, N_KINDS + llama_family_kinds(m), block_backward);
}

/* -------------------------------------------------------------- KV cache */

int llama_kv_reserve(gpt_t *m, int max_len, cu_error_t *err) {
    free(m->kv);
    m->kv = NULL;
    dims_t d = dims(m);
    long L = d.L, C = d.C, Q = d.Q, KV = d.KV, F = d.F, r = m->lora.enabled ? m->lora.r : 1;
    long total = 2 * L * max_len * KV + 2 * C + 2 * Q + 3 * F + max_len + r + 64;
    m->kv = cu_alloc_aligned((size_t)total * sizeof(float), err);
    if (!m->kv) return err ? err->code : CU_ENOMEM;
    float *p = m->kv;
    m->kv_k = p, p += L * max_len * KV;
    m->kv_v = p, p += L * max_len * KV;
    m->kv_x = p, p += C;
    m->kv_xn = p, p += C;
    m->kv_qkv = p, p += Q; /* the query */
    m->kv_att = p, p += Q;
    m->kv_gate = p, p += F;
    m->kv_h = p, p += F;  /* up */
    m->kv_hg = p, p += F; /* silu(gate) * up */
    m->kv_scores = p, p += max_len;
    m->kv_xa = p;
    m->kv_max = max_len;
    m->kv_len = 0;
    return CU_OK;
}

static void kv_linear(gpt_t *m, int l, int t, float *out, const float *x, const float *w, int in,
                      int outc, float beta) {
    matmul_forward_on(m->gemm, out, x, w, NULL, 1, in, outc, beta);
    m->cur_train = 0;
    gpt_impl_lora_forward(m, l, t, x, out, 1, m->kv_xa);
}

/* Attention of the token at pos over the cached keys 0..pos of layer l
 * (with a sliding window W, the last W of them). */
static void kv_attention(gpt_t *m, int l, int pos) {
    dims_t d = dims(m);
    int group = d.NH / d.NKV, W = m->cfg.sliding_window, j0 = W > 0 && pos >= W ? pos - W + 1 : 0;
    const float *K = m->kv_k + ((long)l * m->kv_max + j0) * d.KV;
    const float *Vc = m->kv_v + ((long)l * m->kv_max + j0) * d.KV;
    pos -= j0; /* keys K[0..pos] from here on */
    float scale = 1.0f / sqrtf((float)d.hs), *s = m->kv_scores;
    for (int h = 0; h < d.NH; h++) {
        int kvh = h / group;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, pos + 1, d.hs, scale, K + kvh * d.hs, d.KV,
                    m->kv_qkv + h * d.hs, 1, 0.0f, s, 1);
        float mx = s[0], sum = 0.0f;
        for (int j = 1; j <= pos; j++) mx = s[j] > mx ? s[j] : mx;
        for (int j = 0; j <= pos; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
        }
        cblas_sgemv(CblasRowMajor, CblasTrans, pos + 1, d.hs, 1.0f / sum, Vc + kvh * d.hs, d.KV, s,
                    1, 0.0f, m->kv_att + h * d.hs, 1);
    }
}

int llama_kv_step(gpt_t *m, int32_t token, float *logits, cu_error_t *err) {
    dims_t d = dims(m);
    int C = d.C, Q = d.Q, KV = d.KV, F = d.F;
    if (!m->kv) return cu_error_set(err, CU_EINVAL, "KV cache not reserved");
    if (m->kv_len >= m->kv_max)
        return cu_error_set(err, CU_EINVAL, "sequence reached the KV cache length %d", m->kv_max);
    if (token < 0 || token >= d.V)
        return cu_error_set(err, CU_EINVAL, "token id %d is outside the vocabulary (%d)", token,
                            d.V);
    int pos = m->kv_len;
    float eps = m->cfg.norm_eps, rstd;
    float *x = m->kv_x, *xn = m->kv_xn;
    memcpy(x, m->embed + (long)token * C, sizeof(float) * C);
    for (int l = 0; l < d.L; l++) {
        float *kk = m->kv_k + ((long)l * m->kv_max + pos) * KV;
        float *vv = m->kv_v + ((long)l * m->kv_max + pos) * KV;
        rmsnorm_forward(xn, NULL, &rstd, x, LAYER(m->attn_norm, l, C), 1, C, eps, gpt_impl_sum(m));
        kv_linear(m, l, LLAMA_Q, m->kv_qkv, xn, LAYER(m->wq, l, Q * C), C, Q, 0.0f);
        kv_linear(m, l, LLAMA_K, kk, xn, LAYER(m->wk, l, KV * C), C, KV, 0.0f);
        kv_linear(m, l, LLAMA_V, vv, xn, LAYER(m->wv, l, KV * C), C, KV, 0.0f);
        llama_family_qkv_bias(m, l, m->kv_qkv, kk, vv, 1, Q, KV);
        rope_forward(m->kv_qkv, m->rope_cos, m->rope_sin, 1, 1, d.NH, d.hs, pos);
        rope_forward(kk, m->rope_cos, m->rope_sin, 1, 1, d.NKV, d.hs, pos);
        kv_attention(m, l, pos);
        kv_linear(m, l, LLAMA_O, x, m->kv_att, LAYER(m->wo, l, C * Q), Q, C, 1.0f);
        rmsnorm_forward(xn, NULL, &rstd, x, LAYER(m->mlp_norm, l, C), 1, C, eps, gpt_impl_sum(m));
        kv_linear(m, l, LLAMA_GATE, m->kv_gate, xn, LAYER(m->wgate, l, F * C), C, F, 0.0f);
        kv_linear(m, l, LLAMA_UP, m->kv_h, xn, LAYER(m->wup, l, F * C), C, F, 0.0f);
        swiglu_forward(m->kv_hg, m->kv_gate, m->kv_h, F);
        kv_linear(m, l, LLAMA_DOWN, x, m->kv_hg, LAYER(m->wdown, l, C * F), F, C, 1.0f);
    }
    rmsnorm_forward(xn, NULL, &rstd, x, m->norm, 1, C, eps, gpt_impl_sum(m));
    lm_head_logits_on(m->gemm, logits, xn, m->lm_head, 1, C, d.V);
    m->kv_len++;
    return CU_OK;
}

/* ------------------------------------------------------------------ FLOPs */

double llama_flops_per_step(const gpt_t *m, int B, int T) {
    dims_t d = dims(m);
    double C = d.C, Q = d.Q, KV = d.KV, F = d.F, N = (double)B * T;
    double r = m->lora.enabled ? m->lora.r : 0;
    double linear_f = 2.0 * N * (2.0 * C * Q + 2.0 * C * KV + 3.0 * C * F);
    double attn = 2.0 * B * Q * T * (T + 1.0);
    double head = 2.0 * N * C * d.V;
    double fwd = d.L * (linear_f + attn) + head, lora_fwd = 0.0;
    for (int t = 0; m->lora.enabled && t < LLAMA_N_TARGETS; t++) {
        if (!(m->lora.targets & (1u << t))) continue;
        int in, out;
        gpt_target_dims(&m->cfg, t, &in, &out);
        lora_fwd += d.L * 2.0 * N * r * (in + out);
    }
    double bwd = d.L * (linear_f + 2.5 * attn) + head + 2.0 * lora_fwd;
    if (!m->lora.enabled) bwd += d.L * linear_f + head;
    return fwd + lora_fwd + bwd;
}

/* ---------------------------------------------------------- GQA attention */

void gpt_impl_gqa_forward(gpt_t *m, int l, float *atty, const float *q, const float *k,
                          const float *v, int hs) {
    const gpt_config_t *c = &m->cfg;
    int B = m->cur_B, T = m->cur_T, N = B * T, NH = c->n_head, NKV = c->n_kv_head;
    int Q = NH * hs, KV = NKV * hs;
    float *lse = ACT(m, m->lse, l, N * NH);
    if (gpt_impl_att16(m)) {
        att_shape_t as = {
            .B = B, .T = T, .NH = NH, .NKV = NKV, .hs = hs, .window = c->sliding_window};
        attention_bf16_forward(m->gemm, atty, gemm_lend_activation(m->gemm, atty, (size_t)N * Q),
                               lse, q, Q, k, v, KV, &as, gpt_impl_sum(m));
    } else {
        attention_gqa_forward(atty, lse, q, k, v, m->att_scratch, B, T, NH, NKV, hs,
                              c->sliding_window, gpt_impl_sum(m));
    }
}

void gpt_impl_gqa_backward(gpt_t *m, int l, const float *dout, const float *q, const float *k,
                           const float *v, const float *atty, int hs) {
    const gpt_config_t *c = &m->cfg;
    int B = m->cur_B, T = m->cur_T, N = B * T, NH = c->n_head, NKV = c->n_kv_head;
    int Q = NH * hs, KV = NKV * hs;
    const float *lse = ACT(m, m->lse, l, N * NH);
    if (gpt_impl_att16(m)) {
        att_shape_t as = {
            .B = B, .T = T, .NH = NH, .NKV = NKV, .hs = hs, .window = c->sliding_window};
        attention_bf16_backward(m->gemm, m->dq, Q, m->dk, m->dv, KV, NULL, dout, q, Q, k, v, KV,
                                atty, lse, &as, gpt_impl_sum(m));
    } else {
        attention_gqa_backward(m->dq, m->dk, m->dv, dout, q, k, v, atty, lse, m->att_scratch, B, T,
                               NH, NKV, hs, c->sliding_window, gpt_impl_sum(m));
    }
}
