/*
 * Hugging Face GPT-2 import and export (see hf_gpt2.h).
 *
 * The import walks our parameter table, looks each tensor up under its HF
 * name (with or without `transformer.`), checks the shape (transposed for
 * Conv1D) and converts it into place; then every tensor of the file that
 * nothing claimed must be one GPT-2 is known to carry and we ignore (mask
 * buffers, a tied lm_head), otherwise the file is not the model we think.
 */
#include "io/hf_gpt2.h"
#include "core/fileio.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/h5util.h"
#include "io/hf_family.h"

static const char *const CONV1D[] = {".attn.c_attn.weight", ".attn.c_proj.weight",
                                     ".mlp.c_fc.weight", ".mlp.c_proj.weight"};

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* Our Llama and StarCoder2 names are HF's without the `model.` prefix
 * (lm_head has none). */
static int is_llama_name(const char *ours) {
    return !strncmp(ours, "layers.", 7) || !strcmp(ours, "embed_tokens.weight") ||
           !strcmp(ours, "norm.weight") || !strcmp(ours, "norm.bias");
}

int hf_gpt2_name(const char *ours, char *hf, size_t cap, int *conv1d) {
    *conv1d = 0;
    if (is_llama_name(ours) || !strcmp(ours, "lm_head.weight")) {
        int k = snprintf(hf, cap, "%s%s", strcmp(ours, "lm_head.weight") ? "model." : "", ours);
        return k > 0 && (size_t)k < cap ? CU_OK : CU_EINVAL;
    }
    for (size_t i = 0; i < sizeof CONV1D / sizeof CONV1D[0]; i++)
        if (ends_with(ours, CONV1D[i])) *conv1d = 1;
    int w = !strcmp(ours, "wte") || !strcmp(ours, "wpe");
    int k = snprintf(hf, cap, "transformer.%s%s", ours, w ? ".weight" : "");
    return k > 0 && (size_t)k < cap ? CU_OK : CU_EINVAL;
}

/* The folder of a model path: the path itself, or the folder of a file. */
static void model_dir(const char *path, char *dir, size_t cap) {
    if (cu_is_dir(path)) {
        snprintf(dir, cap, "%s", path);
        return;
    }
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, cap, ".");
    else
        snprintf(dir, cap, "%.*s", (int)(slash - path), path);
    if (!dir[0]) snprintf(dir, cap, "/");
}

int hf_gpt2_is_model(const char *path) {
    char dir[4096], cfg[4200];
    model_dir(path, dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    if (access(cfg, R_OK) != 0) return 0;
    return cu_is_dir(path) || ends_with(path, ".safetensors") || ends_with(path, ".json");
}

/* ------------------------------------------------------------ config.json */

static int get_int(json_t *root, const char *key, const char *alt, int lo, int *out,
                   const char *path, cu_error_t *err) {
    json_t *v = json_object_get(root, key);
    if (!v && alt) v = json_object_get(root, alt);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > (1 << 24))
        return cu_error_set(err, CU_EFORMAT, "%s: %s must be an integer in [%d, %d]", path, key, lo,
                            1 << 24);
    *out = (int)json_integer_value(v);
    return CU_OK;
}

/* An optional number key; *out keeps its default when the key is absent. */
static int get_num(json_t *root, const char *key, double lo, double *out, const char *path,
                   cu_error_t *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return CU_OK;
    if (!json_is_number(v) || json_number_value(v) <= lo)
        return cu_error_set(err, CU_EFORMAT, "%s: %s must be a number > %g", path, key, lo);
    *out = json_number_value(v);
    return CU_OK;
}

/* A key that must be absent, null, false or equal to `want`. */
static int want_falsy(json_t *root, const char *key, const char *why, const char *path,
                      cu_error_t *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v) || json_is_false(v)) return CU_OK;
    return cu_error_set(err, CU_EFORMAT, "%s: %s is set; %s", path, key, why);
}

/* Llama: hidden_size, num_hidden_layers, num_attention_heads,
 * num_key_value_heads, intermediate_size, vocab_size,
 * max_position_embeddings, rms_norm_eps, rope_theta, tie_word_embeddings;
 * no biases, SiLU, no rope scaling. */
