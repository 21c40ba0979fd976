/*
 * Finite-difference checks of Llama's layers (RMSNorm, rotary embeddings,
 * SwiGLU, grouped-query attention) and of the whole Llama model: LoRA on
 * every target, on some, with dropout, and full fine-tuning with a tied and
 * an untied head; plus the grad-ready hook, the KV cache and LoRA's
 * zero-B identity for Llama. Same method as test_grad.c: L = sum(out * g)
 * for a fixed random g, analytic gradient against central differences.
 */
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "gradcheck.h"
#include "harness.h"
#include "model/gpt.h"
#include "model/ops.h"
#include "model/ops_llama.h"

static cu_rng_t rng;

/* -------------------------------------------------------------- RMSNorm */

typedef struct {
    float *out, *rstd, *inp, *w, *g;
    int N, C;
    cu_sum_t order;
} rms_ctx;

static double rms_loss(void *p) {
    rms_ctx *c = p;
    rmsnorm_forward(c->out, NULL, c->rstd, c->inp, c->w, c->N, c->C, 1e-5f, c->order);
    return gradcheck_dot(c->out, c->g, (long)c->N * c->C);
}

/* in lanes (CU_SUM_LANES) C = 24 is a tail only, 150 two blocks and a tail */
static void rmsnorm_case(cu_rng_t *r, int C, cu_sum_t order) {
    rms_ctx c = {.N = 6, .C = C, .order = order};
    long nc = (long)c.N * c.C;
    c.inp = gradcheck_randn(r, nc, 1.0f);
    c.w = gradcheck_randn(r, c.C, 1.0f);
    c.g = gradcheck_randn(r, nc, 1.0f);
    c.out = calloc(nc, 4);
    c.rstd = calloc(c.N, 4);
    float *dinp = calloc(nc, 4), *dw = calloc(c.C, 4);
    rms_loss(&c);
    /* the definition, in double, on row 0 */
    double ss = 0.0;
    for (int i = 0; i < c.C; i++) ss += (double)c.inp[i] * c.inp[i];
    double s = 1.0 / sqrt(ss / c.C + 1e-5);
    CHECK_REL(c.out[3], c.inp[3] * s * c.w[3], 1e-5, 1e-6);
    rmsnorm_backward(dinp, NULL, dw, c.g, c.inp, c.w, c.rstd, c.N, c.C, order);
    gradcheck_fd(r, "rmsnorm dinp", c.inp, nc, dinp, rms_loss, &c, 200, 1e-2f, 1e-2);
    gradcheck_fd(r, "rmsnorm dw", c.w, c.C, dw, rms_loss, &c, 200, 1e-2f, 1e-2);
    free(c.inp), free(c.w), free(c.g), free(c.out), free(c.rstd), free(dinp), free(dw);
}

/* the lanes' cases draw from a copy of the generator, so the later tests
 * see the same numbers as before they were added */
static void test_rmsnorm(void) {
    rmsnorm_case(&rng, 24, CU_SUM_SEQ);
    cu_rng_t r = rng;
    rmsnorm_case(&r, 24, CU_SUM_LANES);
    rmsnorm_case(&r, 150, CU_SUM_LANES);
}

/* ----------------------------------------------------------------- RoPE */

typedef struct {
    float *x, *y, *g, *cos_t, *sin_t;
    int B, T, nh, hs;
} rope_ctx;

static double rope_loss(void *p) {
    rope_ctx *c = p;
    long n = (long)c->B * c->T * c->nh * c->hs;
    memcpy(c->y, c->x, sizeof(float) * (size_t)n);
    rope_forward(c->y, c->cos_t, c->sin_t, c->B, c->T, c->nh, c->hs, 2);
    return gradcheck_dot(c->y, c->g, n);
}

