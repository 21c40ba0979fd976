/*
 * Evaluation during training (see train_eval.h).
 */
#include "jobs/train_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/sample.h"

int eval_run(gpt_t *m, const token_source_t *val, const cu_config_t *cfg, const cu_world_t *w,
             int32_t *inputs, int32_t *targets, int32_t *window, eval_result_t *out,
             cu_error_t *err) {
    int T = cfg->data.seq_len, B = cfg->train.micro_batch_size;
    long G = cfg->train.global_batch_size, per_rank = G / w->size;
    long windows = 0;
    int rc = tokens_windows(val, T, &windows, err);
    if (rc) return rc;
    double sums[3] = {0.0, 0.0, 0.0}; /* loss, valid targets, correct */
    for (int batch = 0; batch < cfg->eval.batches; batch++) {
        for (long a = 0; a < per_rank / B; a++) {
            long g0 = batch * G + (long)w->rank * per_rank + a * B;
            for (int b = 0; b < B; b++) {
                /* evaluation walks the held-out windows in order, wrapping
                 * when there are fewer than the batches ask for */
                long g = (g0 + b) % (windows < 1 ? 1 : windows);
                if ((rc = tokens_sample(val, g, T, window, NULL, err))) return rc;
                memcpy(inputs + (long)b * T, window, sizeof(int32_t) * (size_t)T);
                memcpy(targets + (long)b * T, window + 1, sizeof(int32_t) * (size_t)T);
            }
            gpt_loss_t l;
            rc = gpt_forward(m, inputs, targets, B, T, 0, 1.0f, 0, &l, err);
            if (rc) return cu_error_prefix(err, "evaluation");
            sums[0] += l.loss_sum;
            sums[1] += (double)l.n_valid;
            sums[2] += (double)l.n_correct;
        }
    }
    if ((rc = world_sum_doubles(w, sums, 3, err))) return rc;
    out->loss = sums[1] > 0 ? sums[0] / sums[1] : NAN;
    out->ppl = exp(out->loss);
    out->acc = sums[1] > 0 ? sums[2] / sums[1] : NAN;
    out->tokens = (long)sums[1];
    return CU_OK;
}

int eval_sample(gpt_t *m, cu_tokenizer_t *tok, const cu_config_t *cfg, int i, cu_rng_t *rng,
                char **text, cu_error_t *err) {
    *text = NULL;
    const char *prompt = cfg->eval.prompts.items[i];
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc = tokenizer_encode(tok, (const uint8_t *)prompt, strlen(prompt), &ids, &n, &cap, err);
    if (rc == CU_OK && n == 0) {
        /* an empty prompt starts from end-of-text, as a new document would */
        free(ids);
        ids = malloc(sizeof(int32_t));
        if (!ids) return cu_error_set(err, CU_ENOMEM, "out of memory (sampling)");
        ids[0] = tokenizer_eot(tok);
        n = 1;
    }
    int max_new = cfg->eval.max_new_tokens;
    int32_t *out = rc == CU_OK ? malloc(sizeof(int32_t) * (size_t)max_new) : NULL;
    if (rc == CU_OK && !out) rc = cu_error_set(err, CU_ENOMEM, "out of memory (sampling)");
    int n_out = 0;
    sample_params_t sp = {
        .temperature = cfg->eval.temperature, .top_k = cfg->eval.top_k, .top_p = cfg->eval.top_p};
    if (rc == CU_OK)
        rc = sample_generate(m, ids, (int)n, max_new, &sp, rng, tokenizer_eot(tok), out, &n_out,
                             err);
    uint8_t *bytes = NULL;
    size_t len = 0, bcap = 0;
    if (rc == CU_OK) rc = tokenizer_decode(tok, out, (size_t)n_out, &bytes, &len, &bcap, err);
    if (rc == CU_OK) {
        *text = malloc(len + 1);
        if (!*text)
            rc = cu_error_set(err, CU_ENOMEM, "out of memory (sampling)");
        else {
            memcpy(*text, bytes, len);
            (*text)[len] = '\0';
        }
    }
    free(ids);
    free(out);
    free(bytes);
    return rc;
}