static int check_llama_config(json_t *root, hf_gpt2_info_t *info, const char *path,
                              cu_error_t *err) {
    gpt_config_t *c = &info->cfg;
    c->arch = GPT_ARCH_LLAMA;
    int rc;
    if ((rc = get_int(root, "num_hidden_layers", NULL, 1, &c->n_layer, path, err)) ||
        (rc = get_int(root, "num_attention_heads", NULL, 1, &c->n_head, path, err)) ||
        (rc = get_int(root, "hidden_size", NULL, 1, &c->n_embd, path, err)) ||
        (rc = get_int(root, "intermediate_size", NULL, 1, &c->ffn_hidden, path, err)) ||
        (rc = get_int(root, "vocab_size", NULL, 1, &c->vocab_size, path, err)) ||
        (rc = get_int(root, "max_position_embeddings", NULL, 1, &c->max_seq_len, path, err)))
        return rc;
    c->n_kv_head = c->n_head;
    if (json_object_get(root, "num_key_value_heads") &&
        !json_is_null(json_object_get(root, "num_key_value_heads")) &&
        (rc = get_int(root, "num_key_value_heads", NULL, 1, &c->n_kv_head, path, err)))
        return rc;
    /* head_dim (Llama, Qwen2, Mistral): one head's width when it is not
     * hidden_size / num_attention_heads; q_proj is then (heads * head_dim,
     * hidden) and o_proj its transpose */
    json_t *hd = json_object_get(root, "head_dim");
    int sc2 = !strcmp(info->model_type, "starcoder2");
    if (hd && !json_is_null(hd)) {
        if (!json_is_integer(hd) || json_integer_value(hd) < 2 || json_integer_value(hd) > 65536)
            return cu_error_set(err, CU_EFORMAT, "%s: head_dim must be an integer in 2..65536",
                                path);
        c->head_dim = (int)json_integer_value(hd);
        if (c->n_embd % c->n_head == 0 && c->head_dim == c->n_embd / c->n_head) c->head_dim = 0;
        if (c->head_dim && sc2)
            return cu_error_set(err, CU_EFORMAT,
                                "%s: head_dim must be hidden_size / num_attention_heads (%d) for "
                                "starcoder2",
                                path, c->n_embd / c->n_head);
    }
    if (!c->head_dim && c->n_embd % c->n_head)
        return cu_error_set(err, CU_EFORMAT,
                            "%s: hidden_size %d is not divisible by "
                            "num_attention_heads %d (and no head_dim is given)",
                            path, c->n_embd, c->n_head);
    if (c->n_head % c->n_kv_head)
        return cu_error_set(err, CU_EFORMAT,
                            "%s: num_key_value_heads %d does not divide num_attention_heads %d",
                            path, c->n_kv_head, c->n_head);
    if (gpt_head_size(c) % 2)
        return cu_error_set(err, CU_EFORMAT, "%s: the head size %d must be even (rotary)", path,
                            gpt_head_size(c));
    double eps = 1e-6, theta = 10000.0;
    if ((rc = get_num(root, "rms_norm_eps", 0.0, &eps, path, err)) ||
        (rc = get_num(root, "rope_theta", 0.0, &theta, path, err)))
        return rc;
    c->norm_eps = (float)eps;
    c->rope_theta = (float)theta;
    json_t *act = json_object_get(root, "hidden_act");
    const char *a = json_is_string(act) ? json_string_value(act) : act ? "?" : NULL;
    if (!sc2 && a && strcmp(a, "silu"))
        return cu_error_set(err, CU_EFORMAT, "%s: hidden_act must be \"silu\" (SwiGLU)", path);
    if (sc2 && a && strcmp(a, "gelu_pytorch_tanh") && strcmp(a, "gelu_new"))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: hidden_act must be \"gelu_pytorch_tanh\" (StarCoder2's GELU)",
                            path);
    if ((rc = want_falsy(root, "attention_bias", "biases are not supported", path, err)) ||
        (rc = want_falsy(root, "mlp_bias", "biases are not supported", path, err)) ||
        (rc = hf_family_rope(root, c, path, err)) ||
        (rc = hf_family_variant(root, info->model_type, c, path, err)))
        return rc;
    json_t *tie = json_object_get(root, "tie_word_embeddings");
    /* LlamaConfig's default is false, Starcoder2Config's true */
    info->tie_word_embeddings = sc2 ? !json_is_false(tie) : json_is_true(tie);
    c->tie_embeddings = info->tie_word_embeddings;
    return CU_OK;
}

