/*
 * How the model computes, not what: settings that must leave fp32 results
 * bit for bit unchanged, and the bf16 copy's bookkeeping.
 *
 *  - activation checkpointing on/off: the same loss, gradients and, after
 *    AdamW steps, trainable weights, bitwise (GPT-2; Llama plain and with
 *    Qwen2's q/k/v biases and Mistral's sliding window; StarCoder2, with and
 *    without a window; LoRA with dropout, LoRA on some targets, full
 *    fine-tuning);
 *  - thread count 1 vs 2 (OpenMP over rows and heads, OpenBLAS threads):
 *    bitwise the same, for the same models in fp32 and bf16;
 *  - bf16 full fine-tuning keeps fp32 master weights and its bf16 copy
 *    follows every update (a stale copy would give the old loss).
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "harness.h"
#include "model/blas.h"
#include "model/gpt.h"
#include "model/optim.h"

enum { B = 2, T = 24, STEPS = 3 };

typedef struct {
    int arch, lora, dropout, partial;
    int variant; /* Llama: Qwen2's q/k/v biases and Mistral's window of 8; StarCoder2: window 8 */
} setup_t;

static gpt_t *make_model(const setup_t *s) {
    gpt_config_t c = {.n_layer = 3, .n_head = 4, .n_embd = 32, .vocab_size = 61, .max_seq_len = 32};
    c.arch = s->arch;
    if (s->arch != GPT_ARCH_GPT2) {
        c.n_kv_head = 2;
        c.ffn_hidden = 48;
        c.sliding_window = s->variant ? 8 : 0;
        c.qkv_bias = s->variant && s->arch == GPT_ARCH_LLAMA;
    }
    unsigned all = (1u << gpt_n_targets(c.arch)) - 1;
    lora_config_t l = {.enabled = s->lora,
                       .targets = s->partial ? 6u : all,
                       .r = 4,
                       .alpha = 8.0f,
                       .dropout = s->dropout ? 0.2f : 0.0f};
    gpt_t *m = NULL;
    cu_error_t err;
    CHECK_MSG(gpt_create(&m, &c, &l, &err) == CU_OK, "%s", err.msg);
    if (!m) return NULL;
    gpt_init_weights(m, 5, 0.1f);
    gpt_init_lora(m, 6);
    /* B nonzero, so the adapters' gradient paths all carry signal */
    size_t n;
    float *lp = gpt_lora_params(m, &n);
    cu_rng_t rng;
    cu_rng_seed(&rng, 7);
    for (size_t i = 0; lp && i < n; i++) lp[i] += 0.02f * cu_rng_normal(&rng);
    return m;
}

static void make_batch(int32_t *in, int32_t *tg) {
    cu_rng_t rng;
    cu_rng_seed(&rng, 8);
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)cu_rng_below(&rng, 61);
        tg[i] = i % 7 == 3 ? -1 : (int32_t)cu_rng_below(&rng, 61);
    }
}

/* STEPS AdamW steps; the loss of every step and the gradients and trainable
 * weights at the end, into caller-owned arrays (allocated here). */
typedef struct {
    double loss[STEPS];
    float *grads, *weights;
    size_t n;
} run_t;

static void run_steps(gpt_t *m, run_t *r) {
    int32_t in[B * T], tg[B * T];
    make_batch(in, tg);
    size_t n;
    float *p = gpt_trainable(m, &n);
    float *g = gpt_grads(m, NULL);
    int nt;
    const gpt_tensor_t *tens = gpt_trainable_tensors(m, &nt);
    adamw_t opt;
    cu_error_t err;
    CHECK(adamw_init(&opt, n, 0.9f, 0.99f, 1e-8f, 0.01f, &err) == CU_OK);
    for (int s = 0; s < STEPS; s++) {
        gpt_loss_t l;
        gpt_zero_grad(m);
        CHECK(gpt_forward(m, in, tg, B, T, 1, 1.0f / (B * T), 11 + s, &l, &err) == CU_OK);
        gpt_backward(m);
        r->loss[s] = l.loss_sum;
        if (s == STEPS - 1) {
            r->grads = malloc(n * sizeof(float));
            memcpy(r->grads, g, n * sizeof(float));
        }
        adamw_step(&opt, p, g, tens, nt, 1e-2f);
        gpt_params_updated(m);
    }
    r->n = n;
    r->weights = malloc(n * sizeof(float));
    memcpy(r->weights, p, n * sizeof(float));
    adamw_free(&opt);
}

static void check_same(const run_t *a, const run_t *b, const char *what) {
    for (int s = 0; s < STEPS; s++)
        CHECK_MSG(a->loss[s] == b->loss[s], "%s: step %d loss %.17g vs %.17g", what, s, a->loss[s],
                  b->loss[s]);
    CHECK_MSG(a->n == b->n && !memcmp(a->grads, b->grads, a->n * sizeof(float)),
              "%s: gradients differ", what);
    CHECK_MSG(a->n == b->n && !memcmp(a->weights, b->weights, a->n * sizeof(float)),
              "%s: trainable weights differ", what);
}

static void run_free(run_t *r) {
    free(r->grads);
    free(r->weights);
}

static const setup_t SETUPS[] = {
    {GPT_ARCH_GPT2, 1, 1, 0, 0},       {GPT_ARCH_GPT2, 1, 0, 1, 0},
    {GPT_ARCH_GPT2, 0, 0, 0, 0},       {GPT_ARCH_LLAMA, 1, 1, 0, 0},
    {GPT_ARCH_LLAMA, 1, 0, 1, 0},      {GPT_ARCH_LLAMA, 0, 0, 0, 0},
    {GPT_ARCH_LLAMA, 1, 1, 0, 1},      {GPT_ARCH_LLAMA, 0, 0, 0, 1},
    {GPT_ARCH_STARCODER2, 1, 1, 0, 0}, {GPT_ARCH_STARCODER2, 1, 0, 1, 1},
    {GPT_ARCH_STARCODER2, 0, 0, 0, 0},
};
static const int N_SETUPS = (int)(sizeof SETUPS / sizeof SETUPS[0]);

