/*
 * Hugging Face GPT-2 and Llama checkpoints: a folder with config.json and
 * model.safetensors (or model.safetensors.index.json and its shards), as
 * `save_pretrained` writes them, read into (and written from) our model.
 * config.json's model_type picks the architecture ("gpt2", the default, or
 * "llama", "qwen2" and "mistral", which share Llama's block: io/hf_family.h
 * reads what they add).
 *
 * Llama: our names are HF's without the `model.` prefix
 * (`layers.0.self_attn.q_proj.weight` is `model.layers.0.self_attn.q_proj.
 * weight`; `lm_head.weight` is the same), nn.Linear (out, in) on both sides,
 * so nothing is transposed; `rotary_emb.inv_freq` buffers are ignored.
 *
 * GPT-2:
 *
 * Names: HF's `transformer.h.0.attn.c_attn.weight` (the `transformer.`
 * prefix is optional on input) is our `h.0.attn.c_attn.weight`;
 * `transformer.wte.weight` / `wpe.weight` are our `wte` / `wpe`. GPT-2's
 * Conv1D layers (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) store their
 * weights (in, out); ours are (out, in), so they are transposed both ways.
 * The attention-mask buffers (`attn.bias`, `attn.masked_bias`) are ignored,
 * and so is `lm_head.weight` when the head is tied to the embedding (our
 * model always ties it; an untied head that differs from wte is an error).
 */
#ifndef CU_IO_HF_GPT2_H
#define CU_IO_HF_GPT2_H

#include "core/error.h"
#include "io/safetensors.h"
#include "model/gpt.h"

typedef struct {
    gpt_config_t cfg;        /* from config.json; max_seq_len = n_positions */
    char model_type[32];     /* config.json's: gpt2 (the default), llama, qwen2, mistral */
    int tie_word_embeddings; /* config.json's, default true */
    char sha256[65];         /* of the weight files (see hf_gpt2_load_params) */
    char weights_path[4096]; /* model.safetensors or the index */
} hf_gpt2_info_t;

/* True when path looks like a HF model: a folder with config.json, or a
 * .safetensors file / index (whose folder holds config.json). */
int hf_gpt2_is_model(const char *path);

/* Reads and checks config.json in dir (or beside a .safetensors file).
 * GPT-2: n_layer, n_head, n_embd, vocab_size, n_positions; layer_norm_epsilon
 * must be 1e-5, activation_function gelu_new, n_inner null or 4*n_embd.
 * Llama (model_type "llama"): hidden_size, num_hidden_layers,
 * num_attention_heads, num_key_value_heads, intermediate_size, vocab_size,
 * max_position_embeddings, rms_norm_eps, rope_theta, tie_word_embeddings;
 * hidden_act silu, no biases, no rope_scaling. Errors (CU_EINVAL /
 * CU_EFORMAT) name the file and key. */
int hf_gpt2_read_config(const char *path, hf_gpt2_info_t *info, cu_error_t *err);

/* Takes a job's model sizes from the HF config: n_layer, n_head, n_embd and
 * vocab_size become info->cfg's; gc->max_seq_len is kept when it is at most
 * n_positions (the learned positions are then truncated on load: the first
 * max_seq_len rows of wpe), 0 takes n_positions, more is an error. */
int hf_gpt2_apply_config(const hf_gpt2_info_t *info, gpt_config_t *gc, cu_error_t *err);

/* Fills params (laid out by `tensors`, our GPT-2 parameter table for a model
 * of info->cfg's sizes) from the weights beside config.json, converting F16
 * and BF16 to float32 and transposing Conv1D weights. A missing tensor, a
 * shape that differs or an unexpected tensor is an error naming it and the
 * file. wpe may have fewer rows than the file's (see hf_gpt2_apply_config). Sets info->sha256 to
 * the sha256 of the weights file (for a sharded model: of the index file's bytes followed by each
 * shard's bytes in the order the index first names them). */
int hf_gpt2_load_params(const char *path, hf_gpt2_info_t *info, float *params,
                        const gpt_tensor_t *tensors, int n, cu_error_t *err);