static void test_rope(void) {
    rope_ctx c = {.B = 2, .T = 5, .nh = 3, .hs = 8};
    long n = (long)c.B * c.T * c.nh * c.hs;
    int maxT = 16;
    c.cos_t = malloc(sizeof(float) * maxT * c.hs / 2);
    c.sin_t = malloc(sizeof(float) * maxT * c.hs / 2);
    rope_tables(c.cos_t, c.sin_t, maxT, c.hs, 10000.0);
    c.x = gradcheck_randn(&rng, n, 1.0f);
    c.y = calloc(n, 4);
    c.g = gradcheck_randn(&rng, n, 1.0f);
    rope_loss(&c);
    /* rotate_half layout: dims i and i + hs/2 rotate together. Row (b=1,
     * t=3) sits at position 5; head 2, i = 1. */
    const float *x = c.x + ((long)(1 * c.T + 3) * c.nh + 2) * c.hs;
    const float *y = c.y + ((long)(1 * c.T + 3) * c.nh + 2) * c.hs;
    double a = 5.0 * pow(10000.0, -2.0 * 1 / 8.0);
    CHECK_REL(y[1], x[1] * cos(a) - x[5] * sin(a), 1e-5, 1e-6);
    CHECK_REL(y[5], x[5] * cos(a) + x[1] * sin(a), 1e-5, 1e-6);
    /* the backward is the inverse rotation: it undoes the forward */
    float *back = malloc(sizeof(float) * n);
    memcpy(back, c.y, sizeof(float) * n);
    rope_backward(back, c.cos_t, c.sin_t, c.B, c.T, c.nh, c.hs, 2);
    double maxdiff = 0.0;
    for (long i = 0; i < n; i++) maxdiff = fmax(maxdiff, fabs(back[i] - c.x[i]));
    CHECK_MSG(maxdiff < 1e-5, "rope_backward(rope_forward(x)) differs from x by %g", maxdiff);
    float *dx = malloc(sizeof(float) * n);
    memcpy(dx, c.g, sizeof(float) * n);
    rope_backward(dx, c.cos_t, c.sin_t, c.B, c.T, c.nh, c.hs, 2);
    gradcheck_fd(&rng, "rope dx", c.x, n, dx, rope_loss, &c, 200, 1e-2f, 1e-2);
    free(c.x), free(c.y), free(c.g), free(c.cos_t), free(c.sin_t), free(back), free(dx);
}

/* --------------------------------------------------------------- SwiGLU */

typedef struct {
    float *h, *gate, *up, *g;
    long n;
} swiglu_ctx;

static double swiglu_loss(void *p) {
    swiglu_ctx *c = p;
    swiglu_forward(c->h, c->gate, c->up, c->n);
    return gradcheck_dot(c->h, c->g, c->n);
}

static void test_swiglu(void) {
    swiglu_ctx c = {.n = 200};
    c.gate = gradcheck_randn(&rng, c.n, 2.0f);
    c.up = gradcheck_randn(&rng, c.n, 1.0f);
    c.g = gradcheck_randn(&rng, c.n, 1.0f);
    c.h = calloc(c.n, 4);
    float *dgate = calloc(c.n, 4), *dup = calloc(c.n, 4);
    swiglu_loss(&c);
    CHECK_REL(c.h[7], c.gate[7] / (1.0 + exp(-c.gate[7])) * c.up[7], 1e-5, 1e-6);
    swiglu_backward(dgate, dup, c.g, c.gate, c.up, c.n);
    gradcheck_fd(&rng, "swiglu dgate", c.gate, c.n, dgate, swiglu_loss, &c, 200, 1e-2f, 1e-2);
    gradcheck_fd(&rng, "swiglu dup", c.up, c.n, dup, swiglu_loss, &c, 200, 1e-2f, 1e-2);
    free(c.gate), free(c.up), free(c.g), free(c.h), free(dgate), free(dup);
}

/* ------------------------------------------------------ GQA attention */

typedef struct {
    float *out, *lse, *q, *k, *v, *g, *scratch;
    int B, T, NH, NKV, hs, window;
    cu_sum_t order;
} gqa_ctx;

static double gqa_loss(void *p) {
    gqa_ctx *c = p;
    attention_gqa_forward(c->out, c->lse, c->q, c->k, c->v, c->scratch, c->B, c->T, c->NH, c->NKV,
                          c->hs, c->window, c->order);
    return gradcheck_dot(c->out, c->g, (long)c->B * c->T * c->NH * c->hs);
}

/* The definition, in double: query head h attends with key/value head
 * h / (NH / NKV), position i to positions j0..i (j0 = i - window + 1 with a
 * sliding window). */
