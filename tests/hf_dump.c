/*
 * The C side of tests/reference/hf_gpt2_ref.py and hf_llama_ref.py:
 * imports a Hugging Face GPT-2 or Llama folder through io/hf_gpt2 and dumps
 * what the reference compares.
 *
 *   hf_dump logits MODEL TOKENS B T OUT [MAXT]
 *       logits (B*T, V) float32 of the base model on the int32 batch TOKENS,
 *       loaded as a trainer would (max_seq_len MAXT, default n_positions)
 *   hf_dump lora MODEL TOKENS B T RUNDIR TARGETS R ALPHA RSLORA [h5]
 *       adds LoRA adapters on TARGETS (comma-separated config names) with
 *       A and B drawn deterministically (B nonzero, so the adapter matters),
 *       writes RUNDIR/final.h5 (the adapters, a `config` attribute whose
 *       model.init is MODEL) and RUNDIR/logits.f32 with the adapters
 *       unmerged. With `h5`, also writes RUNDIR/base.h5 (every base weight,
 *       as a full fine-tuning run's final.h5) and uses it as model.init.
 *   hf_dump grads MODEL TOKENS B T OUTDIR TARGETS R ALPHA RSLORA
 *       the same adapters (no dropout); the summed next-token loss of the
 *       batch on stdout, its LoRA gradients in OUTDIR/grads.f32, the
 *       adapters in OUTDIR/lora.f32 and their table in OUTDIR/grads.txt.
 *
 * Exit 0 on success, 1 on an error (printed), 2 on bad usage.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/config.h"
#include "io/hf_gpt2.h"
#include "io/tensor_h5.h"
#include "model/gpt.h"

static int32_t *read_tokens(const char *path, int n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    int32_t *t = malloc((size_t)n * sizeof *t);
    if (t && fread(t, sizeof *t, (size_t)n, f) != (size_t)n) {
        free(t);
        t = NULL;
    }
    fclose(f);
    return t;
}

static int dump_logits(gpt_t *m, const int32_t *tokens, int B, int T, const char *out,
                       cu_error_t *err) {
    int V = gpt_config(m)->vocab_size;
    gpt_loss_t loss;
    int rc = gpt_reserve(m, B, T, err);
    if (!rc) rc = gpt_forward(m, tokens, NULL, B, T, 0, 1.0f, 0, &loss, err);
    if (rc) return rc;
    float *logits = malloc((size_t)B * T * V * sizeof *logits);
    if (!logits) return cu_error_set(err, CU_ENOMEM, "out of memory");
    gpt_logits(m, 0, B * T, logits);
    FILE *f = fopen(out, "wb");
    int ok = f && fwrite(logits, sizeof *logits, (size_t)B * T * V, f) == (size_t)B * T * V;
    if (f && fclose(f)) ok = 0;
    free(logits);
    return ok ? CU_OK : cu_error_set(err, CU_EIO, "cannot write %s", out);
}

/* A uniform(-s, s) from a splitmix-style hash of (i, salt): no RNG state. */
static float draw(uint64_t i, uint64_t salt, float s) {
    uint64_t z = cu_hash64(i, salt);
    return (float)(((double)(z >> 11) / 9007199254740992.0) * 2.0 - 1.0) * s;
}

/* Sum of the next-token losses over the batch (targets: the next input,
 * -1 at the end of each row) and its gradient for every LoRA tensor:
 * DIR/grads.f32 (the gradient buffer) and DIR/grads.txt (name offset rows
 * cols per tensor); the loss goes to stdout. */
