/*
 * Finite-difference checks of every layer's backward and of the whole model.
 *
 * Each check builds a scalar loss L = sum(out * g) for a fixed random g, gets
 * the analytic gradient from the backward, and compares it with a central
 * difference of L (accumulated in double) at a sample of coordinates.
 */
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "gradcheck.h"
#include "harness.h"
#include "model/gpt.h"
#include "model/ops.h"
#include "model/optim.h"

static cu_rng_t rng;

/* ------------------------------------------------------------ layernorm */

typedef struct {
    float *out, *mean, *rstd, *inp, *w, *b, *g;
    int N, C;
    cu_sum_t order;
} ln_ctx;

static double ln_loss(void *p) {
    ln_ctx *c = p;
    layernorm_forward(c->out, NULL, c->mean, c->rstd, c->inp, c->w, c->b, c->N, c->C, c->order);
    return gradcheck_dot(c->out, c->g, (long)c->N * c->C);
}

/* C = 24 is below one block of lanes (CU_SUM_LANES: tail only), 150 two
 * blocks and a tail */
static void layernorm_case(cu_rng_t *r, int C, cu_sum_t order) {
    ln_ctx c = {.N = 6, .C = C, .order = order};
    long nc = (long)c.N * c.C;
    c.inp = gradcheck_randn(r, nc, 1.0f);
    c.w = gradcheck_randn(r, c.C, 1.0f);
    c.b = gradcheck_randn(r, c.C, 1.0f);
    c.g = gradcheck_randn(r, nc, 1.0f);
    c.out = calloc(nc, 4);
    c.mean = calloc(c.N, 4);
    c.rstd = calloc(c.N, 4);
    float *dinp = calloc(nc, 4), *dw = calloc(c.C, 4), *db = calloc(c.C, 4);
    ln_loss(&c);
    layernorm_backward(dinp, NULL, dw, db, c.g, c.inp, c.w, c.mean, c.rstd, c.N, c.C, order);
    gradcheck_fd(r, "layernorm dinp", c.inp, nc, dinp, ln_loss, &c, 200, 1e-2f, 2e-2);
    gradcheck_fd(r, "layernorm dw", c.w, c.C, dw, ln_loss, &c, 200, 1e-2f, 2e-2);
    gradcheck_fd(r, "layernorm db", c.b, c.C, db, ln_loss, &c, 200, 1e-2f, 2e-2);
    /* dinp accumulates: a second backward doubles it */
    float first = dinp[3];
    layernorm_backward(dinp, NULL, NULL, NULL, c.g, c.inp, c.w, c.mean, c.rstd, c.N, c.C, order);
    CHECK_REL(dinp[3], 2.0f * first, 1e-5, 1e-6);
    /* the row statistics agree with the other order's to rounding */
    float *mean2 = calloc(c.N, 4), *rstd2 = calloc(c.N, 4);
    layernorm_forward(c.out, NULL, mean2, rstd2, c.inp, c.w, c.b, c.N, c.C,
                      order == CU_SUM_SEQ ? CU_SUM_LANES : CU_SUM_SEQ);
    for (int n = 0; n < c.N; n++) {
        CHECK_REL(mean2[n], c.mean[n], 1e-4, 1e-5);
        CHECK_REL(rstd2[n], c.rstd[n], 1e-5, 1e-6);
    }
    free(c.inp), free(c.w), free(c.b), free(c.g), free(c.out), free(c.mean), free(c.rstd);
    free(dinp), free(dw), free(db), free(mean2), free(rstd2);
}

/* the lanes' cases draw from a copy of the generator, so the later tests
 * see the same numbers as before they were added */
static void test_layernorm(void) {
    layernorm_case(&rng, 24, CU_SUM_SEQ);
    cu_rng_t r = rng;
    layernorm_case(&r, 24, CU_SUM_LANES);
    layernorm_case(&r, 150, CU_SUM_LANES);
}

/* --------------------------------------------------------------- matmul */

typedef struct {
    float *out, *inp, *w, *bias, *g;
    int N, IC, OC;
} mm_ctx;

