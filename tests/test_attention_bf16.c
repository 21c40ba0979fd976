/*
 * Attention with bf16 products (model/attention_bf16.h) against the fp32
 * attention it replaces in bf16 runs: GPT-2's (one qkv buffer, every head
 * its own kv head) and the GQA one (grouped kv heads, a sliding window),
 * forward and backward, sequence lengths that end in a partial query
 * block. The outputs and gradients agree within bf16's rounding; the bf16
 * copies it hands on (out16, dqkv16) are exactly the rounding of what it
 * wrote; 1 and 2 threads give the same bits. In whole models (GPT-2,
 * Llama with a sliding window, StarCoder2) the bf16 step with attention's
 * products in bf16 stays within the bf16 tolerances of the fp32 step, and
 * differs from the bf16 step without them (the path is taken), also when
 * the sequence length picks it by itself. Registered twice: on this
 * CPU's kernels and with oneDNN limited to AVX2 (the emulation).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "core/rng.h"
#include "harness.h"
#include "model/attention_bf16.h"
#include "model/gpt.h"
#include "model/ops.h"
#include "model/ops_llama.h"

static float *randn(long n, uint64_t seed, float scale) {
    float *p = malloc(sizeof(float) * (size_t)n);
    cu_rng_t rng;
    cu_rng_seed(&rng, seed);
    for (long i = 0; i < n; i++) p[i] = scale * cu_rng_normal(&rng);
    return p;
}

/* ||a - b|| / ||b|| over rows x cols of two buffers with row stride ld */
static double rel_norm(const float *a, const float *b, long rows, int cols, int ld) {
    double d = 0, n = 0;
    for (long r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++) {
            double x = a[r * ld + c], y = b[r * ld + c];
            d += (x - y) * (x - y);
            n += y * y;
        }
    return sqrt(d / (n > 0 ? n : 1));
}

