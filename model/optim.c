/*
 * AdamW, learning-rate schedules and gradient clipping (see optim.h).
 */
#include "model/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int sched_parse(const char *name) {
    if (strcmp(name, "cosine") == 0) return SCHED_COSINE;
    if (strcmp(name, "linear") == 0) return SCHED_LINEAR;
    if (strcmp(name, "constant") == 0) return SCHED_CONSTANT;
    return -1;
}

float sched_lr(const sched_t *s, long step) {
    if (step < s->warmup_steps) return s->lr * (float)(step + 1) / (float)s->warmup_steps;
    if (s->kind == SCHED_CONSTANT) return s->lr;
    long decay_steps = s->max_steps - s->warmup_steps;
    if (decay_steps <= 1) return s->lr;
    double frac = (double)(step - s->warmup_steps) / (double)(decay_steps - 1);
    if (frac > 1.0) frac = 1.0;
    double coeff = s->kind == SCHED_COSINE ? 0.5 * (1.0 + cos(M_PI * frac)) : 1.0 - frac;
    return (float)(s->min_lr + coeff * (s->lr - s->min_lr));
}

int adamw_init(adamw_t *opt, size_t n, float beta1, float beta2, float eps, float weight_decay,
               cu_error_t *err) {
    memset(opt, 0, sizeof *opt);
    opt->beta1 = beta1;
    opt->beta2 = beta2;
    opt->eps = eps;
    opt->weight_decay = weight_decay;
    opt->n = n;
    /* a rank whose slice is empty still holds valid pointers */
    size_t bytes = (n ? n : 1) * sizeof(float);
    opt->m = cu_alloc_aligned(bytes, err);
    opt->v = opt->m ? cu_alloc_aligned(bytes, err) : NULL;
    if (!opt->v) {
        adamw_free(opt);
        return err ? err->code : CU_ENOMEM;
    }
    return CU_OK;
}

void adamw_free(adamw_t *opt) {
    free(opt->m);
    free(opt->v);
    opt->m = opt->v = NULL;
}

static void adamw_span(adamw_t *o, float *p, const float *g, float *m, float *v, size_t n, float lr,
                       float decay, float c1, float c2) {
    float b1 = o->beta1, b2 = o->beta2, eps = o->eps;
    /* elementwise: the same result on any number of threads */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        float mhat = mi / c1, vhat = vi / c2;
        p[i] -= lr * (mhat / (sqrtf(vhat) + eps) + decay * p[i]);
    }
}

void adamw_step(adamw_t *opt, float *params, const float *grads, const gpt_tensor_t *tensors,
                int n_tensors, float lr) {
    adamw_step_range(opt, params, grads, tensors, n_tensors, lr, 0, (size_t)-1);
}

void adamw_step_range(adamw_t *opt, float *params, const float *grads, const gpt_tensor_t *tensors,
                      int n_tensors, float lr, size_t lo, size_t hi) {
    opt->t++;
    float c1 = 1.0f - powf(opt->beta1, (float)opt->t);
    float c2 = 1.0f - powf(opt->beta2, (float)opt->t);
    for (int i = 0; i < n_tensors; i++) {
        const gpt_tensor_t *t = &tensors[i];
        size_t n = gpt_tensor_numel(t);
        size_t a = t->offset > lo ? t->offset : lo;
        size_t b = t->offset + n < hi ? t->offset + n : hi;
        if (a >= b) continue;
        adamw_span(opt, params + a, grads + a, opt->m + (a - lo), opt->v + (a - lo), b - a, lr,
                   t->decay ? opt->weight_decay : 0.0f, c1, c2);
    }
}

double grad_global_norm(const float *grads, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)grads[i] * grads[i];
    return sqrt(s);
}

double grad_clip(float *grads, size_t n, float max_norm) {
    double norm = grad_global_norm(grads, n);
    grad_clip_range(grads, 0, n, norm, max_norm);
    return norm;
}

void grad_clip_range(float *grads, size_t lo, size_t hi, double norm, float max_norm) {
    if (max_norm > 0.0f && norm > max_norm) {
        float s = (float)(max_norm / (norm + 1e-6));
        for (size_t i = lo; i < hi; i++) grads[i] *= s;
    }
}