static int dump_grads(gpt_t *m, const char *tokens_path, int B, int T, const char *dir,
                      cu_error_t *err) {
    int32_t *tok = read_tokens(tokens_path, B * T), *tgt = malloc(sizeof(int32_t) * B * T);
    int rc = tok && tgt ? CU_OK : cu_error_set(err, CU_EINVAL, "cannot read %s", tokens_path);
    for (int i = 0; rc == CU_OK && i < B * T; i++) tgt[i] = (i % T == T - 1) ? -1 : tok[i + 1];
    gpt_loss_t loss;
    if (rc == CU_OK) {
        gpt_zero_grad(m);
        rc = gpt_forward(m, tok, tgt, B, T, 1, 1.0f, 0, &loss, err);
    }
    if (rc == CU_OK) gpt_backward(m);
    char path[4200];
    size_t n;
    float *g = gpt_grads(m, &n);
    FILE *f = NULL;
    if (rc == CU_OK) {
        snprintf(path, sizeof path, "%s/grads.f32", dir);
        f = fopen(path, "wb");
        if (!f || fwrite(g, sizeof *g, n, f) != n)
            rc = cu_error_set(err, CU_EIO, "cannot write %s", path);
        if (f && fclose(f)) rc = cu_error_set(err, CU_EIO, "cannot write %s", path);
    }
    if (rc == CU_OK) {
        snprintf(path, sizeof path, "%s/grads.txt", dir);
        f = fopen(path, "w");
        int nt;
        const gpt_tensor_t *t = gpt_trainable_tensors(m, &nt);
        for (int i = 0; f && i < nt; i++)
            fprintf(f, "%s %zu %d %d\n", t[i].name, t[i].offset, t[i].shape[0], t[i].shape[1]);
        if (!f || fclose(f)) rc = cu_error_set(err, CU_EIO, "cannot write %s", path);
    }
    if (rc == CU_OK) { /* the adapters' values, which the reference needs */
        snprintf(path, sizeof path, "%s/lora.f32", dir);
        f = fopen(path, "wb");
        const float *lp = gpt_lora_params(m, NULL);
        if (!f || fwrite(lp, sizeof *lp, n, f) != n)
            rc = cu_error_set(err, CU_EIO, "cannot write %s", path);
        if (f && fclose(f)) rc = cu_error_set(err, CU_EIO, "cannot write %s", path);
    }
    if (rc == CU_OK) printf("loss %.17g\n", loss.loss_sum);
    free(tok);
    free(tgt);
    return rc;
}

static int run_lora(char **argv, int argc, cu_error_t *err) {
    const char *model = argv[2], *dir = argv[6];
    int B = atoi(argv[4]), T = atoi(argv[5]);
    int with_h5 = argc > 11 && !strcmp(argv[11], "h5");
    int grads = !strcmp(argv[1], "grads");
    cu_config_t cfg;
    config_defaults(&cfg);
    cfg.lora.enabled = 1;
    cfg.lora.r = atoi(argv[8]);
    cfg.lora.alpha = (float)atof(argv[9]);
    cfg.lora.rslora = atoi(argv[10]);
    cfg.lora.dropout = 0.05f;
    cfg.lora.targets.n = 0;
    lora_config_t lc = {.enabled = 1,
                        .r = cfg.lora.r,
                        .alpha = cfg.lora.alpha,
                        .rslora = cfg.lora.rslora,
                        .dropout = grads ? 0.0f : 0.05f};
    hf_gpt2_info_t info;
    int rc = hf_gpt2_read_config(model, &info, err); /* the architecture names the targets */
    if (rc) return rc;
    char targets[512];
    snprintf(targets, sizeof targets, "%s", argv[7]);
    for (char *tok = strtok(targets, ","); tok; tok = strtok(NULL, ",")) {
        snprintf(cfg.lora.targets.items[cfg.lora.targets.n++], CU_CFG_STR, "%s", tok);
        unsigned bits = lora_target_bits(info.cfg.arch, tok);
        if (!bits) return cu_error_set(err, CU_EINVAL, "unknown target '%s'", tok);
        lc.targets |= bits;
    }
    gpt_t *m;
    rc = hf_gpt2_load(model, &lc, &m, &info, err);
    if (rc) return rc;
    const gpt_config_t *gc = gpt_config(m);
    snprintf(cfg.model.arch, CU_CFG_STR, "%s", gpt_arch_name(gc->arch));
    if (gc->arch != GPT_ARCH_GPT2) {
        cfg.model.n_kv_head = gc->n_kv_head;
        cfg.model.head_dim = gc->head_dim;
        cfg.model.ffn_hidden = gc->ffn_hidden;
        cfg.model.rope_theta = gc->rope_theta;
        cfg.model.norm_eps = gc->norm_eps;
        cfg.model.tie_embeddings = gc->tie_embeddings;
    }
    cfg.model.n_layer = gc->n_layer;
    cfg.model.n_head = gc->n_head;
    cfg.model.n_embd = gc->n_embd;
    cfg.model.vocab_size = gc->vocab_size;
    cfg.model.max_seq_len = gc->max_seq_len;
    snprintf(cfg.job.name, CU_CFG_STR, "hfref");
    char path[4096];
    if ((rc = cu_format(cfg.model.init, CU_CFG_STR, err, "%s", model))) goto done;
    if (with_h5) {
        int np;
        const gpt_tensor_t *pt = gpt_param_tensors(m, &np);
        snprintf(path, sizeof path, "%s/base.h5", dir);
        h5_attr_t a[] = {{"trainable", "full"}};
        if ((rc = h5_save_tensors(path, gpt_params(m, NULL), pt, np, a, 1, err))) goto done;
        if ((rc = cu_format(cfg.model.init, CU_CFG_STR, err, "%s", path))) goto done;
    }
    size_t nl;
    float *lora = gpt_lora_params(m, &nl);
    int nt;
    const gpt_tensor_t *lt = gpt_lora_tensors(m, &nt);
    for (int i = 0; i < nt; i++) {
        size_t k = (size_t)lt[i].shape[0] * (size_t)lt[i].shape[1];
        int is_b = strstr(lt[i].name, "lora_B") != NULL;
        for (size_t j = 0; j < k; j++)
            lora[lt[i].offset + j] =
                draw(lt[i].offset + j, 0x5eed + (uint64_t)i, is_b ? 0.2f : 0.5f);
    }
    (void)nl;
    if (grads) {
        rc = dump_grads(m, argv[3], B, T, dir, err);
        goto done;
    }
    char *yaml = config_to_yaml(&cfg);
    h5_attr_t attrs[] = {{"config", yaml}, {"step", "3"}, {"trainable", "lora"}};
    snprintf(path, sizeof path, "%s/final.h5", dir);
    rc = h5_save_tensors(path, lora, lt, nt, attrs, 3, err);
    free(yaml);
    int32_t *tokens = rc ? NULL : read_tokens(argv[3], B * T);
    if (!rc && !tokens) rc = cu_error_set(err, CU_EINVAL, "cannot read %s", argv[3]);
    snprintf(path, sizeof path, "%s/logits.f32", dir);
    if (!rc) rc = dump_logits(m, tokens, B, T, path, err);
    free(tokens);
done:
    gpt_free(m);
    return rc;
}

