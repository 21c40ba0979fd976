/*
 * The training loop (see train.h).
 *
 * One optimizer step consumes one global batch of train.global_batch_size
 * sequences, samples step*G .. step*G+G-1 of the token source. Rank r takes
 * the contiguous slice [r*G/W, (r+1)*G/W) and walks it in micro-batches,
 * accumulating gradients scaled by 1/(tokens in the global batch), so the
 * summed gradient is the mean over the global batch however it is split.
 * Gradients are then summed over ranks and every rank applies the same
 * clipped AdamW step.
 */
#include "jobs/train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/rng.h"
#include "core/timer.h"
#include "io/tensor_h5.h"
#include "io/tokenizer_files.h"
#include "io/tokens.h"
#include "jobs/progress.h"
#include "model/blas.h"
#include "model/gpt.h"
#include "model/optim.h"

typedef struct {
    const cu_config_t *cfg;
    const cu_world_t *w;
    cu_tokenizer_t *tok;
    token_source_t *src;
    gpt_t *model;
    adamw_t opt;
    sched_t sched;
    int T, B, accum, per_rank;
    int32_t *window, *inputs, *targets;
    char run_dir[4096];
} trainer_t;

/* mkdir -p */
static int make_dirs(const char *path, cu_error_t *err) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return cu_error_set(err, CU_EIO, "cannot create directory %s: %s", buf,
                                strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return cu_error_set(err, CU_EIO, "cannot create directory %s: %s", buf, strerror(errno));
    return CU_OK;
}

static int write_text(const char *path, const char *text, cu_error_t *err) {
    char tmp[4200];
    if (cu_format(tmp, sizeof tmp, err, "%s.tmp", path)) return err->code;
    FILE *f = fopen(tmp, "w");
    if (!f) return cu_error_set(err, CU_EIO, "cannot write %s: %s", tmp, strerror(errno));
    int bad = fputs(text, f) < 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0)
        return cu_error_set(err, CU_EIO, "cannot write %s: %s", path, strerror(errno));
    return CU_OK;
}

static lora_config_t lora_from_config(const cu_config_t *cfg, cu_error_t *err, int *rc) {
    lora_config_t lc = {.enabled = cfg->lora.enabled,
                        .r = cfg->lora.r,
                        .alpha = cfg->lora.alpha,
                        .rslora = cfg->lora.rslora,
                        .dropout = cfg->lora.dropout,
                        .init_gaussian = strcmp(cfg->lora.init, "gaussian") == 0};
    *rc = CU_OK;
    for (int i = 0; i < cfg->lora.targets.n; i++) {
        unsigned bits = lora_target_bits(cfg->lora.targets.items[i]);
        if (!bits)
            *rc = cu_error_set(err, CU_EINVAL, "lora.targets: unknown target '%s'",
                               cfg->lora.targets.items[i]);
        lc.targets |= bits;
    }
    return lc;
}

static int open_source(trainer_t *t, int vocab, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    uint64_t seed = cu_hash64((uint64_t)c->job.seed, 0xda7a);
    if (strcmp(c->data.source, "random") == 0) return tokens_open_random(&t->src, vocab, seed, err);
    if (strcmp(c->data.source, "text") == 0) {
        int rc = tokens_open_text(&t->src, c->data.path, t->tok, seed, err);
        return rc ? cu_error_prefix(err, "data.path") : rc;
    }
    if (strcmp(c->data.source, "tokens") == 0) {
        int bytes = strcmp(c->data.token_dtype, "uint32") == 0 ? 4 : 2;
        int rc = tokens_open_file(&t->src, c->data.path, bytes, vocab, seed, err);
        return rc ? cu_error_prefix(err, "data.path") : rc;
    }
    return cu_error_set(err, CU_EINVAL, "data.source: unknown source '%s'", c->data.source);
}

/* Base weights: GPT-2's random initialisation, or every weight from the
 * final.h5 of a full fine-tuning run (model.init: path). */