/* As hf_gpt2_load_params into `model` (created with the info's config, bf16
 * precision already set, LoRA), except that each product weight (the
 * linears, an untied lm_head) stored in BF16 in our layout is not read:
 * it is lent in place from a read-only shared mapping of its file
 * (gpt_map_bf16_tensor), so every rank of a node reads the same page-cache
 * pages and none holds them privately. *keep holds the mapping: st_close it
 * after the model is freed. *n_lent counts the lent tensors (0 for an
 * fp32/fp16 base, or GPT-2's Conv1D layout: those are read as before). */
int hf_gpt2_load_mapped(const char *path, hf_gpt2_info_t *info, gpt_t *model, st_model_t **keep,
                        int *n_lent, cu_error_t *err);

/* As hf_gpt2_load_mapped, reading the bf16 cache file `cache` of the base
 * at path (io/base_cache.h) instead of its own files: info (read from the
 * base's config.json) keeps the base's weights_path and takes
 * source_sha256, recorded in the cache, as its sha256. */
int hf_gpt2_load_cache(const char *path, const char *cache, const char *source_sha256,
                       hf_gpt2_info_t *info, gpt_t *model, st_model_t **keep, int *n_lent,
                       cu_error_t *err);

/* Whether an HF tensor name is one of GPT-2's Conv1D weights (stored
 * (in, out), the transpose of ours): c_attn, attn.c_proj, mlp.c_fc and
 * mlp.c_proj under `transformer.` or `h.`; StarCoder2's nn.Linear c_fc and
 * c_proj (under `model.`) are not. */
int hf_gpt2_is_conv1d(const char *hf_name);

/* Whether a tensor (our name or HF's) is a weight of the matrix products
 * (the linears and an untied head), the tensors a bf16 base lends in
 * place; the embeddings are looked up row by row in fp32. */
int hf_gpt2_is_product_weight(const char *name);

/* The sha256 that identifies a base's weights (hf_gpt2_info_t.sha256): of
 * the weights file, or for a sharded model of the index file's bytes
 * followed by each shard's bytes in the order the index first names them.
 * weights_path: the file, index or folder st_open opened m from. */
int hf_gpt2_weights_sha256(const st_model_t *m, const char *weights_path, char hex[65],
                           cu_error_t *err);

/* The whole import: reads config.json, creates the model with `lora` (may
 * be NULL: no adapters) and loads its base weights. Allocates *out
 * (gpt_free). info may be NULL. */
int hf_gpt2_load(const char *path, const lora_config_t *lora, gpt_t **out, hf_gpt2_info_t *info,
                 cu_error_t *err);

/* Writes dir/model.safetensors in HF GPT-2 naming (`transformer.` prefix,
 * Conv1D weights (in, out), no lm_head: tied) from params laid out by
 * `tensors`, as F32 or BF16, with __metadata__ {"format": "pt"} plus the
 * given pairs. */
int hf_gpt2_save_weights(const char *dir, const float *params, const gpt_tensor_t *tensors, int n,
                         st_dtype_t dtype, const char *const *meta, int n_meta, cu_error_t *err);

/* Writes dir/config.json (atomically): the file base_config with every key
 * kept when it is not NULL, else one generated for a GPT2LMHeadModel or
 * LlamaForCausalLM of cfg's sizes. Its torch_dtype (and transformers'
 * newer `dtype`, when the base has one) names `dtype`, the type the weights
 * are written in, so a loader taking the config's dtype gets what is in the
 * file. */
int hf_gpt2_write_config(const char *dir, const char *base_config, const gpt_config_t *cfg,
                         st_dtype_t dtype, cu_error_t *err);

/* Our tensor name -> HF's (with the `transformer.` prefix); sets *conv1d
 * when the HF tensor is the transpose of ours. */
int hf_gpt2_name(const char *ours, char *hf, size_t cap, int *conv1d);

/* A string attribute (e.g. `config`) on the root of a final.h5 or a
 * checkpoint. Allocates *value (free()); CU_EFORMAT when it is absent. */
int hf_h5_read_attr(const char *h5_path, const char *name, char **value, cu_error_t *err);

#endif
