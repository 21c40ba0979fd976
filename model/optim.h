/*
 * AdamW (decoupled weight decay, bias correction), the learning-rate
 * schedule (linear warmup, then cosine, linear or constant decay to min_lr)
 * and global-norm gradient clipping. The optimizer's moments are two
 * buffers parallel to the trainable parameters, so checkpointing them is
 * two spans.
 */
#ifndef CU_MODEL_OPTIM_H
#define CU_MODEL_OPTIM_H

#include <stddef.h>

#include "core/error.h"
#include "model/gpt.h"

typedef enum { SCHED_COSINE = 0, SCHED_LINEAR = 1, SCHED_CONSTANT = 2 } sched_kind_t;

typedef struct {
    float lr, min_lr;
    long warmup_steps, max_steps;
    sched_kind_t kind;
} sched_t;

/* "cosine" | "linear" | "constant" -> kind; returns -1 for an unknown name. */
int sched_parse(const char *name);
/* The learning rate of optimizer step `step` (0-based). */
float sched_lr(const sched_t *s, long step);

typedef struct {
    float beta1, beta2, eps, weight_decay;
    size_t n;
    float *m, *v; /* first and second moments, (n) each */
    long t;       /* steps taken, for bias correction */
} adamw_t;

/* Allocates zeroed moments for n parameters. */
int adamw_init(adamw_t *opt, size_t n, float beta1, float beta2, float eps, float weight_decay,
               cu_error_t *err);
void adamw_free(adamw_t *opt);

/* One step over all parameters. Weight decay applies only to tensors whose
 * `decay` flag is set (matrices); tensors describe the parameter buffer. */
void adamw_step(adamw_t *opt, float *params, const float *grads, const gpt_tensor_t *tensors,
                int n_tensors, float lr);
/* The same step over params[lo, hi) only, with moments for that slice
 * (opt->m[i - lo]): a sharded optimizer's part (train.shard_optimizer).
 * Element by element the same arithmetic as adamw_step. */
void adamw_step_range(adamw_t *opt, float *params, const float *grads, const gpt_tensor_t *tensors,
                      int n_tensors, float lr, size_t lo, size_t hi);

/* The global L2 norm of grads, in double precision. */
double grad_global_norm(const float *grads, size_t n);
/* Scales grads so their norm is at most max_norm (no-op when max_norm <= 0
 * or the norm is already within it). Returns the norm before clipping. */
double grad_clip(float *grads, size_t n, float max_norm);
/* grad_clip's scaling of grads[lo, hi) for a norm computed elsewhere. */
void grad_clip_range(float *grads, size_t lo, size_t hi, double norm, float max_norm);

#endif