static void gqa_naive(float *out, const gqa_ctx *c) {
    int C = c->NH * c->hs, KVC = c->NKV * c->hs, T = c->T, hs = c->hs;
    double *s = malloc(sizeof(double) * T);
    for (int b = 0; b < c->B; b++)
        for (int h = 0; h < c->NH; h++) {
            int kh = h / (c->NH / c->NKV);
            for (int i = 0; i < T; i++) {
                const float *q = c->q + ((long)b * T + i) * C + h * hs;
                double mx = -1e300, sum = 0.0;
                int j0 = c->window > 0 && i >= c->window ? i - c->window + 1 : 0;
                for (int j = j0; j <= i; j++) {
                    const float *k = c->k + ((long)b * T + j) * KVC + kh * hs;
                    double d = 0.0;
                    for (int e = 0; e < hs; e++) d += (double)q[e] * k[e];
                    s[j] = d / sqrt((double)hs);
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = j0; j <= i; j++) sum += (s[j] = exp(s[j] - mx));
                for (int e = 0; e < hs; e++) {
                    double acc = 0.0;
                    for (int j = j0; j <= i; j++)
                        acc += s[j] / sum * c->v[((long)b * T + j) * KVC + kh * hs + e];
                    out[((long)b * T + i) * C + h * hs + e] = (float)acc;
                }
            }
        }
    free(s);
}

static void gqa_case_in(cu_rng_t *r, int B, int T, int NH, int NKV, int hs, int window,
                        cu_sum_t order) {
    gqa_ctx c = {.B = B, .T = T, .NH = NH, .NKV = NKV, .hs = hs, .window = window, .order = order};
    long nq = (long)B * T * NH * hs, nkv = (long)B * T * NKV * hs;
    c.q = gradcheck_randn(r, nq, 1.0f);
    c.k = gradcheck_randn(r, nkv, 1.0f);
    c.v = gradcheck_randn(r, nkv, 1.0f);
    c.g = gradcheck_randn(r, nq, 1.0f);
    c.out = calloc(nq, 4);
    c.lse = calloc((size_t)B * NH * T, 4);
    c.scratch = calloc(attention_scratch_floats(T), 4);
    float *dq = gradcheck_randn(r, nq, 1.0f), *dk = gradcheck_randn(r, nkv, 1.0f),
          *dv = gradcheck_randn(r, nkv, 1.0f);
    float *ref = calloc(nq, 4);
    gqa_loss(&c);
    gqa_naive(ref, &c);
    double maxdiff = 0.0;
    for (long i = 0; i < nq; i++) maxdiff = fmax(maxdiff, fabs(ref[i] - c.out[i]));
    CHECK_MSG(maxdiff < 1e-5, "gqa NH=%d NKV=%d T=%d W=%d: max |out - naive| = %g", NH, NKV, T,
              window, maxdiff);
    /* dq, dk, dv start as garbage: the backward must overwrite them */
    attention_gqa_backward(dq, dk, dv, c.g, c.q, c.k, c.v, c.out, c.lse, c.scratch, B, T, NH, NKV,
                           hs, window, order);
    char what[96];
    snprintf(what, sizeof what, "gqa dq NH=%d NKV=%d T=%d W=%d", NH, NKV, T, window);
    gradcheck_fd(r, what, c.q, nq, dq, gqa_loss, &c, 200, 1e-2f, 2e-2);
    snprintf(what, sizeof what, "gqa dk NH=%d NKV=%d T=%d W=%d", NH, NKV, T, window);
    gradcheck_fd(r, what, c.k, nkv, dk, gqa_loss, &c, 200, 1e-2f, 2e-2);
    snprintf(what, sizeof what, "gqa dv NH=%d NKV=%d T=%d W=%d", NH, NKV, T, window);
    gradcheck_fd(r, what, c.v, nkv, dv, gqa_loss, &c, 200, 1e-2f, 2e-2);
    free(c.q), free(c.k), free(c.v), free(c.g), free(c.out), free(c.lse), free(c.scratch);
    free(dq), free(dk), free(dv), free(ref);
}

static void gqa_case(int B, int T, int NH, int NKV, int hs, int window) {
    gqa_case_in(&rng, B, T, NH, NKV, hs, window, CU_SUM_SEQ);
}