static int check_config(json_t *root, hf_gpt2_info_t *info, const char *path, cu_error_t *err) {
    gpt_config_t *c = &info->cfg;
    int rc;
    json_t *type = json_object_get(root, "model_type");
    if (type && !json_is_string(type))
        return cu_error_set(err, CU_EFORMAT, "%s: model_type must be a string", path);
    snprintf(info->model_type, sizeof info->model_type, "%s",
             type ? json_string_value(type) : "gpt2");
    if (strcmp(info->model_type, "gpt2") && !hf_family_is_llama_block(info->model_type))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: model_type \"%s\" is not supported (gpt2, llama, qwen2, "
                            "mistral and starcoder2 are)",
                            path, info->model_type);
    if ((rc = hf_family_refuse(root, path, err))) return rc;
    if (hf_family_is_llama_block(info->model_type))
        return check_llama_config(root, info, path, err);
    if ((rc = get_int(root, "n_layer", NULL, 1, &c->n_layer, path, err)) ||
        (rc = get_int(root, "n_head", NULL, 1, &c->n_head, path, err)) ||
        (rc = get_int(root, "n_embd", NULL, 1, &c->n_embd, path, err)) ||
        (rc = get_int(root, "vocab_size", NULL, 1, &c->vocab_size, path, err)) ||
        (rc = get_int(root, "n_positions", "n_ctx", 1, &c->max_seq_len, path, err)))
        return rc;
    if (c->n_embd % c->n_head)
        return cu_error_set(err, CU_EFORMAT, "%s: n_embd %d is not divisible by n_head %d", path,
                            c->n_embd, c->n_head);
    json_t *eps = json_object_get(root, "layer_norm_epsilon");
    if (eps && (!json_is_number(eps) || fabs(json_number_value(eps) - 1e-5) > 1e-12))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: layer_norm_epsilon must be 1e-05 (our LayerNorm's), got %g", path,
                            json_is_number(eps) ? json_number_value(eps) : NAN);
    json_t *act = json_object_get(root, "activation_function");
    const char *a = json_is_string(act) ? json_string_value(act) : act ? "?" : "gelu_new";
    if (strcmp(a, "gelu_new") && strcmp(a, "gelu_pytorch_tanh"))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: activation_function '%s' is not supported (gelu_new is)", path, a);
    json_t *inner = json_object_get(root, "n_inner");
    if (inner && !json_is_null(inner) &&
        (!json_is_integer(inner) || json_integer_value(inner) != 4 * c->n_embd))
        return cu_error_set(err, CU_EFORMAT, "%s: n_inner must be null or 4 * n_embd", path);
    json_t *by_layer = json_object_get(root, "scale_attn_by_inverse_layer_idx");
    json_t *scale = json_object_get(root, "scale_attn_weights");
    if (json_is_true(by_layer) || json_is_false(scale))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: scale_attn_by_inverse_layer_idx / scale_attn_weights: only "
                            "GPT-2's 1/sqrt(head size) attention scaling is supported",
                            path);
    json_t *tie = json_object_get(root, "tie_word_embeddings");
    info->tie_word_embeddings = !json_is_false(tie);
    return CU_OK;
}

