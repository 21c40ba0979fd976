/*
 * The config.json fields of the Hugging Face families that share Llama's
 * block (io/hf_gpt2.c reads the common ones): Qwen2's q/k/v biases and its
 * sliding-window switch, Mistral's sliding_window, rope_scaling (Llama 3.1's
 * llama3, CodeLlama's linear), and the refusals that name the field that
 * stops a folder (an unknown model_type, an unknown rope_type, a
 * quantization_config, mixture-of-experts fields). Internal to io/.
 */
#ifndef CU_IO_HF_FAMILY_H
#define CU_IO_HF_FAMILY_H

#include <jansson.h>

#include "core/error.h"
#include "model/gpt.h"

/* The model_types that load with Llama's block or StarCoder2's. */
int hf_family_is_llama_block(const char *model_type);
/* Fields no family here supports (quantization, experts), whatever the
 * model_type; CU_EFORMAT naming the field. */
int hf_family_refuse(json_t *root, const char *path, cu_error_t *err);
/* rope_scaling (or transformers 5's rope_parameters) into c->rope_*;
 * rope_parameters may also carry rope_theta. */
int hf_family_rope(json_t *root, gpt_config_t *c, const char *path, cu_error_t *err);
/* The model_type's own fields: qwen2 (qkv_bias; use_sliding_window must be
 * false, layer_types all full_attention), mistral (sliding_window),
 * starcoder2 (arch; use_bias true, norm_epsilon 1e-5, sliding_window). */
int hf_family_variant(json_t *root, const char *model_type, gpt_config_t *c, const char *path,
                      cu_error_t *err);

#endif