static gemm_t *backend(void) {
    gemm_t *g;
    cu_error_t err;
    if (gemm_create(&g, &err) != CU_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    return g;
}

static int same_bf16(const uint16_t *r16, const float *x, long n) {
    for (long i = 0; i < n; i++)
        if (r16[i] != gemm_bf16_of(x[i])) return 0;
    return 1;
}

/* GPT-2's layout: q, k, v in one (B, T, 3C) buffer. */
static void gpt2_case(int B, int T, int NH, int hs) {
    int C = NH * hs;
    long N = (long)B * T;
    float *qkv = randn(N * 3 * C, 11, 0.8f), *dout = randn(N * C, 12, 1.0f);
    float *out = malloc(sizeof(float) * N * C), *out32 = malloc(sizeof(float) * N * C);
    float *lse = malloc(sizeof(float) * N * NH), *lse32 = malloc(sizeof(float) * N * NH);
    float *dqkv = malloc(sizeof(float) * N * 3 * C), *dqkv32 = malloc(sizeof(float) * N * 3 * C);
    float *scratch = malloc(sizeof(float) * attention_scratch_floats(T));
    uint16_t *out16 = malloc(2 * N * C), *dqkv16 = malloc(2 * N * 3 * C);
    attention_forward(out32, NULL, lse32, qkv, scratch, B, T, C, NH, CU_SUM_SEQ);
    attention_backward(dqkv32, NULL, dout, qkv, out32, lse32, scratch, B, T, C, NH, CU_SUM_SEQ);

    gemm_t *g = backend();
    att_shape_t s = {.B = B, .T = T, .NH = NH, .NKV = NH, .hs = hs};
    attention_bf16_forward(g, out, out16, lse, qkv, 3 * C, qkv + C, qkv + 2 * C, 3 * C, &s,
                           CU_SUM_LANES);
    double r_out = rel_norm(out, out32, N, C, C);
    double r_lse = rel_norm(lse, lse32, N, NH, NH);
    CHECK_MSG(r_out < 1e-2 && r_out > 0, "out rel %.3g", r_out);
    CHECK_MSG(r_lse < 1e-3, "lse rel %.3g", r_lse);
    CHECK(same_bf16(out16, out, N * C));
    /* dqkv starts as garbage: the backward overwrites all of it */
    for (long i = 0; i < N * 3 * C; i++) dqkv[i] = NAN;
    attention_bf16_backward(g, dqkv, 3 * C, dqkv + C, dqkv + 2 * C, 3 * C, dqkv16, dout, qkv, 3 * C,
                            qkv + C, qkv + 2 * C, 3 * C, out32, lse32, &s, CU_SUM_LANES);
    for (int part = 0; part < 3; part++) {
        double r = rel_norm(dqkv + part * C, dqkv32 + part * C, N, C, 3 * C);
        CHECK_MSG(r < 2e-2 && r > 0, "d%c rel %.3g (T %d)", "qkv"[part], r, T);
    }
    CHECK(same_bf16(dqkv16, dqkv, N * 3 * C));
    cu_error_t err;
    CHECK(gemm_status(g, &err) == CU_OK);
    printf("  gpt2 T=%d: out %.2e lse %.2e (rel. to fp32)\n", T, r_out, r_lse);
    gemm_free(g);
    free(qkv), free(dout), free(out), free(out32), free(lse), free(lse32), free(dqkv);
    free(dqkv32), free(scratch), free(out16), free(dqkv16);
}

static void test_gpt2(void) {
    gpt2_case(2, 64, 2, 32);
    gpt2_case(2, 100, 3, 32);
    gpt2_case(1, 140, 2, 64);
}

/* GQA: separate q (B, T, NH*hs), k and v (B, T, NKV*hs); optional window. */
typedef struct {
    float *out, *lse, *dq, *dk, *dv;
} gqa_result_t;

static void gqa_run(gemm_t *g, gqa_result_t *r, const float *q, const float *k, const float *v,
                    const float *dout, int B, int T, int NH, int NKV, int hs, int window) {
    int C = NH * hs, KVC = NKV * hs;
    long N = (long)B * T;
    r->out = malloc(sizeof(float) * N * C);
    r->lse = malloc(sizeof(float) * N * NH);
    r->dq = malloc(sizeof(float) * N * C);
    r->dk = malloc(sizeof(float) * N * KVC);
    r->dv = malloc(sizeof(float) * N * KVC);
    if (!g) {
        float *scratch = malloc(sizeof(float) * attention_scratch_floats(T));
        attention_gqa_forward(r->out, r->lse, q, k, v, scratch, B, T, NH, NKV, hs, window,
                              CU_SUM_SEQ);
        attention_gqa_backward(r->dq, r->dk, r->dv, dout, q, k, v, r->out, r->lse, scratch, B, T,
                               NH, NKV, hs, window, CU_SUM_SEQ);
        free(scratch);
        return;
    }
    att_shape_t s = {.B = B, .T = T, .NH = NH, .NKV = NKV, .hs = hs, .window = window};
    attention_bf16_forward(g, r->out, NULL, r->lse, q, C, k, v, KVC, &s, CU_SUM_LANES);
    for (long i = 0; i < N * KVC; i++) r->dk[i] = r->dv[i] = NAN; /* written, not added to */
    attention_bf16_backward(g, r->dq, C, r->dk, r->dv, KVC, NULL, dout, q, C, k, v, KVC, r->out,
                            r->lse, &s, CU_SUM_LANES);
}

static void gqa_free(gqa_result_t *r) {
    free(r->out), free(r->lse), free(r->dq), free(r->dk), free(r->dv);
}

static void gqa_case(int B, int T, int NH, int NKV, int hs, int window) {
    int C = NH * hs, KVC = NKV * hs;
    long N = (long)B * T;
    float *q = randn(N * C, 21, 0.8f), *k = randn(N * KVC, 22, 0.8f);
    float *v = randn(N * KVC, 23, 1.0f), *dout = randn(N * C, 24, 1.0f);
    gqa_result_t ref, bf, again;
    gqa_run(NULL, &ref, q, k, v, dout, B, T, NH, NKV, hs, window);
    gemm_t *g = backend();
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    gqa_run(g, &bf, q, k, v, dout, B, T, NH, NKV, hs, window);
    double ro = rel_norm(bf.out, ref.out, N, C, C), rq = rel_norm(bf.dq, ref.dq, N, C, C);
    double rk = rel_norm(bf.dk, ref.dk, N, KVC, KVC), rv = rel_norm(bf.dv, ref.dv, N, KVC, KVC);
    double rl = rel_norm(bf.lse, ref.lse, N, NH, NH);
    CHECK_MSG(ro < 1e-2 && ro > 0, "out rel %.3g", ro);
    CHECK_MSG(rl < 1e-3, "lse rel %.3g", rl);
    CHECK_MSG(rq < 2e-2 && rk < 2e-2 && rv < 2e-2, "dq %.3g dk %.3g dv %.3g", rq, rk, rv);
    printf("  gqa T=%d NH=%d NKV=%d window=%d: out %.2e dq %.2e dk %.2e dv %.2e\n", T, NH, NKV,
           window, ro, rq, rk, rv);
    /* two threads: the same bits */
    omp_set_num_threads(2);
    gqa_run(g, &again, q, k, v, dout, B, T, NH, NKV, hs, window);
    omp_set_num_threads(threads);
    CHECK(!memcmp(again.out, bf.out, sizeof(float) * N * C));
    CHECK(!memcmp(again.lse, bf.lse, sizeof(float) * N * NH));
    CHECK(!memcmp(again.dq, bf.dq, sizeof(float) * N * C));
    CHECK(!memcmp(again.dk, bf.dk, sizeof(float) * N * KVC));
    CHECK(!memcmp(again.dv, bf.dv, sizeof(float) * N * KVC));
    cu_error_t err;
    CHECK(gemm_status(g, &err) == CU_OK);
    gemm_free(g);
    gqa_free(&ref), gqa_free(&bf), gqa_free(&again);
    free(q), free(k), free(v), free(dout);
}

static void test_gqa(void) {
    gqa_case(2, 100, 4, 2, 16, 0);
    gqa_case(1, 140, 6, 2, 32, 37);
    gqa_case(2, 128, 4, 4, 64, 0);
    gqa_case(1, 200, 8, 1, 16, 70);
}

/* One forward+backward of a tiny model: loss and the trainable gradients. */
static double model_step(int arch, int prec, int att16_from, int T, float **grads, size_t *n) {
    gpt_config_t c = {.n_layer = 2,
                      .n_head = 4,
                      .n_embd = 64,
                      .vocab_size = 97,
                      .max_seq_len = 320,
                      .arch = arch};
    if (arch != GPT_ARCH_GPT2) {
        c.n_kv_head = 2;
        c.ffn_hidden = 96;
        c.sliding_window = arch == GPT_ARCH_LLAMA ? 90 : 0;
    }
    lora_config_t l = {
        .enabled = 1, .targets = (1u << gpt_n_targets(arch)) - 1, .r = 4, .alpha = 8.0f};
    gpt_t *m = NULL;
    cu_error_t err;
    int ok = gpt_create(&m, &c, &l, &err) == CU_OK && gpt_reserve(m, 2, T, &err) == CU_OK &&
             gpt_set_precision(m, prec, &err) == CU_OK;
    CHECK_MSG(ok, "%s", err.msg);
    if (!ok) exit(1);
    gpt_init_weights(m, 5, 0.1f);
    gpt_init_lora(m, 6);
    float *lp = gpt_lora_params(m, n);
    cu_rng_t rng;
    cu_rng_seed(&rng, 7);
    for (size_t i = 0; i < *n; i++) lp[i] += 0.05f * cu_rng_normal(&rng);
    gpt_set_bf16_attention_from(m, att16_from);
    int32_t *in = malloc(sizeof(int32_t) * 2 * T), *tg = malloc(sizeof(int32_t) * 2 * T);
    for (int i = 0; i < 2 * T; i++) in[i] = (int32_t)cu_rng_below(&rng, 97), tg[i] = (i * 31) % 97;
    gpt_loss_t loss;
    gpt_zero_grad(m);
    CHECK(gpt_forward(m, in, tg, 2, T, 1, 1.0f / (2 * T), 1, &loss, &err) == CU_OK);
    gpt_backward(m);
    CHECK(gpt_gemm_status(m, &err) == CU_OK);
    float *g = gpt_grads(m, NULL);
    gpt_trainable(m, n);
    *grads = malloc(sizeof(float) * *n);
    memcpy(*grads, g, sizeof(float) * *n);
    gpt_free(m);
    free(in), free(tg);
    return loss.loss_sum / (2 * T);
}

static void test_models(void) {
    static const char *const names[] = {"gpt2", "llama", "starcoder2"};
    for (int arch = GPT_ARCH_GPT2; arch <= GPT_ARCH_STARCODER2; arch++) {
        int T = 150;
        float *g32, *g16, *g16a;
        size_t n;
        double l32 = model_step(arch, GPT_PREC_FP32, 0, T, &g32, &n);
        double l16 = model_step(arch, GPT_PREC_BF16, 0, T, &g16, &n);
        double l16a = model_step(arch, GPT_PREC_BF16, 1, T, &g16a, &n);
        double rg = rel_norm(g16a, g32, 1, (int)n, 0);
        CHECK_REL(l16a, l32, 1e-2, 1e-9);
        CHECK_MSG(rg < 5e-2, "%s: gradients rel %.3g", names[arch], rg);
        CHECK_MSG(l16a != l16 && memcmp(g16a, g16, sizeof(float) * n),
                  "%s: bf16 attention not taken", names[arch]);
        printf("  %s: loss fp32 %.6f bf16 %.6f bf16+attention %.6f, gradients rel %.2e\n",
               names[arch], l32, l16, l16a, rg);
        free(g32), free(g16), free(g16a);
        /* at GPT_ATT16_FROM_T tokens the default takes the bf16 attention */
        if (arch == GPT_ARCH_GPT2) {
            int Td = GPT_ATT16_FROM_T;
            float *ga, *gb;
            double la = model_step(arch, GPT_PREC_BF16, 0, Td, &ga, &n);
            double lb = model_step(arch, GPT_PREC_BF16, 1, Td, &gb, &n);
            CHECK(la == lb && !memcmp(ga, gb, sizeof(float) * n));
            free(gb);
            double lc = model_step(arch, GPT_PREC_BF16, Td + 1, Td, &gb, &n);
            CHECK(lc != la);
            free(ga), free(gb);
        }
    }
}

TEST_MAIN(TEST(test_gpt2), TEST(test_gqa), TEST(test_models))
