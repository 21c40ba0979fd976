/*
 * Finite-difference gradient checks shared by the gradient tests; see
 * gradcheck.h.
 */
#include "gradcheck.h"

#include <stdlib.h>

#include "harness.h"

float *gradcheck_randn(cu_rng_t *rng, long n, float s) {
    float *p = malloc(sizeof(float) * (size_t)n);
    for (long i = 0; i < n; i++) p[i] = s * cu_rng_normal(rng);
    return p;
}

double gradcheck_dot(const float *a, const float *b, long n) {
    double s = 0.0;
    for (long i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* A float32 central difference trades truncation error (large eps) against
 * rounding (small eps), so each coordinate keeps the best of three step sizes:
 * a correct gradient agrees at one of them, a wrong one at none. */
void gradcheck_fd(cu_rng_t *rng, const char *what, float *x, long n, const float *ana,
                  gradcheck_loss_fn f, void *ctx, int samples, float eps, double tol) {
    long worst = -1;
    double worst_rel = 0.0;
    for (int s = 0; s < samples; s++) {
        long i = samples >= n ? s : (long)cu_rng_below(rng, (uint64_t)n);
        if (i >= n) break;
        double best = INFINITY;
        for (float e = eps; e > eps / 20.0f; e /= 3.0f) {
            float old = x[i];
            x[i] = old + e;
            double lp = f(ctx);
            x[i] = old - e;
            double lm = f(ctx);
            x[i] = old;
            double num = (lp - lm) / (2.0 * e);
            double scale = fmax(fmax(fabs(num), fabs(ana[i])), 1e-2);
            best = fmin(best, fabs(num - ana[i]) / scale);
        }
        if (best > worst_rel) {
            worst_rel = best;
            worst = i;
        }
    }
    CHECK_MSG(worst_rel <= tol, "%s: worst relative error %.3g at %ld (tolerance %.3g)", what,
              worst_rel, worst, tol);
}