static void test_gqa_attention(void) {
    gqa_case(2, 5, 4, 2, 4, 0);  /* two query heads per key/value head */
    gqa_case(1, 70, 4, 1, 4, 0); /* multi-query, crosses the 64-row block */
    gqa_case(2, 6, 2, 2, 4, 0);  /* plain multi-head */
    /* Mistral's sliding window: shorter than T, and one that makes the
     * second 64-row block start its keys past 0 */
    gqa_case(2, 9, 4, 2, 4, 3);
    gqa_case(1, 75, 2, 1, 4, 5);
    gqa_case(1, 6, 2, 1, 4, 6); /* window = T: no effect */
    /* the sums in lanes (bf16's order): rows of up to 140 keys, a window, and
     * a head size of 144 for the backward's dot products; from a copy of the
     * generator so the later tests draw what they drew before */
    cu_rng_t r = rng;
    gqa_case_in(&r, 1, 140, 4, 2, 4, 0, CU_SUM_LANES);
    gqa_case_in(&r, 1, 75, 2, 1, 4, 5, CU_SUM_LANES);
    gqa_case_in(&r, 1, 6, 2, 1, 144, 0, CU_SUM_LANES);
}

/* ---------------------------------------------------------- whole model */

/* family != 0: every Llama-block variant at once (llama_family.c): Qwen2's
 * q/k/v biases, Mistral's sliding window (3 of the 9 positions) and Llama
 * 3.1's rope scaling, with an original context short enough that the
 * frequencies fall in all three of its bands. family 3: the same with an
 * explicit head_dim of 6 where n_embd / n_head is 4 (q_proj 24 x 16). */
static gpt_t *tiny_model(int lora_on, unsigned targets, float dropout, int tied, int family) {
    gpt_config_t cfg = {.n_layer = 2,
                        .n_head = 4,
                        .n_embd = 16,
                        .vocab_size = 11,
                        .max_seq_len = 9,
                        .arch = GPT_ARCH_LLAMA,
                        .n_kv_head = 2,
                        .ffn_hidden = 24,
                        .rope_theta = 10000.0f,
                        .norm_eps = 1e-5f,
                        .tie_embeddings = tied};
    if (family == 2) { /* StarCoder2: its own block, with the window */
        cfg.arch = GPT_ARCH_STARCODER2;
        cfg.sliding_window = 4;
    } else if (family) {
        if (family == 3) cfg.head_dim = 6;
        cfg.qkv_bias = 1;
        cfg.sliding_window = 3;
        cfg.rope_type = GPT_ROPE_LLAMA3;
        cfg.rope_factor = 8.0f;
        cfg.rope_low_freq = 1.0f;
        cfg.rope_high_freq = 4.0f;
        cfg.rope_orig_max = 64;
    }
    lora_config_t lc = {
        .enabled = lora_on, .targets = targets, .r = 2, .alpha = 4.0f, .dropout = dropout};
    gpt_t *m;
    cu_error_t err;
    if (gpt_create(&m, &cfg, &lc, &err)) {
        fprintf(stderr, "gpt_create: %s\n", err.msg);
        return NULL;
    }
    gpt_init_weights(m, 7, 0.3f);
    /* norm gains away from 1 (biases away from 0) so their gradients are exercised */
    int n;
    const gpt_tensor_t *pt = gpt_param_tensors(m, &n);
    float *params = gpt_params(m, NULL);
    for (int i = 0; i < n; i++)
        if (pt[i].ndim == 1)
            for (int j = 0; j < pt[i].shape[0]; j++)
                params[pt[i].offset + j] += 0.2f * cu_rng_normal(&rng);
    gpt_init_lora(m, 8);
    size_t nl;
    float *lp = gpt_lora_params(m, &nl);
    for (size_t i = 0; lp && i < nl; i++) lp[i] += 0.2f * cu_rng_normal(&rng);
    return m;
}

static gpt_t *tiny_llama(int lora_on, unsigned targets, float dropout, int tied) {
    return tiny_model(lora_on, targets, dropout, tied, 0);
}

static void model_case(const char *what, int lora_on, unsigned targets, float dropout, int tied) {
    gpt_t *m = tiny_llama(lora_on, targets, dropout, tied);
    CHECK(m != NULL);
    if (!m) return;
    gradcheck_model(&rng, what, m);
    gpt_free(m);
}

#define ALL7 ((1u << LLAMA_N_TARGETS) - 1)

static void test_model_lora_all(void) {
    model_case("llama LoRA all-linear", 1, ALL7, 0.0f, 0);
    model_case("llama LoRA all-linear, dropout", 1, ALL7, 0.3f, 0);
}
static void test_model_lora_some(void) {
    /* one target: the backward stops inside layer 0 at that site */
    model_case("llama LoRA k_proj", 1, 1u << LLAMA_K, 0.0f, 0);
    model_case("llama LoRA up_proj", 1, 1u << LLAMA_UP, 0.0f, 0);
    model_case("llama LoRA q_proj+v_proj", 1, (1u << LLAMA_Q) | (1u << LLAMA_V), 0.0f, 0);
    model_case("llama LoRA o_proj+down_proj", 1, (1u << LLAMA_O) | (1u << LLAMA_DOWN), 0.0f, 1);
}
static void test_model_full(void) {
    model_case("llama full fine-tuning, untied head", 0, 0u, 0.0f, 0);
    model_case("llama full fine-tuning, tied head", 0, 0u, 0.0f, 1);
}