static double mm_loss(void *p) {
    mm_ctx *c = p;
    matmul_forward(c->out, c->inp, c->w, c->bias, c->N, c->IC, c->OC, 0.0f);
    return gradcheck_dot(c->out, c->g, (long)c->N * c->OC);
}

static void test_matmul(void) {
    mm_ctx c = {.N = 7, .IC = 13, .OC = 9};
    c.inp = gradcheck_randn(&rng, (long)c.N * c.IC, 1.0f);
    c.w = gradcheck_randn(&rng, (long)c.OC * c.IC, 1.0f);
    c.bias = gradcheck_randn(&rng, c.OC, 1.0f);
    c.g = gradcheck_randn(&rng, (long)c.N * c.OC, 1.0f);
    c.out = calloc((size_t)c.N * c.OC, 4);
    float *dinp =
        gradcheck_randn(&rng, (long)c.N * c.IC, 1.0f); /* garbage: beta 0 must overwrite it */
    float *dw = calloc((size_t)c.OC * c.IC, 4), *db = calloc(c.OC, 4);
    mm_loss(&c);
    matmul_backward(dinp, dw, db, c.g, c.inp, c.w, c.N, c.IC, c.OC, 0.0f);
    gradcheck_fd(&rng, "matmul dinp", c.inp, (long)c.N * c.IC, dinp, mm_loss, &c, 91, 1e-2f, 1e-2);
    gradcheck_fd(&rng, "matmul dw", c.w, (long)c.OC * c.IC, dw, mm_loss, &c, 117, 1e-2f, 1e-2);
    gradcheck_fd(&rng, "matmul dbias", c.bias, c.OC, db, mm_loss, &c, 9, 1e-2f, 1e-2);
    /* forward with beta 1 accumulates onto what is there */
    float *acc = calloc((size_t)c.N * c.OC, 4);
    for (long i = 0; i < (long)c.N * c.OC; i++) acc[i] = 1.0f;
    matmul_forward(acc, c.inp, c.w, c.bias, c.N, c.IC, c.OC, 1.0f);
    CHECK_REL(acc[5], c.out[5] + 1.0f, 1e-5, 1e-5);
    free(acc);
    free(c.inp), free(c.w), free(c.bias), free(c.g), free(c.out), free(dinp), free(dw), free(db);
}

/* ----------------------------------------------------------------- gelu */

typedef struct {
    float *out, *inp, *g;
    long n;
} gelu_ctx;

static double gelu_loss(void *p) {
    gelu_ctx *c = p;
    gelu_forward(c->out, NULL, c->inp, c->n);
    return gradcheck_dot(c->out, c->g, c->n);
}

static void test_gelu(void) {
    gelu_ctx c = {.n = 64};
    c.inp = gradcheck_randn(&rng, c.n, 2.0f);
    c.g = gradcheck_randn(&rng, c.n, 1.0f);
    c.out = calloc(c.n, 4);
    float *d = calloc(c.n, 4);
    gelu_backward(d, NULL, c.inp, c.g, c.n);
    gradcheck_fd(&rng, "gelu", c.inp, c.n, d, gelu_loss, &c, 64, 1e-2f, 1e-2);
    /* reference values of the tanh approximation */
    float x[3] = {-1.0f, 0.5f, 3.0f}, y[3];
    gelu_forward(y, NULL, x, 3);
    CHECK_REL(y[0], -0.158808f, 1e-4, 1e-3);
    CHECK_REL(y[1], 0.345714f, 1e-4, 1e-3);
    CHECK_REL(y[2], 2.996363f, 1e-4, 1e-3);
    free(c.inp), free(c.g), free(c.out), free(d);
}

/* ------------------------------------------------------------ attention */

typedef struct {
    float *out, *lse, *qkv, *g, *scratch;
    int B, T, C, NH;
    cu_sum_t order;
} att_ctx;

static double att_loss(void *p) {
    att_ctx *c = p;
    attention_forward(c->out, NULL, c->lse, c->qkv, c->scratch, c->B, c->T, c->C, c->NH, c->order);
    return gradcheck_dot(c->out, c->g, (long)c->B * c->T * c->C);
}

