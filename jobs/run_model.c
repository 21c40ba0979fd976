/*
 * A trained run as a model to use (see run_model.h).
 */
#include "jobs/run_model.h"
#include "core/fileio.h"
#include "io/ckpt.h"
#include "jobs/lora_init.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/hf_gpt2.h"
#include "io/tensor_h5.h"
#include "io/tokenizer_files.h"

int run_pick_which(const char *in, const char *which, char *out, size_t cap, cu_error_t *err) {
    if (!which || !strcmp(which, "final")) return cu_format(out, cap, err, "%s", in);
    if (strcmp(which, "best"))
        return cu_error_set(err, CU_EINVAL, "--which is best or final, not '%s'", which);
    if (!cu_is_dir(in))
        return cu_error_set(err, CU_EINVAL, "--which best needs a run directory, not %s", in);
    int rc = cu_format(out, cap, err, "%s/best.h5", in);
    if (rc == CU_OK && !cu_is_file(out))
        rc = cu_error_set(err, CU_EINVAL,
                          "%s has no best.h5 (evaluation was off or never ran: eval.every_steps); "
                          "use --which final",
                          in);
    return rc;
}

/* A run directory -> its final.h5 or latest checkpoint; a file -> itself. */
int run_resolve_input(const char *in, char *path, size_t cap, cu_error_t *err) {
    if (!cu_is_dir(in)) {
        if (!cu_is_file(in))
            return cu_error_set(err, CU_EINVAL, "%s: no such file or directory", in);
        return cu_format(path, cap, err, "%s", in);
    }
    int rc = cu_format(path, cap, err, "%s/final.h5", in);
    if (rc || cu_is_file(path)) return rc;
    char latest[4096], name[512] = "";
    if ((rc = cu_format(latest, sizeof latest, err, "%s/checkpoints/latest", in))) return rc;
    FILE *f = fopen(latest, "r");
    if (!f)
        return cu_error_set(err, CU_EINVAL,
                            "%s holds neither final.h5 nor checkpoints/latest: is it a run "
                            "directory?",
                            in);
    if (!fgets(name, sizeof name, f)) name[0] = 0;
    fclose(f);
    name[strcspn(name, "\r\n")] = 0;
    if (!name[0] || strchr(name, '/'))
        return cu_error_set(err, CU_EFORMAT, "%s does not name a checkpoint", latest);
    return cu_format(path, cap, err, "%s/checkpoints/%s", in, name);
}

lora_config_t run_lora_config(const cu_config_t *c, const char *origin, cu_error_t *err, int *rc) {
    lora_config_t lc = {.enabled = 1,
                        .r = c->lora.r,
                        .alpha = c->lora.alpha,
                        .rslora = c->lora.rslora,
                        .dropout = c->lora.dropout};
    int arch = gpt_arch_parse(c->model.arch);
    *rc = arch < 0 ? cu_error_set(err, CU_EFORMAT, "%s: config model.arch: unknown '%s'", origin,
                                  c->model.arch)
                   : CU_OK;
    for (int i = 0; i < c->lora.targets.n; i++) {
        unsigned bits = lora_target_bits(arch, c->lora.targets.items[i]);
        if (!bits)
            *rc = cu_error_set(err, CU_EFORMAT, "%s: config lora.targets: unknown target '%s'",
                               origin, c->lora.targets.items[i]);
        lc.targets |= bits;
    }
    return lc;
}

/* Loads the base weights into b->model's params: a HF folder, a full
 * fine-tuning final.h5, or GPT-2's random initialisation from the seed. */
