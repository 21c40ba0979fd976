/*
 * ref_dump: runs the C GPT-2 (with or without LoRA) on a tiny, deterministic
 * problem and writes everything an independent implementation needs to
 * recompute it: the weights, the batch, the loss, the gradients, and for the
 * optimizer modes the loss of every AdamW step. tests/reference/
 * gpt2_lora_ref.py reads the dump and checks it against PyTorch.
 *
 *   ref_dump MODE OUTDIR
 *
 * Modes (ref_dump --help lists them): one forward+backward with LoRA on all
 * four linear layers (plain, rsLoRA, with dropout, on two targets only), the
 * same for full fine-tuning, and K AdamW steps on one batch (llm.c's test:
 * known losses over a few steps) for LoRA and for full fine-tuning.
 *
 * Files written to OUTDIR (raw little-endian, row-major):
 *   meta.json     configs, tensor tables (name, offset in floats, shape),
 *                 the loss, n_valid, and the optimizer trajectory
 *   params.f32    base weights (before any step)
 *   lora.f32      adapters, before any step (LoRA modes)
 *   grads.f32     d(mean loss)/d(trainable) (single-step modes)
 *   final.f32     trainable buffer after the K steps (AdamW modes)
 *   inputs.i32, targets.i32   (B, T) token ids; targets -1 are ignored
 *   masks.u8      LoRA dropout keep-masks, (N, in) per adapted layer
 *
 * The environment variable CU_REF_CORRUPT=TENSOR adds 1% of that tensor's
 * largest |gradient| to one of its elements before writing, so a negative
 * test can show that the reference notices a wrong gradient.
 *
 * Exit codes: 0 written, 2 bad usage, 3 a file could not be written, 1 other.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "core/rng.h"
#include "model/gpt.h"
#include "model/optim.h"

enum {
    N_LAYER = 2,
    N_HEAD = 4,
    N_EMBD = 32,
    VOCAB = 67,
    MAX_T = 16,
    BATCH = 3,
    SEQ = 16,
    ADAM_STEPS = 8,
};

static const uint64_t WEIGHT_SEED = 11, LORA_SEED = 12, PERTURB_SEED = 13, DATA_SEED = 14;
static const uint64_t DROPOUT_KEY = 99;
static const float INIT_STD = 0.2f;

typedef struct {
    const char *name;
    int lora;          /* adapters on, base frozen; else full fine-tuning */
    unsigned targets;  /* LoRA target bits */
    int rslora;        /* scale alpha / sqrt(r) */
    float dropout;     /* LoRA dropout */
    int adam_steps;    /* 0: one forward+backward; else AdamW steps */
    float lr, clip;    /* AdamW modes */
    const char *about; /* for --help */
    int llama;         /* a tiny Llama (GQA, untied head) instead of GPT-2 */
    int precision;     /* GPT_PREC_* */
} dump_mode_t;

static const dump_mode_t MODES[] = {
    {"lora", 1, 15u, 0, 0.0f, 0, 0, 0, "LoRA r=4 alpha=8 on all-linear, loss and gradients", 0, 0},
    {"rslora", 1, 15u, 1, 0.0f, 0, 0, 0, "as lora with rsLoRA scaling alpha/sqrt(r)", 0, 0},
    {"lora_dropout", 1, 15u, 0, 0.25f, 0, 0, 0, "as lora with dropout 0.25 (masks dumped)", 0, 0},
    {"lora_partial", 1, (1u << LORA_ATTN_PROJ) | (1u << LORA_MLP_FC), 0, 0.0f, 0, 0, 0,
     "LoRA on attn_proj and mlp_fc only (backward stops early)", 0, 0},
    {"full", 0, 0u, 0, 0.0f, 0, 0, 0, "full fine-tuning, gradients of every base tensor", 0, 0},
    {"adamw_lora", 1, 15u, 0, 0.0f, ADAM_STEPS, 2e-2f, 1.2f, "LoRA, AdamW steps with clipping", 0,
     0},
    {"adamw_full", 0, 0u, 0, 0.0f, ADAM_STEPS, 5e-3f, 2.5f, "full fine-tuning, AdamW steps", 0, 0},
    {"bf16_lora", 1, 15u, 0, 0.0f, 0, 0, 0, "as lora in train.precision bf16", 0, GPT_PREC_BF16},
    {"bf16_llama_lora", 1, 127u, 0, 0.0f, 0, 0, 0,
     "a tiny Llama (4 heads over 2 KV heads, SwiGLU 48, untied head), LoRA on all seven "
     "linears, in train.precision bf16",
     1, GPT_PREC_BF16},
    {"fp32_llama_lora", 1, 127u, 0, 0.0f, 0, 0, 0, "as bf16_llama_lora in fp32", 1, GPT_PREC_FP32},
};
static const int N_MODES = (int)(sizeof MODES / sizeof MODES[0]);

