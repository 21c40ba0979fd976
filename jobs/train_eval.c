/*
 * Evaluation during training (see train_eval.h).
 */
#include "jobs/train_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <stdio.h>

#include "model/sample.h"
#include "safety/sandbox.h"

uint64_t eval_data_seed(const cu_config_t *cfg) {
    return cu_hash64((uint64_t)cfg->job.seed, 0xda7a);
}

uint64_t eval_val_seed(const cu_config_t *cfg) {
    return cu_hash64(eval_data_seed(cfg), 0x7a1);
}

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

/* Continues `prompt`; the generated text (prompt excluded) in *text. */
static int complete(gpt_t *m, cu_tokenizer_t *tok, const cu_config_t *cfg, const char *prompt,
                    cu_rng_t *rng, char **text, cu_error_t *err) {
    *text = NULL;
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    int rc =
        tokenizer_encode_doc(tok, (const uint8_t *)prompt, strlen(prompt), &ids, &n, &cap, err);
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
    sample_params_t sp = {.temperature = cfg->eval.temperature,
                          .top_k = cfg->eval.top_k,
                          .top_p = cfg->eval.top_p,
                          .n_vocab = tokenizer_vocab_size(tok)};
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
            if (len) memcpy(*text, bytes, len);
            (*text)[len] = '\0';
        }
    }
    free(ids);
    free(out);
    free(bytes);
    return rc;
}

int eval_sample(gpt_t *m, cu_tokenizer_t *tok, const cu_config_t *cfg, int i, cu_rng_t *rng,
                char **text, cu_error_t *err) {
    return complete(m, tok, cfg, cfg->eval.prompts.items[i], rng, text, err);
}

/* ------------------------------------------------------ code execution */

static char *dup_field(json_t *o, const char *name) {
    const char *s = json_string_value(json_object_get(o, name));
    return s ? strdup(s) : NULL;
}

void exec_tasks_free(exec_tasks_t *t) {
    for (int i = 0; i < t->n; i++) {
        free(t->tasks[i].name);
        free(t->tasks[i].prompt);
        free(t->tasks[i].test);
    }
    free(t->tasks);
    t->tasks = NULL;
    t->n = 0;
}

int exec_tasks_load(const char *path, exec_tasks_t *out, cu_error_t *err) {
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "r");
    if (!f) return cu_error_set(err, CU_EINVAL, "eval.exec_tasks: cannot open %s", path);
    char *line = NULL;
    size_t cap = 0;
    int rc = CU_OK, lineno = 0, room = 0;
    while (rc == CU_OK && getline(&line, &cap, f) > 0) {
        lineno++;
        if (strspn(line, " \t\r\n") == strlen(line)) continue;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        exec_task_t t = {0};
        if (o && json_is_object(o)) {
            t.name = dup_field(o, "name");
            t.prompt = dup_field(o, "prompt");
            t.test = dup_field(o, "test");
        }
        json_decref(o);
        if (!t.prompt || !t.test) {
            rc = cu_error_set(err, CU_EINVAL,
                              "%s:%d: each line is a JSON object with string fields \"prompt\" "
                              "and \"test\" (and optionally \"name\")",
                              path, lineno);
        } else if (out->n == room) {
            room = room ? 2 * room : 16;
            exec_task_t *grown = realloc(out->tasks, sizeof(exec_task_t) * (size_t)room);
            if (!grown)
                rc = cu_error_set(err, CU_ENOMEM, "out of memory (%s)", path);
            else
                out->tasks = grown;
        }
        if (rc == CU_OK) {
            if (!t.name) {
                char buf[32];
                snprintf(buf, sizeof buf, "task %d", out->n + 1);
                t.name = strdup(buf);
            }
            out->tasks[out->n++] = t;
        } else {
            free(t.name), free(t.prompt), free(t.test);
        }
    }
    free(line);
    fclose(f);
    if (rc == CU_OK && out->n == 0)
        rc = cu_error_set(err, CU_EINVAL, "eval.exec_tasks: %s holds no task", path);
    if (rc) exec_tasks_free(out);
    return rc;
}

static int run_task(const cu_config_t *cfg, const exec_task_t *task, const char *completion,
                    exec_outcome_t *o, unsigned *applied, cu_error_t *err) {
    size_t n = strlen(task->prompt) + strlen(completion) + strlen(task->test) + 2;
    char *program = malloc(n);
    if (!program) return cu_error_set(err, CU_ENOMEM, "out of memory (eval.exec)");
    snprintf(program, n, "%s%s\n%s", task->prompt, completion, task->test);
    const char *argv[CU_CFG_MAX_LIST + 1];
    for (int i = 0; i < cfg->eval.exec_command.n; i++) argv[i] = cfg->eval.exec_command.items[i];
    argv[cfg->eval.exec_command.n] = NULL;
    sandbox_file_t file = {.name = cfg->eval.exec_file, .data = program, .len = strlen(program)};
    sandbox_opts_t opts;
    sandbox_opts_init(&opts);
    opts.argv = argv;
    opts.files = &file;
    opts.nfiles = 1;
    opts.timeout_s = cfg->eval.exec_timeout_s;
    opts.allow_rlimits_only = cfg->eval.exec_allow_rlimits_only;
    sandbox_result_t r;
    int rc = sandbox_run(&opts, &r, err);
    free(program);
    if (rc) return cu_error_prefix(err, "eval.exec task '%s'", task->name);
    o->passed = r.exited && r.exit_code == 0 && !r.timed_out;
    o->timed_out = r.timed_out;
    o->exit_code = r.exited ? r.exit_code : -1;
    o->seconds = r.wall_s;
    *applied = r.applied;
    sandbox_result_free(&r);
    return CU_OK;
}

int eval_exec(gpt_t *m, cu_tokenizer_t *tok, const cu_config_t *cfg, const exec_tasks_t *tasks,
              cu_rng_t *rng, exec_outcome_t *outcomes, unsigned *applied, cu_error_t *err) {
    for (int i = 0; i < tasks->n; i++) {
        char *completion;
        int rc = complete(m, tok, cfg, tasks->tasks[i].prompt, rng, &completion, err);
        if (rc == CU_OK)
            rc = run_task(cfg, &tasks->tasks[i], completion, &outcomes[i], applied, err);
        free(completion);
        if (rc) return rc;
    }
    return CU_OK;
}
