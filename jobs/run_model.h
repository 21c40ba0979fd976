/*
 * A trained run as a model to use: the trainable tensors of a run directory
 * (its final.h5, else its latest checkpoint) or of one such file, the job
 * config stored with them, the base model they adapt (a Hugging Face GPT-2
 * folder, a full fine-tuning final.h5, or GPT-2's random initialisation
 * rebuilt from the seed), and the tokenizer. `codexctl export`, `generate`
 * and `eval` share it; the adapter stays unmerged.
 */
#ifndef CU_JOBS_RUN_MODEL_H
#define CU_JOBS_RUN_MODEL_H

#include "core/error.h"
#include "io/config.h"
#include "model/gpt.h"
#include "tokenizer/tokenizer.h"

/* A run directory -> its final.h5 or latest checkpoint; a file -> itself. */
int run_resolve_input(const char *in, char *path, size_t cap, cu_error_t *err);

/* --which best|final of export, eval and generate: for "best" a run
 * directory becomes its best.h5 (the best evaluation's weights); "final"
 * or NULL leaves `in` as it is. CU_EINVAL naming the fix otherwise. */
int run_pick_which(const char *in, const char *which, char *out, size_t cap, cu_error_t *err);

/* The LoRA settings of a run's config; *rc reports an unknown target. */
lora_config_t run_lora_config(const cu_config_t *c, const char *origin, cu_error_t *err, int *rc);

typedef struct {
    gpt_t *model;
    int from_hf;
    char hf_dir[4096];
} run_base_t;

/* Loads the base weights into b->model's params: a HF folder, a full
 * fine-tuning final.h5, or GPT-2's random initialisation from the seed. */
int run_load_base(run_base_t *b, const char *base, const cu_config_t *c, cu_error_t *err);

/* The model's sizes and architecture from a config's model.* keys. */
int run_model_sizes(const cu_config_t *c, gpt_config_t *gc, cu_error_t *err);
/* The reverse, for a resolved config: model.arch and the sizes from gc. */
void run_model_sizes_to_config(const gpt_config_t *gc, cu_config_t *c);
/* The model's sizes: from a HF base's config.json when there is one, else
 * the run's config (vocab 0: the tokenizer's). */
int run_model_config(const cu_config_t *c, const char *base, gpt_config_t *gc, cu_error_t *err);

/* A PiSSA/OLoRA run's starting adapters A0, B0 from src's /lora_init, laid
 * out as m's adapter buffer; *lora0 is allocated (NULL on failure). */
int run_load_lora_init(gpt_t *m, const char *src, float **lora0, cu_error_t *err);
/* A PiSSA/OLoRA run (lora.init pissa|olora) trained its adapters against the
 * residual W - s B0 A0: reads B0, A0 from src's /lora_init and turns the
 * model's original base weights into that residual. */
int run_apply_lora_init(gpt_t *m, const char *src, cu_error_t *err);

typedef struct {
    cu_config_t cfg; /* the run's config (a HF folder: the defaults) */
    char src[4096];  /* the file the trainable tensors came from */
    gpt_t *model;    /* base + adapter, unmerged */
    cu_tokenizer_t *tok;
} run_model_t;

/* Opens a run directory, a final.h5/checkpoint, or a Hugging Face GPT-2
 * folder (whose vocab.json + merges.txt give the tokenizer). base, when not
 * NULL, replaces the run's model.init. Allocates (run_model_close). */
int run_model_open(const char *in, const char *base, run_model_t *rm, cu_error_t *err);
void run_model_close(run_model_t *rm);

#endif