/* Naive attention: the definition, for comparison. */
static void att_naive(float *out, const float *qkv, int B, int T, int C, int NH) {
    int hs = C / NH;
    double *s = malloc(sizeof(double) * T);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < T; i++) {
                const float *q = qkv + ((long)b * T + i) * 3 * C + h * hs;
                double mx = -1e300, sum = 0.0;
                for (int j = 0; j <= i; j++) {
                    const float *k = qkv + ((long)b * T + j) * 3 * C + C + h * hs;
                    double d = 0.0;
                    for (int e = 0; e < hs; e++) d += (double)q[e] * k[e];
                    s[j] = d / sqrt((double)hs);
                    if (s[j] > mx) mx = s[j];
                }
                for (int j = 0; j <= i; j++) sum += (s[j] = exp(s[j] - mx));
                float *o = out + ((long)b * T + i) * C + h * hs;
                for (int e = 0; e < hs; e++) {
                    double acc = 0.0;
                    for (int j = 0; j <= i; j++)
                        acc += s[j] / sum * qkv[((long)b * T + j) * 3 * C + 2 * C + h * hs + e];
                    o[e] = (float)acc;
                }
            }
    free(s);
}

static void attention_case(cu_rng_t *r, int B, int T, int C, int NH, cu_sum_t order) {
    att_ctx c = {.B = B, .T = T, .C = C, .NH = NH, .order = order};
    long n3 = (long)B * T * 3 * C, n = (long)B * T * C;
    c.qkv = gradcheck_randn(r, n3, 1.0f);
    c.g = gradcheck_randn(r, n, 1.0f);
    c.out = calloc(n, 4);
    c.lse = calloc((size_t)B * NH * T, 4);
    c.scratch = calloc(attention_scratch_floats(T), 4);
    float *dqkv = gradcheck_randn(r, n3, 1.0f), *ref = calloc(n, 4);
    att_loss(&c);
    att_naive(ref, c.qkv, B, T, C, NH);
    double maxdiff = 0.0;
    for (long i = 0; i < n; i++) maxdiff = fmax(maxdiff, fabs(ref[i] - c.out[i]));
    CHECK_MSG(maxdiff < 1e-5, "attention T=%d: max |out - naive| = %g", T, maxdiff);
    attention_backward(dqkv, NULL, c.g, c.qkv, c.out, c.lse, c.scratch, B, T, C, NH, order);
    char what[64];
    snprintf(what, sizeof what, "attention dqkv T=%d%s", T, order == CU_SUM_LANES ? " lanes" : "");
    gradcheck_fd(r, what, c.qkv, n3, dqkv, att_loss, &c, 300, 1e-2f, 2e-2);
    free(c.qkv), free(c.g), free(c.out), free(c.lse), free(c.scratch), free(dqkv), free(ref);
}

static void test_attention(void) {
    attention_case(&rng, 2, 5, 8, 2, CU_SUM_SEQ);
    attention_case(&rng, 1, 70, 8, 2, CU_SUM_SEQ); /* crosses the 64-row query block */
    /* in lanes: rows of up to 140 keys (two blocks of lanes and a tail), and
     * a head size of 144 for the backward's dot products (as in
     * test_layernorm, from a copy of the generator) */
    cu_rng_t r = rng;
    attention_case(&r, 1, 140, 8, 2, CU_SUM_LANES);
    attention_case(&r, 1, 6, 288, 2, CU_SUM_LANES);
}

/* -------------------------------------------------------------- LM head */

typedef struct {
    float *inp, *w, *scratch;
    int32_t *targets;
    int N, C, V;
    gemm_t *g;
} head_ctx;

static double head_loss(void *p) {
    head_ctx *c = p;
    return lm_head_loss_on(c->g, NULL, NULL, NULL, NULL, c->inp, c->w, c->targets, c->scratch, c->N,
                           c->C, c->V, 1.0f);
}

/* g NULL: fp32, sums in index order; a backend without w registered: the
 * products stay fp32 but the softmax sums in lanes (V = 150: two blocks of
 * lanes and a tail). */