int hf_gpt2_read_config(const char *path, hf_gpt2_info_t *info, cu_error_t *err) {
    memset(info, 0, sizeof *info);
    struct stat sb;
    if (stat(path, &sb) != 0) return cu_error_set(err, CU_EINVAL, "%s: %s", path, strerror(errno));
    char dir[4096], cfg[4200];
    model_dir(path, dir, sizeof dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    json_error_t jerr;
    json_t *root = json_load_file(cfg, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (access(cfg, F_OK) != 0)
            return cu_error_set(err, CU_EINVAL,
                                "%s: not found (a Hugging Face model folder "
                                "holds config.json and model.safetensors)",
                                cfg);
        return cu_error_set(err, CU_EFORMAT, "%s: not valid JSON: %s (line %d)", cfg, jerr.text,
                            jerr.line);
    }
    int rc = json_is_object(root) ? check_config(root, info, cfg, err)
                                  : cu_error_set(err, CU_EFORMAT, "%s: not a JSON object", cfg);
    json_decref(root);
    if (rc == CU_OK)
        snprintf(info->weights_path, sizeof info->weights_path, "%s", cu_is_dir(path) ? dir : path);
    return rc;
}

int hf_gpt2_apply_config(const hf_gpt2_info_t *info, gpt_config_t *gc, cu_error_t *err) {
    int T = gc->max_seq_len ? gc->max_seq_len : info->cfg.max_seq_len;
    if (T > info->cfg.max_seq_len)
        return cu_error_set(
            err, CU_EINVAL,
            "model.max_seq_len %d is longer than the base model's %s %d "
            "(config.json): set model.max_seq_len to at most %d",
            T, info->cfg.arch != GPT_ARCH_GPT2 ? "max_position_embeddings" : "n_positions",
            info->cfg.max_seq_len, info->cfg.max_seq_len);
    *gc = info->cfg;
    gc->max_seq_len = T;
    return CU_OK;
}

/* ------------------------------------------------------------ hashing */

static int hash_file(EVP_MD_CTX *ctx, const char *path, cu_error_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return cu_error_set(err, CU_EIO, "cannot open %s: %s", path, strerror(errno));
    static const size_t CHUNK = 1 << 20;
    unsigned char *buf = malloc(CHUNK);
    int rc = buf ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory");
    size_t k;
    while (rc == CU_OK && (k = fread(buf, 1, CHUNK, f)) > 0) EVP_DigestUpdate(ctx, buf, k);
    if (rc == CU_OK && ferror(f)) rc = cu_error_set(err, CU_EIO, "error reading %s", path);
    free(buf);
    fclose(f);
    return rc;
}

int hf_gpt2_weights_sha256(const st_model_t *m, const char *weights_path, char hex[65],
                           cu_error_t *err) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL)) {
        EVP_MD_CTX_free(ctx);
        return cu_error_set(err, CU_EINTERNAL, "sha256 unavailable");
    }
    int rc = CU_OK;
    if (st_file_count(m) > 1 || ends_with(weights_path, ".json")) {
        char idx[4200];
        if (cu_is_dir(weights_path))
            snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", weights_path);
        else
            snprintf(idx, sizeof idx, "%s", weights_path);
        rc = hash_file(ctx, idx, err);
    }
    for (int i = 0; rc == CU_OK && i < st_file_count(m); i++)
        rc = hash_file(ctx, st_file_path(m, i), err);
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (rc == CU_OK) EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    for (unsigned i = 0; rc == CU_OK && i < 32; i++) sprintf(hex + 2 * i, "%02x", md[i]);
    return rc;
}

/* ------------------------------------------------------------ import */

static const st_entry_t *find_hf(const st_model_t *m, const char *hf) {
    const st_entry_t *e = st_find(m, hf);
    if (!e && !strncmp(hf, "transformer.", 12)) e = st_find(m, hf + 12);
    if (!e && !strncmp(hf, "model.", 6)) e = st_find(m, hf + 6);
    return e;
}

static int load_one(st_model_t *m, const gpt_tensor_t *t, float *dst, float *scratch, int ours,
                    const st_entry_t **used, cu_error_t *err) {
    char hf[128];
    int conv;
    hf_gpt2_name(t->name, hf, sizeof hf, &conv);
    if (ours) conv = 0; /* a bf16 cache holds Conv1D weights in our layout */
    const st_entry_t *e = find_hf(m, hf);
    if (!e)
        return cu_error_set(err, CU_EFORMAT, "%s: tensor '%s' (our %s) is missing",
                            st_file_count(m) == 1 ? st_file_path(m, 0) : "the sharded model", hf,
                            t->name);
    const char *file = st_file_path(m, e->file);
    int64_t want0 = conv ? t->shape[1] : t->shape[0], want1 = conv ? t->shape[0] : t->shape[1];
    int ok = e->ndim == t->ndim && e->shape[0] == want0 && (t->ndim == 1 || e->shape[1] == want1);
    if (!ok && !strcmp(t->name, "wpe") && e->ndim == 2 && e->shape[0] > want0 &&
        e->shape[1] == want1)
        ok = conv = -1; /* fewer positions than the base has */
    if (!ok) {
        char got[96] = "", *p = got;
        for (int d = 0; d < e->ndim && p < got + 80; d++)
            p += sprintf(p, "%s%lld", d ? ", " : "", (long long)e->shape[d]);
        if (t->ndim == 1)
            return cu_error_set(err, CU_EFORMAT, "%s: tensor '%s' has shape [%s], expected [%lld]",
                                file, e->name, got, (long long)want0);
        return cu_error_set(
            err, CU_EFORMAT, "%s: tensor '%s' has shape [%s], expected [%lld, %lld]%s", file,
            e->name, got, (long long)want0, (long long)want1, conv ? " (Conv1D: in, out)" : "");
    }
    *used = e;
    if (!conv) return st_read_f32(m, e, dst, err);
    if (conv < 0) { /* wpe: the first rows of a longer table */
        float *all = malloc((size_t)e->numel * sizeof *all);
        if (!all) return cu_error_set(err, CU_ENOMEM, "out of memory");
        int rc = st_read_f32(m, e, all, err);
        if (rc == CU_OK) memcpy(dst, all, (size_t)t->shape[0] * (size_t)t->shape[1] * sizeof *dst);
        free(all);
        return rc;
    }
    int rc = st_read_f32(m, e, scratch, err); /* (in, out) -> (out, in) */
    int rows = t->shape[0], cols = t->shape[1];
    for (int i = 0; rc == CU_OK && i < cols; i++)
        for (int o = 0; o < rows; o++) dst[(size_t)o * cols + i] = scratch[(size_t)i * rows + o];
    return rc;
}