/* The family variants: bias gradients in full fine-tuning, LoRA through
 * the window and the scaled rotary embedding. */
static void test_model_family(void) {
    gpt_t *m = tiny_model(0, 0u, 0.0f, 1, 1);
    CHECK(m != NULL);
    if (!m) return;
    int n, biases = 0;
    const gpt_tensor_t *pt = gpt_param_tensors(m, &n);
    for (int i = 0; i < n; i++) biases += strstr(pt[i].name, "_proj.bias") != NULL;
    CHECK_MSG(biases == 6, "q/k/v biases on 2 layers: %d tensors", biases);
    gradcheck_model(&rng, "family full fine-tuning (biases, window, llama3 rope)", m);
    gradcheck_ready_hook("family full", m);
    gpt_free(m);
    m = tiny_model(1, ALL7, 0.0f, 0, 1);
    gradcheck_model(&rng, "family LoRA all-linear", m);
    gradcheck_kv_cache("family (window 3 of 9)", m);
    gpt_free(m);
}

/* head_dim != n_embd / n_head: the attention is wider than the residual
 * stream; q_proj (NH * head_dim, C), o_proj (C, NH * head_dim). */
static void test_model_head_dim(void) {
    gpt_t *m = tiny_model(0, 0u, 0.0f, 0, 3);
    CHECK(m != NULL);
    if (!m) return;
    int n, shapes = 0;
    const gpt_tensor_t *pt = gpt_param_tensors(m, &n);
    for (int i = 0; i < n; i++) {
        const gpt_tensor_t *t = &pt[i];
        if (strstr(t->name, "q_proj.weight")) shapes += t->shape[0] == 24 && t->shape[1] == 16;
        if (strstr(t->name, "o_proj.weight")) shapes += t->shape[0] == 16 && t->shape[1] == 24;
        if (strstr(t->name, "k_proj.weight")) shapes += t->shape[0] == 12 && t->shape[1] == 16;
        if (strstr(t->name, "q_proj.bias")) shapes += t->shape[0] == 24;
    }
    CHECK_MSG(shapes == 8, "q/k/o weights and q bias of 2 layers with head_dim 6: %d right",
              shapes);
    gradcheck_model(&rng, "head_dim 6 full fine-tuning", m);
    gradcheck_ready_hook("head_dim 6 full", m);
    gpt_free(m);
    m = tiny_model(1, ALL7, 0.0f, 1, 3);
    int in, out;
    gpt_target_dims(gpt_config(m), LLAMA_O, &in, &out);
    CHECK(in == 24 && out == 16);
    gradcheck_model(&rng, "head_dim 6 LoRA all-linear", m);
    gradcheck_kv_cache("head_dim 6 (window 3 of 9)", m);
    gpt_free(m);
    gpt_config_t bad = {.n_layer = 1,
                        .n_head = 4,
                        .n_embd = 18,
                        .vocab_size = 11,
                        .max_seq_len = 4,
                        .arch = GPT_ARCH_LLAMA,
                        .head_dim = 5};
    cu_error_t err;
    m = NULL;
    CHECK(gpt_create(&m, &bad, NULL, &err) == CU_EINVAL && strstr(err.msg, "even"));
    bad.head_dim = 6; /* n_embd 18 is not divisible by 4 heads: fine with head_dim */
    CHECK(gpt_create(&m, &bad, NULL, &err) == CU_OK);
    gpt_free(m);
    m = NULL;
    bad.arch = GPT_ARCH_STARCODER2;
    CHECK(gpt_create(&m, &bad, NULL, &err) == CU_EINVAL && strstr(err.msg, "head_dim"));
}

/* StarCoder2: LayerNorm with bias, biases on every linear, GELU MLP of
 * c_fc and c_proj, GQA with rotary embeddings and a sliding window. */