static void lm_head_case(cu_rng_t *r, gemm_t *g, int V) {
    head_ctx c = {.N = 40, .C = 8, .V = V, .g = g};
    c.inp = gradcheck_randn(r, (long)c.N * c.C, 1.0f);
    c.w = gradcheck_randn(r, (long)c.V * c.C, 1.0f);
    c.targets = malloc(sizeof(int32_t) * c.N);
    for (int i = 0; i < c.N; i++) c.targets[i] = i % 7 == 3 ? -1 : (int32_t)cu_rng_below(r, c.V);
    c.scratch = calloc(lm_head_scratch_floats(c.N, c.V), 4);
    float *dinp = calloc((size_t)c.N * c.C, 4), *dw = calloc((size_t)c.V * c.C, 4);
    long valid, correct;
    double loss = lm_head_loss_on(g, dinp, dw, &valid, &correct, c.inp, c.w, c.targets, c.scratch,
                                  c.N, c.C, c.V, 1.0f);
    CHECK(valid == 40 - 6);
    /* the summed loss equals the definition */
    double ref = 0.0;
    for (int i = 0; i < c.N; i++) {
        if (c.targets[i] < 0) continue;
        double z[256], mx = -1e300, s = 0.0;
        for (int v = 0; v < c.V; v++) {
            z[v] = gradcheck_dot(c.inp + (long)i * c.C, c.w + (long)v * c.C, c.C);
            mx = fmax(mx, z[v]);
        }
        for (int v = 0; v < c.V; v++) s += exp(z[v] - mx);
        ref += log(s) + mx - z[c.targets[i]];
    }
    CHECK_REL(loss, ref, 1e-5, 1e-3);
    gradcheck_fd(r, "lm_head dinp", c.inp, (long)c.N * c.C, dinp, head_loss, &c, 200, 1e-2f, 2e-2);
    gradcheck_fd(r, "lm_head dw", c.w, (long)c.V * c.C, dw, head_loss, &c, 184, 1e-2f, 2e-2);
    /* ignored rows get no gradient */
    CHECK(dinp[3 * c.C] == 0.0f && dinp[3 * c.C + 1] == 0.0f);
    free(c.inp), free(c.w), free(c.targets), free(c.scratch), free(dinp), free(dw);
}

/* The argmax behind n_correct is the first index holding the row's maximum,
 * also when the maximum is tied across and within lanes (5, 69 = 5 + 64 and
 * 133 = 5 + 128 share a lane; 70 does not). */
static void lm_head_ties(gemm_t *g) {
    enum { N = 4, C = 2, V = 200 };
    float inp[N * C], w[V * C], scratch[N * V];
    int32_t targets[N] = {5, 5, 70, 133};
    for (int i = 0; i < N; i++) inp[i * C] = 1.0f, inp[i * C + 1] = 0.0f;
    for (int v = 0; v < V; v++) w[v * C] = 0.01f * (float)(v % 17), w[v * C + 1] = 1.0f;
    int tied[] = {5, 69, 70, 133};
    for (int i = 0; i < 4; i++) w[tied[i] * C] = 3.0f;
    long valid, correct;
    lm_head_loss_on(g, NULL, NULL, &valid, &correct, inp, w, targets, scratch, N, C, V, 1.0f);
    CHECK(valid == N && correct == 2);
    /* a later, larger maximum wins */
    w[150 * C] = 3.5f;
    targets[3] = 150;
    lm_head_loss_on(g, NULL, NULL, &valid, &correct, inp, w, targets, scratch, N, C, V, 1.0f);
    CHECK(correct == 1);
}

static void test_lm_head(void) {
    cu_error_t err;
    gemm_t *g = NULL;
    CHECK(gemm_create(&g, &err) == CU_OK);
    lm_head_case(&rng, NULL, 23);
    cu_rng_t r = rng; /* as in test_layernorm */
    lm_head_case(&r, g, 23);
    lm_head_case(&r, g, 150);
    lm_head_ties(NULL);
    lm_head_ties(g);
    gemm_free(g);
}

/* -------------------------------------------------------------- encoder */