/* Tensors nothing claimed: buffers and a tied head are fine, the rest not. */
static int check_leftovers(st_model_t *m, const st_entry_t **used, int n_used, const float *wte,
                           size_t wte_n, int tied, const char *model_type, cu_error_t *err) {
    for (int i = 0; i < st_count(m); i++) {
        const st_entry_t *e = st_entry(m, i);
        int claimed = 0;
        for (int k = 0; k < n_used && !claimed; k++) claimed = used[k] == e;
        if (claimed || ends_with(e->name, ".attn.bias") ||
            ends_with(e->name, ".attn.masked_bias") || ends_with(e->name, ".rotary_emb.inv_freq"))
            continue;
        if (!strcmp(e->name, "lm_head.weight")) {
            if (tied) continue;
            if ((size_t)e->numel != wte_n)
                return cu_error_set(err, CU_EFORMAT,
                                    "%s: lm_head.weight is untied and not wte's shape; only "
                                    "a head tied to the embedding is supported",
                                    st_file_path(m, e->file));
            float *head = malloc(wte_n * sizeof *head);
            if (!head) return cu_error_set(err, CU_ENOMEM, "out of memory");
            int rc = st_read_f32(m, e, head, err);
            int same = rc == CU_OK && !memcmp(head, wte, wte_n * sizeof *head);
            free(head);
            if (rc) return rc;
            if (!same)
                return cu_error_set(err, CU_EFORMAT,
                                    "%s: lm_head.weight differs from wte (tie_word_embeddings "
                                    "false); only a tied head is supported",
                                    st_file_path(m, e->file));
            continue;
        }
        return cu_error_set(err, CU_EFORMAT, "%s: unexpected tensor '%s' (not part of %s)",
                            st_file_path(m, e->file), e->name, model_type);
    }
    return CU_OK;
}

int hf_gpt2_is_product_weight(const char *name) {
    return ends_with(name, "_proj.weight") || ends_with(name, "c_fc.weight") ||
           ends_with(name, "c_attn.weight") || !strcmp(name, "lm_head.weight");
}

int hf_gpt2_is_conv1d(const char *hf_name) {
    if (!strncmp(hf_name, "model.", 6)) return 0;
    for (size_t i = 0; i < sizeof CONV1D / sizeof CONV1D[0]; i++)
        if (ends_with(hf_name, CONV1D[i])) return 1;
    return 0;
}

/* Lends tensor i in place when it is a bf16 product weight stored as we lay
 * it out; *lent = 1 then. ours: the file's Conv1D weights are in our layout
 * (a bf16 cache). */
