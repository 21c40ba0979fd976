/*
 * GPT-2 with LoRA (see gpt.h): buffer layout, forward, backward, KV-cache
 * inference.
 *
 * The backward walks the blocks top-down with a single running residual
 * gradient and a handful of layer-sized scratch buffers that are overwritten,
 * never zeroed. Each adapted linear layer is a "site" numbered layer*4 +
 * target in data-flow order; the gradient is only carried below a site if a
 * trainable tensor lives further down, so LoRA training never pays for
 * gradients nobody uses.
 */
#include "model/gpt.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "model/attention_bf16.h"
#include "model/gpt_impl.h"
#include "model/ops.h"

/* ------------------------------------------------------------ LoRA names */

static const char *const TARGET_NAMES[GPT_N_ARCHS][LORA_MAX_TARGETS] = {
    {"qkv", "attn_proj", "mlp_fc", "mlp_proj"},
    {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    {"q_proj", "k_proj", "v_proj", "o_proj", "c_fc", "c_proj"}};
/* Module paths in Hugging Face's naming, for tensor names and PEFT export. */
static const char *const TARGET_MODULES[GPT_N_ARCHS][LORA_MAX_TARGETS] = {
    {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"},
    {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"},
    {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.c_fc",
     "mlp.c_proj"}};
static const char *const ARCH_NAMES[GPT_N_ARCHS] = {"gpt2", "llama", "starcoder2"};

/* The tables' row of an architecture (GPT-2's for an unknown one). */
static int arch_row(int arch) {
    return arch >= 0 && arch < GPT_N_ARCHS ? arch : GPT_ARCH_GPT2;
}

int gpt_n_targets(int arch) {
    return arch == GPT_ARCH_LLAMA        ? LLAMA_N_TARGETS
           : arch == GPT_ARCH_STARCODER2 ? SC2_N_TARGETS
                                         : LORA_N_TARGETS;
}

const char *gpt_arch_name(int arch) {
    return arch >= 0 && arch < GPT_N_ARCHS ? ARCH_NAMES[arch] : "?";
}

int gpt_arch_parse(const char *name) {
    for (int a = 0; a < GPT_N_ARCHS; a++)
        if (strcmp(name, ARCH_NAMES[a]) == 0) return a;
    return -1;
}

unsigned lora_target_bits(int arch, const char *name) {
    int nt = gpt_n_targets(arch), a = arch_row(arch);
    if (strcmp(name, "all-linear") == 0) return (1u << nt) - 1;
    for (int t = 0; t < nt; t++)
        if (strcmp(name, TARGET_NAMES[a][t]) == 0) return 1u << t;
    return 0;
}

const char *lora_target_name(int arch, int target) {
    return target >= 0 && target < gpt_n_targets(arch) ? TARGET_NAMES[arch_row(arch)][target] : "?";
}

void lora_target_list(int arch, unsigned bits, const char *last_sep, char *buf, size_t cap) {
    int nt = gpt_n_targets(arch), left = 0;
    for (int t = 0; t < nt; t++) left += (bits >> t) & 1u;
    size_t len = 0;
    buf[0] = '\0';
    for (int t = 0; t < nt && len < cap; t++) {
        if (!(bits & (1u << t))) continue;
        const char *sep = len == 0 ? "" : left == 1 ? last_sep : ", ";
        len += (size_t)snprintf(buf + len, cap - len, "%s%s", sep, lora_target_name(arch, t));
        left--;
    }
}

const char *lora_target_module(int arch, int target) {
    return target >= 0 && target < gpt_n_targets(arch) ? TARGET_MODULES[arch_row(arch)][target]
                                                       : "?";
}

int gpt_head_size(const gpt_config_t *c) {
    return c->head_dim > 0 ? c->head_dim : c->n_embd / c->n_head;
}

void gpt_target_dims(const gpt_config_t *c, int t, int *in, int *out) {
    int C = c->n_embd;
    if (c->arch == GPT_ARCH_STARCODER2) {
        starcoder2_target_dims(c, t, in, out);
        return;
    }
    if (c->arch == GPT_ARCH_LLAMA) {
        /* Q: the attention width n_head * head size, which differs from C
         * when head_dim is given */
        int hs = gpt_head_size(c), kv = c->n_kv_head * hs, Q = c->n_head * hs, F = c->ffn_hidden;
        static const int in_kind[LLAMA_N_TARGETS] = {0, 0, 0, 3, 0, 0, 2};
        static const int out_kind[LLAMA_N_TARGETS] = {3, 1, 1, 0, 2, 2, 0};
        const int width[4] = {C, kv, F, Q};
        *in = width[in_kind[t]];
        *out = width[out_kind[t]];
        return;
    }
    static const int in_mul[LORA_N_TARGETS] = {1, 1, 1, 4};
    static const int out_mul[LORA_N_TARGETS] = {3, 1, 4, 1};
    *in = in_mul[t] * C;
    *out = out_mul[t] * C;
}

/* ---------------------------------------------------------- construction */

void gpt_impl_add_tensor(gpt_tensor_t *t, int *n, size_t *off, const char *name, int d0, int d1) {
    gpt_tensor_t *x = &t[(*n)++];
    snprintf(x->name, sizeof x->name, "%s", name);
    x->offset = *off;
    x->ndim = d1 > 0 ? 2 : 1;
    x->shape[0] = d0;
    x->shape[1] = d1 > 0 ? d1 : 0;
    x->decay = x->ndim == 2;
    *off += (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
}

void *gpt_impl_alloc_lazy(size_t bytes, cu_error_t *err) {
    /* MAP_NORESERVE: with a base lent from a mapping most of this is never
     * touched, and the kernel's overcommit heuristic would otherwise refuse
     * a 7B model's 27 GB of fp32 params on a 24 GB node */
    void *p = mmap(NULL, bytes ? bytes : 1, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        cu_error_set(err, CU_ENOMEM, "out of memory allocating %zu bytes", bytes);
        return NULL;
    }
    return p;
}

void gpt_impl_free_lazy(void *p, size_t bytes) {
    if (p) munmap(p, bytes ? bytes : 1);
}

/* Lays out the base weights: embeddings, then each kind of per-layer tensor
 * stacked over layers, then the final norm. */
static int layout_params(gpt_t *m, cu_error_t *err) {
    const gpt_config_t *c = &m->cfg;
    int L = c->n_layer, C = c->n_embd;
    m->ptensors = calloc((size_t)(4 + 12 * L), sizeof(gpt_tensor_t));
    if (!m->ptensors) return cu_error_set(err, CU_ENOMEM, "out of memory (tensor table)");
    size_t off = 0;
    int n = 0;
    char name[64];
    gpt_impl_add_tensor(m->ptensors, &n, &off, "wte", c->vocab_size, C);
    gpt_impl_add_tensor(m->ptensors, &n, &off, "wpe", c->max_seq_len, C);
    static const struct {
        const char *fmt;
        int rows_mul, cols_mul; /* rows x cols in units of C; cols 0 = vector */
    } kinds[12] = {{"h.%d.ln_1.weight", 1, 0},        {"h.%d.ln_1.bias", 1, 0},
                   {"h.%d.attn.c_attn.weight", 3, 1}, {"h.%d.attn.c_attn.bias", 3, 0},
                   {"h.%d.attn.c_proj.weight", 1, 1}, {"h.%d.attn.c_proj.bias", 1, 0},
                   {"h.%d.ln_2.weight", 1, 0},        {"h.%d.ln_2.bias", 1, 0},
                   {"h.%d.mlp.c_fc.weight", 4, 1},    {"h.%d.mlp.c_fc.bias", 4, 0},
                   {"h.%d.mlp.c_proj.weight", 1, 4},  {"h.%d.mlp.c_proj.bias", 1, 0}};
    size_t kind_start[12];
    for (int k = 0; k < 12; k++) {
        kind_start[k] = off;
        for (int l = 0; l < L; l++) {
            snprintf(name, sizeof name, kinds[k].fmt, l);
            gpt_impl_add_tensor(m->ptensors, &n, &off, name, kinds[k].rows_mul * C,
                                kinds[k].cols_mul * C);
        }
    }
    gpt_impl_add_tensor(m->ptensors, &n, &off, "ln_f.weight", C, 0);
    gpt_impl_add_tensor(m->ptensors, &n, &off, "ln_f.bias", C, 0);
    m->n_ptensors = n;
    m->n_params = off;
    m->params = gpt_impl_alloc_lazy(off * sizeof(float), err);
    if (!m->params) return err ? err->code : CU_ENOMEM;
    float *p = m->params;
    m->wte = p;
    m->wpe = p + m->ptensors[1].offset;
    float **named[12] = {&m->ln1w, &m->ln1b, &m->qkvw, &m->qkvb, &m->attprojw, &m->attprojb,
                         &m->ln2w, &m->ln2b, &m->fcw,  &m->fcb,  &m->fcprojw,  &m->fcprojb};
    for (int k = 0; k < 12; k++) *named[k] = p + kind_start[k];
    m->lnfw = p + m->ptensors[n - 2].offset;
    m->lnfb = p + m->ptensors[n - 1].offset;
    return CU_OK;
}

static int layout_lora(gpt_t *m, cu_error_t *err) {
    const gpt_config_t *c = &m->cfg;
    int L = c->n_layer, r = m->lora.r, nt = m->n_targets, a = arch_row(c->arch);
    m->lora_off = malloc(sizeof(long) * (size_t)L * (size_t)nt);
    m->ltensors = calloc((size_t)(2 * L * nt), sizeof(gpt_tensor_t));
    if (!m->lora_off || !m->ltensors) return cu_error_set(err, CU_ENOMEM, "out of memory (LoRA)");
    size_t off = 0;
    int n = 0;
    m->lowest_site = -1;
    for (int l = 0; l < L; l++) {
        for (int t = 0; t < nt; t++) {
            m->lora_off[l * nt + t] = -1;
            if (!(m->lora.targets & (1u << t))) continue;
            if (m->lowest_site < 0) m->lowest_site = l * nt + t;
            int in, out;
            gpt_target_dims(c, t, &in, &out);
            m->lora_off[l * nt + t] = (long)off;
            const char *prefix = a != GPT_ARCH_GPT2 ? "layers" : "h";
            char name[64];
            snprintf(name, sizeof name, "%s.%d.%s.lora_A", prefix, l, TARGET_MODULES[a][t]);
            gpt_impl_add_tensor(m->ltensors, &n, &off, name, r, in);
            snprintf(name, sizeof name, "%s.%d.%s.lora_B", prefix, l, TARGET_MODULES[a][t]);
            gpt_impl_add_tensor(m->ltensors, &n, &off, name, out, r);
        }
    }
    m->n_ltensors = n;
    m->n_lora = off;
    m->lora_buf = cu_alloc_aligned(off * sizeof(float), err);
    if (!m->lora_buf) return err ? err->code : CU_ENOMEM;
    m->lora_scale = m->lora.rslora ? m->lora.alpha / sqrtf((float)r) : m->lora.alpha / (float)r;
    return CU_OK;
}

int gpt_create(gpt_t **out, const gpt_config_t *cfg, const lora_config_t *lora, cu_error_t *err) {
    *out = NULL;
    if (cfg->n_layer < 1 || cfg->n_head < 1 || cfg->n_embd < 1 || cfg->vocab_size < 1 ||
        cfg->max_seq_len < 1)
        return cu_error_set(err, CU_EINVAL, "model sizes must be positive");
    if (cfg->head_dim < 0 || (cfg->head_dim > 0 && cfg->arch != GPT_ARCH_LLAMA))
        return cu_error_set(err, CU_EINVAL, "head_dim is for Llama's block only (got %d)",
                            cfg->head_dim);
    if (cfg->head_dim == 0 && cfg->n_embd % cfg->n_head != 0)
        return cu_error_set(err, CU_EINVAL, "n_embd (%d) is not divisible by n_head (%d)",
                            cfg->n_embd, cfg->n_head);
    if (lora && lora->enabled && (lora->r < 1 || lora->targets == 0))
        return cu_error_set(err, CU_EINVAL, "LoRA needs r >= 1 and at least one target");
    gpt_config_t c = *cfg;
    if (c.arch < 0 || c.arch >= GPT_N_ARCHS)
        return cu_error_set(err, CU_EINVAL, "unknown architecture %d", c.arch);
    if (c.arch != GPT_ARCH_GPT2) { /* Llama's block and StarCoder2's */
        if (!c.n_kv_head) c.n_kv_head = c.n_head;
        if (!c.ffn_hidden) c.ffn_hidden = 4 * c.n_embd;
        if (c.rope_theta <= 0.0f) c.rope_theta = 10000.0f;
        if (c.norm_eps <= 0.0f) c.norm_eps = 1e-5f;
        if (c.n_kv_head < 1 || c.n_head % c.n_kv_head)
            return cu_error_set(err, CU_EINVAL, "n_kv_head (%d) must divide n_head (%d)",
                                c.n_kv_head, c.n_head);
        if (gpt_head_size(&c) % 2)
            return cu_error_set(err, CU_EINVAL,
                                "the head size (%d) must be even for rotary embeddings",
                                gpt_head_size(&c));
        if (c.ffn_hidden < 1) return cu_error_set(err, CU_EINVAL, "ffn_hidden must be positive");
        int rc = llama_family_check(&c, err);
        if (rc) return rc;
    }
    if (lora && lora->enabled && (lora->targets >> gpt_n_targets(c.arch)))
        return cu_error_set(err, CU_EINVAL, "LoRA targets 0x%x name layers %s does not have",
                            lora->targets, gpt_arch_name(c.arch));
    gpt_t *m = calloc(1, sizeof *m);
    if (!m) return cu_error_set(err, CU_ENOMEM, "out of memory (model)");
    m->cfg = c;
    m->n_targets = gpt_n_targets(c.arch);
    if (lora) m->lora = *lora;
    int rc = c.arch == GPT_ARCH_LLAMA        ? llama_layout_params(m, err)
             : c.arch == GPT_ARCH_STARCODER2 ? starcoder2_layout_params(m, err)
                                             : layout_params(m, err);
    if (rc == CU_OK && m->lora.enabled) rc = layout_lora(m, err);
    if (rc == CU_OK) {
        m->n_grads = m->lora.enabled ? m->n_lora : m->n_params;
        m->grads = cu_alloc_pages(m->n_grads * sizeof(float), err);
        if (!m->grads) rc = err ? err->code : CU_ENOMEM;
    }
    if (rc != CU_OK) {
        gpt_free(m);
        return rc;
    }
    *out = m;
    return CU_OK;
}

void gpt_free(gpt_t *m) {
    if (!m) return;
    gpt_impl_free_precision(m);
    gpt_impl_free_lazy(m->params, m->n_params * sizeof(float));
    free(m->ptensors);
    free(m->lora_buf);
    free(m->ltensors);
    free(m->lora_off);
    cu_free_pages(m->grads, m->n_grads * sizeof(float));
    free(m->acts);
    free(m->inputs);
    free(m->kv);
    free(m->rope_cos);
    free(m);
}

void gpt_set_bf16_attention_from(gpt_t *m, int T) {
    m->att16_from = T > 0 ? T : 0;
}

void gpt_set_activation_checkpointing(gpt_t *m, int on) {
    if (!!on == m->ckpt) return;
    m->ckpt = !!on;
    free(m->acts);
    free(m->inputs);
    m->acts = NULL;
    m->inputs = NULL;
    m->B = m->T = 0;
}

int gpt_activation_checkpointing(const gpt_t *m) {
    return m->ckpt;
}

const gpt_config_t *gpt_config(const gpt_t *m) {
    return &m->cfg;
}
const lora_config_t *gpt_lora_config(const gpt_t *m) {
    return &m->lora;
}

float gpt_lora_scale(const gpt_t *m) {
    return m->lora_scale;
}

float *gpt_params(gpt_t *m, size_t *n) {
    if (n) *n = m->n_params;
    m->bf16_stale = 1;
    return m->params;
}
const gpt_tensor_t *gpt_param_tensors(const gpt_t *m, int *n) {
    *n = m->n_ptensors;
    return m->ptensors;
}
float *gpt_lora_params(gpt_t *m, size_t *n) {
    if (n) *n = m->n_lora;
    return m->lora_buf;
}
const gpt_tensor_t *gpt_lora_tensors(const gpt_t *m, int *n) {
    *n = m->n_ltensors;
    return m->ltensors;
}
float *gpt_trainable(gpt_t *m, size_t *n) {
    if (n) *n = m->n_grads;
    if (!m->lora.enabled) m->bf16_stale = 1;
    return m->lora.enabled ? m->lora_buf : m->params;
}
float *gpt_grads(gpt_t *m, size_t *n) {
    if (n) *n = m->n_grads;
    return m->grads;
}
const gpt_tensor_t *gpt_trainable_tensors(const gpt_t *m, int *n) {
    return m->lora.enabled ? gpt_lora_tensors(m, n) : gpt_param_tensors(m, n);
}
void gpt_zero_grad(gpt_t *m) {
    memset(m->grads, 0, m->n_grads * sizeof(float));
}

/* ------------------------------------------------------------ initialise */

void gpt_init_weights(gpt_t *m, uint64_t seed, float std) {
    m->bf16_stale = 1;
    cu_rng_t rng;
    cu_rng_seed(&rng, seed);
    float resid_std = std / sqrtf(2.0f * (float)m->cfg.n_layer);
    for (int i = 0; i < m->n_ptensors; i++) {
        const gpt_tensor_t *t = &m->ptensors[i];
        float *p = m->params + t->offset;
        size_t n = gpt_tensor_numel(t);
        int llama = m->cfg.arch != GPT_ARCH_GPT2; /* every vector but a bias is a norm gain */
        int is_norm_gain = llama ? t->ndim == 1 && !strstr(t->name, ".bias")
                                 : strstr(t->name, "ln_") && strstr(t->name, ".weight");
        if (is_norm_gain) {
            for (size_t j = 0; j < n; j++) p[j] = 1.0f;
        } else if (t->ndim == 1) {
            memset(p, 0, n * sizeof(float));
        } else {
            int resid = strstr(t->name, "c_proj.weight") || strstr(t->name, "o_proj.weight") ||
                        strstr(t->name, "down_proj.weight");
            float s = resid ? resid_std : std;
            for (size_t j = 0; j < n; j++) p[j] = s * cu_rng_normal(&rng);
        }
    }
}

void gpt_init_lora(gpt_t *m, uint64_t seed) {
    if (!m->lora.enabled) return;
    cu_rng_t rng;
    cu_rng_seed(&rng, seed);
    for (int i = 0; i < m->n_ltensors; i++) {
        const gpt_tensor_t *t = &m->ltensors[i];
        float *p = m->lora_buf + t->offset;
        size_t n = (size_t)t->shape[0] * (size_t)t->shape[1];
        if (strstr(t->name, "lora_B")) {
            memset(p, 0, n * sizeof(float));
        } else if (m->lora.init_gaussian) {
            float s = 1.0f / (float)m->lora.r;
            for (size_t j = 0; j < n; j++) p[j] = s * cu_rng_normal(&rng);
        } else {
            /* kaiming_uniform(a = sqrt(5)) as PEFT does: bound 1/sqrt(fan_in) */
            float bound = 1.0f / sqrtf((float)t->shape[1]);
            for (size_t j = 0; j < n; j++) p[j] = bound * (2.0f * cu_rng_uniform(&rng) - 1.0f);
        }
    }
}

/* ----------------------------------------------------------- activations */

/* Replaces m->acts and m->inputs with buffers for B x T tokens: one aligned
 * block carved into the spans, each rounded up to 16 floats to keep 64-byte
 * alignment. On failure both stay NULL. */
int gpt_impl_carve_acts(gpt_t *m, const gpt_impl_span_t *parts, int np, int B, int T,
                        cu_error_t *err) {
    free(m->acts);
    free(m->inputs);
    m->acts = NULL;
    m->inputs = NULL;
    long N = (long)B * T, total = 0;
    for (int i = 0; i < np; i++) total += (parts[i].n + 15) / 16 * 16;
    m->acts = cu_alloc_aligned((size_t)total * sizeof(float), err);
    m->inputs = malloc(sizeof(int32_t) * (size_t)N);
    if (!m->acts || !m->inputs) {
        free(m->acts);
        free(m->inputs);
        m->acts = NULL;
        m->inputs = NULL;
        return cu_error_set(err, CU_ENOMEM, "out of memory for activations (%.1f MB)",
                            (double)total * 4.0 / 1e6);
    }
    float *p = m->acts;
    for (int i = 0; i < np; i++) {
        *parts[i].p = p;
        p += (parts[i].n + 15) / 16 * 16;
    }
    m->B = B;
    m->T = T;
    return CU_OK;
}

int gpt_reserve(gpt_t *m, int B, int T, cu_error_t *err) {
    if (B < 1 || T < 1) return cu_error_set(err, CU_EINVAL, "batch and sequence must be >= 1");
    if (T > m->cfg.max_seq_len)
        return cu_error_set(err, CU_EINVAL, "sequence length %d exceeds model.max_seq_len %d", T,
                            m->cfg.max_seq_len);
    if (m->acts && B * T <= m->B * m->T && T <= m->T && B <= m->B) return CU_OK;
    if (m->cfg.arch == GPT_ARCH_LLAMA) return llama_reserve(m, B, T, err);
    if (m->cfg.arch == GPT_ARCH_STARCODER2) return starcoder2_reserve(m, B, T, err);
    long L = m->cfg.n_layer, C = m->cfg.n_embd, NH = m->cfg.n_head, V = m->cfg.vocab_size;
    long N = (long)B * T, r = m->lora.enabled ? m->lora.r : 0;
    long head = lm_head_scratch_floats((int)N, (int)V);
    long La = m->ckpt ? 1 : L; /* layers of intermediate activations kept */
    gpt_impl_span_t parts[] = {
        {&m->encoded, N * C},
        {&m->ln1, La * N * C},
        {&m->ln1_mean, La * N},
        {&m->ln1_rstd, La * N},
        {&m->qkv, La * N * 3 * C},
        {&m->atty, La * N * C},
        {&m->lse, La * N * NH},
        {&m->residual2, La * N * C},
        {&m->ln2, La * N * C},
        {&m->ln2_mean, La * N},
        {&m->ln2_rstd, La * N},
        {&m->fch, La * N * 4 * C},
        {&m->fch_gelu, La * N * 4 * C},
        {&m->residual3, L * N * C},
        {&m->lnf, N * C},
        {&m->lnf_mean, N},
        {&m->lnf_rstd, N},
        {&m->xa, La * 4 * N * r},
        {&m->dresidual, N * C},
        {&m->dsmall, N * C},
        {&m->dbig, N * 4 * C},
        {&m->dqkv, N * 3 * C},
        {&m->dxa, N * r},
        {&m->drop_x, N * 4 * C},
        {&m->drop_dx, N * 4 * C},
        {&m->dlnf, N * C},
        {&m->att_scratch, attention_scratch_floats(T)},
        {&m->head_scratch, head},
    };
    return gpt_impl_carve_acts(m, parts, (int)(sizeof parts / sizeof parts[0]), B, T, err);
}

/* --------------------------------------------------------------- LoRA op */

static float *site_A(gpt_t *m, int l, int t) {
    if (!m->lora.enabled) return NULL;
    long off = m->lora_off[l * m->n_targets + t];
    return off < 0 ? NULL : m->lora_buf + off;
}

/* The adapter input with dropout applied, drawn from a per-site key so the
 * backward regenerates the same mask instead of storing it. */
static const float *lora_dropout(gpt_t *m, int site, const float *x, long n, float *buf) {
    float p = m->lora.dropout;
    if (!m->cur_train || p <= 0.0f) return x;
    uint64_t key = cu_hash64(m->cur_dropout_key, (uint64_t)site);
    float keep_scale = 1.0f / (1.0f - p);
    for (long i = 0; i < n; i++)
        buf[i] = cu_hash_uniform(key, (uint64_t)i) < p ? 0.0f : x[i] * keep_scale;
    return buf;
}

/* out += scale * dropout(x) @ A^T @ B^T, keeping x A^T for the backward. */
void gpt_impl_lora_forward(gpt_t *m, int l, int t, const float *x, float *out, int N, float *xa) {
    float *A = site_A(m, l, t);
    if (!A) return;
    int in, outc, r = m->lora.r;
    gpt_target_dims(&m->cfg, t, &in, &outc);
    float *B = A + (long)r * in;
    const float *xin = lora_dropout(m, l * m->n_targets + t, x, (long)N * in, m->drop_x);
    /* (bf16: x's rounding is the one the base product just made) */
    gemm_small(m->gemm, xa, xin, 0, xin == x, A, 1, N, r, in, 1.0f, 0.0f);
    gemm_small(m->gemm, out, xa, 0, 0, B, 1, N, outc, r, m->lora_scale, 1.0f);
}

float *gpt_impl_site_xa(gpt_t *m, int l, int t) {
    long N = (long)m->cur_B * m->cur_T;
    return m->xa + ((long)(m->ckpt ? 0 : l) * m->n_targets + t) * N * m->lora.r;
}

/* The dropout mask of site's input, redrawn: dx += drop_dx where kept. */
static void lora_dropout_backward(gpt_t *m, int site, float *dx, long n) {
    uint64_t key = cu_hash64(m->cur_dropout_key, (uint64_t)site);
    float keep_scale = 1.0f / (1.0f - m->lora.dropout);
    for (long i = 0; i < n; i++)
        if (cu_hash_uniform(key, (uint64_t)i) >= m->lora.dropout)
            dx[i] += m->drop_dx[i] * keep_scale;
}

/* Gradients of one adapter given dout; dx += its share when dx != NULL.
 * In bf16, when dx is not NULL the site's base product dout W has just run
 * (every caller's order), so dout's bf16 rounding is reused. */
void gpt_impl_lora_backward(gpt_t *m, int l, int t, const float *dout, const float *x, float *dx,
                            int N) {
    float *A = site_A(m, l, t);
    if (!A) return;
    int in, outc, r = m->lora.r, last = dx != NULL;
    gpt_target_dims(&m->cfg, t, &in, &outc);
    float *B = A + (long)r * in;
    float *dA = m->grads + (A - m->lora_buf);
    float *dB = dA + (long)r * in;
    const float *xa = gpt_impl_site_xa(m, l, t);
    float s = m->lora_scale;
    gemm_small(m->gemm, dB, dout, 1, last, xa, 0, outc, r, N, s, 1.0f);
    gemm_small(m->gemm, m->dxa, dout, 0, last, B, 0, N, r, outc, s, 0.0f);
    int site = l * m->n_targets + t;
    const float *xin = lora_dropout(m, site, x, (long)N * in, m->drop_x);
    gemm_small(m->gemm, dA, m->dxa, 1, 0, xin, 0, r, in, N, 1.0f, 1.0f);
    if (!dx) return;
    if (!m->cur_train || m->lora.dropout <= 0.0f) {
        gemm_small(m->gemm, dx, m->dxa, 0, 0, A, 0, N, in, r, 1.0f, 1.0f);
        return;
    }
    gemm_small(m->gemm, m->drop_dx, m->dxa, 0, 0, A, 0, N, in, r, 1.0f, 0.0f);
    lora_dropout_backward(m, site, dx, (long)N * in);
}

/* ---------------------------------------------------------------- forward */

/* Block l of GPT-2 on its input residual: the activations into layer l's
 * slots (ACT), the output into residual3[l]. */
static void block_forward(gpt_t *m, int l, const float *residual) {
    int B = m->cur_B, T = m->cur_T, C = m->cfg.n_embd, NH = m->cfg.n_head, N = B * T;
    float *ln1 = ACT(m, m->ln1, l, N * C), *qkv = ACT(m, m->qkv, l, N * 3 * C);
    float *atty = ACT(m, m->atty, l, N * C), *res2 = ACT(m, m->residual2, l, N * C);
    float *ln2 = ACT(m, m->ln2, l, N * C), *fch = ACT(m, m->fch, l, N * 4 * C);
    float *fchg = ACT(m, m->fch_gelu, l, N * 4 * C), *res3 = LAYER(m->residual3, l, N * C);
    layernorm_forward(ln1, gemm_lend_activation(m->gemm, ln1, (size_t)N * C),
                      ACT(m, m->ln1_mean, l, N), ACT(m, m->ln1_rstd, l, N), residual,
                      LAYER(m->ln1w, l, C), LAYER(m->ln1b, l, C), N, C, gpt_impl_sum(m));
    matmul_forward_on(m->gemm, qkv, ln1, LAYER(m->qkvw, l, 3 * C * C), LAYER(m->qkvb, l, 3 * C), N,
                      C, 3 * C, 0.0f);
    gpt_impl_lora_forward(m, l, LORA_QKV, ln1, qkv, N, gpt_impl_site_xa(m, l, LORA_QKV));
    if (gpt_impl_att16(m)) {
        att_shape_t as = {.B = B, .T = T, .NH = NH, .NKV = NH, .hs = C / NH};
        attention_bf16_forward(m->gemm, atty, gemm_lend_activation(m->gemm, atty, (size_t)N * C),
                               ACT(m, m->lse, l, N * NH), qkv, 3 * C, qkv + C, qkv + 2 * C, 3 * C,
                               &as, gpt_impl_sum(m));
    } else {
        attention_forward(atty, gemm_lend_activation(m->gemm, atty, (size_t)N * C),
                          ACT(m, m->lse, l, N * NH), qkv, m->att_scratch, B, T, C, NH,
                          gpt_impl_sum(m));
    }
    memcpy(res2, residual, sizeof(float) * (size_t)N * C);
    matmul_forward_on(m->gemm, res2, atty, LAYER(m->attprojw, l, C * C), LAYER(m->attprojb, l, C),
                      N, C, C, 1.0f);
    gpt_impl_lora_forward(m, l, LORA_ATTN_PROJ, atty, res2, N,
                          gpt_impl_site_xa(m, l, LORA_ATTN_PROJ));
    layernorm_forward(ln2, gemm_lend_activation(m->gemm, ln2, (size_t)N * C),
                      ACT(m, m->ln2_mean, l, N), ACT(m, m->ln2_rstd, l, N), res2,
                      LAYER(m->ln2w, l, C), LAYER(m->ln2b, l, C), N, C, gpt_impl_sum(m));
    matmul_forward_on(m->gemm, fch, ln2, LAYER(m->fcw, l, 4 * C * C), LAYER(m->fcb, l, 4 * C), N, C,
                      4 * C, 0.0f);
    gpt_impl_lora_forward(m, l, LORA_MLP_FC, ln2, fch, N, gpt_impl_site_xa(m, l, LORA_MLP_FC));
    gelu_forward(fchg, gemm_lend_activation(m->gemm, fchg, (size_t)N * 4 * C), fch,
                 (long)N * 4 * C);
    memcpy(res3, res2, sizeof(float) * (size_t)N * C);
    matmul_forward_on(m->gemm, res3, fchg, LAYER(m->fcprojw, l, 4 * C * C), LAYER(m->fcprojb, l, C),
                      N, 4 * C, C, 1.0f);
    gpt_impl_lora_forward(m, l, LORA_MLP_PROJ, fchg, res3, N,
                          gpt_impl_site_xa(m, l, LORA_MLP_PROJ));
}

int gpt_forward(gpt_t *m, const int32_t *inputs, const int32_t *targets, int B, int T, int train,
                float grad_scale, uint64_t dropout_key, gpt_loss_t *loss, cu_error_t *err) {
    if (!m->acts || B > m->B || T > m->T) {
        int rc = gpt_reserve(m, B, T, err);
        if (rc) return rc;
    }
    if (train && !targets) return cu_error_set(err, CU_EINVAL, "training needs targets");
    int rc = gpt_impl_sync_precision(m, err);
    if (rc) return rc;
    int L = m->cfg.n_layer, C = m->cfg.n_embd, V = m->cfg.vocab_size;
    int N = B * T;
    for (int i = 0; i < N; i++) {
        if (inputs[i] < 0 || inputs[i] >= V)
            return cu_error_set(err, CU_EINVAL,
                                "token id %d at position %d is outside the vocabulary (%d)",
                                inputs[i], i, V);
        if (targets && targets[i] >= V)
            return cu_error_set(err, CU_EINVAL,
                                "target id %d at position %d is outside the vocabulary (%d)",
                                targets[i], i, V);
    }
    m->cur_B = B;
    m->cur_T = T;
    m->cur_train = train;
    m->cur_grad_scale = grad_scale;
    m->cur_dropout_key = dropout_key;
    memcpy(m->inputs, inputs, sizeof(int32_t) * (size_t)N);
    if (m->cfg.arch == GPT_ARCH_LLAMA) {
        llama_forward(m, targets, loss);
        return CU_OK;
    }
    if (m->cfg.arch == GPT_ARCH_STARCODER2) {
        starcoder2_forward(m, targets, loss);
        return CU_OK;
    }

    encoder_forward(m->encoded, inputs, m->wte, m->wpe, B, T, C);
    const float *residual = m->encoded;
    for (int l = 0; l < L; l++) {
        block_forward(m, l, residual);
        residual = LAYER(m->residual3, l, N * C);
    }
    layernorm_forward(m->lnf, NULL, m->lnf_mean, m->lnf_rstd, residual, m->lnfw, m->lnfb, N, C,
                      gpt_impl_sum(m));

    gpt_loss_t out = {0};
    if (targets) {
        float *dwte = (train && !m->lora.enabled) ? m->grads + (m->wte - m->params) : NULL;
        out.loss_sum =
            lm_head_loss_on(m->gemm, train ? m->dlnf : NULL, dwte, &out.n_valid, &out.n_correct,
                            m->lnf, m->wte, targets, m->head_scratch, N, C, V, grad_scale);
    }
    if (loss) *loss = out;
    return CU_OK;
}

void gpt_logits(gpt_t *m, int row0, int n, float *logits) {
    int C = m->cfg.n_embd;
    const float *head = m->cfg.arch != GPT_ARCH_GPT2 ? m->lm_head : m->wte;
    lm_head_logits_on(m->gemm, logits, m->lnf + (long)row0 * C, head, n, C, m->cfg.vocab_size);
}

void gpt_set_dropout_row0(gpt_t *m, uint64_t row0) {
    m->dropout_row0 = row0;
}

/* --------------------------------------------------------------- backward */

/* Gradient slot of a base weight, or NULL when base weights are frozen. */
float *gpt_impl_pgrad(gpt_t *m, float *p) {
    return m->lora.enabled ? NULL : m->grads + (p - m->params);
}

/* Whether the gradient must flow below `site` (some trainable tensor is lower). */
int gpt_impl_need_below(const gpt_t *m, int site) {
    return !m->lora.enabled || site > m->lowest_site;
}

/* Backward of block l, with m->dresidual holding dloss/d(block output); on
 * return it holds dloss/d(block input). Returns 0 when nothing below needs a
 * gradient, so the walk can stop. */
static int block_backward(gpt_t *m, int l) {
    int C = m->cfg.n_embd, NH = m->cfg.n_head, N = m->cur_B * m->cur_T;
    int base = l * LORA_N_TARGETS;
    float *dres = m->dresidual, *dsmall = m->dsmall, *dbig = m->dbig;
    const float *residual = l == 0 ? m->encoded : LAYER(m->residual3, l - 1, N * C);
    /* the slot still holds the top block's activations from the forward */
    if (m->ckpt && l < m->cfg.n_layer - 1) block_forward(m, l, residual);
    float *ln1 = ACT(m, m->ln1, l, N * C), *qkv = ACT(m, m->qkv, l, N * 3 * C);
    float *atty = ACT(m, m->atty, l, N * C), *res2 = ACT(m, m->residual2, l, N * C);
    float *ln2 = ACT(m, m->ln2, l, N * C), *fch = ACT(m, m->fch, l, N * 4 * C);
    float *fchg = ACT(m, m->fch_gelu, l, N * 4 * C);

    /* MLP projection: res3 = res2 + fchg Wp^T + bp */
    int below = gpt_impl_need_below(m, base + LORA_MLP_PROJ);
    float *w = LAYER(m->fcprojw, l, 4 * C * C);
    matmul_backward_on(m->gemm, below ? dbig : NULL, gpt_impl_pgrad(m, w),
                       gpt_impl_pgrad(m, LAYER(m->fcprojb, l, C)), dres, fchg, w, N, 4 * C, C,
                       0.0f);
    gpt_impl_lora_backward(m, l, LORA_MLP_PROJ, dres, fchg, below ? dbig : NULL, N);
    if (!below) return 0;
    gelu_backward(dbig, gemm_lend_activation(m->gemm, dbig, (size_t)N * 4 * C), fch, dbig,
                  (long)N * 4 * C);

    /* MLP up-projection: fch = ln2 Wfc^T + bfc */
    below = gpt_impl_need_below(m, base + LORA_MLP_FC);
    w = LAYER(m->fcw, l, 4 * C * C);
    matmul_backward_on(m->gemm, below ? dsmall : NULL, gpt_impl_pgrad(m, w),
                       gpt_impl_pgrad(m, LAYER(m->fcb, l, 4 * C)), dbig, ln2, w, N, C, 4 * C, 0.0f);
    gpt_impl_lora_backward(m, l, LORA_MLP_FC, dbig, ln2, below ? dsmall : NULL, N);
    if (!below) return 0;
    w = LAYER(m->ln2w, l, C);
    layernorm_backward(dres, gemm_lend_activation(m->gemm, dres, (size_t)N * C),
                       gpt_impl_pgrad(m, w), gpt_impl_pgrad(m, LAYER(m->ln2b, l, C)), dsmall, res2,
                       w, ACT(m, m->ln2_mean, l, N), ACT(m, m->ln2_rstd, l, N), N, C,
                       gpt_impl_sum(m));

    /* attention projection: res2 = residual + atty Wap^T + bap */
    below = gpt_impl_need_below(m, base + LORA_ATTN_PROJ);
    w = LAYER(m->attprojw, l, C * C);
    matmul_backward_on(m->gemm, below ? dsmall : NULL, gpt_impl_pgrad(m, w),
                       gpt_impl_pgrad(m, LAYER(m->attprojb, l, C)), dres, atty, w, N, C, C, 0.0f);
    gpt_impl_lora_backward(m, l, LORA_ATTN_PROJ, dres, atty, below ? dsmall : NULL, N);
    if (!below) return 0;
    if (gpt_impl_att16(m)) {
        att_shape_t as = {.B = m->cur_B, .T = m->cur_T, .NH = NH, .NKV = NH, .hs = C / NH};
        attention_bf16_backward(m->gemm, m->dqkv, 3 * C, m->dqkv + C, m->dqkv + 2 * C, 3 * C,
                                gemm_lend_activation(m->gemm, m->dqkv, (size_t)N * 3 * C), dsmall,
                                qkv, 3 * C, qkv + C, qkv + 2 * C, 3 * C, atty,
                                ACT(m, m->lse, l, N * NH), &as, gpt_impl_sum(m));
    } else {
        attention_backward(m->dqkv, gemm_lend_activation(m->gemm, m->dqkv, (size_t)N * 3 * C),
                           dsmall, qkv, atty, ACT(m, m->lse, l, N * NH), m->att_scratch, m->cur_B,
                           m->cur_T, C, NH, gpt_impl_sum(m));
    }

    /* qkv projection: qkv = ln1 Wqkv^T + bqkv */
    below = gpt_impl_need_below(m, base + LORA_QKV);
    w = LAYER(m->qkvw, l, 3 * C * C);
    matmul_backward_on(m->gemm, below ? dsmall : NULL, gpt_impl_pgrad(m, w),
                       gpt_impl_pgrad(m, LAYER(m->qkvb, l, 3 * C)), m->dqkv, ln1, w, N, C, 3 * C,
                       0.0f);
    gpt_impl_lora_backward(m, l, LORA_QKV, m->dqkv, ln1, below ? dsmall : NULL, N);
    if (!below) return 0;
    w = LAYER(m->ln1w, l, C);
    layernorm_backward(dres, gemm_lend_activation(m->gemm, dres, (size_t)N * C),
                       gpt_impl_pgrad(m, w), gpt_impl_pgrad(m, LAYER(m->ln1b, l, C)), dsmall,
                       residual, w, ACT(m, m->ln1_mean, l, N), ACT(m, m->ln1_rstd, l, N), N, C,
                       gpt_impl_sum(m));
    return 1;
}

void gpt_set_grad_ready(gpt_t *m, gpt_grad_ready_fn fn, void *ctx) {
    m->ready = fn;
    m->ready_ctx = ctx;
}

/* Reports the gradient ranges of layer l: the layer's adapters (contiguous),
 * or in full fine-tuning its slice of each of the 12 stacked kinds. */
static void report_layer(gpt_t *m, int l) {
    if (!m->ready) return;
    if (m->lora.enabled) {
        gpt_impl_report_lora_layer(m, l);
        return;
    }
    int L = m->cfg.n_layer;
    for (int k = 0; k < 12; k++) {
        const gpt_tensor_t *t = &m->ptensors[2 + k * L + l];
        size_t n = gpt_tensor_numel(t);
        m->ready(m->ready_ctx, t->offset, n);
    }
}

/* The embeddings and the final norm (full fine-tuning only). */
static void report_ends(gpt_t *m) {
    if (!m->ready || m->lora.enabled) return;
    int n = m->n_ptensors;
    const gpt_tensor_t *ends[4] = {&m->ptensors[0], &m->ptensors[1], &m->ptensors[n - 2],
                                   &m->ptensors[n - 1]};
    for (int i = 0; i < 4; i++) {
        const gpt_tensor_t *t = ends[i];
        m->ready(m->ready_ctx, t->offset, gpt_tensor_numel(t));
    }
}

void gpt_backward(gpt_t *m) {
    if (m->cfg.arch == GPT_ARCH_LLAMA) {
        llama_backward(m);
        return;
    }
    if (m->cfg.arch == GPT_ARCH_STARCODER2) {
        starcoder2_backward(m);
        return;
    }
    int L = m->cfg.n_layer, C = m->cfg.n_embd, N = m->cur_B * m->cur_T;
    memset(m->dresidual, 0, sizeof(float) * (size_t)N * C);
    layernorm_backward(m->dresidual, gemm_lend_activation(m->gemm, m->dresidual, (size_t)N * C),
                       gpt_impl_pgrad(m, m->lnfw), gpt_impl_pgrad(m, m->lnfb), m->dlnf,
                       LAYER(m->residual3, L - 1, N * C), m->lnfw, m->lnf_mean, m->lnf_rstd, N, C,
                       gpt_impl_sum(m));
    int l = L - 1, carry = 1;
    for (; l >= 0 && carry; l--) {
        carry = block_backward(m, l);
        report_layer(m, l);
    }
    /* below the lowest trainable tensor nothing changes any more */
    for (; l >= 0; l--) report_layer(m, l);
    if (!m->lora.enabled)
        encoder_backward(gpt_impl_pgrad(m, m->wte), gpt_impl_pgrad(m, m->wpe), m->dresidual,
                         m->inputs, m->cur_B, m->cur_T, C);
    report_ends(m);
}

/* -------------------------------------------------------------- KV cache */

int gpt_kv_reserve(gpt_t *m, int max_len, cu_error_t *err) {
    if (max_len > m->cfg.max_seq_len) max_len = m->cfg.max_seq_len;
    if (m->kv && m->kv_max >= max_len) return CU_OK;
    if (m->cfg.arch == GPT_ARCH_LLAMA) return llama_kv_reserve(m, max_len, err);
    if (m->cfg.arch == GPT_ARCH_STARCODER2) return starcoder2_kv_reserve(m, max_len, err);
    free(m->kv);
    long L = m->cfg.n_layer, C = m->cfg.n_embd, r = m->lora.enabled ? m->lora.r : 1;
    long total = 2 * L * max_len * C + C * 2 + 3 * C + C + 8 * C + max_len + r + 64;
    m->kv = cu_alloc_aligned((size_t)total * sizeof(float), err);
    if (!m->kv) return err ? err->code : CU_ENOMEM;
    float *p = m->kv;
    m->kv_k = p, p += L * max_len * C;
    m->kv_v = p, p += L * max_len * C;
    m->kv_x = p, p += C;
    m->kv_xn = p, p += C;
    m->kv_qkv = p, p += 3 * C;
    m->kv_att = p, p += C;
    m->kv_h = p, p += 4 * C;
    m->kv_hg = p, p += 4 * C;
    m->kv_scores = p, p += max_len;
    m->kv_xa = p;
    m->kv_max = max_len;
    m->kv_len = 0;
    return CU_OK;
}

void gpt_kv_reset(gpt_t *m) {
    m->kv_len = 0;
}
int gpt_kv_len(const gpt_t *m) {
    return m->kv_len;
}

/* One token's linear layer with its adapter: out = beta*out + x W^T + b + lora. */
static void kv_linear(gpt_t *m, int l, int t, float *out, const float *x, const float *w,
                      const float *b, int in, int outc, float beta) {
    matmul_forward_on(m->gemm, out, x, w, b, 1, in, outc, beta);
    m->cur_train = 0;
    gpt_impl_lora_forward(m, l, t, x, out, 1, m->kv_xa);
}

static void kv_attention(gpt_t *m, int l, int pos) {
    int C = m->cfg.n_embd, NH = m->cfg.n_head, hs = C / NH;
    const float *K = m->kv_k + (long)l * m->kv_max * C, *Vc = m->kv_v + (long)l * m->kv_max * C;
    float scale = 1.0f / sqrtf((float)hs);
    for (int h = 0; h < NH; h++) {
        const float *q = m->kv_qkv + h * hs;
        float mx = -INFINITY, sum = 0.0f;
        for (int j = 0; j <= pos; j++) {
            const float *k = K + (long)j * C + h * hs;
            float s = 0.0f;
            for (int d = 0; d < hs; d++) s += q[d] * k[d];
            m->kv_scores[j] = s * scale;
            if (m->kv_scores[j] > mx) mx = m->kv_scores[j];
        }
        for (int j = 0; j <= pos; j++) {
            m->kv_scores[j] = expf(m->kv_scores[j] - mx);
            sum += m->kv_scores[j];
        }
        float *o = m->kv_att + h * hs;
        memset(o, 0, sizeof(float) * hs);
        for (int j = 0; j <= pos; j++) {
            const float *v = Vc + (long)j * C + h * hs;
            float p = m->kv_scores[j] / sum;
            for (int d = 0; d < hs; d++) o[d] += p * v[d];
        }
    }
}

int gpt_kv_step(gpt_t *m, int32_t token, float *logits, cu_error_t *err) {
    int rc = gpt_impl_sync_precision(m, err);
    if (rc) return rc;
    if (m->cfg.arch == GPT_ARCH_LLAMA) return llama_kv_step(m, token, logits, err);
    if (m->cfg.arch == GPT_ARCH_STARCODER2) return starcoder2_kv_step(m, token, logits, err);
    int L = m->cfg.n_layer, C = m->cfg.n_embd, V = m->cfg.vocab_size;
    if (!m->kv) return cu_error_set(err, CU_EINVAL, "KV cache not reserved");
    if (m->kv_len >= m->kv_max)
        return cu_error_set(err, CU_EINVAL, "sequence reached the KV cache length %d", m->kv_max);
    if (token < 0 || token >= V)
        return cu_error_set(err, CU_EINVAL, "token id %d is outside the vocabulary (%d)", token, V);
    int pos = m->kv_len;
    float *x = m->kv_x, *xn = m->kv_xn, mean, rstd;
    for (int i = 0; i < C; i++) x[i] = m->wte[(long)token * C + i] + m->wpe[(long)pos * C + i];
    for (int l = 0; l < L; l++) {
        layernorm_forward(xn, NULL, &mean, &rstd, x, LAYER(m->ln1w, l, C), LAYER(m->ln1b, l, C), 1,
                          C, gpt_impl_sum(m));
        kv_linear(m, l, LORA_QKV, m->kv_qkv, xn, LAYER(m->qkvw, l, 3 * C * C),
                  LAYER(m->qkvb, l, 3 * C), C, 3 * C, 0.0f);
        memcpy(m->kv_k + ((long)l * m->kv_max + pos) * C, m->kv_qkv + C, sizeof(float) * C);
        memcpy(m->kv_v + ((long)l * m->kv_max + pos) * C, m->kv_qkv + 2 * C, sizeof(float) * C);
        kv_attention(m, l, pos);
        kv_linear(m, l, LORA_ATTN_PROJ, x, m->kv_att, LAYER(m->attprojw, l, C * C),
                  LAYER(m->attprojb, l, C), C, C, 1.0f);
        layernorm_forward(xn, NULL, &mean, &rstd, x, LAYER(m->ln2w, l, C), LAYER(m->ln2b, l, C), 1,
                          C, gpt_impl_sum(m));
        kv_linear(m, l, LORA_MLP_FC, m->kv_h, xn, LAYER(m->fcw, l, 4 * C * C),
                  LAYER(m->fcb, l, 4 * C), C, 4 * C, 0.0f);
        gelu_forward(m->kv_hg, NULL, m->kv_h, 4 * C);
        kv_linear(m, l, LORA_MLP_PROJ, x, m->kv_hg, LAYER(m->fcprojw, l, 4 * C * C),
                  LAYER(m->fcprojb, l, C), 4 * C, C, 1.0f);
    }
    layernorm_forward(xn, NULL, &mean, &rstd, x, m->lnfw, m->lnfb, 1, C, gpt_impl_sum(m));
    lm_head_logits_on(m->gemm, logits, xn, m->wte, 1, C, V);
    m->kv_len++;
    return CU_OK;
}

/* ------------------------------------------------------------------ FLOPs */

double gpt_flops_per_step(const gpt_t *m, int B, int T) {
    if (m->cfg.arch == GPT_ARCH_LLAMA) return llama_flops_per_step(m, B, T);
    if (m->cfg.arch == GPT_ARCH_STARCODER2) return starcoder2_flops_per_step(m, B, T);
    double L = m->cfg.n_layer, C = m->cfg.n_embd, V = m->cfg.vocab_size;
    double N = (double)B * T, r = m->lora.enabled ? m->lora.r : 0;
    double linear = 2.0 * N * 12.0 * C * C;    /* one pass over a block's four linears */
    double attn = 2.0 * B * C * T * (T + 1.0); /* causal QK^T and PV */
    double head = 2.0 * N * C * V;
    double fwd = L * (linear + attn) + head;
    double lora_fwd = 0.0;
    if (m->lora.enabled) {
        for (int t = 0; t < LORA_N_TARGETS; t++) {
            if (!(m->lora.targets & (1u << t))) continue;
            int in, out;
            gpt_target_dims(&m->cfg, t, &in, &out);
            lora_fwd += L * 2.0 * N * r * (in + out);
        }
    }
    /* backward: input gradients of every linear and the head (weights frozen
     * with LoRA), attention's five products, adapters twice their forward */
    double bwd = L * (linear + 2.5 * attn) + head + 2.0 * lora_fwd;
    if (!m->lora.enabled) bwd += L * linear + head;
    return fwd + lora_fwd + bwd;
}

/* ------------------------------------------- for llama.c (gpt_impl.h) */

void gpt_impl_report_lora_layer(gpt_t *m, int l) {
    if (!m->ready || !m->lora.enabled) return;
    size_t lo = SIZE_MAX, hi = 0;
    for (int t = 0; t < m->n_targets; t++) {
        long off = m->lora_off[l * m->n_targets + t];
        if (off < 0) continue;
        int in, out;
        gpt_target_dims(&m->cfg, t, &in, &out);
        size_t end = (size_t)off + (size_t)m->lora.r * (size_t)(in + out);
        if ((size_t)off < lo) lo = (size_t)off;
        if (end > hi) hi = end;
    }
    if (hi > lo) m->ready(m->ready_ctx, lo, hi - lo);
}

void gpt_impl_report_tensor(gpt_t *m, const gpt_tensor_t *t) {
    if (!m->ready) return;
    m->ready(m->ready_ctx, t->offset, gpt_tensor_numel(t));
}

void gpt_impl_backward_blocks(gpt_t *m, int kinds, int (*block_backward)(gpt_t *, int)) {
    int L = m->cfg.n_layer, report = m->ready != NULL;
    int l = L - 1, carry = 1;
    for (; l >= 0; l--) {
        if (carry) carry = block_backward(m, l);
        if (!report) continue;
        if (m->lora.enabled)
            gpt_impl_report_lora_layer(m, l);
        else
            for (int k = 0; k < kinds; k++) gpt_impl_report_tensor(m, &m->ptensors[1 + k * L + l]);
    }
    if (m->lora.enabled) return;
    encoder_backward(gpt_impl_pgrad(m, m->embed), NULL, m->dresidual, m->inputs, m->cur_B, m->cur_T,
                     m->cfg.n_embd);
    if (!report) return;
    gpt_impl_report_tensor(m, &m->ptensors[0]);
    for (int i = 1 + kinds * L; i < m->n_ptensors; i++) gpt_impl_report_tensor(m, &m->ptensors[i]);
}
