/*
 * Finite-difference gradient checks shared by the gradient tests; see
 * gradcheck.h.
 */
#include "gradcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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

typedef struct {
    gpt_t *m;
    int32_t inp[2 * GRADCHECK_T], tgt[2 * GRADCHECK_T];
} model_ctx;

static double model_loss(void *p) {
    model_ctx *c = p;
    gpt_loss_t l;
    /* train=1 with a fixed key keeps the dropout masks of the analytic pass */
    gpt_forward(c->m, c->inp, c->tgt, 2, GRADCHECK_T, 1, 1.0f, 99, &l, NULL);
    return l.loss_sum;
}

void gradcheck_model(cu_rng_t *rng, const char *what, gpt_t *m) {
    uint64_t V = (uint64_t)gpt_config(m)->vocab_size;
    model_ctx c = {.m = m};
    for (int i = 0; i < 2 * GRADCHECK_T; i++) {
        c.inp[i] = (int32_t)cu_rng_below(rng, V);
        c.tgt[i] = i == 4 ? -1 : (int32_t)cu_rng_below(rng, V);
    }
    gpt_zero_grad(m);
    model_loss(&c);
    gpt_backward(m);
    size_t n;
    float *p = gpt_trainable(m, &n);
    float *ana = malloc(sizeof(float) * n);
    memcpy(ana, gpt_grads(m, NULL), sizeof(float) * n);
    gradcheck_fd(rng, what, p, (long)n, ana, model_loss, &c, 400, 1e-2f, 3e-2);
    free(ana);
}

typedef struct {
    const float *grads;
    float *snapshot;
    int *times;
} ready_probe;

static void on_ready(void *ctx, size_t offset, size_t count) {
    ready_probe *p = ctx;
    for (size_t i = offset; i < offset + count; i++) {
        p->snapshot[i] = p->grads[i];
        p->times[i]++;
    }
}

void gradcheck_ready_hook(const char *what, gpt_t *m) {
    size_t n;
    float *g = gpt_grads(m, &n);
    ready_probe p = {
        .grads = g, .snapshot = calloc(n, sizeof(float)), .times = calloc(n, sizeof(int))};
    gpt_set_grad_ready(m, on_ready, &p);
    int V = gpt_config(m)->vocab_size;
    int32_t inp[2 * GRADCHECK_T], tgt[2 * GRADCHECK_T];
    for (int i = 0; i < 2 * GRADCHECK_T; i++) inp[i] = i % V, tgt[i] = (i * 7) % V;
    gpt_zero_grad(m);
    gpt_forward(m, inp, tgt, 2, GRADCHECK_T, 1, 1.0f, 0, NULL, NULL);
    gpt_backward(m);
    gpt_set_grad_ready(m, NULL, NULL);
    int once = 1, final = 1;
    for (size_t i = 0; i < n; i++) {
        once &= p.times[i] == 1;
        final &= p.snapshot[i] == g[i];
    }
    CHECK_MSG(once, "%s: some gradient range reported not exactly once", what);
    CHECK_MSG(final, "%s: some range reported before its gradient was final", what);
    free(p.snapshot), free(p.times);
}

void gradcheck_kv_cache(const char *what, gpt_t *m) {
    int T = GRADCHECK_T, V = gpt_config(m)->vocab_size;
    int32_t inp[GRADCHECK_T];
    for (int t = 0; t < T; t++) inp[t] = (t * 5 + 3) % V;
    float *full = malloc(sizeof(float) * (size_t)(T * V)), *step = malloc(sizeof(float) * V);
    CHECK(gpt_forward(m, inp, NULL, 1, T, 0, 1.0f, 0, NULL, NULL) == CU_OK);
    gpt_logits(m, 0, T, full);
    CHECK(gpt_kv_reserve(m, T, NULL) == CU_OK);
    gpt_kv_reset(m);
    double maxdiff = 0.0;
    for (int t = 0; t < T; t++) {
        CHECK(gpt_kv_step(m, inp[t], step, NULL) == CU_OK);
        for (int v = 0; v < V; v++) maxdiff = fmax(maxdiff, fabs(step[v] - full[t * V + v]));
    }
    CHECK_MSG(maxdiff < 1e-4, "%s: KV cache logits differ by %g", what, maxdiff);
    cu_error_t err;
    CHECK(gpt_kv_step(m, 1, step, &err) == CU_EINVAL); /* cache full */
    free(full), free(step);
}

void gradcheck_zero_b_identity(gpt_t *base, unsigned targets) {
    gpt_config_t cfg = *gpt_config(base);
    lora_config_t lc = {.enabled = 1, .targets = targets, .r = 2, .alpha = 4.0f};
    gpt_t *m;
    CHECK(gpt_create(&m, &cfg, &lc, NULL) == CU_OK);
    size_t n;
    float *dst = gpt_params(m, &n);
    memcpy(dst, gpt_params(base, NULL), sizeof(float) * n);
    gpt_init_lora(m, 3);
    int V = cfg.vocab_size;
    int32_t inp[GRADCHECK_T], tgt[GRADCHECK_T];
    for (int t = 0; t < GRADCHECK_T; t++) inp[t] = (t + 1) % V, tgt[t] = (t + 2) % V;
    gpt_loss_t a, b;
    gpt_forward(base, inp, tgt, 1, GRADCHECK_T, 0, 1.0f, 0, &a, NULL);
    gpt_forward(m, inp, tgt, 1, GRADCHECK_T, 0, 1.0f, 0, &b, NULL);
    CHECK_REL(a.loss_sum, b.loss_sum, 1e-6, 1e-6);
    gpt_free(m);
}