static int lend_one(st_model_t *m, gpt_t *model, const gpt_tensor_t *tensors, int i, int ours,
                    const st_entry_t **used, int *lent, cu_error_t *err) {
    const gpt_tensor_t *t = &tensors[i];
    char hf[128];
    int conv;
    hf_gpt2_name(t->name, hf, sizeof hf, &conv);
    if (ours) conv = 0;
    const st_entry_t *e = find_hf(m, hf);
    *lent = 0;
    if (!hf_gpt2_is_product_weight(t->name) || t->ndim != 2 || conv || !e || e->dtype != ST_BF16 ||
        e->ndim != 2 || e->shape[0] != t->shape[0] || e->shape[1] != t->shape[1])
        return CU_OK;
    const void *p = st_map_entry(m, e, err);
    if (!p) return err ? err->code : CU_EIO;
    int rc = gpt_map_bf16_tensor(model, i, p, err);
    if (rc == CU_OK) *used = e, *lent = 1;
    return rc;
}

/* from: the file to read when it is not info's (a bf16 cache, whose
 * source's sha256 `from_sha256` is taken instead of hashing it). */
static int load_params(const char *path, hf_gpt2_info_t *info, float *params,
                       const gpt_tensor_t *tensors, int n, gpt_t *lend, st_model_t **keep,
                       int *n_lent, const char *from, const char *from_sha256, cu_error_t *err) {
    st_model_t *m;
    int rc = st_open(from ? from : info->weights_path[0] ? info->weights_path : path, &m, err);
    if (rc) return rc;
    size_t biggest = 0, wte_n = 0;
    for (int i = 0; i < n; i++) {
        size_t k = gpt_tensor_numel(&tensors[i]);
        if (k > biggest) biggest = k;
        if (i == 0) wte_n = k; /* the token embedding comes first */
    }
    float *scratch = malloc((biggest ? biggest : 1) * sizeof *scratch);
    const st_entry_t **used = calloc((size_t)n + 1, sizeof *used);
    if (!scratch || !used) rc = cu_error_set(err, CU_ENOMEM, "out of memory");
    const char *layout = from ? st_metadata(m, "conv1d") : NULL;
    int ours = layout && !strcmp(layout, "out,in");
    for (int i = 0; rc == CU_OK && i < n; i++) {
        int lent = 0;
        if (lend) rc = lend_one(m, lend, tensors, i, ours, &used[i], &lent, err);
        if (rc == CU_OK && !lent)
            rc = load_one(m, &tensors[i], params + tensors[i].offset, scratch, ours, &used[i], err);
        if (n_lent) *n_lent += lent;
    }
    if (rc == CU_OK)
        rc = check_leftovers(m, used, n, params + tensors[0].offset, wte_n,
                             info->tie_word_embeddings, info->model_type, err);
    if (rc == CU_OK && from)
        snprintf(info->sha256, sizeof info->sha256, "%s", from_sha256);
    else if (rc == CU_OK)
        rc = hf_gpt2_weights_sha256(m, info->weights_path, info->sha256, err);
    free(scratch);
    free(used);
    if (rc == CU_OK && keep)
        *keep = m;
    else
        st_close(m);
    return rc;
}

int hf_gpt2_load_params(const char *path, hf_gpt2_info_t *info, float *params,
                        const gpt_tensor_t *tensors, int n, cu_error_t *err) {
    return load_params(path, info, params, tensors, n, NULL, NULL, NULL, NULL, NULL, err);
}

int hf_gpt2_load_mapped(const char *path, hf_gpt2_info_t *info, gpt_t *model, st_model_t **keep,
                        int *n_lent, cu_error_t *err) {
    int n;
    const gpt_tensor_t *tensors = gpt_param_tensors(model, &n);
    *keep = NULL;
    *n_lent = 0;
    return load_params(path, info, gpt_params(model, NULL), tensors, n, model, keep, n_lent, NULL,
                       NULL, err);
}

int hf_gpt2_load_cache(const char *path, const char *cache, const char *source_sha256,
                       hf_gpt2_info_t *info, gpt_t *model, st_model_t **keep, int *n_lent,
                       cu_error_t *err) {
    int n;
    const gpt_tensor_t *tensors = gpt_param_tensors(model, &n);
    *keep = NULL;
    *n_lent = 0;
    return load_params(path, info, gpt_params(model, NULL), tensors, n, model, keep, n_lent, cache,
                       source_sha256, err);
}