static void test_encoder(void) {
    int B = 2, T = 3, C = 4, V = 5;
    int32_t inp[6] = {1, 4, 1, 0, 2, 4};
    float *wte = gradcheck_randn(&rng, V * C, 1.0f), *wpe = gradcheck_randn(&rng, T * C, 1.0f),
          out[24], g[24];
    for (int i = 0; i < 24; i++) g[i] = (float)i;
    encoder_forward(out, inp, wte, wpe, B, T, C);
    CHECK_REL(out[5], wte[4 * C + 1] + wpe[1 * C + 1], 1e-6, 1e-6);
    float dwte[20] = {0}, dwpe[12] = {0};
    encoder_backward(dwte, dwpe, g, inp, B, T, C);
    /* token 1 appears at (0,0) and (0,2): its gradient is the sum of those rows */
    CHECK_REL(dwte[1 * C + 2], g[0 * C + 2] + g[2 * C + 2], 1e-6, 1e-6);
    CHECK_REL(dwpe[0 * C + 3], g[0 * C + 3] + g[3 * C + 3], 1e-6, 1e-6);
    CHECK(dwte[3 * C] == 0.0f);
    free(wte), free(wpe);
}

/* --------------------------------------------------------- whole model */

static gpt_t *tiny_model(int lora_on, unsigned targets, float dropout) {
    gpt_config_t cfg = {.n_layer = 2, .n_head = 2, .n_embd = 8, .vocab_size = 11, .max_seq_len = 9};
    lora_config_t lc = {
        .enabled = lora_on, .targets = targets, .r = 2, .alpha = 4.0f, .dropout = dropout};
    gpt_t *m;
    cu_error_t err;
    if (gpt_create(&m, &cfg, &lc, &err)) {
        fprintf(stderr, "gpt_create: %s\n", err.msg);
        return NULL;
    }
    gpt_init_weights(m, 7, 0.3f);
    gpt_init_lora(m, 8);
    /* B starts at zero; give it values so every path carries gradient */
    size_t n;
    float *lp = gpt_lora_params(m, &n);
    for (size_t i = 0; lp && i < n; i++) lp[i] += 0.2f * cu_rng_normal(&rng);
    return m;
}

static void model_case(const char *what, int lora_on, unsigned targets, float dropout) {
    gpt_t *m = tiny_model(lora_on, targets, dropout);
    CHECK(m != NULL);
    if (!m) return;
    gradcheck_model(&rng, what, m);
    gpt_free(m);
}

static void test_model_lora_all(void) {
    model_case("model LoRA all-linear", 1, 15u, 0.0f);
}
static void test_model_lora_dropout(void) {
    model_case("model LoRA dropout", 1, 15u, 0.3f);
}
static void test_model_lora_partial(void) {
    /* only mlp_fc: the backward stops inside layer 0 */
    model_case("model LoRA mlp_fc", 1, 1u << LORA_MLP_FC, 0.0f);
    model_case("model LoRA attn_proj+mlp_proj", 1, (1u << LORA_ATTN_PROJ) | (1u << LORA_MLP_PROJ),
               0.0f);
}
static void test_model_full(void) {
    model_case("model full fine-tuning", 0, 0u, 0.0f);
}

static void ready_case(const char *what, int lora_on, unsigned targets) {
    gpt_t *m = tiny_model(lora_on, targets, 0.0f);
    gradcheck_ready_hook(what, m);
    gpt_free(m);
}

static void test_grad_ready_hook(void) {
    ready_case("LoRA all-linear", 1, 15u);
    ready_case("LoRA mlp_fc", 1, 1u << LORA_MLP_FC);
    ready_case("full fine-tuning", 0, 0u);
}

static void test_lora_zero_b_is_identity(void) {
    gpt_t *base = tiny_model(0, 0, 0.0f);
    gradcheck_zero_b_identity(base, 15u);
    gpt_free(base);
}

static void test_kv_cache_matches_forward(void) {
    gpt_t *m = tiny_model(1, 15u, 0.0f);
    gradcheck_kv_cache("GPT-2", m);
    gpt_free(m);
}

