/*
 * Benchmark: one LoRA training step (forward, backward, AdamW) at GPT-2 124M
 * shapes, against OpenBLAS's own sgemm measured in the same run.
 *
 * Two sgemm baselines, both single-process with the same thread count:
 *  - "peak": a large square product (M = N = K = 1536), what the BLAS can do;
 *  - "step shapes": the exact list of matrix products the step performs
 *    (forward x W^T and backward dY W at every linear layer and the head),
 *    timed alone, so the ratio shows the cost of everything that is not a
 *    plain sgemm (attention, norms, GELU, softmax, LoRA, optimizer).
 *
 * With --llama the model is a Llama of the same width (L=12, C=768, 12 query
 * heads over 4 key/value heads, SwiGLU width 2048, V=32000, untied head,
 * LoRA on all seven linears) and the step-shape list is Llama's.
 *
 * usage: bench_train_step [--threads N] [--T 64,256] [--steps N] [--full] [--llama]
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "core/timer.h"
#include "model/blas.h"
#include "model/gpt.h"
#include "model/optim.h"

typedef struct {
    int threads, steps, full, llama;
    int Ts[8], nT;
    int B, L, C, H, V, r;
    int KVH, F; /* --llama */
} opts_t;

static float *filled(long n, cu_rng_t *rng) {
    float *p = malloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n; i++) p[i] = 0.02f * cu_rng_normal(rng);
    return p;
}

/* GFLOP/s of sgemm (RowMajor, A (M,K) x op(B)): the best of five windows of
 * ~0.15 s each, so a moment of interference does not set the baseline. */
static double sgemm_gflops(int M, int N, int K, int transB, cu_rng_t *rng) {
    float *A = filled((long)M * K, rng), *Bm = filled((long)K * N, rng);
    float *Cm = calloc((size_t)M * N, sizeof(float));
    CBLAS_TRANSPOSE tb = transB ? CblasTrans : CblasNoTrans;
    int ldb = transB ? K : N;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, M, N, K, 1.0f, A, K, Bm, ldb, 0.0f, Cm, N);
    double best = 0.0;
    for (int w = 0; w < 5; w++) {
        int reps = 0;
        double t0 = cu_now(), t;
        do {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, M, N, K, 1.0f, A, K, Bm, ldb, 0.0f, Cm, N);
            reps++;
            t = cu_now() - t0;
        } while (t < 0.15);
        double gf = 2.0 * M * N * K * reps / t / 1e9;
        if (gf > best) best = gf;
    }
    free(A), free(Bm), free(Cm);
    return best;
}

/* Seconds the step's plain matrix products take when run alone. */
static double step_shapes_seconds(const opts_t *o, int T, double *flops, cu_rng_t *rng) {
    int N = o->B * T, C = o->C;
    /* (IC, OC) of each linear layer; forward is x W^T, backward dX = dY W */
    int KV = o->KVH * (C / o->H), F = o->F;
    int gpt2[4][2] = {{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}};
    int llama[7][2] = {{C, C}, {C, KV}, {C, KV}, {C, C}, {C, F}, {C, F}, {F, C}};
    int(*shapes)[2] = o->llama ? llama : gpt2, ns = o->llama ? 7 : 4;
    double secs = 0.0;
    *flops = 0.0;
    for (int s = 0; s < ns; s++) {
        int IC = shapes[s][0], OC = shapes[s][1];
        double f = 2.0 * N * IC * OC;
        secs += o->L * f / (sgemm_gflops(N, OC, IC, 1, rng) * 1e9);
        secs += o->L * f / (sgemm_gflops(N, IC, OC, 0, rng) * 1e9);
        *flops += 2 * o->L * f;
    }
    double f = 2.0 * N * C * o->V;
    secs += f / (sgemm_gflops(N, o->V, C, 1, rng) * 1e9);
    secs += f / (sgemm_gflops(N, C, o->V, 0, rng) * 1e9);
    *flops += 2 * f;
    return secs;
}

