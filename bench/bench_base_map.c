/*
 * Memory of a bf16 LoRA rank over a Llama-shaped bf16 base: the base read
 * into private memory (copy: fp32 params plus their bf16 copy, what bf16
 * LoRA did before) or lent in place from a shared read-only mapping of the
 * safetensors file (mapped: what codex-train does now).
 *
 *   bench_base_map gen DIR L C H KV F V    random bf16 weights into DIR
 *   bench_base_map copy|mapped DIR T STEPS LoRA r=16 on all seven linears,
 *                                          B=1, activation checkpointing
 *
 * Prints s/step, tokens/s, peak RSS (VmHWM) and PSS after the steps
 * (/proc/self/smaps_rollup) of this process. Run it under mpirun -n 2 to
 * see two ranks sharing the page cache (each rank computes on its own; the
 * adapters' allreduce is a few MB and left out).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/rng.h"
#include "io/hf_gpt2.h"
#include "model/gpt.h"
#include "model/optim.h"

static long proc_kb(const char *file, const char *key) {
    FILE *f = fopen(file, "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n)) v = atol(line + n);
    if (f) fclose(f);
    return v;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* a: DIR L C H KV F V */
static int gen(char **a) {
    gpt_config_t c = {.arch = GPT_ARCH_LLAMA,
                      .n_layer = atoi(a[1]),
                      .n_embd = atoi(a[2]),
                      .n_head = atoi(a[3]),
                      .n_kv_head = atoi(a[4]),
                      .ffn_hidden = atoi(a[5]),
                      .vocab_size = atoi(a[6]),
                      .max_seq_len = 1024,
                      .rope_theta = 10000.0f,
                      .norm_eps = 1e-5f};
    lora_config_t none = {0};
    gpt_t *m = NULL;
    cu_error_t err;
    int rc = gpt_create(&m, &c, &none, &err);
    if (rc == CU_OK) {
        gpt_init_weights(m, 1, 0.02f);
        int n;
        const gpt_tensor_t *t = gpt_param_tensors(m, &n);
        rc = hf_gpt2_save_weights(a[0], gpt_params(m, NULL), t, n, ST_BF16, NULL, 0, &err);
        if (rc == CU_OK) rc = hf_gpt2_write_config(a[0], NULL, &c, ST_BF16, &err);
    }
    gpt_free(m);
    if (rc) fprintf(stderr, "gen: %s\n", err.msg);
    return rc ? 1 : 0;
}

static gpt_t *load(const char *dir, int mapped, st_model_t **keep, cu_error_t *err) {
    hf_gpt2_info_t info;
    gpt_config_t gc = {.arch = GPT_ARCH_LLAMA};
    lora_config_t l = {.enabled = 1,
                       .targets = (1u << gpt_n_targets(GPT_ARCH_LLAMA)) - 1,
                       .r = 16,
                       .alpha = 32.0f};
    gpt_t *m = NULL;
    int n_lent = 0, rc = hf_gpt2_read_config(dir, &info, err);
    if (rc == CU_OK) rc = hf_gpt2_apply_config(&info, &gc, err);
    if (rc == CU_OK) rc = gpt_create(&m, &gc, &l, err);
    if (rc == CU_OK && mapped) rc = gpt_set_precision(m, GPT_PREC_BF16, err);
    if (rc == CU_OK && mapped) rc = hf_gpt2_load_mapped(dir, &info, m, keep, &n_lent, err);
    if (rc == CU_OK && !mapped) {
        int n;
        const gpt_tensor_t *t = gpt_param_tensors(m, &n);
        rc = hf_gpt2_load_params(dir, &info, gpt_params(m, NULL), t, n, err);
        if (rc == CU_OK) rc = gpt_set_precision(m, GPT_PREC_BF16, err);
    }
    if (rc) {
        gpt_free(m);
        return NULL;
    }
    fprintf(stderr, "%s: %d tensors lent in place\n", mapped ? "mapped" : "copy", n_lent);
    return m;
}

static int run(int mapped, const char *dir, int T, int steps) {
    cu_error_t err;
    st_model_t *keep = NULL;
    gpt_t *m = load(dir, mapped, &keep, &err);
    if (!m) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 1;
    }
    gpt_set_activation_checkpointing(m, 1);
    gpt_init_lora(m, 2);
    int32_t *in = malloc(sizeof(int32_t) * (size_t)T), *tg = malloc(sizeof(int32_t) * (size_t)T);
    cu_rng_t rng;
    cu_rng_seed(&rng, 3);
    for (int i = 0; i < T; i++) in[i] = tg[i] = (int32_t)cu_rng_below(&rng, 32000);
    size_t n;
    float *p = gpt_trainable(m, &n), *g = gpt_grads(m, NULL);
    int nt;
    const gpt_tensor_t *tens = gpt_trainable_tensors(m, &nt);
    adamw_t opt;
    int rc = adamw_init(&opt, n, 0.9f, 0.99f, 1e-8f, 0.0f, &err);
    double t0 = 0, loss = 0;
    for (int s = 0; rc == CU_OK && s <= steps; s++) {
        if (s == 1) t0 = now(); /* step 0 warms up (page faults, primitives) */
        gpt_loss_t l;
        gpt_zero_grad(m);
        rc = gpt_forward(m, in, tg, 1, T, 1, 1.0f / T, (uint64_t)s, &l, &err);
        if (rc == CU_OK) gpt_backward(m), adamw_step(&opt, p, g, tens, nt, 1e-4f);
        loss = l.loss_sum / T;
    }
    double dt = (now() - t0) / steps;
    if (rc == CU_OK)
        printf("%s T=%d: %.2f s/step, %.0f tokens/s, loss %.4f, peak RSS %.2f GB, PSS %.2f GB\n",
               mapped ? "mapped" : "copy", T, dt, T / dt, loss,
               proc_kb("/proc/self/status", "VmHWM:") / 1048576.0,
               proc_kb("/proc/self/smaps_rollup", "Pss:") / 1048576.0);
    else
        fprintf(stderr, "step: %s\n", err.msg);
    adamw_free(&opt);
    free(in), free(tg);
    gpt_free(m);
    st_close(keep);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 9 && !strcmp(argv[1], "gen")) return gen(argv + 2);
    if (argc == 5 && (!strcmp(argv[1], "copy") || !strcmp(argv[1], "mapped")))
        return run(!strcmp(argv[1], "mapped"), argv[2], atoi(argv[3]), atoi(argv[4]));
    fprintf(stderr, "usage: bench_base_map gen DIR L C H KV F V\n"
                    "       bench_base_map copy|mapped DIR T STEPS\n");
    return 2;
}
