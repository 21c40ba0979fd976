/*
 * The training job: ties config, tokenizer, token source, model, optimizer
 * and the MPI world into the loop that `codex-train` runs on every rank.
 */
#ifndef CU_JOBS_TRAIN_H
#define CU_JOBS_TRAIN_H

#include "core/error.h"
#include "io/config.h"
#include "mpi/world.h"

typedef struct {
    long steps;          /* optimizer steps taken */
    double first_loss;   /* mean loss of the first step */
    double final_loss;   /* mean loss of the last step */
    double tokens_per_s; /* over the whole run, all ranks */
    char output[4096];   /* where the trainable state was written */
} train_result_t;

/* Runs the job described by cfg (already validated for w->size ranks).
 * Every rank calls it; rank 0 prints progress and writes files. */
int train_run(const cu_config_t *cfg, const cu_world_t *w, train_result_t *res, cu_error_t *err);

#endif
