/*
 * Sampling (see sample.h). Candidates are narrowed with a quickselect for
 * top-k before anything is sorted, so a 50k vocabulary costs little per token.
 */
#include "model/sample.h"

#include <math.h>
#include <stdlib.h>

/* Moves the k largest logits' indices to idx[0..k) (unordered). */
static void select_top_k(const float *z, int *idx, int n, int k) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        float pivot = z[idx[(lo + hi) / 2]];
        int i = lo, j = hi;
        while (i <= j) {
            while (z[idx[i]] > pivot) i++;
            while (z[idx[j]] < pivot) j--;
            if (i <= j) {
                int t = idx[i];
                idx[i++] = idx[j];
                idx[j--] = t;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            break;
    }
}

static int by_logit_desc(const void *a, const void *b, void *logits) {
    const float *z = logits;
    float x = z[*(const int *)a], y = z[*(const int *)b];
    return (x < y) - (x > y);
}

int sample_token(float *logits, int V, const sample_params_t *p, cu_rng_t *rng, int *idx) {
    if (p->temperature <= 0.0f) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (logits[i] > logits[best]) best = i;
        return best;
    }
    for (int i = 0; i < V; i++) idx[i] = i;
    int n = V;
    if (p->top_k > 0 && p->top_k < V) {
        select_top_k(logits, idx, V, p->top_k);
        n = p->top_k;
    }
    qsort_r(idx, (size_t)n, sizeof(int), by_logit_desc, logits);
    float mx = logits[idx[0]], sum = 0.0f;
    for (int i = 0; i < n; i++) {
        float e = expf((logits[idx[i]] - mx) / p->temperature);
        logits[idx[i]] = e;
        sum += e;
    }
    if (p->top_p > 0.0f && p->top_p < 1.0f) {
        /* keep the smallest prefix whose probability reaches top_p */
        float cum = 0.0f;
        int keep = n;
        for (int i = 0; i < n; i++) {
            cum += logits[idx[i]] / sum;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
        sum = 0.0f;
        for (int i = 0; i < n; i++) sum += logits[idx[i]];
    }
    float u = cu_rng_uniform(rng) * sum, acc = 0.0f;
    for (int i = 0; i < n; i++) {
        acc += logits[idx[i]];
        if (u < acc) return idx[i];
    }
    return idx[n - 1];
}

int sample_generate(gpt_t *m, const int32_t *prompt, int n_prompt, int max_new,
                    const sample_params_t *p, cu_rng_t *rng, int stop_token, int32_t *out,
                    int *n_out, cu_error_t *err) {
    *n_out = 0;
    int maxT = gpt_config(m)->max_seq_len, V = gpt_config(m)->vocab_size;
    if (n_prompt < 1)
        return cu_error_set(err, CU_EINVAL, "generation needs a prompt of at least one token");
    if (max_new > maxT - 1) max_new = maxT - 1;
    if (n_prompt + max_new > maxT) {
        prompt += n_prompt + max_new - maxT;
        n_prompt = maxT - max_new;
    }
    int rc = gpt_kv_reserve(m, n_prompt + max_new, err);
    if (rc) return rc;
    float *logits = malloc(sizeof(float) * (size_t)V);
    int *idx = malloc(sizeof(int) * (size_t)V);
    if (!logits || !idx) {
        free(logits);
        free(idx);
        return cu_error_set(err, CU_ENOMEM, "out of memory (sampling)");
    }
    gpt_kv_reset(m);
    for (int i = 0; i < n_prompt && rc == CU_OK; i++) rc = gpt_kv_step(m, prompt[i], logits, err);
    /* the first n_vocab logits are the ids a tokenizer can decode */
    int drawn = p->n_vocab > 0 && p->n_vocab < V ? p->n_vocab : V;
    for (int i = 0; i < max_new && rc == CU_OK; i++) {
        int tok = sample_token(logits, drawn, p, rng, idx);
        if (tok == stop_token) break;
        out[(*n_out)++] = tok;
        if (i + 1 < max_new) rc = gpt_kv_step(m, tok, logits, err);
    }
    free(logits);
    free(idx);
    return rc;
}
