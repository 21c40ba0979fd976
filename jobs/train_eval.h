/*
 * Evaluation during training: validation loss, perplexity and token accuracy
 * over a fixed set of held-out windows, sharded over the ranks like a
 * training batch; and samples generated from the configured prompts on
 * rank 0.
 */
#ifndef CU_JOBS_TRAIN_EVAL_H
#define CU_JOBS_TRAIN_EVAL_H

#include "core/error.h"
#include "core/rng.h"
#include "io/config.h"
#include "io/tokens.h"
#include "model/gpt.h"
#include "mpi/world.h"
#include "tokenizer/tokenizer.h"

typedef struct {
    double loss, ppl, acc;
    long tokens;
} eval_result_t;

/* The seeds of a job's token order: data_seed for the train source;
 * val_seed for a prepared dataset's val split, whose windows evaluation
 * walks in this order (codexctl eval of a run uses it too, so its first
 * eval.batches x train.global_batch_size windows are the job's). */
uint64_t eval_data_seed(const cu_config_t *cfg);
uint64_t eval_val_seed(const cu_config_t *cfg);

/* Evaluates the first eval.batches global batches of `val` (the same
 * windows every time) with every rank taking its slice. inputs/targets are
 * micro-batch buffers (B*T each), window a (T+1) buffer. Every rank gets the
 * reduced result. */
int eval_run(gpt_t *m, const token_source_t *val, const cu_config_t *cfg, const cu_world_t *w,
             int32_t *inputs, int32_t *targets, int32_t *window, eval_result_t *out,
             cu_error_t *err);

/* Continues prompt `i` of eval.prompts; writes the generated text (prompt
 * excluded, NUL-terminated, invalid UTF-8 kept as bytes) to a malloc'd
 * *text. Rank 0 only: the model's KV cache is not shared. */
int eval_sample(gpt_t *m, cu_tokenizer_t *tok, const cu_config_t *cfg, int i, cu_rng_t *rng,
                char **text, cu_error_t *err);

/* Code tasks for execution-based evaluation (eval.exec_tasks). */
typedef struct {
    char *name, *prompt, *test;
} exec_task_t;

typedef struct {
    exec_task_t *tasks;
    int n;
} exec_tasks_t;

/* Reads a JSON-lines file of {"name", "prompt", "test"} objects; errors name
 * file:line. Allocates (exec_tasks_free). */
int exec_tasks_load(const char *path, exec_tasks_t *out, cu_error_t *err);
void exec_tasks_free(exec_tasks_t *t);

typedef struct {
    int passed, timed_out, exit_code;
    double seconds;
} exec_outcome_t;

/* Completes each task's prompt with the model and runs prompt + completion
 * + "\n" + test in the sandbox (eval.exec_command on eval.exec_file);
 * a task passes when the command exits 0. outcomes has tasks->n entries.
 * *applied receives the sandbox layers in force. Rank 0 only. */
int eval_exec(gpt_t *m, cu_tokenizer_t *tok, const cu_config_t *cfg, const exec_tasks_t *tasks,
              cu_rng_t *rng, exec_outcome_t *outcomes, unsigned *applied, cu_error_t *err);

#endif
