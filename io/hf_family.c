/*
 * config.json fields of the Llama-block families (see hf_family.h).
 *
 * Every refusal names the key and says what is supported, so a user who
 * points model.init at a folder we cannot train learns why in one line.
 */
#include "io/hf_family.h"

#include <math.h>
#include <string.h>

static const char *const LLAMA_BLOCK[] = {"llama", "qwen2", "mistral", "starcoder2"};

int hf_family_is_llama_block(const char *t) {
    for (size_t i = 0; i < sizeof LLAMA_BLOCK / sizeof LLAMA_BLOCK[0]; i++)
        if (!strcmp(t, LLAMA_BLOCK[i])) return 1;
    return 0;
}

/* A field that is absent, null, false, 0 or an empty object is off. */
static int is_set(json_t *v) {
    if (!v || json_is_null(v) || json_is_false(v)) return 0;
    if (json_is_integer(v) && json_integer_value(v) == 0) return 0;
    if (json_is_object(v) && json_object_size(v) == 0) return 0;
    return 1;
}

int hf_family_refuse(json_t *root, const char *path, cu_error_t *err) {
    if (is_set(json_object_get(root, "quantization_config")))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: quantization_config is set; quantized weights (GPTQ, AWQ, "
                            "bitsandbytes, ...) are not supported: use the unquantized model "
                            "(F32, F16 or BF16 safetensors)",
                            path);
    static const char *const MOE[] = {"num_experts",           "num_local_experts",
                                      "n_routed_experts",      "num_experts_per_tok",
                                      "moe_intermediate_size", "n_shared_experts"};
    for (size_t i = 0; i < sizeof MOE / sizeof MOE[0]; i++)
        if (is_set(json_object_get(root, MOE[i])))
            return cu_error_set(err, CU_EFORMAT,
                                "%s: %s is set; mixture-of-experts models are not supported "
                                "(the dense families of docs/export.md are)",
                                path, MOE[i]);
    return CU_OK;
}

/* A number field of rope_scaling that must be > lo. */
static int rope_num(json_t *rs, const char *key, double lo, double *out, const char *path,
                    cu_error_t *err) {
    json_t *v = json_object_get(rs, key);
    if (!json_is_number(v) || !(json_number_value(v) > lo))
        return cu_error_set(err, CU_EFORMAT, "%s: rope_scaling.%s must be a number > %g", path, key,
                            lo);
    *out = json_number_value(v);
    return CU_OK;
}

static int rope_llama3(json_t *rs, gpt_config_t *c, const char *path, cu_error_t *err) {
    double lo = 0.0, hi = 0.0, orig = 0.0;
    int rc;
    if ((rc = rope_num(rs, "low_freq_factor", 0.0, &lo, path, err)) ||
        (rc = rope_num(rs, "high_freq_factor", 0.0, &hi, path, err)) ||
        (rc = rope_num(rs, "original_max_position_embeddings", 0.0, &orig, path, err)))
        return rc;
    if (hi <= lo)
        return cu_error_set(err, CU_EFORMAT,
                            "%s: rope_scaling.high_freq_factor (%g) must be above "
                            "low_freq_factor (%g)",
                            path, hi, lo);
    if (orig != floor(orig) || orig > (1 << 30))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: rope_scaling.original_max_position_embeddings must be an integer",
                            path);
    c->rope_type = GPT_ROPE_LLAMA3;
    c->rope_low_freq = (float)lo;
    c->rope_high_freq = (float)hi;
    c->rope_orig_max = (int)orig;
    return CU_OK;
}