static int init_base(trainer_t *t, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    if (strcmp(c->model.init, "random") == 0) {
        gpt_init_weights(t->model, (uint64_t)c->job.seed, c->model.init_std);
        return CU_OK;
    }
    int n;
    const gpt_tensor_t *tensors = gpt_param_tensors(t->model, &n);
    int rc = h5_load_tensors(c->model.init, gpt_params(t->model, NULL), tensors, n, err);
    if (rc)
        return cu_error_prefix(err, "model.init (a final.h5 of a run with lora.enabled: false, "
                                    "whose model.* sizes match this job's)");
    return CU_OK;
}

static int setup(trainer_t *t, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    blas_set_threads(c->train.threads);
    int rc = io_tokenizer_load(c->tokenizer.kind, c->tokenizer.path, &t->tok, err);
    if (rc) return cu_error_prefix(err, "tokenizer");
    int vocab = c->model.vocab_size ? c->model.vocab_size : tokenizer_vocab_size(t->tok);
    if (vocab < tokenizer_vocab_size(t->tok) && strcmp(c->data.source, "random") != 0)
        return cu_error_set(err, CU_EINVAL,
                            "model.vocab_size %d is smaller than the tokenizer's %d tokens", vocab,
                            tokenizer_vocab_size(t->tok));
    gpt_config_t gc = {.n_layer = c->model.n_layer,
                       .n_head = c->model.n_head,
                       .n_embd = c->model.n_embd,
                       .vocab_size = vocab,
                       .max_seq_len = c->model.max_seq_len};
    lora_config_t lc = lora_from_config(c, err, &rc);
    if (rc) return rc;
    if ((rc = gpt_create(&t->model, &gc, &lc, err))) return cu_error_prefix(err, "model");
    if ((rc = init_base(t, err))) return rc;
    gpt_init_lora(t->model, cu_hash64((uint64_t)c->job.seed, 0x10a));
    size_t n;
    gpt_trainable(t->model, &n);

    if ((rc = open_source(t, vocab, err))) return rc;
    long windows;
    if ((rc = tokens_windows(t->src, c->data.seq_len, &windows, err))) return rc;

    t->T = c->data.seq_len;
    t->B = c->train.micro_batch_size;
    t->per_rank = c->train.global_batch_size / t->w->size;
    t->accum = t->per_rank / t->B;
    if ((rc = gpt_reserve(t->model, t->B, t->T, err))) return rc;
    if ((rc = adamw_init(&t->opt, n, c->train.beta1, c->train.beta2, c->train.eps,
                         c->train.weight_decay, err)))
        return rc;
    t->sched = (sched_t){.lr = c->train.lr,
                         .min_lr = c->train.min_lr,
                         .warmup_steps = c->train.warmup_steps,
                         .max_steps = c->train.max_steps,
                         .kind = sched_parse(c->train.schedule)};
    t->window = malloc(sizeof(int32_t) * (size_t)(t->T + 1));
    t->inputs = malloc(sizeof(int32_t) * (size_t)t->B * t->T);
    t->targets = malloc(sizeof(int32_t) * (size_t)t->B * t->T);
    if (!t->window || !t->inputs || !t->targets)
        return cu_error_set(err, CU_ENOMEM, "out of memory (batch buffers)");

    if ((rc = cu_format(t->run_dir, sizeof t->run_dir, err, "%s/%s", c->job.runs_dir, c->job.name)))
        return cu_error_prefix(err, "job.runs_dir/job.name");
    if (t->w->rank == 0) {
        if ((rc = make_dirs(t->run_dir, err))) return rc;
        char path[4200];
        if ((rc = cu_format(path, sizeof path, err, "%s/job.yaml", t->run_dir))) return rc;
        char *yaml = config_to_yaml(c);
        rc = yaml ? write_text(path, yaml, err) : cu_error_set(err, CU_ENOMEM, "out of memory");
        free(yaml);
        if (rc) return rc;
    }
    return CU_OK;
}

static void teardown(trainer_t *t) {
    gpt_free(t->model);
    tokens_free(t->src);
    tokenizer_free(t->tok);
    adamw_free(&t->opt);
    free(t->window);
    free(t->inputs);
    free(t->targets);
}