int main(int argc, char **argv) {
    cu_error_t err = {0};
    int rc;
    if ((argc == 7 || argc == 8) && !strcmp(argv[1], "logits")) {
        int B = atoi(argv[4]), T = atoi(argv[5]);
        gpt_t *m = NULL;
        hf_gpt2_info_t info;
        /* the calls a trainer makes for model.init: DIR */
        gpt_config_t gc = {.max_seq_len = argc == 8 ? atoi(argv[7]) : 0};
        lora_config_t none = {0};
        rc = hf_gpt2_read_config(argv[2], &info, &err);
        if (!rc) rc = hf_gpt2_apply_config(&info, &gc, &err);
        if (!rc) rc = gpt_create(&m, &gc, &none, &err);
        if (!rc) {
            int n;
            const gpt_tensor_t *pt = gpt_param_tensors(m, &n);
            rc = hf_gpt2_load_params(argv[2], &info, gpt_params(m, NULL), pt, n, &err);
        }
        int32_t *tokens = rc ? NULL : read_tokens(argv[3], B * T);
        if (!rc && !tokens) rc = cu_error_set(&err, CU_EINVAL, "cannot read %s", argv[3]);
        if (!rc) rc = dump_logits(m, tokens, B, T, argv[6], &err);
        if (!rc) printf("sha256 %s\n", info.sha256);
        free(tokens);
        gpt_free(m);
    } else if (((argc == 11 || argc == 12) && !strcmp(argv[1], "lora")) ||
               (argc == 11 && !strcmp(argv[1], "grads"))) {
        rc = run_lora(argv, argc, &err);
    } else {
        fputs("usage: hf_dump logits MODEL TOKENS B T OUT [MAXT]\n"
              "       hf_dump lora MODEL TOKENS B T RUNDIR TARGETS R ALPHA RSLORA [h5]\n"
              "       hf_dump grads MODEL TOKENS B T OUTDIR TARGETS R ALPHA RSLORA\n",
              stderr);
        return 2;
    }
    if (rc) fprintf(stderr, "hf_dump: %s\n", err.msg);
    return rc ? 1 : 0;
}
