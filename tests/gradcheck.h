/*
 * Finite-difference gradient checks shared by test_grad.c (GPT-2 layers) and
 * test_grad_llama.c (Llama layers). A check builds a scalar loss
 * L = sum(out * g) for a fixed random g, takes the analytic gradient from the
 * backward, and compares it with a central difference of L at a sample of
 * coordinates. The caller owns the rng, so each test keeps its own seed.
 */
#ifndef CU_TESTS_GRADCHECK_H
#define CU_TESTS_GRADCHECK_H

#include "core/rng.h"
#include "model/gpt.h"

/* Allocates n floats drawn from N(0, s^2); the caller frees them. */
float *gradcheck_randn(cu_rng_t *rng, long n, float s);

/* sum(a * b), accumulated in double. */
double gradcheck_dot(const float *a, const float *b, long n);

typedef double (*gradcheck_loss_fn)(void *ctx);

/* Compares the analytic gradient `ana` of x (n values) with central
 * differences of f(ctx) at `samples` coordinates (all of them when samples >=
 * n, else drawn from rng); records a CHECK failure named `what` when the worst
 * relative error exceeds tol. */
void gradcheck_fd(cu_rng_t *rng, const char *what, float *x, long n, const float *ana,
                  gradcheck_loss_fn f, void *ctx, int samples, float eps, double tol);

/* Whole-model checks that run on any model the caller built (GPT-2 or
 * Llama), with inputs drawn from its vocabulary: two sequences of
 * GRADCHECK_T tokens, so the model's max_seq_len must be at least that. */
#define GRADCHECK_T 9

/* Every trainable value's gradient against central differences of the loss
 * (train mode with a fixed dropout key; one target masked with -1). */
void gradcheck_model(cu_rng_t *rng, const char *what, gpt_t *m);

/* The grad-ready hook reports every float of the gradient buffer exactly
 * once, and only when its value is final. */
void gradcheck_ready_hook(const char *what, gpt_t *m);

/* The KV-cache path gives the batched forward's logits, and refuses a step
 * past the reserved length. */
void gradcheck_kv_cache(const char *what, gpt_t *m);

/* A LoRA model on `targets` with B = 0 and the base's weights gives the base
 * model's loss. */
void gradcheck_zero_b_identity(gpt_t *base, unsigned targets);

#endif
