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
    long steps;             /* optimizer steps taken */
    double first_loss;      /* mean loss of the first step */
    double final_loss;      /* mean loss of the last step */
    double tokens_per_s;    /* over the whole run, all ranks */
    char output[4096];      /* where the trainable state was written */
    char best_output[4096]; /* the best evaluation's weights (best.h5), "" when none */
    int already_completed;  /* the run had completed before: nothing was done */
    /* --check: every problem with the input files, one "\n  - " line each */
    char problems[8192];
    int n_problems;
} train_result_t;

#include <signal.h>

typedef struct {
    /* set (by a signal handler) to ask the job to checkpoint and stop after
     * the current step; may be NULL */
    const volatile sig_atomic_t *stop;
    /* > 0: stop as if pre-empted after this many steps of this run */
    long stop_after;
    /* replace whatever run the directory holds instead of resuming it */
    int overwrite;
    /* pre-flight: open every input as the job would (data, tokenizer,
     * model.init, lora.init_from), check shapes and the validation split,
     * then stop without touching the run directory */
    int check_only;
} train_options_t;

/* Runs the job described by cfg (already validated for w->size ranks).
 * Every rank calls it; rank 0 prints progress and writes the job directory.
 * Returns CU_PREEMPTED when stopped by a request, with a checkpoint saved. */
int train_run(const cu_config_t *cfg, const cu_world_t *w, const train_options_t *opts,
              train_result_t *res, cu_error_t *err);

#endif