static void test_bad_token_rejected(void) {
    gpt_t *m = tiny_model(1, 15u, 0.0f);
    int32_t inp[2] = {1, 11}, tgt[2] = {1, 2};
    cu_error_t err;
    CHECK(gpt_forward(m, inp, tgt, 1, 2, 0, 1.0f, 0, NULL, &err) == CU_EINVAL);
    CHECK(strstr(err.msg, "outside the vocabulary") != NULL);
    gpt_free(m);
}

/* ------------------------------------------------------------- optimizer */

static void test_adamw_step(void) {
    gpt_tensor_t t[2] = {{.name = "w", .offset = 0, .ndim = 2, .shape = {1, 2}, .decay = 1},
                         {.name = "b", .offset = 2, .ndim = 1, .shape = {1, 0}, .decay = 0}};
    float p[3] = {1.0f, -2.0f, 0.5f}, g[3] = {0.1f, -0.2f, 0.3f};
    adamw_t o;
    CHECK(adamw_init(&o, 3, 0.9f, 0.999f, 1e-8f, 0.1f, NULL) == CU_OK);
    adamw_step(&o, p, g, t, 2, 0.01f);
    /* first step: mhat = g, vhat = g^2, so the update is lr * (sign(g) + wd * p) */
    CHECK_REL(p[0], 1.0f - 0.01f * (1.0f + 0.1f * 1.0f), 1e-5, 1e-6);
    CHECK_REL(p[1], -2.0f - 0.01f * (-1.0f + 0.1f * -2.0f), 1e-5, 1e-6);
    CHECK_REL(p[2], 0.5f - 0.01f * 1.0f, 1e-5, 1e-6); /* no decay on the vector */
    /* second step with the same gradient: m and v bias corrections cancel */
    float before = p[2];
    adamw_step(&o, p, g, t, 2, 0.01f);
    CHECK_REL(p[2], before - 0.01f, 1e-4, 1e-6);
    adamw_free(&o);
}

static void test_schedule(void) {
    sched_t s = {
        .lr = 1.0f, .min_lr = 0.1f, .warmup_steps = 10, .max_steps = 110, .kind = SCHED_COSINE};
    CHECK_REL(sched_lr(&s, 0), 0.1f, 1e-6, 1e-6);
    CHECK_REL(sched_lr(&s, 9), 1.0f, 1e-6, 1e-6);
    CHECK_REL(sched_lr(&s, 10), 1.0f, 1e-6, 1e-6);
    CHECK_REL(sched_lr(&s, 109), 0.1f, 1e-5, 1e-6);
    CHECK_REL(sched_lr(&s, 10 + 99 / 2.0), 0.55f, 2e-2, 1e-6);
    s.kind = SCHED_LINEAR;
    CHECK_REL(sched_lr(&s, 109), 0.1f, 1e-5, 1e-6);
    s.kind = SCHED_CONSTANT;
    CHECK_REL(sched_lr(&s, 80), 1.0f, 1e-6, 1e-6);
    CHECK(sched_parse("cosine") == SCHED_COSINE && sched_parse("cosin") == -1);
}

static void test_clip(void) {
    float g[2] = {3.0f, 4.0f};
    double n = grad_clip(g, 2, 1.0f);
    CHECK_REL(n, 5.0, 1e-9, 1e-9);
    CHECK_REL(grad_global_norm(g, 2), 1.0, 1e-5, 1e-6);
    float h[2] = {0.3f, 0.4f};
    grad_clip(h, 2, 1.0f);
    CHECK_REL(h[0], 0.3f, 1e-7, 1e-7);
}

static void setup(void) {
    cu_rng_seed(&rng, 1234);
}

static void test_setup(void) {
    setup();
}

TEST_MAIN(TEST(test_setup), TEST(test_layernorm), TEST(test_matmul), TEST(test_gelu),
          TEST(test_attention), TEST(test_lm_head), TEST(test_encoder), TEST(test_model_lora_all),
          TEST(test_model_lora_dropout), TEST(test_model_lora_partial), TEST(test_model_full),
          TEST(test_lora_zero_b_is_identity), TEST(test_kv_cache_matches_forward),
          TEST(test_bad_token_rejected), TEST(test_grad_ready_hook), TEST(test_adamw_step),
          TEST(test_schedule), TEST(test_clip))