static int bench_step(const opts_t *o, int T, double *step_s, double *flops) {
    gpt_config_t gc = {
        .n_layer = o->L, .n_head = o->H, .n_embd = o->C, .vocab_size = o->V, .max_seq_len = 1024};
    if (o->llama) {
        gc.arch = GPT_ARCH_LLAMA;
        gc.n_kv_head = o->KVH;
        gc.ffn_hidden = o->F;
    }
    lora_config_t lc = {.enabled = !o->full,
                        .targets = (1u << gpt_n_targets(gc.arch)) - 1,
                        .r = o->r,
                        .alpha = 16.0f};
    gpt_t *m;
    cu_error_t err;
    if (gpt_create(&m, &gc, &lc, &err) || gpt_reserve(m, o->B, T, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 1;
    }
    gpt_init_weights(m, 1, 0.02f);
    gpt_init_lora(m, 2);
    size_t n;
    float *params = gpt_trainable(m, &n), *grads = gpt_grads(m, NULL);
    int nt;
    const gpt_tensor_t *tensors = gpt_trainable_tensors(m, &nt);
    adamw_t opt;
    adamw_init(&opt, n, 0.9f, 0.999f, 1e-8f, 0.0f, &err);
    int32_t *in = malloc(sizeof(int32_t) * (size_t)o->B * T);
    int32_t *tg = malloc(sizeof(int32_t) * (size_t)o->B * T);
    for (int i = 0; i < o->B * T; i++) {
        in[i] = (int32_t)((i * 7919) % o->V);
        tg[i] = (int32_t)((i * 104729 + 1) % o->V);
    }
    double best = 1e30;
    for (int s = 0; s < o->steps + 1; s++) {
        double t0 = cu_now();
        gpt_zero_grad(m);
        gpt_loss_t l;
        gpt_forward(m, in, tg, o->B, T, 1, 1.0f / (float)(o->B * T), (uint64_t)s, &l, NULL);
        gpt_backward(m);
        grad_clip(grads, n, 1.0f);
        adamw_step(&opt, params, grads, tensors, nt, 1e-4f);
        double dt = cu_now() - t0;
        if (s > 0 && dt < best) best = dt; /* step 0 warms caches and pages */
    }
    *step_s = best;
    *flops = gpt_flops_per_step(m, o->B, T);
    adamw_free(&opt);
    free(in), free(tg);
    gpt_free(m);
    return 0;
}

static void parse(opts_t *o, int argc, char **argv) {
    *o = (opts_t){.threads = 1,
                  .steps = 5,
                  .B = 4,
                  .L = 12,
                  .C = 768,
                  .H = 12,
                  .V = 50257,
                  .r = 8,
                  .Ts = {64, 256},
                  .nT = 2};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            o->threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            o->steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--full"))
            o->full = 1;
        else if (!strcmp(argv[i], "--llama")) {
            o->llama = 1;
            o->KVH = 4;
            o->F = 2048;
            o->V = 32000;
        } else if (!strcmp(argv[i], "--T") && i + 1 < argc) {
            o->nT = 0;
            for (char *tok = strtok(argv[++i], ","); tok && o->nT < 8; tok = strtok(NULL, ","))
                o->Ts[o->nT++] = atoi(tok);
        } else {
            fprintf(stderr, "usage: %s [--threads N] [--T 64,256] [--steps N] [--full] [--llama]\n",
                    argv[0]);
            exit(!!strcmp(argv[i], "--help"));
        }
    }
}

int main(int argc, char **argv) {
    blas_prefer_avx512(argv);
    opts_t o;
    parse(&o, argc, argv);
    blas_set_threads(o.threads);
    cu_rng_t rng;
    cu_rng_seed(&rng, 42);
    if (o.llama)
        printf("Llama shapes: L=%d C=%d H=%d KV heads=%d F=%d V=%d B=%d, %s, %d thread(s), BLAS "
               "kernels %s\n",
               o.L, o.C, o.H, o.KVH, o.F, o.V, o.B,
               o.full ? "full fine-tuning" : "LoRA r=8 all-linear", o.threads, blas_core_name());
    else
        printf("GPT-2 124M shapes: L=%d C=%d H=%d V=%d B=%d, %s, %d thread(s), BLAS kernels %s\n",
               o.L, o.C, o.H, o.V, o.B, o.full ? "full fine-tuning" : "LoRA r=8 all-linear",
               o.threads, blas_core_name());
    double peak = sgemm_gflops(1536, 1536, 1536, 1, &rng);
    printf("sgemm peak (1536^3)            %8.1f GFLOP/s\n", peak);
    for (int i = 0; i < o.nT; i++) {
        int T = o.Ts[i];
        double shapes_flops, shapes_s = step_shapes_seconds(&o, T, &shapes_flops, &rng);
        double shapes_gf = shapes_flops / shapes_s / 1e9;
        double step_s, flops;
        if (bench_step(&o, T, &step_s, &flops)) return 1;
        double gf = flops / step_s / 1e9;
        printf("T=%-4d sgemm at step shapes     %8.1f GFLOP/s\n", T, shapes_gf);
        printf("T=%-4d training step            %8.1f GFLOP/s  %7.1f ms/step  %8.0f tokens/s\n", T,
               gf, step_s * 1e3, o.B * T / step_s);
        printf("T=%-4d ratio step/sgemm-peak %.3f   step/sgemm-at-step-shapes %.3f\n", T, gf / peak,
               gf / shapes_gf);
    }
    return 0;
}
