/*
 * A run's fingerprint: what makes its checkpoints resumable by a job
 * (docs/formats.md). Sizes of every tensor (architecture and shapes), the
 * LoRA settings, the tokenizer, the data and the base weights, one
 * "key=value" line each, in checkpoints and final.h5 as the attribute
 * "fingerprint". A resume onto a run whose fingerprint differs is refused;
 * keys outside it (train.lr, train.max_steps, eval.*) may change and are
 * reported.
 */
#ifndef CU_JOBS_FINGERPRINT_H
#define CU_JOBS_FINGERPRINT_H

#include <stddef.h>

#include "core/error.h"
#include "io/config.h"

typedef struct {
    const cu_config_t *cfg; /* resolved: a Hugging Face base's sizes filled in */
    const char *tokenizer_sha256;
    const char *data_sha256; /* "" for data.source random */
    const char *base_sha256; /* "" for model.init random */
} fingerprint_input_t;

/* The fingerprint text. Allocates; free() it. NULL when out of memory. */
char *fingerprint_make(const fingerprint_input_t *in);

/* How many keys differ between two fingerprints; describes them in out as
 * "lora.r: 8 -> 4; data: 3fa9... -> 81c2..." (truncated to cap). */
int fingerprint_diff(const char *old_fp, const char *new_fp, char *out, size_t cap);

#endif