/* AdamW and schedule settings of the optimizer modes. beta2 is not the usual
 * 0.999 so a reference that ignores the dumped value would be caught. */
static const float BETA1 = 0.9f, BETA2 = 0.95f, ADAM_EPS = 1e-8f, WEIGHT_DECAY = 0.1f;
static const long WARMUP = 2;

static void usage(FILE *f) {
    fprintf(f, "usage: ref_dump MODE OUTDIR\n\n"
               "Runs the tiny reference GPT-2 and writes weights, batch, loss and\n"
               "gradients to OUTDIR (created if missing). Modes:\n");
    for (int i = 0; i < N_MODES; i++) fprintf(f, "  %-13s %s\n", MODES[i].name, MODES[i].about);
    fprintf(f, "\nCU_REF_CORRUPT=TENSOR perturbs one gradient element of TENSOR.\n");
}

/* ------------------------------------------------------------- the model */

static gpt_t *model_create(const dump_mode_t *mode, cu_error_t *err) {
    gpt_config_t cfg = {.n_layer = N_LAYER,
                        .n_head = N_HEAD,
                        .n_embd = N_EMBD,
                        .vocab_size = VOCAB,
                        .max_seq_len = MAX_T};
    if (mode->llama) {
        cfg.arch = GPT_ARCH_LLAMA;
        cfg.n_kv_head = N_HEAD / 2;
        cfg.ffn_hidden = 48;
    }
    lora_config_t lc = {.enabled = mode->lora,
                        .targets = mode->targets,
                        .r = 4,
                        .alpha = 8.0f,
                        .rslora = mode->rslora,
                        .dropout = mode->dropout};
    gpt_t *m;
    if (gpt_create(&m, &cfg, &lc, err)) return NULL;
    if (gpt_set_precision(m, mode->precision, err)) {
        gpt_free(m);
        return NULL;
    }
    return m;
}

/* GPT-2's init leaves biases zero, norm gains one and LoRA B zero; a forward
 * that dropped any of them would then agree with the reference by accident,
 * so every one of them gets a deterministic perturbation. */
static void model_init(gpt_t *m) {
    gpt_init_weights(m, WEIGHT_SEED, INIT_STD);
    gpt_init_lora(m, LORA_SEED);
    cu_rng_t rng;
    cu_rng_seed(&rng, PERTURB_SEED);
    int n;
    const gpt_tensor_t *t = gpt_param_tensors(m, &n);
    float *p = gpt_params(m, NULL);
    for (int i = 0; i < n; i++) {
        if (t[i].ndim != 1) continue;
        float s = strstr(t[i].name, ".weight") ? 0.1f : 0.05f; /* gains : biases */
        for (int j = 0; j < t[i].shape[0]; j++) p[t[i].offset + j] += s * cu_rng_normal(&rng);
    }
    t = gpt_lora_tensors(m, &n);
    float *lp = gpt_lora_params(m, NULL);
    for (int i = 0; lp && i < n; i++) {
        if (!strstr(t[i].name, "lora_B")) continue;
        size_t k = (size_t)t[i].shape[0] * (size_t)t[i].shape[1];
        for (size_t j = 0; j < k; j++) lp[t[i].offset + j] = 0.05f * cu_rng_normal(&rng);
    }
}

/* Random token rows with next-token targets; a few targets are -1 (one
 * isolated, a masked prompt, the last of a row), as a data loader makes them. */
static long make_batch(int32_t *inp, int32_t *tgt) {
    cu_rng_t rng;
    cu_rng_seed(&rng, DATA_SEED);
    int32_t row[SEQ + 1];
    for (int b = 0; b < BATCH; b++) {
        for (int t = 0; t <= SEQ; t++) row[t] = (int32_t)cu_rng_below(&rng, VOCAB);
        memcpy(inp + b * SEQ, row, sizeof(int32_t) * SEQ);
        memcpy(tgt + b * SEQ, row + 1, sizeof(int32_t) * SEQ);
    }
    tgt[0 * SEQ + 3] = -1;
    for (int t = 0; t < 4; t++) tgt[1 * SEQ + t] = -1;
    tgt[2 * SEQ + SEQ - 1] = -1;
    long valid = 0;
    for (int i = 0; i < BATCH * SEQ; i++) valid += tgt[i] >= 0;
    return valid;
}

