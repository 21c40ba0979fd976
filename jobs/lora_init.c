/*
 * PiSSA and OLoRA initialisation (see lora_init.h).
 *
 * The adapter table pairs each lora_A (r, in) with the lora_B (out, r) that
 * follows it, named h.<l>.<module>.lora_A / .lora_B; the base weight is
 * h.<l>.<module>.weight (out, in), row-major. The factorisations work on
 * column-major doubles, so W is copied as its (out, in) column-major form.
 */
#include "jobs/lora_init.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int lora_init_from_weights(const char *init) {
    return init && (!strcmp(init, "pissa") || !strcmp(init, "olora"));
}

/* The base tensor an adapter pair adapts: "h.3.mlp.c_fc.lora_A" -> "h.3.mlp.c_fc.weight". */
static const gpt_tensor_t *base_of(const gpt_tensor_t *a, const gpt_tensor_t *pt, int np) {
    char name[64];
    size_t len = strlen(a->name);
    if (len < 7 || strcmp(a->name + len - 7, ".lora_A") != 0) return NULL;
    snprintf(name, sizeof name, "%.*s.weight", (int)(len - 7), a->name);
    for (int i = 0; i < np; i++)
        if (!strcmp(pt[i].name, name)) return &pt[i];
    return NULL;
}

/* One adapter pair from W (out, in): A (r, in), B (out, r), row-major. */
static int factorise_one(cu_grid_t *g, const char *init, const float *w, int out, int in, int r,
                         double scale, float *a, float *b, cu_error_t *err) {
    int k = out < in ? out : in;
    double *wc = malloc(sizeof(double) * (size_t)out * in);
    double *left = malloc(sizeof(double) * (size_t)out * k); /* U or Q (out, k) */
    double *right = malloc(sizeof(double) * (size_t)k * in); /* V^T or R (k, in) */
    double *s = malloc(sizeof(double) * (size_t)k);
    int rc = CU_OK;
    if (!wc || !left || !right || !s) rc = cu_error_set(err, CU_ENOMEM, "out of memory (%s)", init);
    /* every rank reaches the collective below, even after a local failure */
    if (rc == CU_OK)
        for (int i = 0; i < out; i++)
            for (int j = 0; j < in; j++) wc[i + (size_t)j * out] = w[(size_t)i * in + j];
    if (!strcmp(init, "pissa")) {
        rc = rc ? rc : grid_svd(g, wc, out, in, left, s, right, err);
        for (int t = 0; rc == CU_OK && t < r; t++) {
            double f = sqrt(s[t] / scale);
            for (int j = 0; j < in; j++)
                a[(size_t)t * in + j] = (float)(f * right[t + (size_t)j * k]);
            for (int i = 0; i < out; i++)
                b[(size_t)i * r + t] = (float)(f * left[i + (size_t)t * out]);
        }
    } else {
        rc = rc ? rc : grid_qr(g, wc, out, in, left, right, err);
        for (int t = 0; rc == CU_OK && t < r; t++) {
            for (int j = 0; j < in; j++) a[(size_t)t * in + j] = (float)right[t + (size_t)j * k];
            for (int i = 0; i < out; i++) b[(size_t)i * r + t] = (float)left[i + (size_t)t * out];
        }
    }
    free(wc);
    free(left);
    free(right);
    free(s);
    return rc;
}

int lora_init_factorise(gpt_t *m, cu_grid_t *g, const char *init, cu_error_t *err) {
    int nl, np;
    const gpt_tensor_t *lt = gpt_lora_tensors(m, &nl);
    const gpt_tensor_t *pt = gpt_param_tensors(m, &np);
    float *lora = gpt_lora_params(m, NULL), *params = gpt_params(m, NULL);
    double scale = gpt_lora_scale(m);
    if (!lora) return cu_error_set(err, CU_EINVAL, "lora.init: %s needs lora.enabled: true", init);
    for (int i = 0; i + 1 < nl; i += 2) {
        const gpt_tensor_t *ta = &lt[i], *tb = &lt[i + 1], *tw = base_of(ta, pt, np);
        if (!tw) return cu_error_set(err, CU_EINTERNAL, "no base weight for %s", ta->name);
        int out = tw->shape[0], in = tw->shape[1], r = ta->shape[0];
        if (r > out || r > in)
            return cu_error_set(err, CU_EINVAL,
                                "lora.r %d exceeds the rank of %s (%d x %d): %s needs r <= %d", r,
                                tw->name, out, in, init, out < in ? out : in);
        int rc = factorise_one(g, init, params + tw->offset, out, in, r, scale, lora + ta->offset,
                               lora + tb->offset, err);
        if (rc) return cu_error_prefix(err, "lora.init %s of %s", init, tw->name);
    }
    return CU_OK;
}

int lora_fold(gpt_t *m, const float *lora, double scale, cu_error_t *err) {
    int nl, np;
    const gpt_tensor_t *lt = gpt_lora_tensors(m, &nl);
    const gpt_tensor_t *pt = gpt_param_tensors(m, &np);
    float *params = gpt_params(m, NULL);
    for (int i = 0; i + 1 < nl; i += 2) {
        const gpt_tensor_t *ta = &lt[i], *tb = &lt[i + 1], *tw = base_of(ta, pt, np);
        if (!tw) continue;
        int out = tw->shape[0], in = tw->shape[1], r = ta->shape[0];
        const float *a = lora + ta->offset, *b = lora + tb->offset;
        float *w = params + tw->offset;
        double *row = malloc(sizeof(double) * (size_t)in);
        if (!row) return cu_error_set(err, CU_ENOMEM, "out of memory (folding into %s)", tw->name);
        for (int o = 0; o < out; o++) {
            /* each element sums its r products in order t = 0..r-1 */
            memset(row, 0, sizeof(double) * (size_t)in);
            for (int t = 0; t < r; t++) {
                double bt = b[(size_t)o * r + t];
                const float *at = a + (size_t)t * in;
                for (int j = 0; j < in; j++) row[j] += bt * (double)at[j];
            }
            for (int j = 0; j < in; j++)
                w[(size_t)o * in + j] = (float)((double)w[(size_t)o * in + j] + scale * row[j]);
        }
        free(row);
    }
    return CU_OK;
}