int hf_gpt2_load(const char *path, const lora_config_t *lora, gpt_t **out, hf_gpt2_info_t *info,
                 cu_error_t *err) {
    *out = NULL;
    hf_gpt2_info_t local;
    if (!info) info = &local;
    int rc = hf_gpt2_read_config(path, info, err);
    lora_config_t none = {0};
    gpt_t *m = NULL;
    if (rc == CU_OK) rc = gpt_create(&m, &info->cfg, lora ? lora : &none, err);
    if (rc == CU_OK) {
        int n;
        const gpt_tensor_t *t = gpt_param_tensors(m, &n);
        rc = hf_gpt2_load_params(path, info, gpt_params(m, NULL), t, n, err);
    }
    if (rc) {
        gpt_free(m);
        return rc;
    }
    *out = m;
    return CU_OK;
}

/* ------------------------------------------------------------ export */

int hf_gpt2_save_weights(const char *dir, const float *params, const gpt_tensor_t *tensors, int n,
                         st_dtype_t dtype, const char *const *meta, int n_meta, cu_error_t *err) {
    st_tensor_t *st = calloc((size_t)n, sizeof *st);
    char(*names)[128] = calloc((size_t)n, sizeof *names);
    float **owned = calloc((size_t)n, sizeof *owned);
    const char **allmeta = calloc((size_t)(2 * n_meta + 2), sizeof *allmeta);
    int rc =
        st && names && owned && allmeta ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory");
    for (int i = 0; rc == CU_OK && i < n; i++) {
        const gpt_tensor_t *t = &tensors[i];
        int conv;
        hf_gpt2_name(t->name, names[i], sizeof names[i], &conv);
        st[i].name = names[i];
        st[i].ndim = t->ndim;
        st[i].data = params + t->offset;
        st[i].shape[0] = conv ? t->shape[1] : t->shape[0];
        st[i].shape[1] = conv ? t->shape[0] : t->shape[1];
        if (!conv) continue;
        int rows = t->shape[0], cols = t->shape[1]; /* ours (out, in) -> (in, out) */
        owned[i] = malloc((size_t)rows * (size_t)cols * sizeof(float));
        if (!owned[i]) {
            rc = cu_error_set(err, CU_ENOMEM, "out of memory");
            break;
        }
        for (int o = 0; o < rows; o++)
            for (int c = 0; c < cols; c++)
                owned[i][(size_t)c * rows + o] = params[t->offset + (size_t)o * cols + c];
        st[i].data = owned[i];
    }
    char path[4200];
    if (rc == CU_OK) rc = cu_format(path, sizeof path, err, "%s/model.safetensors", dir);
    if (rc == CU_OK) {
        allmeta[0] = "format";
        allmeta[1] = "pt";
        for (int i = 0; i < 2 * n_meta; i++) allmeta[2 + i] = meta[i];
        rc = st_write(path, st, n, dtype, allmeta, n_meta + 1, err);
    }
    for (int i = 0; owned && i < n; i++) free(owned[i]);
    free(owned);
    free(names);
    free(st);
    free(allmeta);
    return rc;
}

static json_t *generated_config_json(const gpt_config_t *c);

static json_t *llama_config_json(const gpt_config_t *c) {
    json_t *root = json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:s, s:b, s:b, "
        "s:b, s:n, s:f, s:s, s:b}",
        "architectures", "LlamaForCausalLM", "model_type", "llama", "hidden_size", c->n_embd,
        "num_hidden_layers", c->n_layer, "num_attention_heads", c->n_head, "num_key_value_heads",
        c->n_kv_head, "intermediate_size", c->ffn_hidden, "vocab_size", c->vocab_size,
        "max_position_embeddings", c->max_seq_len, "rms_norm_eps", (double)c->norm_eps,
        "rope_theta", (double)c->rope_theta, "hidden_act", "silu", "tie_word_embeddings",
        c->tie_embeddings, "attention_bias", 0, "mlp_bias", 0, "rope_scaling", "initializer_range",
        0.02, "torch_dtype", "float32", "use_cache", 1);
    if (root && c->head_dim && json_object_set_new(root, "head_dim", json_integer(c->head_dim))) {
        json_decref(root);
        return NULL;
    }
    return root;
}