/* One forward+backward of the mean loss; grads hold its gradient. */
static int model_step(gpt_t *m, const int32_t *inp, const int32_t *tgt, long n_valid, double *loss,
                      cu_error_t *err) {
    gpt_loss_t l;
    gpt_zero_grad(m);
    int rc = gpt_forward(m, inp, tgt, BATCH, SEQ, 1, 1.0f / (float)n_valid, DROPOUT_KEY, &l, err);
    if (rc) return rc;
    if (l.n_valid != n_valid)
        return cu_error_set(err, CU_EINTERNAL, "forward counted %ld valid targets, expected %ld",
                            l.n_valid, n_valid);
    gpt_backward(m);
    *loss = l.loss_sum / (double)l.n_valid;
    return CU_OK;
}

/* --------------------------------------------------------------- output */

static int write_file(const char *dir, const char *name, const void *p, size_t bytes,
                      cu_error_t *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return cu_error_set(err, CU_EIO, "%s: %s", path, strerror(errno));
    size_t w = bytes ? fwrite(p, 1, bytes, f) : 0;
    int bad = fclose(f) != 0 || w != bytes;
    return bad ? cu_error_set(err, CU_EIO, "%s: write failed", path) : CU_OK;
}

static json_t *tensor_table(const gpt_tensor_t *t, int n) {
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < t[i].ndim; d++)
            json_array_append_new(shape, json_integer(t[i].shape[d]));
        json_array_append_new(arr, json_pack("{s:s, s:I, s:o, s:b}", "name", t[i].name, "offset",
                                             (json_int_t)t[i].offset, "shape", shape, "decay",
                                             t[i].decay));
    }
    return arr;
}

static json_t *config_json(const gpt_t *m, const dump_mode_t *mode) {
    const gpt_config_t *c = gpt_config(m);
    const lora_config_t *l = gpt_lora_config(m);
    json_t *targets = json_array();
    for (int t = 0; t < gpt_n_targets(c->arch); t++)
        if (l->enabled && (l->targets & (1u << t)))
            json_array_append_new(targets, json_string(lora_target_name(c->arch, t)));
    if (mode->llama || mode->precision != GPT_PREC_FP32)
        return json_pack("{s:s, s:s, s:s, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f}, "
                         "s:{s:b, s:o, s:i, s:f, s:b, s:f}, s:i, s:i, s:I}",
                         "mode", mode->name, "arch", gpt_arch_name(c->arch), "precision",
                         gpt_precision_name(mode->precision), "model", "n_layer", c->n_layer,
                         "n_head", c->n_head, "n_embd", c->n_embd, "vocab_size", c->vocab_size,
                         "max_seq_len", c->max_seq_len, "n_kv_head", c->n_kv_head, "ffn_hidden",
                         c->ffn_hidden, "rope_theta", (double)c->rope_theta, "norm_eps",
                         (double)c->norm_eps, "lora", "enabled", l->enabled, "targets", targets,
                         "r", l->r, "alpha", (double)l->alpha, "rslora", l->rslora, "dropout",
                         (double)l->dropout, "B", BATCH, "T", SEQ, "dropout_key",
                         (json_int_t)DROPOUT_KEY);
    return json_pack("{s:s, s:{s:i, s:i, s:i, s:i, s:i}, s:{s:b, s:o, s:i, s:f, s:b, s:f}, s:i, "
                     "s:i, s:I}",
                     "mode", mode->name, "model", "n_layer", c->n_layer, "n_head", c->n_head,
                     "n_embd", c->n_embd, "vocab_size", c->vocab_size, "max_seq_len",
                     c->max_seq_len, "lora", "enabled", l->enabled, "targets", targets, "r", l->r,
                     "alpha", (double)l->alpha, "rslora", l->rslora, "dropout", (double)l->dropout,
                     "B", BATCH, "T", SEQ, "dropout_key", (json_int_t)DROPOUT_KEY);
}

/* The keep-masks gpt.c draws for LoRA dropout: per adapted layer ("site"
 * l * 4 + target) a key hashed from the forward's dropout key, and element i
 * of the (N, in) adapter input is dropped when its uniform draw is below p.
 * This mirrors gpt.c's lora_dropout(); if that convention changes, this
 * must change with it (the lora_dropout check will say so loudly). */
