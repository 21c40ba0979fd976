/*
 * A bf16 base lent in place (hf_gpt2_load_mapped, gpt_map_bf16_tensor)
 * computes what the bf16 copy computes: a Llama-shaped folder written in
 * BF16 is loaded both ways (the copy: every tensor read into fp32 and
 * rounded to the bf16 copy; the mapping: the linears and the head read in
 * place from the file) and LoRA steps give the same losses, gradients and
 * adapters bit for bit. Also: every linear is lent, the embedding is not,
 * and an fp32 folder lends nothing (it is read as before).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/rng.h"
#include "harness.h"
#include "io/hf_gpt2.h"
#include "model/gemm.h"
#include "model/gpt.h"
#include "model/optim.h"

enum { B = 2, T = 16, STEPS = 3, V = 61 };

static const gpt_config_t CFG = {.arch = GPT_ARCH_LLAMA,
                                 .n_layer = 2,
                                 .n_head = 4,
                                 .n_kv_head = 2,
                                 .n_embd = 32,
                                 .ffn_hidden = 48,
                                 .vocab_size = V,
                                 .max_seq_len = 32,
                                 .rope_theta = 10000.0f,
                                 .norm_eps = 1e-5f};

static lora_config_t lora(void) {
    return (lora_config_t){
        .enabled = 1, .targets = (1u << gpt_n_targets(GPT_ARCH_LLAMA)) - 1, .r = 4, .alpha = 8.0f};
}

/* A Llama folder of random weights (untied head) in `dtype`. */
static int write_folder(const char *dir, st_dtype_t dtype) {
    gpt_config_t c = CFG;
    c.tie_embeddings = 0;
    lora_config_t none = {0};
    gpt_t *m = NULL;
    cu_error_t err;
    int rc = gpt_create(&m, &c, &none, &err);
    if (rc == CU_OK) {
        gpt_init_weights(m, 21, 0.2f);
        int n;
        const gpt_tensor_t *t = gpt_param_tensors(m, &n);
        rc = hf_gpt2_save_weights(dir, gpt_params(m, NULL), t, n, dtype, NULL, 0, &err);
        if (rc == CU_OK) rc = hf_gpt2_write_config(dir, NULL, &c, dtype, &err);
    }
    CHECK_MSG(rc == CU_OK, "%s", err.msg);
    gpt_free(m);
    return rc;
}

typedef struct {
    double loss[STEPS];
    float *grads, *adapters;
    size_t n;
} run_t;

static void run_steps(gpt_t *m, run_t *r) {
    int32_t in[B * T], tg[B * T];
    cu_rng_t rng;
    cu_rng_seed(&rng, 8);
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)cu_rng_below(&rng, V);
        tg[i] = (int32_t)cu_rng_below(&rng, V);
    }
    gpt_init_lora(m, 6);
    size_t n;
    float *p = gpt_trainable(m, &n), *g = gpt_grads(m, NULL);
    for (size_t i = 0; i < n; i++) p[i] += 0.02f * cu_rng_normal(&rng);
    int nt;
    const gpt_tensor_t *tens = gpt_trainable_tensors(m, &nt);
    adamw_t opt;
    cu_error_t err;
    CHECK(adamw_init(&opt, n, 0.9f, 0.99f, 1e-8f, 0.01f, &err) == CU_OK);
    for (int s = 0; s < STEPS; s++) {
        gpt_loss_t l;
        gpt_zero_grad(m);
        CHECK_MSG(gpt_forward(m, in, tg, B, T, 1, 1.0f / (B * T), 11 + s, &l, &err) == CU_OK, "%s",
                  err.msg);
        gpt_backward(m);
        r->loss[s] = l.loss_sum;
        adamw_step(&opt, p, g, tens, nt, 1e-2f);
        gpt_params_updated(m);
    }
    r->n = n;
    r->grads = malloc(n * sizeof(float));
    r->adapters = malloc(n * sizeof(float));
    memcpy(r->grads, g, n * sizeof(float));
    memcpy(r->adapters, p, n * sizeof(float));
    adamw_free(&opt);
}