int hf_family_rope(json_t *root, gpt_config_t *c, const char *path, cu_error_t *err) {
    json_t *rs = json_object_get(root, "rope_scaling");
    const char *key = "rope_scaling";
    if (!rs || json_is_null(rs)) {
        rs = json_object_get(root, "rope_parameters");
        key = "rope_parameters";
    }
    c->rope_type = GPT_ROPE_DEFAULT;
    if (!rs || json_is_null(rs)) return CU_OK;
    if (!json_is_object(rs))
        return cu_error_set(err, CU_EFORMAT, "%s: %s must be an object or null", path, key);
    json_t *theta = json_object_get(rs, "rope_theta");
    if (theta && (!json_is_number(theta) || !(json_number_value(theta) > 0.0)))
        return cu_error_set(err, CU_EFORMAT, "%s: %s.rope_theta must be a number > 0", path, key);
    if (theta) c->rope_theta = (float)json_number_value(theta);
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type"); /* the older spelling */
    const char *type = json_is_string(t) ? json_string_value(t) : t ? "?" : "default";
    if (!strcmp(type, "default")) return CU_OK;
    if (strcmp(type, "linear") && strcmp(type, "llama3"))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: %s.rope_type \"%s\" is not supported (default, linear and "
                            "llama3 are)",
                            path, key, type);
    double factor = 0.0;
    int rc = rope_num(rs, "factor", 0.0, &factor, path, err);
    if (rc) return rc;
    c->rope_factor = (float)factor;
    c->rope_type = GPT_ROPE_LINEAR;
    return strcmp(type, "llama3") ? CU_OK : rope_llama3(rs, c, path, err);
}

/* Qwen2: q/k/v biases always; the sliding window only with
 * use_sliding_window true, which is refused (it applies to some layers
 * only, from max_window_layers up). */
static int qwen2_fields(json_t *root, gpt_config_t *c, const char *path, cu_error_t *err) {
    c->qkv_bias = 1;
    if (json_is_true(json_object_get(root, "use_sliding_window")))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: use_sliding_window is true; Qwen2 with sliding-window layers "
                            "is not supported (the released Qwen2.5 models have it false)",
                            path);
    json_t *lt = json_object_get(root, "layer_types");
    size_t i;
    json_t *v;
    json_array_foreach(lt, i, v) {
        if (!json_is_string(v) || strcmp(json_string_value(v), "full_attention"))
            return cu_error_set(err, CU_EFORMAT,
                                "%s: layer_types[%zu] is not \"full_attention\"; only full "
                                "attention layers are supported for qwen2",
                                path, i);
    }
    return CU_OK;
}

static int mistral_fields(json_t *root, gpt_config_t *c, const char *path, cu_error_t *err);

/* StarCoder2: its own block (model/starcoder2.c), biases on every linear
 * (use_bias, true in every released model), LayerNorm with epsilon
 * norm_epsilon (ours is 1e-5, the released models'), and a sliding window
 * as Mistral's. */
static int starcoder2_fields(json_t *root, gpt_config_t *c, const char *path, cu_error_t *err) {
    c->arch = GPT_ARCH_STARCODER2;
    if (json_is_false(json_object_get(root, "use_bias")))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: use_bias is false; only StarCoder2 with biases (the released "
                            "models) is supported",
                            path);
    json_t *eps = json_object_get(root, "norm_epsilon");
    if (eps && (!json_is_number(eps) || fabs(json_number_value(eps) - 1e-5) > 1e-12))
        return cu_error_set(err, CU_EFORMAT,
                            "%s: norm_epsilon must be 1e-05 (our LayerNorm's), got %g", path,
                            json_is_number(eps) ? json_number_value(eps) : NAN);
    return mistral_fields(root, c, path, err);
}

static int mistral_fields(json_t *root, gpt_config_t *c, const char *path, cu_error_t *err) {
    json_t *w = json_object_get(root, "sliding_window");
    if (!w || json_is_null(w)) return CU_OK;
    if (!json_is_integer(w) || json_integer_value(w) < 1)
        return cu_error_set(err, CU_EFORMAT,
                            "%s: sliding_window must be null or a positive integer", path);
    json_int_t n = json_integer_value(w);
    c->sliding_window = n > (1 << 30) ? (1 << 30) : (int)n;
    return CU_OK;
}

int hf_family_variant(json_t *root, const char *model_type, gpt_config_t *c, const char *path,
                      cu_error_t *err) {
    if (!strcmp(model_type, "qwen2")) return qwen2_fields(root, c, path, err);
    if (!strcmp(model_type, "mistral")) return mistral_fields(root, c, path, err);
    if (!strcmp(model_type, "starcoder2")) return starcoder2_fields(root, c, path, err);
    return CU_OK;
}