static int write_masks(gpt_t *m, const char *dir, json_t *meta, cu_error_t *err) {
    const lora_config_t *l = gpt_lora_config(m);
    int C = N_EMBD, N = BATCH * SEQ;
    static const int in_mul[LORA_N_TARGETS] = {1, 1, 1, 4};
    static const char *const modules[LORA_N_TARGETS] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                        "mlp.c_proj"};
    size_t total = 0;
    for (int t = 0; t < LORA_N_TARGETS; t++)
        if (l->targets & (1u << t)) total += (size_t)N_LAYER * N * in_mul[t] * C;
    uint8_t *mask = malloc(total);
    if (!mask) return cu_error_set(err, CU_ENOMEM, "out of memory (masks)");
    json_t *table = json_array();
    size_t off = 0;
    for (int layer = 0; layer < N_LAYER; layer++) {
        for (int t = 0; t < LORA_N_TARGETS; t++) {
            if (!(l->targets & (1u << t))) continue;
            uint64_t key = cu_hash64(DROPOUT_KEY, (uint64_t)(layer * LORA_N_TARGETS + t));
            long n = (long)N * in_mul[t] * C;
            for (long i = 0; i < n; i++)
                mask[off + i] = cu_hash_uniform(key, (uint64_t)i) >= l->dropout;
            char name[64];
            snprintf(name, sizeof name, "h.%d.%s", layer, modules[t]);
            json_array_append_new(table, json_pack("{s:s, s:I, s:[i, i]}", "module", name, "offset",
                                                   (json_int_t)off, "shape", N, in_mul[t] * C));
            off += (size_t)n;
        }
    }
    json_object_set_new(meta, "dropout_masks", table);
    int rc = write_file(dir, "masks.u8", mask, total, err);
    free(mask);
    return rc;
}

/* CU_REF_CORRUPT=TENSOR: one gradient element of TENSOR off by 1% of its
 * largest magnitude, ten times the reference's tolerance. */
static int corrupt_grads(gpt_t *m, json_t *meta, cu_error_t *err) {
    const char *name = getenv("CU_REF_CORRUPT");
    if (!name || !*name) return CU_OK;
    int n;
    const gpt_tensor_t *t = gpt_trainable_tensors(m, &n);
    float *g = gpt_grads(m, NULL);
    for (int i = 0; i < n; i++) {
        if (strcmp(t[i].name, name) != 0) continue;
        size_t k = gpt_tensor_numel(&t[i]);
        float mx = 0.0f;
        for (size_t j = 0; j < k; j++) mx = fmaxf(mx, fabsf(g[t[i].offset + j]));
        g[t[i].offset + k / 2] += 0.01f * mx;
        fprintf(stderr, "ref_dump: CU_REF_CORRUPT: %s[%zu] += %g\n", name, k / 2, 0.01 * mx);
        json_object_set_new(meta, "corrupted", json_string(name));
        return CU_OK;
    }
    return cu_error_set(err, CU_EINVAL, "CU_REF_CORRUPT: no trainable tensor named '%s'", name);
}

/* ---------------------------------------------------------------- modes */

static int run_gradient(gpt_t *m, const int32_t *inp, const int32_t *tgt, long n_valid,
                        const char *dir, json_t *meta, cu_error_t *err) {
    double loss = 0.0;
    int rc = model_step(m, inp, tgt, n_valid, &loss, err);
    if (rc) return rc;
    json_object_set_new(meta, "loss", json_real(loss));
    rc = corrupt_grads(m, meta, err);
    size_t n;
    float *g = gpt_grads(m, &n);
    if (!rc) rc = write_file(dir, "grads.f32", g, n * sizeof(float), err);
    return rc;
}