/* The copy path: hf_gpt2_load, then bf16 (the whole base rounded). */
static gpt_t *load_copy(const char *dir) {
    lora_config_t l = lora();
    gpt_t *m = NULL;
    cu_error_t err;
    CHECK_MSG(hf_gpt2_load(dir, &l, &m, NULL, &err) == CU_OK, "%s", err.msg);
    if (m) CHECK(gpt_set_precision(m, GPT_PREC_BF16, &err) == CU_OK);
    return m;
}

/* The mapped path, as codex-train takes it. */
static gpt_t *load_mapped(const char *dir, st_model_t **keep, int *n_lent) {
    hf_gpt2_info_t info;
    gpt_config_t gc = CFG;
    lora_config_t l = lora();
    gpt_t *m = NULL;
    cu_error_t err;
    int rc = hf_gpt2_read_config(dir, &info, &err);
    if (rc == CU_OK) rc = hf_gpt2_apply_config(&info, &gc, &err);
    if (rc == CU_OK) rc = gpt_create(&m, &gc, &l, &err);
    if (rc == CU_OK) rc = gpt_set_precision(m, GPT_PREC_BF16, &err);
    if (rc == CU_OK) rc = hf_gpt2_load_mapped(dir, &info, m, keep, n_lent, &err);
    CHECK_MSG(rc == CU_OK, "%s", err.msg);
    if (rc) gpt_free(m);
    return rc ? NULL : m;
}

static void make_dir(char *dir, size_t cap, const char *what) {
    snprintf(dir, cap, "/tmp/cu_base_map_%s_%ld", what, (long)getpid());
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", dir, dir);
    CHECK(system(cmd) == 0);
}

static void remove_dir(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void test_mapped_equals_copy(void) {
    char dir[512];
    make_dir(dir, sizeof dir, "bf16");
    if (write_folder(dir, ST_BF16)) return;
    st_model_t *keep = NULL;
    int n_lent = 0;
    gpt_t *a = load_copy(dir), *b = load_mapped(dir, &keep, &n_lent);
    if (a && b) {
        /* 7 linears per layer and the untied head */
        CHECK_MSG(n_lent == 7 * CFG.n_layer + 1, "%d tensors lent", n_lent);
        run_t ra = {0}, rb = {0};
        run_steps(a, &ra);
        run_steps(b, &rb);
        for (int s = 0; s < STEPS; s++)
            CHECK_MSG(ra.loss[s] == rb.loss[s], "step %d: copy %.17g, mapped %.17g", s, ra.loss[s],
                      rb.loss[s]);
        CHECK(ra.n == rb.n && !memcmp(ra.grads, rb.grads, ra.n * sizeof(float)));
        CHECK(ra.n == rb.n && !memcmp(ra.adapters, rb.adapters, ra.n * sizeof(float)));
        free(ra.grads), free(ra.adapters), free(rb.grads), free(rb.adapters);
        /* the lent linears' fp32 values were never written */
        int n;
        const gpt_tensor_t *t = gpt_param_tensors(b, &n);
        const float *pb = gpt_params(b, NULL);
        const gpt_tensor_t *q = NULL;
        for (int i = 0; i < n && !q; i++)
            if (strstr(t[i].name, "q_proj.weight")) q = &t[i];
        CHECK(q && pb[q->offset] == 0.0f && pb[q->offset + 5] == 0.0f);
    }
    gpt_free(a), gpt_free(b);
    st_close(keep);
    remove_dir(dir);
}

static void test_fp32_folder_lends_nothing(void) {
    char dir[512];
    make_dir(dir, sizeof dir, "fp32");
    if (write_folder(dir, ST_F32)) return;
    st_model_t *keep = NULL;
    int n_lent = -1;
    gpt_t *a = load_copy(dir), *b = load_mapped(dir, &keep, &n_lent);
    CHECK(n_lent == 0);
    if (a && b) {
        run_t ra = {0}, rb = {0};
        run_steps(a, &ra);
        run_steps(b, &rb);
        for (int s = 0; s < STEPS; s++) CHECK(ra.loss[s] == rb.loss[s]);
        free(ra.grads), free(ra.adapters), free(rb.grads), free(rb.adapters);
    }
    gpt_free(a), gpt_free(b);
    st_close(keep);
    remove_dir(dir);
}

TEST_MAIN(TEST(test_mapped_equals_copy), TEST(test_fp32_folder_lends_nothing))