int run_load_base(run_base_t *b, const char *base, const cu_config_t *c, cu_error_t *err) {
    int n;
    const gpt_tensor_t *pt = gpt_param_tensors(b->model, &n);
    float *params = gpt_params(b->model, NULL);
    if (hf_gpt2_is_model(base)) {
        hf_gpt2_info_t info;
        int rc = hf_gpt2_read_config(base, &info, err);
        if (rc == CU_OK) rc = hf_gpt2_load_params(base, &info, params, pt, n, err);
        if (rc) return rc;
        b->from_hf = 1;
        snprintf(b->hf_dir, sizeof b->hf_dir, "%s", base);
        if (!cu_is_dir(base)) {
            char *slash = strrchr(b->hf_dir, '/');
            if (slash)
                *slash = 0;
            else
                snprintf(b->hf_dir, sizeof b->hf_dir, ".");
        }
        return CU_OK;
    }
    if (!strcmp(base, "random")) {
        gpt_init_weights(b->model, (uint64_t)c->job.seed, c->model.init_std);
        return CU_OK;
    }
    int rc = h5_load_tensors(base, params, pt, n, err);
    if (rc)
        cu_error_prefix(err,
                        "base %s (a Hugging Face GPT-2 or Llama folder or the final.h5 of a full "
                        "fine-tuning run of the same sizes)",
                        base);
    return rc;
}

/* The model's sizes: from a HF base's config.json when there is one,
 * else the run's config (vocab 0: the tokenizer's). */
int run_model_sizes(const cu_config_t *c, gpt_config_t *gc, cu_error_t *err) {
    *gc = (gpt_config_t){.n_layer = c->model.n_layer,
                         .n_head = c->model.n_head,
                         .n_embd = c->model.n_embd,
                         .vocab_size = c->model.vocab_size,
                         .max_seq_len = c->model.max_seq_len,
                         .arch = gpt_arch_parse(c->model.arch),
                         .n_kv_head = c->model.n_kv_head,
                         .head_dim = c->model.head_dim,
                         .ffn_hidden = c->model.ffn_hidden,
                         .rope_theta = c->model.rope_theta,
                         .norm_eps = c->model.norm_eps,
                         .tie_embeddings = c->model.tie_embeddings};
    if (gc->arch < 0)
        return cu_error_set(err, CU_EINVAL, "model.arch: unknown architecture '%s'", c->model.arch);
    return CU_OK;
}

void run_model_sizes_to_config(const gpt_config_t *gc, cu_config_t *c) {
    snprintf(c->model.arch, sizeof c->model.arch, "%s", gpt_arch_name(gc->arch));
    c->model.n_layer = gc->n_layer;
    c->model.n_head = gc->n_head;
    c->model.n_embd = gc->n_embd;
    c->model.vocab_size = gc->vocab_size;
    c->model.max_seq_len = gc->max_seq_len;
    if (gc->arch == GPT_ARCH_GPT2) return;
    c->model.n_kv_head = gc->n_kv_head;
    c->model.head_dim = gc->head_dim;
    c->model.ffn_hidden = gc->ffn_hidden;
    c->model.rope_theta = gc->rope_theta;
    c->model.norm_eps = gc->norm_eps;
    c->model.tie_embeddings = gc->tie_embeddings;
}

int run_model_config(const cu_config_t *c, const char *base, gpt_config_t *gc, cu_error_t *err) {
    int rc0 = run_model_sizes(c, gc, err);
    if (rc0) return rc0;
    if (base && hf_gpt2_is_model(base)) {
        hf_gpt2_info_t info;
        int rc = hf_gpt2_read_config(base, &info, err);
        if (rc) return rc;
        if (info.cfg.n_layer != gc->n_layer || info.cfg.n_embd != gc->n_embd ||
            info.cfg.n_head != gc->n_head)
            return cu_error_set(err, CU_EINVAL,
                                "base %s has n_layer %d, n_head %d, n_embd %d but the run was "
                                "trained with %d, %d, %d",
                                base, info.cfg.n_layer, info.cfg.n_head, info.cfg.n_embd,
                                gc->n_layer, gc->n_head, gc->n_embd);
        *gc = info.cfg;
        return CU_OK;
    }
    if (gc->vocab_size > 0) return CU_OK;
    if (!base) { /* peft: the vocabulary does not matter */
        gc->vocab_size = 1;
        return CU_OK;
    }
    cu_tokenizer_t *tok;
    int rc = io_tokenizer_load(c->tokenizer.kind, c->tokenizer.path, &tok, err);
    if (rc) return cu_error_prefix(err, "model.vocab_size is 0, so the tokenizer decides");
    gc->vocab_size = tokenizer_vocab_size(tok);
    tokenizer_free(tok);
    return CU_OK;
}