static int run_adamw(gpt_t *m, const dump_mode_t *mode, const int32_t *inp, const int32_t *tgt,
                     long n_valid, const char *dir, json_t *meta, cu_error_t *err) {
    size_t n;
    float *p = gpt_trainable(m, &n);
    float *g = gpt_grads(m, NULL);
    int nt;
    const gpt_tensor_t *tens = gpt_trainable_tensors(m, &nt);
    adamw_t opt;
    int rc = adamw_init(&opt, n, BETA1, BETA2, ADAM_EPS, WEIGHT_DECAY, err);
    if (rc) return rc;
    sched_t s = {.lr = mode->lr,
                 .min_lr = mode->lr / 10.0f,
                 .warmup_steps = WARMUP,
                 .max_steps = mode->adam_steps,
                 .kind = SCHED_COSINE};
    json_t *losses = json_array(), *norms = json_array(), *lrs = json_array();
    for (int k = 0; k < mode->adam_steps && !rc; k++) {
        double loss = 0.0;
        rc = model_step(m, inp, tgt, n_valid, &loss, err);
        if (rc) break;
        double norm = grad_clip(g, n, mode->clip);
        float lr = sched_lr(&s, k);
        adamw_step(&opt, p, g, tens, nt, lr);
        json_array_append_new(losses, json_real(loss));
        json_array_append_new(norms, json_real(norm));
        json_array_append_new(lrs, json_real(lr));
    }
    adamw_free(&opt);
    json_object_set_new(
        meta, "adamw",
        json_pack("{s:i, s:f, s:f, s:f, s:f, s:f, s:{s:s, s:f, s:f, s:I, s:I}, s:o, s:o, s:o}",
                  "steps", mode->adam_steps, "beta1", (double)BETA1, "beta2", (double)BETA2, "eps",
                  (double)ADAM_EPS, "weight_decay", (double)WEIGHT_DECAY, "clip",
                  (double)mode->clip, "schedule", "kind", "cosine", "lr", (double)s.lr, "min_lr",
                  (double)s.min_lr, "warmup_steps", (json_int_t)s.warmup_steps, "max_steps",
                  (json_int_t)s.max_steps, "losses", losses, "grad_norms", norms, "lrs", lrs));
    if (!rc) rc = write_file(dir, "final.f32", p, n * sizeof(float), err);
    return rc;
}

static int dump(const dump_mode_t *mode, const char *dir, cu_error_t *err) {
    gpt_t *m = model_create(mode, err);
    if (!m) return err->code;
    model_init(m);
    int32_t inp[BATCH * SEQ], tgt[BATCH * SEQ];
    long n_valid = make_batch(inp, tgt);
    json_t *meta = config_json(m, mode);
    json_object_set_new(meta, "n_valid", json_integer(n_valid));
    int nt;
    const gpt_tensor_t *t = gpt_param_tensors(m, &nt);
    json_object_set_new(meta, "param_tensors", tensor_table(t, nt));
    size_t np, nl = 0;
    float *params = gpt_params(m, &np);
    float *lora = gpt_lora_params(m, &nl);
    if (lora) {
        t = gpt_lora_tensors(m, &nt);
        json_object_set_new(meta, "lora_tensors", tensor_table(t, nt));
    }
    /* weights before training: the AdamW modes overwrite them */
    int rc = write_file(dir, "params.f32", params, np * sizeof(float), err);
    if (!rc && lora) rc = write_file(dir, "lora.f32", lora, nl * sizeof(float), err);
    if (!rc) rc = write_file(dir, "inputs.i32", inp, sizeof inp, err);
    if (!rc) rc = write_file(dir, "targets.i32", tgt, sizeof tgt, err);
    if (!rc && mode->dropout > 0.0f) rc = write_masks(m, dir, meta, err);
    if (!rc && mode->adam_steps == 0) rc = run_gradient(m, inp, tgt, n_valid, dir, meta, err);
    if (!rc && mode->adam_steps > 0) rc = run_adamw(m, mode, inp, tgt, n_valid, dir, meta, err);
    if (!rc) {
        json_object_set_new(meta, "kernel", json_string(gpt_gemm_kernel(m)));
        char path[4096];
        snprintf(path, sizeof path, "%s/meta.json", dir);
        if (json_dump_file(meta, path, JSON_INDENT(1) | JSON_REAL_PRECISION(17)))
            rc = cu_error_set(err, CU_EIO, "%s: could not write", path);
    }
    json_decref(meta);
    gpt_free(m);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc != 3) {
        usage(stderr);
        return 2;
    }
    const dump_mode_t *mode = NULL;
    for (int i = 0; i < N_MODES; i++)
        if (strcmp(argv[1], MODES[i].name) == 0) mode = &MODES[i];
    if (!mode) {
        fprintf(stderr, "ref_dump: unknown mode '%s' (ref_dump --help lists the modes)\n", argv[1]);
        return 2;
    }
    const uint16_t one = 1;
    if (*(const uint8_t *)&one != 1) {
        fprintf(stderr, "ref_dump: the dump format is little-endian; this host is not\n");
        return 1;
    }
    if (mkdir(argv[2], 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "ref_dump: cannot create %s: %s\n", argv[2], strerror(errno));
        return 3;
    }
    cu_error_t err = {0};
    int rc = dump(mode, argv[2], &err);
    if (rc) {
        fprintf(stderr, "ref_dump %s: %s\n", mode->name, err.msg);
        return rc == CU_EIO ? 3 : rc == CU_EINVAL ? 2 : 1;
    }
    return 0;
}
