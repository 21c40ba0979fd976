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

#endif