int hf_gpt2_write_config(const char *dir, const char *base_config, const gpt_config_t *c,
                         st_dtype_t dtype, cu_error_t *err) {
    json_error_t jerr;
    json_t *root = NULL;
    if (base_config) {
        root = json_load_file(base_config, 0, &jerr);
        if (!root || !json_is_object(root)) {
            json_decref(root);
            return cu_error_set(err, CU_EFORMAT, "%s: not a JSON object (%s)", base_config,
                                root ? "another JSON value" : jerr.text);
        }
    } else {
        root = generated_config_json(c);
        if (!root) return cu_error_set(err, CU_ENOMEM, "out of memory");
    }
    const char *type = dtype == ST_BF16 ? "bfloat16" : dtype == ST_F16 ? "float16" : "float32";
    int bad = json_object_set_new(root, "torch_dtype", json_string(type));
    if (json_object_get(root, "dtype"))
        bad |= json_object_set_new(root, "dtype", json_string(type));
    char path[4200], tmp[4300];
    int rc = bad ? cu_error_set(err, CU_ENOMEM, "out of memory") : CU_OK;
    if (rc == CU_OK) rc = cu_format(path, sizeof path, err, "%s/config.json", dir);
    if (rc == CU_OK) rc = cu_format(tmp, sizeof tmp, err, "%s.tmp.%d", path, (int)getpid());
    /* a base's own file keeps its key order */
    size_t flags = JSON_INDENT(2) | (base_config ? 0 : JSON_SORT_KEYS);
    if (rc == CU_OK && json_dump_file(root, tmp, flags) != 0)
        rc = cu_error_set(err, CU_EIO, "cannot write %s", tmp);
    if (rc == CU_OK && rename(tmp, path) != 0)
        rc = cu_error_set(err, CU_EIO, "cannot rename %s: %s", tmp, strerror(errno));
    if (rc != CU_OK) unlink(tmp);
    json_decref(root);
    return rc;
}

static json_t *starcoder2_config_json(const gpt_config_t *c) {
    return json_pack(
        "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:f, s:f, s:s, s:b, s:b, "
        "s:n, s:n, s:f, s:s, s:b}",
        "architectures", "Starcoder2ForCausalLM", "model_type", "starcoder2", "hidden_size",
        c->n_embd, "num_hidden_layers", c->n_layer, "num_attention_heads", c->n_head,
        "num_key_value_heads", c->n_kv_head, "intermediate_size", c->ffn_hidden, "vocab_size",
        c->vocab_size, "max_position_embeddings", c->max_seq_len, "norm_epsilon", 1e-5,
        "rope_theta", (double)c->rope_theta, "hidden_act", "gelu_pytorch_tanh",
        "tie_word_embeddings", c->tie_embeddings, "use_bias", 1, "sliding_window", "rope_scaling",
        "initializer_range", 0.02, "torch_dtype", "float32", "use_cache", 1);
}

static json_t *generated_config_json(const gpt_config_t *cfg) {
    /* a run's config leaves the defaults at 0 (gpt_create fills them in);
     * the Hugging Face classes need the numbers */
    gpt_config_t filled = *cfg, *c = &filled;
    if (!c->n_kv_head) c->n_kv_head = c->n_head;
    if (!c->ffn_hidden) c->ffn_hidden = 4 * c->n_embd;
    if (c->arch == GPT_ARCH_STARCODER2) return starcoder2_config_json(c);
    return c->arch == GPT_ARCH_LLAMA
               ? llama_config_json(c)
               : json_pack(
                     "{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:n, s:f, s:s, s:b, s:f, s:s, "
                     "s:b, s:b}",
                     "architectures", "GPT2LMHeadModel", "model_type", "gpt2", "n_layer",
                     c->n_layer, "n_head", c->n_head, "n_embd", c->n_embd, "vocab_size",
                     c->vocab_size, "n_positions", c->max_seq_len, "n_ctx", c->max_seq_len,
                     "n_inner", "layer_norm_epsilon", 1e-5, "activation_function", "gelu_new",
                     "tie_word_embeddings", 1, "initializer_range", 0.02, "torch_dtype", "float32",
                     "scale_attn_weights", 1, "use_cache", 1);
}

int hf_h5_read_attr(const char *h5_path, const char *name, char **value, cu_error_t *err) {
    *value = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(h5_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return cu_error_set(err, CU_EINVAL, "cannot open %s as HDF5", h5_path);
    *value = h5u_read_string_attr(file, name);
    H5Fclose(file);
    if (!*value) return cu_error_set(err, CU_EFORMAT, "%s has no '%s' attribute", h5_path, name);
    return CU_OK;
}