/* Fills inputs/targets with the micro-batch starting at global sample g0. */
static void load_micro_batch(trainer_t *t, long g0) {
    for (int b = 0; b < t->B; b++) {
        tokens_sample(t->src, g0 + b, t->T, t->window, NULL);
        memcpy(t->inputs + (long)b * t->T, t->window, sizeof(int32_t) * (size_t)t->T);
        memcpy(t->targets + (long)b * t->T, t->window + 1, sizeof(int32_t) * (size_t)t->T);
    }
}

typedef struct {
    double loss, grad_norm;
    float lr;
} step_stats_t;

/* One optimizer step: forward/backward over this rank's micro-batches, the
 * gradient sum over ranks, clipping and AdamW. */
static int train_step(trainer_t *t, long step, step_stats_t *st, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    long G = c->train.global_batch_size;
    /* every target of a window is a real next token, so the global batch
     * holds exactly G*T of them */
    float grad_scale = 1.0f / (float)(G * t->T);
    uint64_t key = cu_hash64((uint64_t)c->job.seed ^ 0xd709, (uint64_t)step);
    size_t n;
    float *params = gpt_trainable(t->model, &n);
    float *grads = gpt_grads(t->model, NULL);
    gpt_zero_grad(t->model);
    double sums[2] = {0.0, 0.0}; /* loss sum, valid targets */
    for (int a = 0; a < t->accum; a++) {
        long g0 = step * G + (long)t->w->rank * t->per_rank + (long)a * t->B;
        load_micro_batch(t, g0);
        gpt_set_dropout_row0(t->model, (uint64_t)(g0 - step * G) * (uint64_t)t->T);
        gpt_loss_t l;
        int rc =
            gpt_forward(t->model, t->inputs, t->targets, t->B, t->T, 1, grad_scale, key, &l, err);
        if (rc) return cu_error_prefix(err, "step %ld", step);
        gpt_backward(t->model);
        sums[0] += l.loss_sum;
        sums[1] += (double)l.n_valid;
    }
    int rc = world_sum_floats(t->w, grads, n, err);
    if (rc == CU_OK) rc = world_sum_doubles(t->w, sums, 2, err);
    if (rc) return rc;
    st->loss = sums[0] / sums[1];
    if (!isfinite(st->loss))
        return cu_error_set(
            err, CU_EINTERNAL,
            "loss became %g at step %ld; lower train.lr or raise train.warmup_steps", st->loss,
            step);
    st->grad_norm = grad_clip(grads, n, c->train.grad_clip);
    st->lr = sched_lr(&t->sched, step);
    int nt;
    const gpt_tensor_t *tensors = gpt_trainable_tensors(t->model, &nt);
    adamw_step(&t->opt, params, grads, tensors, nt, st->lr);
    return CU_OK;
}

static int save_final(trainer_t *t, long steps, train_result_t *res, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    int rc = c->train.output[0]
                 ? cu_format(res->output, sizeof res->output, err, "%s", c->train.output)
                 : cu_format(res->output, sizeof res->output, err, "%s/final.h5", t->run_dir);
    if (rc) return rc;
    if (t->w->rank != 0) return CU_OK;
    char *yaml = config_to_yaml(c);
    char step_s[32];
    snprintf(step_s, sizeof step_s, "%ld", steps);
    h5_attr_t attrs[] = {{"config", yaml ? yaml : ""},
                         {"step", step_s},
                         {"trainable", c->lora.enabled ? "lora" : "full"},
                         {"tokenizer_sha256", tokenizer_hash(t->tok)},
                         {"code_version", CU_GIT_DESCRIBE}};
    int nt;
    const gpt_tensor_t *tensors = gpt_trainable_tensors(t->model, &nt);
    rc = h5_save_tensors(res->output, gpt_trainable(t->model, NULL), tensors, nt, attrs,
                         (int)(sizeof attrs / sizeof attrs[0]), err);
    free(yaml);
    return rc;
}