static void describe(const setup_t *s, char *buf, size_t cap) {
    static const char *const names[] = {"gpt2", "llama", "starcoder2"};
    snprintf(buf, cap, "%s%s %s%s%s", names[s->arch], s->variant ? " (biases/window)" : "",
             s->lora ? "LoRA" : "full", s->dropout ? " +dropout" : "",
             s->partial ? " (some targets)" : "");
}

static void test_checkpointing_exact(void) {
    for (int i = 0; i < N_SETUPS; i++) {
        char what[96];
        describe(&SETUPS[i], what, sizeof what);
        gpt_t *a = make_model(&SETUPS[i]), *b = make_model(&SETUPS[i]);
        if (!a || !b) return;
        gpt_set_activation_checkpointing(b, 1);
        CHECK(gpt_activation_checkpointing(b) == 1);
        run_t ra = {0}, rb = {0};
        run_steps(a, &ra);
        run_steps(b, &rb);
        check_same(&ra, &rb, what);
        run_free(&ra), run_free(&rb);
        gpt_free(a), gpt_free(b);
    }
}

/* The same runs on 1 and on 2 threads (OpenMP loops, OpenBLAS, oneDNN),
 * in fp32 and bf16 (and bf16 with attention's products in bf16, which
 * T = 24 would not choose by itself), with a batch of 2 rows times 4 heads so every threaded
 * loop has work for both threads. */
static void test_threads_exact(void) {
    for (int mode = 0; mode < 3; mode++) { /* fp32, bf16, bf16 with attention's products in bf16 */
        int prec = mode ? GPT_PREC_BF16 : GPT_PREC_FP32, att16 = mode == 2;
        for (int i = 0; i < N_SETUPS; i++) {
            char what[128];
            describe(&SETUPS[i], what, sizeof what);
            strcat(what, mode == 2 ? " bf16 (bf16 attention)" : prec ? " bf16" : " fp32");
            run_t r[2];
            memset(r, 0, sizeof r);
            for (int k = 0; k < 2; k++) {
                blas_set_threads(k + 1);
                CHECK(omp_get_max_threads() == k + 1);
                gpt_t *m = make_model(&SETUPS[i]);
                cu_error_t err;
                if (!m) return;
                CHECK(gpt_set_precision(m, prec, &err) == CU_OK);
                gpt_set_bf16_attention_from(m, att16 ? 1 : 0);
                run_steps(m, &r[k]);
                gpt_free(m);
            }
            blas_set_threads(1);
            check_same(&r[0], &r[1], what);
            run_free(&r[0]), run_free(&r[1]);
        }
    }
}

/* The check can fail: a model whose weights differ slightly (one element)
 * is reported by the same comparison. */
static void test_checkpointing_check_can_fail(void) {
    gpt_t *a = make_model(&SETUPS[0]), *b = make_model(&SETUPS[0]);
    if (!a || !b) return;
    gpt_params(b, NULL)[100] += 1e-3f;
    gpt_set_activation_checkpointing(b, 1);
    run_t ra = {0}, rb = {0};
    run_steps(a, &ra);
    run_steps(b, &rb);
    CHECK(ra.loss[0] != rb.loss[0]);
    CHECK(memcmp(ra.grads, rb.grads, ra.n * sizeof(float)) != 0);
    run_free(&ra), run_free(&rb);
    gpt_free(a), gpt_free(b);
}

/* bf16 full fine-tuning: after a step, the next loss is that of a fresh bf16
 * model holding the updated fp32 weights, i.e. the bf16 copy followed. */
static void test_bf16_full_follows_master(void) {
    for (int llama = 0; llama < 2; llama++) {
        setup_t s = {llama, 0, 0, 0, 0};
        gpt_t *m = make_model(&s), *fresh = make_model(&s);
        if (!m || !fresh) return;
        cu_error_t err;
        CHECK(gpt_set_precision(m, GPT_PREC_BF16, &err) == CU_OK);
        CHECK(gpt_set_precision(fresh, GPT_PREC_BF16, &err) == CU_OK);
        run_t r = {0};
        run_steps(m, &r); /* leaves m's weights after STEPS updates */
        size_t n;
        float *fp = gpt_params(fresh, &n);
        memcpy(fp, r.weights, n * sizeof(float));
        int32_t in[B * T], tg[B * T];
        make_batch(in, tg);
        gpt_loss_t lm, lf;
        CHECK(gpt_forward(m, in, tg, B, T, 0, 1.0f, 0, &lm, &err) == CU_OK);
        CHECK(gpt_forward(fresh, in, tg, B, T, 0, 1.0f, 0, &lf, &err) == CU_OK);
        CHECK_MSG(lm.loss_sum == lf.loss_sum, "%s: %.17g vs %.17g", llama ? "llama" : "gpt2",
                  lm.loss_sum, lf.loss_sum);
        CHECK(lm.loss_sum != r.loss[0]); /* and the weights did move */
        run_free(&r);
        gpt_free(m), gpt_free(fresh);
    }
}

TEST_MAIN(TEST(test_checkpointing_exact), TEST(test_threads_exact),
          TEST(test_checkpointing_check_can_fail), TEST(test_bf16_full_follows_master))