static void test_model_starcoder2(void) {
    gpt_t *m = tiny_model(0, 0u, 0.0f, 1, 2);
    CHECK(m != NULL);
    if (!m) return;
    gradcheck_model(&rng, "starcoder2 full fine-tuning", m);
    gradcheck_ready_hook("starcoder2 full", m);
    gpt_free(m);
    unsigned all6 = lora_target_bits(GPT_ARCH_STARCODER2, "all-linear");
    CHECK(all6 == (1u << SC2_N_TARGETS) - 1);
    CHECK(lora_target_bits(GPT_ARCH_STARCODER2, "c_fc") == 1u << SC2_FC);
    CHECK(lora_target_bits(GPT_ARCH_STARCODER2, "gate_proj") == 0);
    m = tiny_model(1, all6, 0.0f, 0, 2);
    gradcheck_model(&rng, "starcoder2 LoRA all-linear", m);
    gradcheck_kv_cache("starcoder2 (window 4 of 9)", m);
    gpt_free(m);
    m = tiny_model(1, 1u << SC2_PROJ, 0.0f, 0, 2);
    gradcheck_model(&rng, "starcoder2 LoRA c_proj only", m);
    gpt_free(m);
}

static void ready_case(const char *what, int lora_on, unsigned targets, int tied) {
    gpt_t *m = tiny_llama(lora_on, targets, 0.0f, tied);
    gradcheck_ready_hook(what, m);
    gpt_free(m);
}

static void test_grad_ready_hook(void) {
    ready_case("llama LoRA all-linear", 1, ALL7, 0);
    ready_case("llama LoRA gate_proj", 1, 1u << LLAMA_GATE, 0);
    ready_case("llama full, untied", 0, 0u, 0);
    ready_case("llama full, tied", 0, 0u, 1);
}

static void test_kv_cache_matches_forward(void) {
    gpt_t *m = tiny_llama(1, ALL7, 0.0f, 0);
    gradcheck_kv_cache("llama", m);
    gpt_free(m);
}

static void test_lora_zero_b_is_identity(void) {
    gpt_t *base = tiny_llama(0, 0, 0.0f, 0);
    gradcheck_zero_b_identity(base, ALL7);
    gpt_free(base);
}

static void test_config_checks(void) {
    gpt_config_t cfg = {.n_layer = 1,
                        .n_head = 4,
                        .n_embd = 16,
                        .vocab_size = 11,
                        .max_seq_len = 4,
                        .arch = GPT_ARCH_LLAMA,
                        .n_kv_head = 3};
    gpt_t *m = NULL;
    cu_error_t err;
    CHECK(gpt_create(&m, &cfg, NULL, &err) == CU_EINVAL);
    CHECK(strstr(err.msg, "n_kv_head (3) must divide n_head (4)") != NULL);
    cfg.n_kv_head = 0; /* = n_head */
    lora_config_t lc = {.enabled = 1, .targets = 1u << 7, .r = 2, .alpha = 1.0f};
    CHECK(gpt_create(&m, &cfg, &lc, &err) == CU_EINVAL);
    lc.targets = ALL7;
    CHECK(gpt_create(&m, &cfg, &lc, &err) == CU_OK);
    CHECK(gpt_config(m)->n_kv_head == 4 && gpt_config(m)->ffn_hidden == 64);
    int n;
    const gpt_tensor_t *lt = gpt_lora_tensors(m, &n);
    CHECK(n == 14 && !strcmp(lt[0].name, "layers.0.self_attn.q_proj.lora_A") &&
          !strcmp(lt[13].name, "layers.0.mlp.down_proj.lora_B"));
    CHECK(lora_target_bits(GPT_ARCH_LLAMA, "gate_proj") == 1u << LLAMA_GATE);
    CHECK(lora_target_bits(GPT_ARCH_LLAMA, "qkv") == 0);
    CHECK(lora_target_bits(GPT_ARCH_GPT2, "q_proj") == 0);
    gpt_free(m);
}

static void test_setup(void) {
    cu_rng_seed(&rng, 4321);
}

TEST_MAIN(TEST(test_setup), TEST(test_rmsnorm), TEST(test_rope), TEST(test_swiglu),
          TEST(test_gqa_attention), TEST(test_model_lora_all), TEST(test_model_lora_some),
          TEST(test_model_full), TEST(test_model_family), TEST(test_model_head_dim),
          TEST(test_model_starcoder2), TEST(test_grad_ready_hook),
          TEST(test_kv_cache_matches_forward), TEST(test_lora_zero_b_is_identity),
          TEST(test_config_checks))
