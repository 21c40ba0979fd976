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
 * The peak is measured again at the end: a large change says the machine's
 * speed moved during the run (a steady pair does not prove the run was
 * undisturbed: interference comes in bursts).
 *
 * With --llama the model is a Llama of the same width (L=12, C=768, 12 query
 * heads over 4 key/value heads, SwiGLU width 2048, V=32000, untied head,
 * LoRA on all seven linears) and the step-shape list is Llama's.
 *
 * With --precision bf16 the run also measures oneDNN's bf16 matmul peak (the
 * same 1536^3 product through the model's backend, model/gemm.h) and times
 * each T twice, fp32 and bf16 (train.precision), then runs the PyTorch peer
 * (bench/bench_train_step_torch.py, the same model and step under bf16
 * autocast) when /usr/bin/python3 has torch, with OPENBLAS_CORETYPE unset
 * so PyTorch's own BLAS detects its AVX-512 kernels; the ratios are printed
 * at the end.
 *
 * usage: bench_train_step [--threads N] [--T 64,256] [--steps N] [--full] [--llama]
 *                         [--precision fp32|bf16] [--no-torch]
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/timer.h"
#include "model/blas.h"
#include "model/gemm.h"
#include "model/gpt.h"
#include "model/optim.h"

typedef struct {
    int threads, steps, full, llama;
    int bf16, no_torch; /* --precision bf16: fp32 and bf16 steps, oneDNN peak, PyTorch peer */
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

/* GFLOP/s of the bf16 backend on x W^T (M, K) x (N, K)^T, counted as
 * sgemm_gflops counts: the activation's rounding to bf16 included. */
static double bf16_gflops(int M, int N, int K, cu_rng_t *rng, char *kernel, size_t cap) {
    float *A = filled((long)M * K, rng), *W = filled((long)K * N, rng);
    float *Cm = calloc((size_t)M * N, sizeof(float));
    uint16_t *W16 = malloc(sizeof(uint16_t) * (size_t)K * N);
    gemm_t *g;
    cu_error_t err;
    if (gemm_create(&g, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        return 0.0;
    }
    gemm_to_bf16(W16, W, (size_t)K * N);
    gemm_add_bf16(g, W, W16, (size_t)K * N, &err);
    gemm_xwt(g, Cm, A, W, M, K, N, 0.0f);
    double best = 0.0;
    for (int w = 0; w < 5; w++) {
        int reps = 0;
        double t0 = cu_now(), t;
        do {
            gemm_xwt(g, Cm, A, W, M, K, N, 0.0f);
            reps++;
            t = cu_now() - t0;
        } while (t < 0.15);
        double gf = 2.0 * M * N * K * reps / t / 1e9;
        if (gf > best) best = gf;
    }
    snprintf(kernel, cap, "%s", gemm_kernel_name(g));
    gemm_free(g);
    free(A), free(W), free(Cm), free(W16);
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

static int bench_step(const opts_t *o, int T, int precision, double *step_s, double *flops) {
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
    if (gpt_create(&m, &gc, &lc, &err) || gpt_reserve(m, o->B, T, &err) ||
        gpt_set_precision(m, precision, &err)) {
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

/* Runs bench/bench_train_step_torch.py with the same shapes and prints its
 * lines and the ratio of our bf16 tokens/s to PyTorch's at each T. */
static void run_torch_peer(const opts_t *o, const double *tok_bf16) {
    if (access("/usr/bin/python3", X_OK) != 0 ||
        system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
        printf("PyTorch peer: skipped (/usr/bin/python3 has no torch)\n");
        return;
    }
    char ts[64] = "", cmd[1024];
    for (int i = 0; i < o->nT; i++)
        snprintf(ts + strlen(ts), sizeof ts - strlen(ts), "%s%d", i ? "," : "", o->Ts[i]);
    snprintf(
        cmd, sizeof cmd,
        "env -u OPENBLAS_CORETYPE -u CU_BLAS_REEXEC /usr/bin/python3 %s/bench_train_step_torch.py "
        "--threads %d --T %s --steps %d%s",
        CU_BENCH_DIR, o->threads, ts, o->steps, o->llama ? " --llama" : "");
    FILE *p = popen(cmd, "r");
    if (!p) {
        printf("PyTorch peer: could not start\n");
        return;
    }
    char line[512];
    while (fgets(line, sizeof line, p)) {
        fputs(line, stdout);
        int T;
        double tok;
        if (sscanf(line, "torch T=%d bf16 autocast step %*f ms/step %lf tokens/s", &T, &tok) != 2)
            continue;
        for (int i = 0; i < o->nT; i++)
            if (o->Ts[i] == T && tok > 0)
                printf("T=%-4d ratio bf16-step/PyTorch-bf16-autocast %.2f (tokens/s)\n", T,
                       tok_bf16[i] / tok);
    }
    pclose(p);
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
        else if (!strcmp(argv[i], "--precision") && i + 1 < argc)
            o->bf16 = !strcmp(argv[++i], "bf16");
        else if (!strcmp(argv[i], "--no-torch"))
            o->no_torch = 1;
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
            fprintf(stderr,
                    "usage: %s [--threads N] [--T 64,256] [--steps N] [--full] [--llama] "
                    "[--precision fp32|bf16] [--no-torch]\n",
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
    double bpeak = 0.0;
    if (o.bf16) {
        char kernel[160], about[128];
        bpeak = bf16_gflops(1536, 1536, 1536, &rng, kernel, sizeof kernel);
        gemm_describe(about, sizeof about);
        printf("oneDNN bf16 peak (1536^3)      %8.1f GFLOP/s  (%s; %s)\n", bpeak, kernel, about);
    }
    double tok_bf16[8] = {0};
    for (int i = 0; i < o.nT; i++) {
        int T = o.Ts[i];
        double shapes_flops, shapes_s = step_shapes_seconds(&o, T, &shapes_flops, &rng);
        double shapes_gf = shapes_flops / shapes_s / 1e9;
        double step_s, flops;
        if (bench_step(&o, T, GPT_PREC_FP32, &step_s, &flops)) return 1;
        double gf = flops / step_s / 1e9;
        printf("T=%-4d sgemm at step shapes     %8.1f GFLOP/s\n", T, shapes_gf);
        printf("T=%-4d training step fp32       %8.1f GFLOP/s  %7.1f ms/step  %8.0f tokens/s\n", T,
               gf, step_s * 1e3, o.B * T / step_s);
        printf("T=%-4d ratio step/sgemm-peak %.3f   step/sgemm-at-step-shapes %.3f\n", T, gf / peak,
               gf / shapes_gf);
        if (!o.bf16) continue;
        double bstep_s, bflops;
        if (bench_step(&o, T, GPT_PREC_BF16, &bstep_s, &bflops)) return 1;
        double bgf = bflops / bstep_s / 1e9;
        tok_bf16[i] = o.B * T / bstep_s;
        printf("T=%-4d training step bf16       %8.1f GFLOP/s  %7.1f ms/step  %8.0f tokens/s\n", T,
               bgf, bstep_s * 1e3, tok_bf16[i]);
        printf("T=%-4d ratio bf16-step/sgemm-peak %.3f   bf16-step/fp32-step %.3f   "
               "bf16-step/oneDNN-bf16-peak %.3f\n",
               T, bgf / peak, step_s / bstep_s, bgf / bpeak);
    }
    /* the baseline again: on a shared or virtual machine the speed drifts
     * during a run, and every ratio above moves with it */
    double peak_end = sgemm_gflops(1536, 1536, 1536, 1, &rng);
    printf("sgemm peak at the end          %8.1f GFLOP/s  (%+.1f%% against the start; a large "
           "change: the machine's speed moved during the run)\n",
           peak_end, 100.0 * (peak_end - peak) / peak);
    if (o.bf16 && !o.no_torch) run_torch_peer(&o, tok_bf16);
    return 0;
}
