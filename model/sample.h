/*
 * Drawing tokens from logits (temperature, top-k, top-p) and generating a
 * continuation of a prompt on the model's KV cache.
 */
#ifndef CU_MODEL_SAMPLE_H
#define CU_MODEL_SAMPLE_H

#include <stdint.h>

#include "core/error.h"
#include "core/rng.h"
#include "model/gpt.h"

typedef struct {
    float temperature; /* <= 0: greedy (argmax) */
    int top_k;         /* 0: no limit */
    float top_p;       /* >= 1: no limit */
    int n_vocab;       /* sample_generate draws only ids below this (the
                        * tokenizer's size; a model's embedding may have
                        * padding rows no token names); 0: every id */
} sample_params_t;

/* Draws one token id. logits (V) are overwritten; idx needs V ints. */
int sample_token(float *logits, int V, const sample_params_t *p, cu_rng_t *rng, int *idx);

/* Feeds prompt (n_prompt >= 1 tokens) and samples up to max_new tokens,
 * stopping early at stop_token (if >= 0, not included). Writes the new tokens
 * to out and their count to *n_out. The prompt plus continuation must fit in
 * model.max_seq_len; a longer prompt keeps its last tokens. */
int sample_generate(gpt_t *m, const int32_t *prompt, int n_prompt, int max_new,
                    const sample_params_t *p, cu_rng_t *rng, int stop_token, int32_t *out,
                    int *n_out, cu_error_t *err);

#endif