int run_load_lora_init(gpt_t *m, const char *src, float **lora0, cu_error_t *err) {
    size_t n;
    int nt;
    gpt_lora_params(m, &n);
    const gpt_tensor_t *lt = gpt_lora_tensors(m, &nt);
    *lora0 = malloc((n + 1) * sizeof(float));
    if (!*lora0) return cu_error_set(err, CU_ENOMEM, "out of memory (lora_init)");
    int rc = ckpt_load_lora_init(src, *lora0, lt, nt, err);
    if (rc) {
        free(*lora0);
        *lora0 = NULL;
    }
    return rc;
}

int run_apply_lora_init(gpt_t *m, const char *src, cu_error_t *err) {
    float *lora0;
    int rc = run_load_lora_init(m, src, &lora0, err);
    if (rc == CU_OK) rc = lora_fold(m, lora0, -gpt_lora_scale(m), err);
    free(lora0);
    return rc;
}

int run_model_open(const char *in, const char *base, run_model_t *rm, cu_error_t *err) {
    memset(rm, 0, sizeof *rm);
    config_defaults(&rm->cfg);
    int rc;
    if (hf_gpt2_is_model(in)) {
        /* a Hugging Face GPT-2 or Llama folder by itself: no adapter */
        hf_gpt2_info_t info;
        rc = hf_gpt2_load(in, NULL, &rm->model, &info, err);
        if (rc == CU_OK) rc = io_tokenizer_load("gpt2", cu_is_dir(in) ? in : ".", &rm->tok, err);
        if (rc) run_model_close(rm);
        return rc;
    }
    if ((rc = run_resolve_input(in, rm->src, sizeof rm->src, err))) return rc;
    char *yaml = NULL;
    if ((rc = hf_h5_read_attr(rm->src, "config", &yaml, err)))
        return cu_error_prefix(err, "not a final.h5 or checkpoint of a codex-train run");
    char origin[4200];
    snprintf(origin, sizeof origin, "%s (config attribute)", rm->src);
    rc = config_parse_yaml(&rm->cfg, yaml, strlen(yaml), origin, err);
    free(yaml);
    if (rc) return rc;
    const cu_config_t *c = &rm->cfg;
    lora_config_t lc = {0};
    if (c->lora.enabled) {
        lc = run_lora_config(c, rm->src, err, &rc);
        if (rc) return rc;
    }
    if (!base) base = c->model.init;
    rc = io_tokenizer_load(c->tokenizer.kind, c->tokenizer.path, &rm->tok, err);
    if (rc) return cu_error_prefix(err, "the run's tokenizer");
    gpt_config_t gc;
    run_base_t b = {0};
    /* a full fine-tuning file holds every weight: no base to load, but a
     * Hugging Face base still says which family's block the weights fit
     * (Qwen2's biases, rope scaling, a sliding window) */
    const char *sizes_from = c->lora.enabled || hf_gpt2_is_model(base) ? base : NULL;
    if ((rc = run_model_config(c, sizes_from, &gc, err)) == CU_OK && gc.vocab_size <= 1)
        gc.vocab_size = tokenizer_vocab_size(rm->tok);
    if (rc == CU_OK) rc = gpt_create(&b.model, &gc, &lc, err);
    if (rc == CU_OK && c->lora.enabled) rc = run_load_base(&b, base, c, err);
    int n;
    if (rc == CU_OK && c->lora.enabled) {
        const gpt_tensor_t *lt = gpt_lora_tensors(b.model, &n);
        rc = h5_load_tensors(rm->src, gpt_lora_params(b.model, NULL), lt, n, err);
        if (rc == CU_OK && lora_init_from_weights(c->lora.init))
            rc = run_apply_lora_init(b.model, rm->src, err);
    } else if (rc == CU_OK) {
        const gpt_tensor_t *pt = gpt_param_tensors(b.model, &n);
        rc = h5_load_tensors(rm->src, gpt_params(b.model, NULL), pt, n, err);
    }
    rm->model = b.model;
    if (rc) run_model_close(rm);
    return rc;
}

void run_model_close(run_model_t *rm) {
    gpt_free(rm->model);
    tokenizer_free(rm->tok);
    rm->model = NULL;
    rm->tok = NULL;
}