static void print_header(const trainer_t *t) {
    const cu_config_t *c = t->cfg;
    size_t n_params, n_train;
    gpt_params(t->model, &n_params);
    gpt_trainable(t->model, &n_train);
    printf("codex-train %s | %d rank%s x %d thread%s | BLAS %s\n", CU_GIT_DESCRIBE, t->w->size,
           t->w->size == 1 ? "" : "s", c->train.threads, c->train.threads == 1 ? "" : "s",
           blas_core_name());
    char note[256];
    if (blas_reexec_note(note, sizeof note)) printf("%s\n", note);
    printf("model gpt2 L=%d H=%d C=%d V=%d | %.2fM params, %.3fM trainable (%s)\n",
           c->model.n_layer, c->model.n_head, c->model.n_embd, gpt_config(t->model)->vocab_size,
           (double)n_params / 1e6, (double)n_train / 1e6, c->lora.enabled ? "LoRA" : "full");
    char data[600];
    if (strcmp(c->data.source, "random") == 0)
        snprintf(data, sizeof data, "seeded random tokens");
    else
        snprintf(data, sizeof data, "%s (%zu tokens)", tokens_origin(t->src), tokens_count(t->src));
    printf("data %s | global batch %d x %d tokens, %d micro-batch%s of %d per rank\n", data,
           c->train.global_batch_size, t->T, t->accum,
           t->accum == 1 ? "" : "es", t->B);
    printf("run directory %s\n", t->run_dir);
    fflush(stdout);
}

int train_run(const cu_config_t *cfg, const cu_world_t *w, train_result_t *res, cu_error_t *err) {
    memset(res, 0, sizeof *res);
    trainer_t t = {.cfg = cfg, .w = w};
    int rc = world_agree(w, setup(&t, err));
    /* Every rank initialised identically from the seed; the broadcast makes
     * that a guarantee rather than an assumption. */
    if (rc == CU_OK) {
        size_t n;
        float *params = gpt_trainable(t.model, &n);
        rc = world_bcast_floats(w, params, n, err);
    }
    if (rc) {
        if (err && err->code == CU_OK) cu_error_set(err, rc, "another rank failed during setup");
        teardown(&t);
        return rc;
    }
    int leader = w->rank == 0;
    if (leader) print_header(&t);
    progress_t bar;
    progress_init(&bar, cfg->train.max_steps, leader);
    double tokens_per_step = (double)cfg->train.global_batch_size * t.T;
    double start = cu_now(), window_start = start;
    long window_steps = 0;
    for (long step = 0; step < cfg->train.max_steps; step++) {
        double t0 = cu_now();
        step_stats_t st = {0};
        if ((rc = train_step(&t, step, &st, err))) break;
        double now = cu_now();
        window_steps++;
        if (step == 0) res->first_loss = st.loss;
        res->final_loss = st.loss;
        res->steps = step + 1;
        int last = step + 1 == cfg->train.max_steps;
        if (leader && ((step + 1) % cfg->train.log_every == 0 || last || step == 0)) {
            double dt = (now - window_start) / (double)window_steps;
            char line[256];
            snprintf(
                line, sizeof line,
                "step %6ld/%ld | loss %.4f | lr %.3e | grad norm %.3f | %.0f tok/s | %.1f ms/step",
                step + 1, cfg->train.max_steps, st.loss, st.lr, st.grad_norm, tokens_per_step / dt,
                1e3 * (now - t0));
            progress_log(&bar, line);
            window_start = now;
            window_steps = 0;
        }
        progress_update(&bar, step + 1, st.loss, tokens_per_step / (now - t0));
    }
    progress_finish(&bar);
    double elapsed = cu_now() - start;
    res->tokens_per_s = res->steps ? tokens_per_step * (double)res->steps / elapsed : 0.0;
    if (rc == CU_OK) rc = save_final(&t, res->steps, res, err);
    rc = world_agree(w, rc);
    if (rc == CU_OK && leader)
        printf("done: %ld steps in %.1f s, loss %.4f -> %.4f, trainable state in %s\n", res->steps,
               elapsed, res->first_loss, res->final_loss, res->output);
    teardown(&t);
    return rc;
}
