/*
 * What the Hugging Face families built on Llama's block add to it
 * (llama.c), each switched on by a field of gpt_config_t that config.json
 * sets (io/hf_gpt2.c):
 *  - Qwen2 (qkv_bias): biases on the q, k and v projections, added before
 *    the rotary embedding. They are three more per-layer kinds of tensor,
 *    stacked over layers after Llama's nine (`layers.N.self_attn.q_proj.
 *    bias`, ...), so the tensor table stays "each kind stacked over layers";
 *  - Llama 3.1 and CodeLlama-style configs (rope_type): rotary frequencies
 *    rescaled as Hugging Face's rope_scaling says, `linear` (every frequency
 *    divided by factor) or `llama3` (long wavelengths divided by factor,
 *    short ones kept, a smooth blend between);
 *  - Mistral (sliding_window): passed to the attention ops and applied in
 *    the KV cache by llama.c.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/gpt_impl.h"
#include "model/ops_llama.h"

/* ------------------------------------------------------------ rope scaling */

/* llama3: wavelengths longer than original_max / low_freq_factor are
 * stretched by factor, shorter than original_max / high_freq_factor kept,
 * and the band between blended linearly in original_max / wavelength. */
static double llama3_freq(double f, const gpt_config_t *c) {
    double two_pi = 6.283185307179586, wavelen = two_pi / f;
    double old = c->rope_orig_max, lo = c->rope_low_freq, hi = c->rope_high_freq;
    double factor = c->rope_factor;
    if (wavelen < old / hi) return f;
    if (wavelen > old / lo) return f / factor;
    double smooth = (old / wavelen - lo) / (hi - lo);
    return (1.0 - smooth) * f / factor + smooth * f;
}

int llama_family_rope(gpt_t *m, int hs, cu_error_t *err) {
    const gpt_config_t *c = &m->cfg;
    double *inv = malloc((size_t)(hs / 2 + 1) * sizeof *inv);
    if (!inv) return cu_error_set(err, CU_ENOMEM, "out of memory (rotary frequencies)");
    for (int i = 0; i < hs / 2; i++) {
        double f = pow((double)c->rope_theta, -2.0 * i / (double)hs);
        if (c->rope_type == GPT_ROPE_LINEAR) f /= c->rope_factor;
        if (c->rope_type == GPT_ROPE_LLAMA3) f = llama3_freq(f, c);
        inv[i] = f;
    }
    rope_tables_freq(m->rope_cos, m->rope_sin, c->max_seq_len, hs, inv);
    free(inv);
    return CU_OK;
}

int llama_family_check(const gpt_config_t *c, cu_error_t *err) {
    if (c->sliding_window < 0) return cu_error_set(err, CU_EINVAL, "sliding_window must be >= 0");
    if (c->rope_type == GPT_ROPE_DEFAULT) return CU_OK;
    if (c->rope_type != GPT_ROPE_LINEAR && c->rope_type != GPT_ROPE_LLAMA3)
        return cu_error_set(err, CU_EINVAL, "unknown rope_type %d", c->rope_type);
    if (!(c->rope_factor > 0.0f))
        return cu_error_set(err, CU_EINVAL, "rope scaling needs a factor > 0");
    if (c->rope_type == GPT_ROPE_LLAMA3 && (c->rope_orig_max < 1 || !(c->rope_low_freq > 0.0f) ||
                                            !(c->rope_high_freq > c->rope_low_freq)))
        return cu_error_set(err, CU_EINVAL,
                            "llama3 rope scaling needs original_max_position_embeddings >= 1 "
                            "and 0 < low_freq_factor < high_freq_factor");
    return CU_OK;
}

/* --------------------------------------------------------------- biases */

int llama_family_kinds(const gpt_t *m) {
    return m->cfg.qkv_bias ? 3 : 0;
}

void llama_family_layout(gpt_tensor_t *t, int *n, size_t *off, const gpt_config_t *c, int Q,
                         int KV) {
    if (!c->qkv_bias) return;
    static const char *const FMT[3] = {"layers.%d.self_attn.q_proj.bias",
                                       "layers.%d.self_attn.k_proj.bias",
                                       "layers.%d.self_attn.v_proj.bias"};
    char name[64];
    for (int k = 0; k < 3; k++)
        for (int l = 0; l < c->n_layer; l++) {
            snprintf(name, sizeof name, FMT[k], l);
            gpt_impl_add_tensor(t, n, off, name, k == 0 ? Q : KV, 0);
        }
}

void llama_family_bind(gpt_t *m, size_t off, int Q, int KV) {
    if (!m->cfg.qkv_bias) return;
    m->bq = m->params + off;
    m->bk = m->bq + (long)m->cfg.n_layer * Q;
    m->bv = m->bk + (long)m->cfg.n_layer * KV;
}

static void add_rows(float *x, const float *b, int N, int C) {
    for (int n = 0; n < N; n++) {
        float *row = x + (long)n * C;
        for (int i = 0; i < C; i++) row[i] += b[i];
    }
}

void llama_family_qkv_bias(gpt_t *m, int l, float *q, float *k, float *v, int N, int Q, int KV) {
    if (!m->cfg.qkv_bias) return;
    add_rows(q, LAYER(m->bq, l, Q), N, Q);
    add_rows(k, LAYER(m->bk, l, KV), N, KV);
    add_rows(v, LAYER(m->bv, l, KV), N, KV);
}

/* db += the column sums of d (N, C). */
static void sum_rows(float *db, const float *d, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *row = d + (long)n * C;
        for (int i = 0; i < C; i++) db[i] += row[i];
    }
}

void llama_family_qkv_bias_backward(gpt_t *m, int l, const float *dq, const float *dk,
                                    const float *dv, int N, int Q, int KV) {
    if (!m->cfg.qkv_bias) return;
    float *g = gpt_impl_pgrad(m, LAYER(m->bq, l, Q));
    if (!g) return; /* frozen base: LoRA */
    sum_rows(g, dq, N, Q);
    sum_rows(gpt_impl_pgrad(m, LAYER(m->bk, l, KV)), dk, N, KV);
    sum_rows(gpt_impl_pgrad(m, LAYER(m->bv, l, KV)), dv, N, KV);
}
