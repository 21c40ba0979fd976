/*
 * The training loop (see train.h).
 *
 * One optimizer step consumes one global batch of train.global_batch_size
 * sequences, samples step*G .. step*G+G-1 of the token source, cut into
 * global micro-batches of B samples. Rank r of W takes micro-batches r,
 * r + W, r + 2W, ... (on one rank: all of them, accumulated in the
 * gradient buffer by the backward), with gradients scaled by 1/(tokens in
 * the global batch), so the summed gradient is the mean over the global
 * batch however it is split. On several ranks every micro-batch's gradient
 * is summed over ranks in a fixed order as soon as its backward ends
 * (mpi/reducer.h: the same order for any W >= 2) and every rank applies the
 * same clipped AdamW step; with
 * train.shard_optimizer each rank sums, clips and updates only its slice,
 * keeps only that slice's moments, and the updated slices are gathered
 * (bit for bit the same weights). Its checkpoints are written and read by
 * every rank at once (io/ckpt.h).
 *
 * Rank 0 keeps the job directory (docs/formats.md): state.json, metrics,
 * events, checkpoints, provenance. A stop request (SIGTERM/SIGUSR1 on any
 * rank) travels with the step's loss reduction, so all ranks stop after the
 * same step, save a checkpoint and return CU_PREEMPTED.
 */
#include "jobs/train.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/fileio.h"
#include "core/rng.h"
#include "core/timer.h"
#include "io/base_cache.h"
#include "io/ckpt.h"
#include "io/dataset.h"
#include "io/hf_gpt2.h"
#include "io/peft.h"
#include "io/tensor_h5.h"
#include "io/tokenizer_files.h"
#include "io/tokens.h"
#include "jobs/fingerprint.h"
#include "jobs/lora_init.h"
#include "jobs/progress.h"
#include "jobs/provenance.h"
#include "jobs/run_model.h"
#include "jobs/train_eval.h"
#include "jobs/watchdog.h"
#include "model/blas.h"
#include "model/gemm.h"
#include "model/gpt.h"
#include "model/optim.h"
#include "mpi/grid.h"
#include "mpi/reducer.h"
#include "rundir/rundir.h"
#include "rundir/status.h"
#include "safety/output.h"
#include "safety/policy.h"
#include "safety/redact.h"
#include "safety/rules.h"
#include "safety/sandbox.h"

typedef struct {
    const cu_config_t *cfg; /* = &resolved */
    cu_config_t resolved;   /* the job's config with what the base model decides */
    hf_gpt2_info_t hf;      /* model.init is a Hugging Face GPT-2 */
    st_model_t *base_map;   /* the bf16 base's files, mapped (model/gpt.h) */
    base_cache_t *cache;    /* an fp32/fp16 base's bf16 cache, when this rank prepared it */
    int from_hf;
    /* --check: every problem found in the input files, one per line */
    char problems[8192];
    int n_problems;
    const cu_world_t *w;
    const train_options_t *opts;
    cu_tokenizer_t *tok;
    token_source_t *src, *val;
    gpt_t *model;
    grad_reducer_t *reducer;
    safety_engine_t *safety; /* with safety.enabled: redacts text data, checks samples */
    long redactions;         /* placeholders put into a text corpus */
    exec_tasks_t exec;       /* rank 0: code tasks of eval.exec_tasks */
    adamw_t opt;
    sched_t sched;
    /* train.shard_optimizer: this rank's slice [slo, shi) of the trainable
     * buffer, the only part whose moments it keeps and that it updates
     * (unsharded: the whole buffer) */
    int shard;
    size_t slo, shi;
    /* bf16 full fine-tuning, sharded on several ranks: the fp32 master
     * weights of the matrices are held in [slo, shi) only (gpt_shard_master),
     * master_kept of them in all */
    int master_sharded;
    size_t master_kept;
    int T, B, accum, per_rank;
    int32_t *window, *inputs, *targets;
    char run_dir[4096], ckpt_dir[4200], hosts[1024];
    char data_hash[65], base_hash[65];
    char lora_init_hash[65]; /* lora.init_from's adapter_model.safetensors */
    /* rank 0's job directory */
    rundir_t jd;
    int jd_open;
    rundir_state_t st;
    double last_state_write;
    /* the watchdog thread shares st with the main thread through lock */
    watchdog_t wd;
    pthread_mutex_t lock;
    _Atomic int step_busy, wd_failed;
    _Atomic long long step_started; /* CLOCK_MONOTONIC ns */
    /* loop state that checkpoints carry */
    long start_step, resumed_from, evals_since_best;
    cu_rng_t eval_rng;
    /* lora.init pissa|olora: the adapters training started from (A0, B0,
     * laid out as the adapter buffer); the frozen base is W - s B0 A0 */
    float *lora_init;
    /* rank 0: what makes this run resumable, and what changed since the
     * checkpoint it resumes ("" when nothing or a fresh start) */
    char *fingerprint;
    char resume_changes[1024];
    int already_completed;
    FILE *train_log;      /* rank 0: runs/<job>/train.log, whatever launched it */
    double interval_loss; /* sum of the step losses since the last logged step */
    int interval_n;
    const char *stop_reason; /* why the loop ended: max_steps, early stop, a stop request */
} trainer_t;

static lora_config_t lora_from_config(const cu_config_t *cfg, int arch, cu_error_t *err, int *rc) {
    lora_config_t lc = {.enabled = cfg->lora.enabled,
                        .r = cfg->lora.r,
                        .alpha = cfg->lora.alpha,
                        .rslora = cfg->lora.rslora,
                        .dropout = cfg->lora.dropout,
                        .init_gaussian = strcmp(cfg->lora.init, "gaussian") == 0};
    *rc = CU_OK;
    for (int i = 0; i < cfg->lora.targets.n; i++) {
        unsigned bits = lora_target_bits(arch, cfg->lora.targets.items[i]);
        if (!bits) {
            char names[256];
            lora_target_list(arch, ~0u, ", ", names, sizeof names);
            *rc = cu_error_set(err, CU_EINVAL,
                               "lora.targets: '%s' is not a linear layer of %s (%s or all-linear)",
                               cfg->lora.targets.items[i], gpt_arch_name(arch), names);
        }
        lc.targets |= bits;
    }
    return lc;
}

/* A prepared dataset must have been tokenised by this job's tokenizer. */
static int check_dataset_tokenizer(trainer_t *t, cu_error_t *err) {
    dataset_meta_t meta;
    int rc = dataset_read_meta(t->cfg->data.path, &meta, err);
    if (rc) return rc;
    if (strcmp(meta.tokenizer_sha256, tokenizer_hash(t->tok)) != 0)
        return cu_error_set(err, CU_EINVAL,
                            "%s was tokenised with another tokenizer (%s, sha256 %.12s...) than "
                            "this job's (%s, %.12s...): set tokenizer.* to match or prepare the "
                            "data again",
                            t->cfg->data.path, meta.tokenizer_kind, meta.tokenizer_sha256,
                            t->cfg->tokenizer.kind, tokenizer_hash(t->tok));
    return CU_OK;
}

/* A text corpus through the data-stage safety policy before tokenising:
 * matches become typed placeholders (<REDACTED:rule>), a block rule refuses
 * the file. The counts go into state.json; rank 0 reports them. */
static int open_text_redacted(trainer_t *t, int vocab, uint64_t seed, cu_error_t *err) {
    const char *path = t->cfg->data.path;
    uint8_t *raw;
    size_t len;
    int rc = cu_read_file(path, 0, &raw, &len, err);
    if (rc) return rc;
    safety_redact_result_t r;
    rc = safety_redact(t->safety, SAFETY_STAGE_DATA, path, (const char *)raw, len, &r, err);
    free(raw);
    if (rc) return rc;
    if (r.blocked) {
        rc = cu_error_set(err, CU_EINVAL,
                          "%s is refused by the safety policy (a block rule, %s, matched); "
                          "remove the secret or change %s",
                          path, r.block_rule >= 0 ? safety_rules()[r.block_rule].id : "?",
                          t->cfg->safety.policy);
        safety_redact_result_free(&r);
        return rc;
    }
    t->redactions = (long)r.total;
    rc =
        tokens_open_buffer(&t->src, (const uint8_t *)r.text, r.len, t->tok, vocab, seed, path, err);
    safety_redact_result_free(&r);
    return rc;
}

static int open_source(trainer_t *t, int vocab, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    uint64_t seed = eval_data_seed(c);
    int rc;
    if (strcmp(c->data.source, "random") == 0) {
        rc = tokens_open_random(&t->src, vocab, seed, err);
    } else if (strcmp(c->data.source, "text") == 0) {
        rc = t->safety ? open_text_redacted(t, vocab, seed, err)
                       : tokens_open_text(&t->src, c->data.path, t->tok, seed, err);
    } else if (strcmp(c->data.source, "tokens") == 0) {
        int bytes = strcmp(c->data.token_dtype, "uint32") == 0 ? 4 : 2;
        rc = tokens_open_file(&t->src, c->data.path, bytes, vocab, seed, err);
    } else if (strcmp(c->data.source, "hdf5") == 0) {
        rc = check_dataset_tokenizer(t, err);
        if (rc == CU_OK) rc = tokens_open_h5(&t->src, c->data.path, "train", vocab, seed, err);
    } else {
        return cu_error_set(err, CU_EINVAL, "data.source: unknown source '%s'", c->data.source);
    }
    if (rc) return cu_error_prefix(err, "data.path");
    /* provenance is rank 0's: only it reads the whole file for the hash */
    if (t->w->rank == 0 && strcmp(c->data.source, "random") != 0 &&
        provenance_file_sha256(c->data.path, t->data_hash, err))
        return cu_error_prefix(err, "data.path");
    rc = tokens_split(t->src, c->data.seq_len, c->data.val_fraction, &t->val, err);
    if (rc) return cu_error_prefix(err, "data.val_fraction");
    if (strcmp(c->data.source, "hdf5") == 0) {
        /* a prepared dataset brings its own val split; an empty one means
         * no evaluation */
        dataset_meta_t meta;
        rc = dataset_read_meta(c->data.path, &meta, err);
        if (rc == CU_OK && meta.tokens[DATASET_VAL] > (uint64_t)c->data.seq_len)
            rc = tokens_open_h5(&t->val, c->data.path, "val", vocab, eval_val_seed(c), err);
        if (rc) return cu_error_prefix(err, "data.path");
    }
    return CU_OK;
}

/* Where fp32/fp16 bases' bf16 caches go: CU_BASE_CACHE, else
 * <job.runs_dir>/.base-cache; NULL for CU_BASE_CACHE=off (each rank then
 * converts its own private copy, as before the cache). */
static const char *base_cache_root(const cu_config_t *c, char *buf, size_t cap) {
    const char *env = getenv("CU_BASE_CACHE");
    if (env && !strcmp(env, "off")) return NULL;
    if (env && *env) return env;
    snprintf(buf, cap, "%s/.base-cache", c->job.runs_dir);
    return buf;
}

/* The bf16 base mapped in place: its own files, or for an fp32/fp16 base
 * (or GPT-2's, whose Conv1D weights the cache stores transposed) its bf16
 * cache, which the first rank of each node checks or builds
 * (io/base_cache.h) while the node's other ranks wait.
 * Collective (every rank comes here with the same config). */
static int load_base_mapped(trainer_t *t, int *n_lent, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    char buf[4200];
    const char *root = base_cache_root(c, buf, sizeof buf);
    if (!root || (t->opts && t->opts->check_only))
        return hf_gpt2_load_mapped(c->model.init, &t->hf, t->model, &t->base_map, n_lent, err);
    st_model_t *src = NULL;
    base_cache_t *bc = calloc(1, sizeof *bc);
    int node_rank = 0, rc = bc ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory");
    if (rc == CU_OK) rc = st_open(t->hf.weights_path, &src, err);
    int need = rc == CU_OK && base_cache_needed(src);
    if (need) rc = base_cache_locate(src, t->hf.weights_path, root, bc, err);
    int mpi = world_node_rank(t->w, &node_rank, err);
    if (rc == CU_OK) rc = mpi;
    if (rc == CU_OK && need && node_rank == 0)
        rc = base_cache_prepare(src, t->hf.weights_path, bc, stdout, err);
    st_close(src);
    int all = world_agree(t->w, rc);
    if (rc == CU_OK && all != CU_OK)
        rc = cu_error_set(err, all, "the base cache could not be prepared on another node");
    if (rc == CU_OK && need && node_rank != 0) rc = base_cache_open_prepared(bc, err);
    if (rc == CU_OK && need)
        rc = hf_gpt2_load_cache(c->model.init, bc->path, bc->source_sha256, &t->hf, t->model,
                                &t->base_map, n_lent, err);
    else if (rc == CU_OK)
        rc = hf_gpt2_load_mapped(c->model.init, &t->hf, t->model, &t->base_map, n_lent, err);
    if (rc == CU_OK && need && node_rank == 0)
        t->cache = bc;
    else
        free(bc);
    return rc;
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
    if (t->from_hf) {
        /* LoRA in bf16 over a frozen base: its bf16 matrices are read in
         * place from the files (shared by the node's ranks), not copied */
        int map = c->lora.enabled && !lora_init_from_weights(c->lora.init) &&
                  gpt_precision_parse(c->train.precision) == GPT_PREC_BF16;
        int n_lent, rc = map ? gpt_set_precision(t->model, GPT_PREC_BF16, err) : CU_OK;
        if (rc == CU_OK && map)
            rc = load_base_mapped(t, &n_lent, err);
        else if (rc == CU_OK)
            rc = hf_gpt2_load_params(c->model.init, &t->hf, gpt_params(t->model, NULL), tensors, n,
                                     err);
        if (rc) return cu_error_prefix(err, "model.init");
        memcpy(t->base_hash, t->hf.sha256, sizeof t->base_hash);
        return CU_OK;
    }
    int rc = h5_load_tensors(c->model.init, gpt_params(t->model, NULL), tensors, n, err);
    if (rc == CU_OK) rc = provenance_file_sha256(c->model.init, t->base_hash, err);
    if (rc)
        return cu_error_prefix(err, "model.init (a final.h5 of a run with lora.enabled: false, "
                                    "whose model.* sizes match this job's)");
    return CU_OK;
}

/* Checks a PEFT adapter's settings against the job's; the message names
 * the adapter key, the job key and both values. */
static int check_adapter(const cu_config_t *c, const lora_config_t *lc, const peft_arch_t *a,
                         const peft_adapter_t *p, const char *base_hash, cu_error_t *err) {
    const char *dir = c->lora.init_from;
    if (p->r != lc->r)
        return cu_error_set(err, CU_EINVAL,
                            "lora.init_from %s: its r is %d but lora.r is %d (set lora.r: %d to "
                            "continue it)",
                            dir, p->r, lc->r, p->r);
    if (fabs(p->alpha - lc->alpha) > 1e-6 * fabs(p->alpha))
        return cu_error_set(err, CU_EINVAL,
                            "lora.init_from %s: its lora_alpha is %g but lora.alpha is %g", dir,
                            p->alpha, (double)lc->alpha);
    if (!!p->rslora != !!lc->rslora)
        return cu_error_set(err, CU_EINVAL,
                            "lora.init_from %s: its use_rslora is %s but lora.rslora is %s", dir,
                            p->rslora ? "true" : "false", lc->rslora ? "true" : "false");
    if (p->targets != lc->targets) {
        char want[256] = "", have[256] = "";
        lora_target_list(gpt_arch_parse(a->arch), p->targets, ", ", want, sizeof want);
        for (int i = 0; i < c->lora.targets.n; i++) {
            size_t l = strlen(have);
            snprintf(have + l, sizeof have - l, "%s%s", l ? ", " : "", c->lora.targets.items[i]);
        }
        return cu_error_set(err, CU_EINVAL,
                            "lora.init_from %s: its target_modules [%s] adapt [%s] but "
                            "lora.targets is [%s]",
                            dir, p->target_modules, want, have);
    }
    if (!!p->fan_in_fan_out != !!a->fan_in_fan_out)
        return cu_error_set(err, CU_EINVAL,
                            "lora.init_from %s: its fan_in_fan_out is %s but a %s model's layers "
                            "need %s",
                            dir, p->fan_in_fan_out ? "true" : "false", a->arch,
                            a->fan_in_fan_out ? "true" : "false");
    if (p->base_sha256[0] && base_hash[0] && strcmp(p->base_sha256, base_hash))
        return cu_error_set(err, CU_EINVAL,
                            "lora.init_from %s: it was trained on a base with sha256 %.16s... "
                            "but model.init %s has sha256 %.16s...",
                            dir, p->base_sha256, c->model.init, base_hash);
    return CU_OK;
}

/* lora.init_from: the adapter's A and B replace lora.init's. */
static int init_lora_from(trainer_t *t, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    if (!c->lora.enabled)
        return cu_error_set(err, CU_EINVAL, "lora.init_from needs lora.enabled: true");
    /* the model's architecture: a Hugging Face model.init may have set it */
    const char *arch = gpt_arch_name(gpt_config(t->model)->arch);
    const peft_arch_t *a = peft_arch_find(arch);
    if (!a)
        return cu_error_set(err, CU_EINVAL, "lora.init_from: no PEFT naming for model.arch %s",
                            arch);
    peft_adapter_t p;
    int rc = peft_read_config(c->lora.init_from, a, &p, err);
    if (rc == CU_OK) rc = check_adapter(c, gpt_lora_config(t->model), a, &p, t->base_hash, err);
    int nt;
    const gpt_tensor_t *lt = gpt_lora_tensors(t->model, &nt);
    if (rc == CU_OK)
        rc = peft_read_tensors(c->lora.init_from, a, gpt_lora_params(t->model, NULL), lt, nt, err);
    if (rc == CU_OK && t->w->rank == 0 && !p.base_sha256[0] && p.base_model &&
        strcmp(p.base_model, c->model.init))
        fprintf(stderr,
                "codex-train: warning: lora.init_from %s names base_model_name_or_path %s, "
                "model.init is %s (no base hash to compare)\n",
                c->lora.init_from, p.base_model, c->model.init);
    if (rc == CU_OK) memcpy(t->lora_init_hash, p.sha256, sizeof t->lora_init_hash);
    peft_adapter_free(&p);
    if (rc == CU_EFORMAT || rc == CU_EIO) { /* a bad input file: exit 2 like a bad config */
        cu_error_prefix(err, "lora.init_from");
        rc = err->code = CU_EINVAL;
    }
    return rc;
}

/* --check reports every problem with the input files at once: a failed
 * check is noted and the next one runs; training stops at the first. */
static int check_note(trainer_t *t, int rc, cu_error_t *err) {
    if (rc == CU_OK || !t->opts || !t->opts->check_only || rc == CU_ENOMEM) return rc;
    size_t used = strlen(t->problems);
    snprintf(t->problems + used, sizeof t->problems - used, "\n  - %s", err->msg);
    t->n_problems++;
    return CU_OK;
}

/* A Hugging Face base's sizes replace the config's (--check goes on with
 * the config's when model.init cannot be read). */
static int apply_hf_base(trainer_t *t, gpt_config_t *gc, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    gpt_config_t hf = *gc;
    if (hf_gpt2_read_config(c->model.init, &t->hf, err) || hf_gpt2_apply_config(&t->hf, &hf, err)) {
        /* a config.json we cannot train (its message names the field) is
         * bad input: exit 2, as a bad key of the job's own config */
        cu_error_prefix(err, "model.init");
        t->from_hf = 0;
        return err->code = CU_EINVAL;
    }
    *gc = hf;
    if (t->tok && gc->vocab_size < tokenizer_vocab_size(t->tok))
        return cu_error_set(err, CU_EINVAL,
                            "model.init %s has %d tokens, fewer than the tokenizer's %d",
                            c->model.init, gc->vocab_size, tokenizer_vocab_size(t->tok));
    t->resolved.model.n_layer = gc->n_layer;
    t->resolved.model.n_head = gc->n_head;
    t->resolved.model.n_embd = gc->n_embd;
    t->resolved.model.vocab_size = gc->vocab_size;
    t->resolved.model.max_seq_len = gc->max_seq_len;
    run_model_sizes_to_config(gc, &t->resolved);
    return CU_OK;
}

/* --check without a tokenizer cannot read the data as the job would; it
 * still says whether data.path is there. */
static int check_data_exists(const cu_config_t *c, cu_error_t *err) {
    if (!strcmp(c->data.source, "random")) return CU_OK;
    FILE *fh = fopen(c->data.path, "rb");
    if (!fh)
        return cu_error_set(err, CU_EINVAL, "data.path: cannot open %s: %s", c->data.path,
                            strerror(errno));
    fclose(fh);
    return CU_OK;
}

static int setup_model(trainer_t *t, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    int rc;
    /* every rank: a text corpus is redacted the same way on each */
    if (c->safety.enabled && (rc = safety_engine_new(c->safety.policy, &t->safety, err)))
        return cu_error_prefix(err, "safety.policy");
    rc = io_tokenizer_load(c->tokenizer.kind, c->tokenizer.path, &t->tok, err);
    if (rc) {
        cu_error_prefix(err, "tokenizer");
        if ((rc = check_note(t, rc, err))) return rc;
        t->tok = NULL;
    }
    int tok_vocab = t->tok ? tokenizer_vocab_size(t->tok) : 0;
    int vocab = c->model.vocab_size ? c->model.vocab_size : (tok_vocab ? tok_vocab : 256);
    if (vocab < tok_vocab && strcmp(c->data.source, "random") != 0 &&
        (rc = check_note(
             t,
             cu_error_set(err, CU_EINVAL,
                          "model.vocab_size %d is smaller than the tokenizer's %d tokens", vocab,
                          tok_vocab),
             err)))
        return rc;
    gpt_config_t gc;
    if ((rc = run_model_sizes(c, &gc, err))) return rc;
    gc.vocab_size = vocab;
    /* a Hugging Face base decides the model's sizes; the resolved config
     * (job.yaml, checkpoints, final.h5) records them */
    t->from_hf = strcmp(c->model.init, "random") != 0 && hf_gpt2_is_model(c->model.init);
    if (t->from_hf && (rc = check_note(t, apply_hf_base(t, &gc, err), err))) return rc;
    lora_config_t lc = lora_from_config(c, gc.arch, err, &rc);
    if (rc) return rc;
    if ((rc = gpt_create(&t->model, &gc, &lc, err))) return cu_error_prefix(err, "model");
    if ((rc = check_note(t, init_base(t, err), err))) return rc;
    gpt_init_lora(t->model, cu_hash64((uint64_t)c->job.seed, 0x10a));
    if (c->lora.init_from[0] && (rc = check_note(t, init_lora_from(t, err), err))) return rc;
    if (c->lora.enabled && lora_init_from_weights(c->lora.init)) {
        size_t n;
        gpt_lora_params(t->model, &n);
        t->lora_init = calloc(n + 1, sizeof(float));
        if (!t->lora_init) return cu_error_set(err, CU_ENOMEM, "out of memory (lora.init)");
    }
    if (!t->tok) return check_note(t, check_data_exists(c, err), err);
    rc = check_note(t, open_source(t, gc.vocab_size, err), err);
    if (rc == CU_OK && !t->src) {
        /* a source that could not be opened leaves nothing to check */
        tokens_free(t->val);
        t->val = NULL;
    }
    return rc;
}

/* How the model computes: train.precision (model/gemm.h) and activation
 * checkpointing. */
static int setup_compute(trainer_t *t, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    if (gpt_set_precision(t->model, gpt_precision_parse(c->train.precision), err))
        return cu_error_prefix(err, "train.precision");
    gpt_set_activation_checkpointing(t->model, c->train.activation_checkpointing);
    return CU_OK;
}

static int setup(trainer_t *t, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    blas_set_threads(c->train.threads);
    int rc = setup_model(t, err);
    if (rc == CU_OK) rc = setup_compute(t, err);
    if (rc) return rc;
    if (!t->src) return CU_OK; /* --check noted why */
    t->T = c->data.seq_len;
    t->B = c->train.micro_batch_size;
    t->per_rank = c->train.global_batch_size / t->w->size;
    t->accum = t->per_rank / t->B;
    long windows;
    if ((rc = check_note(t, tokens_windows(t->src, t->T, &windows, err), err))) return rc;
    if ((rc = gpt_reserve(t->model, t->B, t->T, err))) return rc;
    size_t n;
    gpt_trainable(t->model, &n);
    t->shard = c->train.shard_optimizer;
    t->slo = 0;
    t->shi = n;
    if (t->shard) reducer_slice(n, t->w->size, t->w->rank, &t->slo, &t->shi);
    if ((rc = adamw_init(&t->opt, t->shi - t->slo, c->train.beta1, c->train.beta2, c->train.eps,
                         c->train.weight_decay, err)))
        return rc;
    /* 4 MB buckets: large enough to keep the per-call cost small, small
     * enough that the first ones start long before the backward ends */
    if ((rc = reducer_create(&t->reducer, t->w, gpt_grads(t->model, NULL), n, 4u << 20, !t->shard,
                             err)))
        return rc;
    t->sched = (sched_t){.lr = c->train.lr,
                         .min_lr = c->train.min_lr,
                         .warmup_steps = c->train.warmup_steps,
                         .max_steps = c->train.max_steps,
                         .kind = sched_parse(c->train.schedule)};
    cu_rng_seed(&t->eval_rng, cu_hash64((uint64_t)c->job.seed, 0xe7a1));
    if (t->w->rank == 0 && c->eval.exec_tasks[0] &&
        (rc = exec_tasks_load(c->eval.exec_tasks, &t->exec, err)))
        return rc;

    t->window = malloc(sizeof(int32_t) * (size_t)(t->T + 1));
    t->inputs = malloc(sizeof(int32_t) * (size_t)t->B * t->T);
    t->targets = malloc(sizeof(int32_t) * (size_t)t->B * t->T);
    if (!t->window || !t->inputs || !t->targets)
        return cu_error_set(err, CU_ENOMEM, "out of memory (batch buffers)");
    if ((rc = cu_format(t->run_dir, sizeof t->run_dir, err, "%s/%s", c->job.runs_dir, c->job.name)))
        return cu_error_prefix(err, "job.runs_dir/job.name");
    return cu_format(t->ckpt_dir, sizeof t->ckpt_dir, err, "%s/checkpoints", t->run_dir);
}

static void teardown(trainer_t *t) {
    watchdog_stop(&t->wd);
    reducer_free(t->reducer);
    safety_engine_free(t->safety);
    exec_tasks_free(&t->exec);
    if (t->jd_open) rundir_close(&t->jd);
    gpt_free(t->model);
    st_close(t->base_map);
    free(t->cache);
    free(t->lora_init);
    free(t->fingerprint);
    if (t->train_log) fclose(t->train_log);
    tokens_free(t->src);
    tokens_free(t->val);
    tokenizer_free(t->tok);
    adamw_free(&t->opt);
    free(t->window);
    free(t->inputs);
    free(t->targets);
}

/* ------------------------------------------------------------ job files */

/* A state.json that cannot be written (a full disk) fails the job: its
 * readers would otherwise see a heartbeat that stopped. */
static int write_state_checked(trainer_t *t, int force, cu_error_t *err) {
    if (!t->jd_open) return CU_OK;
    double now = cu_now();
    if (!force && now - t->last_state_write < 1.0) return CU_OK;
    t->last_state_write = now;
    if (!atomic_load(&t->wd.state_live)) return rundir_write_state(&t->jd, &t->st, err);
    int ended = 0;
    int rc = rundir_update_state(&t->jd, &t->st, &ended, err);
    if (ended) atomic_store(&t->wd_failed, 1); /* the end is recorded: leave it */
    return rc;
}

static void write_state(trainer_t *t, int force) {
    cu_error_t e;
    if (write_state_checked(t, force, &e) != CU_OK) fprintf(stderr, "codex-train: %s\n", e.msg);
}

static void event(trainer_t *t, long step, const char *type, const char *extra, const char *fmt,
                  ...) __attribute__((format(printf, 5, 6)));
static void event(trainer_t *t, long step, const char *type, const char *extra, const char *fmt,
                  ...) {
    if (!t->jd_open) return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    cu_error_t e = {0};
    pthread_mutex_lock(&t->lock);
    int rc = rundir_event(&t->jd, step, type, msg, extra, &e);
    pthread_mutex_unlock(&t->lock);
    if (rc != CU_OK) fprintf(stderr, "codex-train: %s\n", e.msg);
}

/* What rank 0's node did with the fp32/fp16 base's bf16 cache. */
static void base_cache_event(trainer_t *t) {
    const base_cache_t *bc = t->cache;
    json_t *x = json_pack("{s:s, s:s, s:s, s:I, s:f}", "action", base_cache_action_name(bc->action),
                          "path", bc->path, "source_sha256", bc->source_sha256, "bytes",
                          (json_int_t)bc->bytes, "seconds", bc->seconds);
    char *text = x ? json_dumps(x, 0) : NULL; /* "k": v, the spacing of every event */
    json_decref(x);
    /* the fields without the object's braces */
    size_t n = text ? strlen(text) : 0;
    if (n >= 2) {
        memmove(text, text + 1, n - 2);
        text[n - 2] = 0;
    }
    event(t, t->start_step, "base_cache", text,
          "base weights read in place from the bf16 cache %s (%s%s%s, %.1f s)", bc->path,
          base_cache_action_name(bc->action), bc->action == BASE_CACHE_REBUILT ? ": " : "",
          bc->action == BASE_CACHE_REBUILT ? bc->why : "", bc->seconds);
    free(text);
}

static char *make_provenance(trainer_t *t, double finished_at) {
    json_t *sj = t->safety ? safety_policy_provenance(safety_engine_policy(t->safety))
                           : json_pack("{s:b}", "enabled", 0);
    char *safety = sj ? json_dumps(sj, JSON_COMPACT) : NULL;
    json_decref(sj);
    provenance_t p = {.cfg = t->cfg,
                      .safety_json = safety,
                      .world = t->w,
                      .hosts = t->hosts,
                      .tokenizer_hash = tokenizer_hash(t->tok),
                      .data_hash = t->data_hash,
                      .base_hash = t->base_hash,
                      .started_at = t->st.started_at,
                      .finished_at = finished_at,
                      .resumed_from_step = t->resumed_from,
                      .lora_init_hash = t->lora_init_hash};
    char *out = provenance_json(&p);
    free(safety);
    return out;
}

static int write_provenance(trainer_t *t, double finished_at, cu_error_t *err) {
    if (!t->jd_open) return CU_OK;
    char *json = make_provenance(t, finished_at), path[4200];
    int rc = json ? cu_format(path, sizeof path, err, "%s/provenance.json", t->run_dir)
                  : cu_error_set(err, CU_ENOMEM, "out of memory (provenance)");
    if (rc == CU_OK) rc = rundir_write_atomic(path, json, strlen(json), err);
    free(json);
    return rc;
}

/* How long a peer may stay silent before the watchdog calls it gone: 15 s,
 * or CU_PEER_TIMEOUT_S. On a Slurm cluster that requeues jobs on node
 * failure, set it above the time Slurm takes to mark a node DOWN
 * (SlurmdTimeout), or the watchdog ends the job FAILED before Slurm can
 * requeue it (docs/slurm.md). */
static double peer_timeout_s(void) {
    const char *v = getenv("CU_PEER_TIMEOUT_S");
    char *end = NULL;
    double s = v ? strtod(v, &end) : 0.0;
    return v && end != v && *end == '\0' && s >= 1.0 ? s : 15.0;
}

/* The progress deadline: how long a training step may make no progress
 * before the watchdog ends the job FAILED naming the rank (600 s, or
 * CU_PROGRESS_TIMEOUT_S; 0 switches it off). Loading, evaluations and
 * checkpoint saves get three times as long, and no phase less than ten
 * times its longest earlier run (jobs/watchdog.c, docs/formats.md). */
static double progress_timeout_s(void) {
    const char *v = getenv("CU_PROGRESS_TIMEOUT_S");
    char *end = NULL;
    double s = v ? strtod(v, &end) : 0.0;
    if (!v || end == v || *end != '\0' || s < 0.0) return 600.0;
    return s == 0.0 ? 0.0 : s < 2.0 ? 2.0 : s;
}

/* Every rank starts its watchdog (liveness file; on rank 0 also the state
 * heartbeat and the watch over the other ranks). */
static int start_watchdog(trainer_t *t, cu_error_t *err) {
    watchdog_t *w = &t->wd;
    int rc = cu_format(w->ranks_dir, sizeof w->ranks_dir, err, "%s/ranks", t->run_dir);
    if (rc == CU_OK) rc = cu_format(w->run_dir, sizeof w->run_dir, err, "%s", t->run_dir);
    if (rc) return rc;
    w->rank = t->w->rank;
    w->size = t->w->size;
    w->stop = t->opts ? t->opts->stop : NULL;
    w->stale_s = peer_timeout_s();
    w->progress_s = progress_timeout_s();
    w->jd = t->jd_open ? &t->jd : NULL;
    w->st = &t->st;
    w->lock = &t->lock;
    w->step_busy = &t->step_busy;
    w->step_started = &t->step_started;
    w->failed = &t->wd_failed;
    return watchdog_start(w, err);
}

/* The Slurm job as squeue and scancel name it: an array task is
 * <array job>_<task> (SLURM_JOB_ID is a task's own number), and how often
 * Slurm restarted it (a requeue after a pre-emption or a node failure). */
static void slurm_identity(rundir_state_t *st) {
    const char *job = getenv("SLURM_JOB_ID"), *arr = getenv("SLURM_ARRAY_JOB_ID"),
               *task = getenv("SLURM_ARRAY_TASK_ID"), *restarts = getenv("SLURM_RESTART_COUNT");
    if (arr && arr[0] && task && task[0])
        snprintf(st->slurm_job_id, sizeof st->slurm_job_id, "%.30s_%.30s", arr, task);
    else if (job)
        snprintf(st->slurm_job_id, sizeof st->slurm_job_id, "%s", job);
    st->restarts = restarts ? (int)strtol(restarts, NULL, 10) : 0;
    if (st->restarts < 0) st->restarts = 0;
}

/* The fingerprint and config of the newest checkpoint of the run directory,
 * or of its final.h5 when there is none (malloc'd; NULL when absent). */
static void stored_identity(trainer_t *t, char **fp, char **yaml) {
    *fp = *yaml = NULL;
    long *steps = NULL;
    int n = 0;
    char path[4300];
    cu_error_t e;
    if (ckpt_list(t->ckpt_dir, &steps, &n, &e) == CU_OK && n > 0)
        ckpt_path(path, sizeof path, t->ckpt_dir, steps[0], &e);
    else
        snprintf(path, sizeof path, "%s/final.h5", t->run_dir);
    free(steps);
    if (access(path, F_OK) != 0) return;
    if (hf_h5_read_attr(path, "fingerprint", fp, &e) != CU_OK) *fp = NULL;
    if (hf_h5_read_attr(path, "config", yaml, &e) != CU_OK) *yaml = NULL;
}

/* checkpoint.resume auto onto a directory that holds another run is
 * refused, naming the keys that differ; a run that differs only in keys
 * that may change (train.lr, train.max_steps, eval.*) resumes, and those
 * are reported in the resumed event. */
static int check_identity(trainer_t *t, cu_error_t *err) {
    if (strcmp(t->cfg->checkpoint.resume, "auto") != 0) return CU_OK;
    char *fp, *yaml;
    stored_identity(t, &fp, &yaml);
    int rc = CU_OK;
    char diff[700];
    if (fp && fingerprint_diff(fp, t->fingerprint, diff, sizeof diff) > 0) {
        rc = cu_error_set(err, CU_EINVAL,
                          "%s holds another run (checkpoint.resume: auto would continue it): %s; "
                          "give this job another job.name, or pass --overwrite to replace that run",
                          t->run_dir, diff);
    } else if (fp && yaml) {
        cu_config_t old;
        config_defaults(&old);
        cu_error_t e;
        if (config_parse_yaml(&old, yaml, strlen(yaml), "checkpoint config", &e) == CU_OK)
            config_diff(&old, t->cfg, t->resume_changes, sizeof t->resume_changes);
    }
    free(fp);
    free(yaml);
    return rc;
}

/* Removes what a run left (checkpoints, final and best weights, logs,
 * state) for --overwrite; the lock is held. */
static int clear_run(trainer_t *t, cu_error_t *err) {
    static const char *files[] = {"final.h5",      "best.h5",           "state.json",
                                  "metrics.jsonl", "events.jsonl",      "provenance.json",
                                  "train.log",     "checkpoints/latest"};
    long *steps = NULL;
    int n = 0, rc = ckpt_list(t->ckpt_dir, &steps, &n, err);
    char path[4400];
    for (int i = 0; rc == CU_OK && i < n; i++) {
        rc = ckpt_path(path, sizeof path, t->ckpt_dir, steps[i], err);
        if (rc == CU_OK) unlink(path);
    }
    free(steps);
    for (size_t i = 0; rc == CU_OK && i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", t->run_dir, files[i]);
        if (unlink(path) != 0 && errno != ENOENT)
            rc = cu_error_set(err, CU_EIO, "--overwrite: cannot remove %s: %s", path,
                              strerror(errno));
    }
    return rc;
}

/* What the previous attempt left in state.json decides two things before
 * this one writes anything: a completed run asked to run again with the same
 * identity and no more steps has nothing to do; and a state still RUNNING,
 * while this process holds the lock, means that attempt ended without
 * recording why (its node crashed or was cut off, or it was killed before
 * any rank could record it, and Slurm requeued the job): the restart records
 * the loss as a failed event, so every ending is seen. A recorded end
 * (FAILED, PREEMPTED, ...) is left as it is. */
static void check_previous_attempt(trainer_t *t) {
    rundir_state_t prev;
    rundir_state_init(&prev, t->cfg->job.name);
    cu_error_t e;
    snprintf(prev.status, sizeof prev.status, "?");
    if (rundir_read_state(t->run_dir, &prev, &e) != CU_OK) return;
    t->already_completed = !strcmp(prev.status, "COMPLETED") &&
                           prev.step >= t->cfg->train.max_steps &&
                           strcmp(t->cfg->checkpoint.resume, "auto") == 0;
    if (strcmp(prev.status, "RUNNING") != 0 || prev.pid == (long)getpid()) return;
    const char *hosts = prev.hosts[0] ? prev.hosts : "an unknown host";
    event(t, prev.step, "failed", "\"recorded_by\": \"restart\"",
          "the previous attempt (pid %ld on %s, step %ld) ended without recording why: its "
          "process or node was lost; this attempt resumes from the last checkpoint",
          prev.pid, hosts, prev.step);
    fprintf(stderr, "codex-train: the previous attempt (pid %ld on %s, step %ld) was lost\n",
            prev.pid, hosts, prev.step);
}

/* --check beyond what setup opened: an evaluation needs held-out data. */
static int check_inputs(trainer_t *t, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    if (t->src && c->eval.every_steps > 0 && !t->val)
        check_note(t,
                   cu_error_set(err, CU_EINVAL,
                                "eval.every_steps is %ld but %s has no validation split: set "
                                "data.val_fraction above 0, prepare the data with a val split, or "
                                "set eval.every_steps: 0",
                                (long)c->eval.every_steps, c->data.path),
                   err);
    if (t->n_problems == 0) return CU_OK;
    /* the first lines fit err->msg; the caller prints t->problems whole */
    return cu_error_set(err, CU_EINVAL, "%d problem%s with the input files:%s", t->n_problems,
                        t->n_problems == 1 ? "" : "s", t->problems);
}

/* Rank 0 opens the job directory and writes job.yaml. */
static int open_job_dir(trainer_t *t, cu_error_t *err) {
    if (t->w->rank != 0) return CU_OK;
    int rc = rundir_open(&t->jd, t->run_dir, err);
    if (rc) return rc;
    /* one writer: a second codex-train on this directory stops here,
     * before it has written anything */
    if ((rc = rundir_lock(&t->jd, err))) {
        rundir_close(&t->jd);
        return rc;
    }
    t->jd_open = 1;
    char rank_error[4300];
    snprintf(rank_error, sizeof rank_error, "%s/ranks/error", t->run_dir);
    unlink(rank_error); /* an earlier run's */
    int stale = rundir_remove_stale_tmp(t->run_dir);
    if (stale > 0)
        fprintf(stderr, "codex-train: removed %d temporary file%s a dead writer left in %s\n",
                stale, stale == 1 ? "" : "s", t->run_dir);
    fingerprint_input_t fi = {.cfg = t->cfg,
                              .tokenizer_sha256 = tokenizer_hash(t->tok),
                              .data_sha256 = t->data_hash,
                              .base_sha256 = t->base_hash};
    t->fingerprint = fingerprint_make(&fi);
    if (!t->fingerprint) return cu_error_set(err, CU_ENOMEM, "out of memory (fingerprint)");
    if (t->opts && t->opts->overwrite) {
        if ((rc = clear_run(t, err))) return rc;
    } else {
        if ((rc = check_identity(t, err))) {
            /* the other run stays as it was: no state, no events */
            rundir_close(&t->jd);
            t->jd_open = 0;
            return rc;
        }
        check_previous_attempt(t);
        if (t->already_completed) return CU_OK; /* touches nothing */
    }
    rundir_reserve(&t->jd, 64 * 1024);
    char log_path[4300], now[40];
    snprintf(log_path, sizeof log_path, "%s/train.log", t->run_dir);
    t->train_log = fopen(log_path, "a");
    rundir_time(rundir_now(), now, sizeof now);
    if (t->train_log)
        fprintf(t->train_log, "== %s codex-train %s started: %d rank%s on %s, pid %ld\n", now,
                CU_GIT_DESCRIBE, t->w->size, t->w->size == 1 ? "" : "s", t->hosts, (long)getpid());
    char path[4200], *yaml = config_to_yaml(t->cfg);
    rc = yaml ? cu_format(path, sizeof path, err, "%s/job.yaml", t->run_dir)
              : cu_error_set(err, CU_ENOMEM, "out of memory");
    if (rc == CU_OK) rc = rundir_write_atomic(path, yaml, strlen(yaml), err);
    free(yaml);
    rundir_state_init(&t->st, t->cfg->job.name);
    t->st.max_steps = t->cfg->train.max_steps;
    t->st.world_size = t->w->size;
    t->st.pid = (long)getpid();
    t->st.threads = t->cfg->train.threads;
    snprintf(t->st.hosts, sizeof t->st.hosts, "%s", t->hosts);
    slurm_identity(&t->st);
    return rc;
}

/* ---------------------------------------------------------- checkpoints */

/* The loop state a checkpoint carries (rank 0's: only it samples with the
 * evaluation RNG). */
static ckpt_meta_t checkpoint_meta(const trainer_t *t, long steps_done) {
    const cu_config_t *c = t->cfg;
    ckpt_meta_t meta = {.step = steps_done,
                        .sample_cursor = steps_done * c->train.global_batch_size,
                        .adam_t = t->opt.t,
                        .epoch = t->st.epoch,
                        .best_step = t->st.best_step,
                        .best_val_loss = t->st.best_val_loss,
                        .evals_since_best = t->evals_since_best,
                        .world_size = t->w->size,
                        .global_batch_size = c->train.global_batch_size};
    memcpy(meta.rng, t->eval_rng.s, sizeof meta.rng);
    return meta;
}

/* What a checkpoint holds: the trainable weights, this rank's moments and
 * the run's texts (yaml, provenance, fingerprint: rank 0's). */
static ckpt_data_t checkpoint_data(const trainer_t *t, const char *yaml, const char *prov,
                                   const char *fingerprint) {
    int nt;
    const gpt_tensor_t *tensors = gpt_trainable_tensors(t->model, &nt);
    return (ckpt_data_t){.params = gpt_trainable(t->model, NULL),
                         .m = t->opt.m,
                         .v = t->opt.v,
                         .tensors = tensors,
                         .n_tensors = nt,
                         .config_yaml = yaml,
                         .provenance_json = prov,
                         .lora_init = t->lora_init,
                         .fingerprint = fingerprint};
}

/* Rank 0 after a checkpoint is on disk: latest, retention, the event. */
static int checkpoint_saved(trainer_t *t, long steps_done, double t0, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    int rc = ckpt_write_latest(t->ckpt_dir, steps_done, err);
    if (rc == CU_OK)
        rc = ckpt_retain_except(t->ckpt_dir, c->checkpoint.keep_last, t->st.best_step, err);
    if (rc) return rc;
    t->st.ckpt_step = steps_done;
    snprintf(t->st.ckpt_file, sizeof t->st.ckpt_file, "checkpoints/step_%08ld.h5", steps_done);
    char extra[600];
    snprintf(extra, sizeof extra, "\"file\": \"%s\", \"seconds\": %.3f%s", t->st.ckpt_file,
             cu_now() - t0, t->shard ? ", \"writers\": " : "");
    if (t->shard) snprintf(extra + strlen(extra), sizeof extra - strlen(extra), "%d", t->w->size);
    event(t, steps_done, "checkpoint", extra, "saved %s", t->st.ckpt_file);
    write_state(t, 1);
    return CU_OK;
}

/* Rank 0's string on every rank (malloc'd; "" for NULL). */
static int bcast_string(const cu_world_t *w, const char *s, char **out, cu_error_t *err) {
    double len = w->rank == 0 && s ? (double)strlen(s) : 0.0;
    int rc = world_bcast_doubles(w, &len, 1, err);
    if (rc) return rc;
    *out = calloc((size_t)len + 1, 1);
    if (!*out) return cu_error_set(err, CU_ENOMEM, "out of memory");
    if (w->rank == 0 && s) memcpy(*out, s, (size_t)len);
    return len > 0 ? world_bcast_bytes(w, *out, (int)len, err) : CU_OK;
}

/* train.shard_optimizer: every rank writes its slice of the same file at
 * once (collective); rank 0's strings and loop state go into it. */
static int save_checkpoint_sharded(trainer_t *t, long steps_done, cu_error_t *err) {
    char path[4300];
    int rc = t->w->rank == 0 ? rundir_mkdirs(t->ckpt_dir, err) : CU_OK;
    if (rc == CU_OK) rc = ckpt_path(path, sizeof path, t->ckpt_dir, steps_done, err);
    if ((rc = world_agree(t->w, rc))) return rc;
    char *prov0 = t->w->rank == 0 ? make_provenance(t, 0.0) : NULL;
    char *yaml = NULL, *prov = NULL, *fp = NULL, *yaml0 = config_to_yaml(t->cfg);
    rc = bcast_string(t->w, yaml0, &yaml, err);
    if (rc == CU_OK) rc = bcast_string(t->w, prov0, &prov, err);
    if (rc == CU_OK) rc = bcast_string(t->w, t->fingerprint, &fp, err);
    free(yaml0);
    free(prov0);
    ckpt_meta_t meta = checkpoint_meta(t, steps_done);
    double tmp_id = (double)getpid();
    if (rc == CU_OK) rc = world_bcast_bytes(t->w, &meta, (int)sizeof meta, err);
    if (rc == CU_OK) rc = world_bcast_doubles(t->w, &tmp_id, 1, err);
    ckpt_data_t d = checkpoint_data(t, yaml, prov, fp && fp[0] ? fp : NULL);
    double t0 = cu_now();
    if (rc == CU_OK) rc = ckpt_save_parallel(path, &d, t->slo, t->shi, &meta, (long)tmp_id, err);
    free(yaml);
    free(prov);
    free(fp);
    if (rc == CU_OK && t->w->rank == 0) rc = checkpoint_saved(t, steps_done, t0, err);
    return rc;
}

static int save_checkpoint(trainer_t *t, long steps_done, cu_error_t *err) {
    if (t->shard) return save_checkpoint_sharded(t, steps_done, err);
    if (t->w->rank != 0) return CU_OK;
    const cu_config_t *c = t->cfg;
    char path[4300];
    int rc = rundir_mkdirs(t->ckpt_dir, err);
    if (rc == CU_OK) rc = ckpt_path(path, sizeof path, t->ckpt_dir, steps_done, err);
    if (rc) return rc;
    char *yaml = config_to_yaml(c), *prov = make_provenance(t, 0.0);
    ckpt_data_t d = checkpoint_data(t, yaml, prov, t->fingerprint);
    ckpt_meta_t meta = checkpoint_meta(t, steps_done);
    double t0 = cu_now();
    rc = ckpt_save(path, &d, &meta, err);
    free(yaml);
    free(prov);
    if (rc) return rc;
    return checkpoint_saved(t, steps_done, t0, err);
}

/* Rank 0 finds the checkpoint to resume from (falling back past invalid
 * ones) and loads it into temporaries; *found says whether it did. */
static int load_resume_point(trainer_t *t, float *p, float *m, float *v, ckpt_meta_t *meta,
                             int *found, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    size_t n;
    gpt_trainable(t->model, &n);
    int nt;
    const gpt_tensor_t *tensors = gpt_trainable_tensors(t->model, &nt);
    *found = 0;
    if (strcmp(c->checkpoint.resume, "never") == 0) return CU_OK;
    if (strcmp(c->checkpoint.resume, "auto") != 0) {
        int rc = ckpt_load(c->checkpoint.resume, p, m, v, tensors, nt, meta, err);
        if (rc == CU_OK && t->lora_init)
            rc = ckpt_load_lora_init(c->checkpoint.resume, t->lora_init, tensors, nt, err);
        if (rc) return cu_error_set(err, CU_EINVAL, "checkpoint.resume: %s", err->msg);
        *found = 1;
        return CU_OK;
    }
    long *steps;
    int count, rc = ckpt_list(t->ckpt_dir, &steps, &count, err);
    for (int i = 0; rc == CU_OK && i < count && !*found; i++) {
        char path[4300];
        cu_error_t why;
        if ((rc = ckpt_path(path, sizeof path, t->ckpt_dir, steps[i], err))) break;
        if (ckpt_load(path, p, m, v, tensors, nt, meta, &why) == CU_OK &&
            (!t->lora_init ||
             ckpt_load_lora_init(path, t->lora_init, tensors, nt, &why) == CU_OK)) {
            *found = 1;
        } else {
            event(t, steps[i], "checkpoint_invalid", NULL, "%s", why.msg);
            fprintf(stderr, "codex-train: skipping invalid checkpoint: %s\n", why.msg);
        }
    }
    free(steps);
    return rc;
}

/* Every rank takes the loop state of the checkpoint it resumes from; rank 0
 * records the resumed event. */
static void apply_resume(trainer_t *t, const ckpt_meta_t *meta) {
    t->start_step = t->resumed_from = meta->step;
    t->opt.t = meta->adam_t;
    t->st.epoch = meta->epoch;
    t->st.best_step = meta->best_step;
    t->st.best_val_loss = meta->best_val_loss;
    t->evals_since_best = meta->evals_since_best;
    memcpy(t->eval_rng.s, meta->rng, sizeof meta->rng);
    if (t->w->rank != 0) return;
    int saved_world = meta->world_size, saved_gbs = meta->global_batch_size;
    json_t *ch = json_pack("{s:s}", "changed", t->resume_changes);
    char *extra = ch ? json_dumps(ch, JSON_COMPACT) : NULL;
    json_decref(ch);
    if (extra) extra[strlen(extra) - 1] = '\0'; /* the fields join the event's */
    event(t, t->start_step, "resumed", extra ? extra + 1 : NULL,
          "resumed at step %ld (saved on %d rank%s, now %d)%s%s", t->start_step, saved_world,
          saved_world == 1 ? "" : "s", t->w->size, t->resume_changes[0] ? "; changed: " : "",
          t->resume_changes);
    free(extra);
    if (t->resume_changes[0]) printf("resuming with changes: %s\n", t->resume_changes);
    if (saved_gbs != t->cfg->train.global_batch_size)
        event(t, t->start_step, "warning", NULL,
              "train.global_batch_size changed from %d to %d: the data sequence differs "
              "from the interrupted run's",
              saved_gbs, t->cfg->train.global_batch_size);
}

/* train.shard_optimizer: every rank reads its own slice of each candidate
 * checkpoint (newest first, past invalid ones), whatever world size wrote
 * it; the slices of the weights are then gathered. Nothing outside this
 * rank's slice is touched until a checkpoint is accepted. */
static int resume_sharded(trainer_t *t, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    if (strcmp(c->checkpoint.resume, "never") == 0) return CU_OK;
    int explicit_path = strcmp(c->checkpoint.resume, "auto") != 0;
    long *steps = NULL;
    int count = 0, rc = CU_OK;
    if (!explicit_path && t->w->rank == 0) rc = ckpt_list(t->ckpt_dir, &steps, &count, err);
    double nd = explicit_path ? 1 : count;
    if ((rc = world_agree(t->w, rc)) || (rc = world_bcast_doubles(t->w, &nd, 1, err))) {
        free(steps);
        return rc;
    }
    size_t n, len = t->shi - t->slo;
    float *params = gpt_trainable(t->model, &n);
    /* a copy of the slice only when there is something to try: a fresh
     * start's peak memory stays that of training */
    float *keep = nd > 0 ? malloc((len + 1) * sizeof(float)) : NULL;
    if (nd > 0 && !keep) {
        free(steps);
        return cu_error_set(err, CU_ENOMEM, "out of memory (resume)");
    }
    if (keep) memcpy(keep, params + t->slo, len * sizeof(float));
    int nt, found = 0;
    const gpt_tensor_t *tensors = gpt_trainable_tensors(t->model, &nt);
    ckpt_meta_t meta = {0};
    for (int i = 0; rc == CU_OK && i < (int)nd && !found; i++) {
        char path[4300];
        double step = t->w->rank == 0 && steps ? (double)steps[i] : 0.0;
        if (explicit_path) {
            snprintf(path, sizeof path, "%s", c->checkpoint.resume);
        } else {
            rc = world_bcast_doubles(t->w, &step, 1, err);
            if (rc == CU_OK) rc = ckpt_path(path, sizeof path, t->ckpt_dir, (long)step, err);
            if (rc) break;
        }
        cu_error_t why = {0};
        int lr = ckpt_load_slice(path, params, t->opt.m, t->opt.v, t->slo, t->shi, tensors, nt,
                                 &meta, &why);
        if (lr == CU_OK && t->lora_init)
            lr = ckpt_load_lora_init(path, t->lora_init, tensors, nt, &why);
        if (world_agree(t->w, lr) == CU_OK) {
            found = 1;
        } else if (explicit_path) {
            rc = cu_error_set(err, CU_EINVAL, "checkpoint.resume: %s",
                              why.code ? why.msg : "another rank could not read it");
        } else if (t->w->rank == 0) {
            event(t, (long)step, "checkpoint_invalid", NULL, "%s", why.msg);
            fprintf(stderr, "codex-train: skipping invalid checkpoint: %s\n", why.msg);
        }
    }
    free(steps);
    if (!found && keep) { /* a fresh start: this rank's slice as it was, moments zero */
        memcpy(params + t->slo, keep, len * sizeof(float));
        memset(t->opt.m, 0, len * sizeof(float));
        memset(t->opt.v, 0, len * sizeof(float));
    }
    free(keep);
    if (rc == CU_OK && found) rc = world_allgather_slices(t->w, params, n, err);
    if (rc == CU_OK && found) apply_resume(t, &meta);
    return rc;
}

/* Every rank ends up with rank 0's resume point (or a fresh start). */
static int resume(trainer_t *t, cu_error_t *err) {
    if (t->shard) return resume_sharded(t, err);
    size_t n;
    float *params = gpt_trainable(t->model, &n);
    float *tmp = calloc(3 * n + 1, sizeof(float));
    if (!tmp) return cu_error_set(err, CU_ENOMEM, "out of memory (resume)");
    ckpt_meta_t meta = {0};
    int found = 0, rc = CU_OK;
    if (t->w->rank == 0) rc = load_resume_point(t, tmp, tmp + n, tmp + 2 * n, &meta, &found, err);
    rc = world_agree(t->w, rc);
    double fd = found;
    if (rc == CU_OK) rc = world_bcast_doubles(t->w, &fd, 1, err);
    if (rc == CU_OK && fd != 0.0) rc = world_bcast_floats(t->w, tmp, 3 * n, err);
    if (rc == CU_OK && fd != 0.0) rc = world_bcast_bytes(t->w, &meta, (int)sizeof meta, err);
    if (rc == CU_OK && fd != 0.0) {
        memcpy(params, tmp, n * sizeof(float));
        memcpy(t->opt.m, tmp + n, n * sizeof(float));
        memcpy(t->opt.v, tmp + 2 * n, n * sizeof(float));
        apply_resume(t, &meta);
    }
    free(tmp);
    return rc;
}

/* lora.init pissa|olora: a fresh job factorises the original base weights
 * on the process grid; a resumed one already holds A0, B0 from its
 * checkpoint (never factorised again: another grid may round differently).
 * Either way the frozen base becomes the residual W - s B0 A0. */
static int init_from_weights(trainer_t *t, cu_error_t *err) {
    if (!t->lora_init) return CU_OK;
    size_t n;
    float *lora = gpt_lora_params(t->model, &n);
    int rc = CU_OK;
    if (t->resumed_from < 0) {
        cu_grid_t *g = NULL;
        double t0 = cu_now();
        rc = grid_create(&g, t->w, err);
        if (rc == CU_OK) rc = lora_init_factorise(t->model, g, t->cfg->lora.init, err);
        int p = 1, q = 1;
        if (g) grid_shape(g, &p, &q);
        grid_free(g);
        rc = world_agree(t->w, rc);
        if (rc) return rc;
        memcpy(t->lora_init, lora, n * sizeof(float));
        if (t->w->rank == 0) {
            char extra[128];
            snprintf(extra, sizeof extra, "\"grid\": [%d, %d], \"seconds\": %.3f", p, q,
                     cu_now() - t0);
            event(t, 0, "lora_init", extra, "lora.init %s: adapters factorised on a %d x %d grid",
                  t->cfg->lora.init, p, q);
        }
    }
    /* rank 0's copy everywhere: a guarantee, not an assumption */
    rc = world_bcast_floats(t->w, t->lora_init, n, err);
    if (rc == CU_OK) rc = lora_fold(t->model, t->lora_init, -gpt_lora_scale(t->model), err);
    return world_agree(t->w, rc);
}

/* ------------------------------------------------------------- the loop */

/* Fills inputs/targets with the micro-batch starting at global sample g0. */
static int load_micro_batch(trainer_t *t, long g0, long *epoch, cu_error_t *err) {
    for (int b = 0; b < t->B; b++) {
        int rc = tokens_sample(t->src, g0 + b, t->T, t->window, epoch, err);
        if (rc) return rc;
        memcpy(t->inputs + (long)b * t->T, t->window, sizeof(int32_t) * (size_t)t->T);
        memcpy(t->targets + (long)b * t->T, t->window + 1, sizeof(int32_t) * (size_t)t->T);
    }
    return CU_OK;
}

/* The next run of consecutive tensors (from *i on) that the model reads in
 * fp32, as [*a, *b) of the trainable buffer; 0 when there is none. */
static int next_fp32_run(const trainer_t *t, int *i, size_t *a, size_t *b) {
    int nt;
    const gpt_tensor_t *ts = gpt_trainable_tensors(t->model, &nt);
    while (*i < nt && !gpt_fp32_read(t->model, *i)) ++*i;
    if (*i == nt) return 0;
    *a = ts[*i].offset;
    *b = *a + gpt_tensor_numel(&ts[*i]);
    while (++*i < nt && gpt_fp32_read(t->model, *i) && ts[*i].offset == *b)
        *b += gpt_tensor_numel(&ts[*i]);
    return 1;
}

/* bf16 full fine-tuning with sharded master weights: the fp32 values this
 * rank need not hold outside its slice are released, each tensor's bf16
 * copy made from its whole fp32 values first (every rank still holds
 * everything here: after the broadcast or the resume's gather). One rank
 * has nothing to release. */
static int shard_master(trainer_t *t, cu_error_t *err) {
    if (!t->shard || t->w->size == 1 || t->cfg->lora.enabled ||
        gpt_precision(t->model) != GPT_PREC_BF16)
        return CU_OK;
    int rc = gpt_shard_master(t->model, t->slo, t->shi, &t->master_kept, err);
    if (rc == CU_OK) t->master_sharded = 1;
    return rc;
}

/* After a sharded update: this rank's slice rounded to bf16, every rank's
 * bf16 slice gathered (the products read those), and the fp32 values of
 * the tensors the model reads in fp32 (vectors, embeddings) gathered. The
 * copy is then what rounding the whole updated fp32 buffer would give. */
static int publish_master(trainer_t *t, cu_error_t *err) {
    size_t n;
    float *params = gpt_trainable(t->model, &n);
    gpt_bf16_round(t->model, t->slo, t->shi);
    int rc = world_allgather_span(t->w, gpt_bf16_params(t->model), sizeof(uint16_t), n, 0, n, err);
    size_t a, b;
    for (int i = 0; rc == CU_OK && next_fp32_run(t, &i, &a, &b);)
        rc = world_allgather_span(t->w, params, sizeof(float), n, a, b, err);
    return rc;
}

typedef struct {
    double loss, grad_norm;
    float lr;
    long epoch;
    int stop; /* some rank was asked to stop */
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
    /* on several ranks the reducer leaves the buffer zero, its pages given
     * back: writing zeros here would fault them all in again */
    if (t->w->size == 1) gpt_zero_grad(t->model);
    double sums[3] = {0.0, 0.0, 0.0}; /* loss sum, valid targets, stop requests */
    reducer_begin(t->reducer);
    for (int a = 0; a < t->accum; a++) {
        /* the backward hands finished gradients to the reducer layer by
         * layer, overlapping communication with compute; every micro-batch
         * is exchanged on its own (ZeRO-2: no rank accumulates a whole
         * gradient), and rank r takes global micro-batches r, r + W, ...
         * so that the owners add them in global order (mpi/reducer.h) */
        if (t->w->size > 1)
            gpt_set_grad_ready(t->model, (gpt_grad_ready_fn)reducer_ready, t->reducer);
        long g0 = step * G + ((long)a * t->w->size + t->w->rank) * t->B;
        int rc = load_micro_batch(t, g0, &st->epoch, err);
        if (rc) return rc;
        gpt_set_dropout_row0(t->model, (uint64_t)(g0 - step * G) * (uint64_t)t->T);
        gpt_loss_t l;
        rc = gpt_forward(t->model, t->inputs, t->targets, t->B, t->T, 1, grad_scale, key, &l, err);
        if (rc) return cu_error_prefix(err, "step %ld", step);
        gpt_backward(t->model);
        gpt_set_grad_ready(t->model, NULL, NULL);
        if ((rc = reducer_end_micro_batch(t->reducer, err))) return rc;
        sums[0] += l.loss_sum;
        sums[1] += (double)l.n_valid;
    }
    int asked = t->opts && t->opts->stop && *t->opts->stop;
    asked |= t->opts && t->opts->stop_after > 0 && step + 1 - t->start_step >= t->opts->stop_after;
    sums[2] = asked ? 1.0 : 0.0;
    int rc = reducer_finish(t->reducer, err);
    if (rc == CU_OK) rc = world_sum_doubles(t->w, sums, 3, err);
    if (rc) return rc;
    float *grads = reducer_sum(t->reducer);
    st->loss = sums[0] / sums[1];
    st->stop = sums[2] > 0.0;
    if (!isfinite(st->loss))
        return cu_error_set(
            err, CU_EINTERNAL,
            "loss became %g at step %ld; lower train.lr or raise train.warmup_steps", st->loss,
            step);
    /* the norm from the owner slices' sums in rank order: the same bits
     * whether this rank holds the whole reduced gradient or its slice */
    if ((rc = world_slices_norm(t->w, grads, n, !t->shard, &st->grad_norm, err))) return rc;
    grad_clip_range(grads, t->slo, t->shi, st->grad_norm, c->train.grad_clip);
    st->lr = sched_lr(&t->sched, step);
    int nt;
    const gpt_tensor_t *tensors = gpt_trainable_tensors(t->model, &nt);
    adamw_step_range(&t->opt, params, grads, tensors, nt, st->lr, t->slo, t->shi);
    if (t->master_sharded)
        rc = publish_master(t, err);
    else if (t->shard)
        rc = world_allgather_slices(t->w, params, n, err);
    if (rc) return rc;
    if (!c->lora.enabled) gpt_params_updated(t->model);
    return CU_OK;
}

/* One generated sample into events.jsonl, after the output-stage safety
 * check: findings become a "safety" event and the sample is logged
 * redacted; a blocked sample fails the job when the policy says so. */
static int record_sample(trainer_t *t, long step, int i, const char *text, cu_error_t *err) {
    const char *prompt = t->cfg->eval.prompts.items[i];
    char extra[300];
    snprintf(extra, sizeof extra, "\"prompt_index\": %d", i);
    if (!t->safety) {
        event(t, step, "sample", extra, "%s%s", prompt, text);
        return CU_OK;
    }
    safety_output_result_t r;
    int rc = safety_check_output(t->safety, text, strlen(text), &r, err);
    if (rc) return cu_error_prefix(err, "safety check of a sample");
    size_t found = r.redacted.findings.count;
    if (found) {
        json_t *ev = safety_output_event_json(t->safety, &r, step, NULL);
        const char *msg = json_string_value(json_object_get(ev, "message"));
        char *message = strdup(msg ? msg : "generated sample broke the safety policy");
        json_object_del(ev, "type");
        json_object_del(ev, "step");
        json_object_del(ev, "message");
        char *fields = json_dumps(ev, JSON_COMPACT);
        json_decref(ev);
        if (fields && message) {
            size_t n = strlen(fields);
            fields[n - 1] = '\0'; /* drop the braces: the fields join the event's */
            event(t, step, "safety", fields + 1, "%s", message);
        }
        free(fields);
        free(message);
        t->st.output_findings += (long)found;
        t->st.blocked_outputs += r.verdict == SAFETY_VERDICT_BLOCK;
    }
    event(t, step, "sample", extra, "%s%s", prompt, found ? r.redacted.text : text);
    int fail = r.verdict == SAFETY_VERDICT_BLOCK &&
               safety_policy_fail_job(safety_engine_policy(t->safety));
    safety_output_result_free(&r);
    if (fail)
        return cu_error_set(err, CU_EINTERNAL,
                            "a generated sample broke the safety policy (block at the output "
                            "stage); see the safety event in events.jsonl");
    return CU_OK;
}

/* Execution-based evaluation: pass@1 of the code tasks, each completion run
 * with its tests in the sandbox. */
static int run_exec_tasks(trainer_t *t, long steps_done, progress_t *bar, cu_error_t *err) {
    exec_outcome_t *o = calloc((size_t)t->exec.n, sizeof *o);
    if (!o) return cu_error_set(err, CU_ENOMEM, "out of memory (eval.exec)");
    unsigned applied = 0;
    int rc = eval_exec(t->model, t->tok, t->cfg, &t->exec, &t->eval_rng, o, &applied, err);
    if (rc == CU_OK) {
        int passed = 0;
        json_t *results = json_array();
        for (int i = 0; i < t->exec.n; i++) {
            passed += o[i].passed;
            json_array_append_new(results,
                                  json_pack("{s:s,s:b,s:b,s:i,s:f}", "name", t->exec.tasks[i].name,
                                            "passed", o[i].passed, "timed_out", o[i].timed_out,
                                            "exit_code", o[i].exit_code, "seconds", o[i].seconds));
        }
        double pass1 = (double)passed / t->exec.n;
        char layers[160], fields[128], line[160];
        sandbox_applied_string(applied, layers, sizeof layers);
        json_t *extra =
            json_pack("{s:f,s:o,s:s}", "pass_at_1", pass1, "results", results, "sandbox", layers);
        char *ex = json_dumps(extra, JSON_COMPACT);
        json_decref(extra);
        if (ex) {
            ex[strlen(ex) - 1] = '\0';
            event(t, steps_done, "exec", ex + 1, "pass@1 %.3f (%d of %d tasks)", pass1, passed,
                  t->exec.n);
        }
        free(ex);
        snprintf(fields, sizeof fields, "\"exec_pass1\": %.6g, \"exec_tasks\": %d", pass1,
                 t->exec.n);
        rc = rundir_metric(&t->jd, steps_done, fields, err);
        snprintf(line, sizeof line, "exec %6ld | pass@1 %.3f (%d of %d tasks)", steps_done, pass1,
                 passed, t->exec.n);
        progress_log(bar, line);
    }
    free(o);
    return rc;
}

static int save_best(trainer_t *t, long steps, cu_error_t *err);

/* Evaluation at `steps_done`; sets *stop_early when patience ran out. */
static int evaluate(trainer_t *t, long steps_done, progress_t *bar, int *stop_early,
                    cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    if (!t->val) return CU_OK;
    eval_result_t r;
    int rc = eval_run(t->model, t->val, c, t->w, t->inputs, t->targets, t->window, &r, err);
    if (rc) return rc;
    t->st.last_eval_step = steps_done;
    t->st.last_val_loss = r.loss;
    int improved = t->st.best_step < 0 || r.loss < t->st.best_val_loss;
    if (improved) {
        t->st.best_step = steps_done;
        t->st.best_val_loss = r.loss;
        t->evals_since_best = 0;
    } else {
        t->evals_since_best++;
    }
    *stop_early = c->eval.patience > 0 && t->evals_since_best >= c->eval.patience;
    if (improved && (rc = save_best(t, steps_done, err))) return rc;
    if (t->w->rank != 0) return CU_OK;
    char fields[256], line[256];
    snprintf(fields, sizeof fields, "\"val_loss\": %.6g, \"val_ppl\": %.6g, \"val_acc\": %.6g",
             r.loss, r.ppl, r.acc);
    if ((rc = rundir_metric(&t->jd, steps_done, fields, err))) return rc;
    event(t, steps_done, "eval", fields, "validation loss %.4f%s", r.loss,
          improved ? " (best so far)" : "");
    snprintf(line, sizeof line, "eval %6ld | val loss %.4f | ppl %.2f | token acc %.3f%s",
             steps_done, r.loss, r.ppl, r.acc, improved ? " | best" : "");
    progress_log(bar, line);
    for (int i = 0; i < c->eval.prompts.n; i++) {
        char *text;
        if ((rc = eval_sample(t->model, t->tok, c, i, &t->eval_rng, &text, err))) return rc;
        rc = record_sample(t, steps_done, i, text, err);
        free(text);
        if (rc) return rc;
    }
    if (t->exec.n > 0 && (rc = run_exec_tasks(t, steps_done, bar, err))) return rc;
    if (*stop_early)
        event(t, steps_done, "early_stop", NULL,
              "no improvement in %ld evaluations (eval.patience); best %.4f at step %ld",
              t->evals_since_best, t->st.best_val_loss, t->st.best_step);
    write_state(t, 1);
    return CU_OK;
}

/* Sharded master weights: no rank holds the fp32 weights whole, so for
 * each 4 MB piece in turn every rank sends rank 0 its part and rank 0
 * writes it (h5_writer_t): the file h5_save_tensors would write, with one
 * piece at a time in rank 0's memory. Collective. */
static int save_weights_gathered(trainer_t *t, const char *path, const h5_attr_t *attrs,
                                 int n_attrs, cu_error_t *err) {
    enum { PIECE = 1 << 20 };
    size_t n;
    const float *params = gpt_trainable(t->model, &n);
    int nt, root = t->w->rank == 0;
    const gpt_tensor_t *ts = gpt_trainable_tensors(t->model, &nt);
    float *piece = root ? malloc(PIECE * sizeof(float)) : NULL;
    h5_writer_t *wr = NULL;
    int rc = CU_OK, mpi = CU_OK;
    if (root && !piece) rc = cu_error_set(err, CU_ENOMEM, "out of memory (writing %s)", path);
    if (root && piece) rc = h5_writer_open(&wr, path, ts, nt, err);
    if ((mpi = world_agree(t->w, rc)) != CU_OK) {
        if (wr) h5_writer_close(wr, NULL, 0, NULL);
        free(piece);
        return rc ? rc : cu_error_set(err, mpi, "rank 0 could not create %s", path);
    }
    cu_error_t later; /* a gather's failure after a write's is not the first */
    for (int i = 0; mpi == CU_OK && i < nt; i++) {
        size_t e = ts[i].offset + gpt_tensor_numel(&ts[i]);
        for (size_t a = ts[i].offset; mpi == CU_OK && a < e; a += PIECE) {
            size_t b = e - a < PIECE ? e : a + PIECE;
            mpi = world_gather_span(t->w, params, n, a, b, piece, rc ? &later : err);
            /* after a failed write the writer drops the rest: the
             * gathers go on so that the other ranks are not left waiting */
            if (mpi == CU_OK && root) rc = h5_writer_put(wr, piece, b - a, rc ? &later : err);
        }
    }
    if (root) {
        int closed = h5_writer_close(wr, attrs, n_attrs, rc || mpi ? &later : err);
        if (rc == CU_OK) rc = mpi ? mpi : closed;
    } else {
        rc = mpi;
    }
    free(piece);
    int all = world_agree(t->w, rc);
    if (all && rc == CU_OK) rc = cu_error_set(err, all, "rank 0 could not write %s", path);
    return rc;
}

/* The trainable tensors, as final.h5 and best.h5 hold them: written by rank
 * 0, with sharded master weights by every rank at once (collective). */
static int save_weights(trainer_t *t, const char *path, long steps, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    char *yaml = config_to_yaml(c);
    char step_s[32];
    snprintf(step_s, sizeof step_s, "%ld", steps);
    h5_attr_t attrs[] = {{"config", yaml ? yaml : ""},
                         {"step", step_s},
                         {"trainable", c->lora.enabled ? "lora" : "full"},
                         {"tokenizer_sha256", tokenizer_hash(t->tok)},
                         {"code_version", CU_GIT_DESCRIBE},
                         {"fingerprint", t->fingerprint ? t->fingerprint : ""},
                         {"lora_init_sha256", NULL}};
    int nt, n_attrs = (int)(sizeof attrs / sizeof attrs[0]) - 1;
    const gpt_tensor_t *tensors = gpt_trainable_tensors(t->model, &nt);
    char init_sum[65];
    if (t->lora_init) { /* /lora_init is verified on load like a checkpoint's */
        ckpt_lora_init_sha256(t->lora_init, tensors, nt, init_sum);
        attrs[n_attrs++].value = init_sum;
    }
    int rc = t->master_sharded
                 ? save_weights_gathered(t, path, attrs, n_attrs, err)
                 : h5_save_tensors_with(path, gpt_trainable(t->model, NULL), "lora_init",
                                        t->lora_init, tensors, nt, attrs, n_attrs, err);
    free(yaml);
    return rc;
}

/* The best evaluation's weights, written when an evaluation improves:
 * best.h5 beside final.h5, through a temporary name so a reader never sees
 * half of it. */
static int save_best(trainer_t *t, long steps, cu_error_t *err) {
    int root = t->w->rank == 0;
    double keep = root && t->jd_open;
    if (!t->master_sharded && !root) return CU_OK;
    if (t->master_sharded && world_bcast_doubles(t->w, &keep, 1, err)) return err->code;
    if (!keep) return CU_OK;
    char path[4300], tmp[4400];
    snprintf(path, sizeof path, "%s/best.h5", t->run_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int rc = save_weights(t, tmp, steps, err);
    if (rc == CU_OK && root && rename(tmp, path) != 0)
        rc = cu_error_set(err, CU_EIO, "cannot rename %s: %s", tmp, strerror(errno));
    if (rc && root) unlink(tmp);
    return rc;
}

static int save_final(trainer_t *t, long steps, train_result_t *res, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    int rc = c->train.output[0]
                 ? cu_format(res->output, sizeof res->output, err, "%s", c->train.output)
                 : cu_format(res->output, sizeof res->output, err, "%s/final.h5", t->run_dir);
    if (rc == CU_OK && t->st.best_step >= 0)
        rc = cu_format(res->best_output, sizeof res->best_output, err, "%s/best.h5", t->run_dir);
    if (rc || (t->w->rank != 0 && !t->master_sharded)) return rc;
    return save_weights(t, res->output, steps, err);
}

static void print_header(const trainer_t *t) {
    const cu_config_t *c = t->cfg;
    size_t n_params, n_train;
    gpt_params(t->model, &n_params);
    gpt_trainable(t->model, &n_train);
    printf("codex-train %s | %d rank%s x %d thread%s | BLAS %s | hosts %s\n", CU_GIT_DESCRIBE,
           t->w->size, t->w->size == 1 ? "" : "s", c->train.threads,
           c->train.threads == 1 ? "" : "s", blas_core_name(), t->hosts);
    char note[256];
    if (blas_reexec_note(note, sizeof note)) printf("%s\n", note);
    if (gpt_precision(t->model) == GPT_PREC_BF16) {
        gemm_describe(note, sizeof note);
        printf("precision bf16: base-weight products on %s\n", note);
    }
    if (t->master_sharded) {
        size_t n;
        gpt_trainable(t->model, &n);
        printf("fp32 master weights sharded: rank 0 holds %zu of %zu (%.1f%%; the matrices' "
               "own slice, the vectors and embeddings whole)\n",
               t->master_kept, n, 100.0 * (double)t->master_kept / (double)(n ? n : 1));
    }
    /* the model as built: a Hugging Face model.init decided its architecture */
    const gpt_config_t *gc = gpt_config(t->model);
    char kv[32] = "";
    if (gc->arch != GPT_ARCH_GPT2 && gc->n_kv_head != gc->n_head)
        snprintf(kv, sizeof kv, " (%d KV)", gc->n_kv_head);
    printf("model %s L=%d H=%d%s C=%d V=%d | %.2fM params, %.3fM trainable (%s)\n",
           gpt_arch_name(gc->arch), gc->n_layer, gc->n_head, kv, gc->n_embd, gc->vocab_size,
           (double)n_params / 1e6, (double)n_train / 1e6, c->lora.enabled ? "LoRA" : "full");
    char data[600];
    if (strcmp(c->data.source, "random") == 0)
        snprintf(data, sizeof data, "seeded random tokens");
    else
        snprintf(data, sizeof data, "%s (%zu tokens, %zu held out)", tokens_origin(t->src),
                 tokens_count(t->src), t->val ? tokens_count(t->val) : (size_t)0);
    printf("data %s | global batch %d x %d tokens, %d micro-batch%s of %d per rank\n", data,
           c->train.global_batch_size, t->T, t->accum, t->accum == 1 ? "" : "es", t->B);
    if (t->resumed_from >= 0) printf("resumed from step %ld\n", t->resumed_from);
    printf("run directory %s\n", t->run_dir);
    fflush(stdout);
}

/* Logs the step on rank 0: a line every train.log_every steps, the state
 * file at most once a second, the progress bar every step. */
static int record_step(trainer_t *t, long step, const step_stats_t *st, double step_s, double tok_s,
                       double avg_step_s, progress_t *bar, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    long done = step + 1;
    int last = done == c->train.max_steps;
    t->st.step = done;
    t->st.epoch = st->epoch;
    t->st.loss = st->loss;
    t->st.lr = st->lr;
    t->st.grad_norm = st->grad_norm;
    t->st.tokens_per_s = tok_s;
    t->st.eta_s = avg_step_s * (double)(c->train.max_steps - done);
    /* the logged loss is the mean over the logging interval, as HF
     * Trainer logs it; the last step's own loss is kept as loss_step */
    t->interval_loss += st->loss;
    t->interval_n++;
    if (t->w->rank == 0 && (done % c->train.log_every == 0 || last || step == t->start_step)) {
        char fields[320], line[256];
        double mean = t->interval_loss / t->interval_n;
        snprintf(fields, sizeof fields,
                 "\"loss\": %.6g, \"loss_step\": %.6g, \"loss_steps\": %d, \"lr\": %.6g, "
                 "\"grad_norm\": %.6g, \"tokens_per_s\": %.1f, \"ms_per_step\": %.2f",
                 mean, st->loss, t->interval_n, st->lr, st->grad_norm, tok_s, 1e3 * step_s);
        t->interval_loss = 0.0;
        t->interval_n = 0;
        if (rundir_metric(&t->jd, done, fields, err)) return err->code;
        snprintf(line, sizeof line,
                 "step %6ld/%ld | loss %.4f | lr %.3e | grad norm %.3f | %.0f tok/s | %.1f ms/step",
                 done, c->train.max_steps, mean, st->lr, st->grad_norm, tok_s, 1e3 * step_s);
        progress_log(bar, line);
    }
    int rc = write_state_checked(t, 0, err);
    progress_update(bar, done, st->loss, tok_s);
    return rc;
}

static void stall_forever(void) {
    int fds[2];
    char c;
    if (pipe(fds) != 0) abort();
    for (;;) /* nothing ever writes it; a signal only restarts the read */
        if (read(fds[0], &c, 1) < 0 && errno != EINTR) pause();
}

static int run_loop(trainer_t *t, train_result_t *res, cu_error_t *err) {
    const cu_config_t *c = t->cfg;
    progress_t bar;
    progress_init(&bar, c->train.max_steps, t->w->rank == 0);
    bar.log = t->train_log;
    double tokens_per_step = (double)c->train.global_batch_size * t->T;
    double start = cu_now(), total_step_s = 0.0;
    int rc = CU_OK;
    long step;
    /* test only (tests/runs_e2e.py), on rank CU_TEST_STALL_RANK (default
     * every rank): CU_TEST_STALL_AT_STEP=N blocks this rank's main thread for
     * ever before step N while its watchdog lives, as on a hung file system;
     * CU_TEST_STOP_AT_STEP=N stops the whole process (SIGSTOP) once step N's
     * reductions are done and before it is recorded, the moment at which a
     * stopped rank 0 that is later continued used to write RUNNING over the
     * record of its own stop */
    const char *stall_at = getenv("CU_TEST_STALL_AT_STEP"),
               *stop_at = getenv("CU_TEST_STOP_AT_STEP"),
               *stall_rank = getenv("CU_TEST_STALL_RANK");
    long stall_step = stall_at ? atol(stall_at) : -1, stop_step = stop_at ? atol(stop_at) : -1;
    if (stall_rank && atoi(stall_rank) != t->w->rank) stall_step = stop_step = -1;
    for (step = t->start_step; step < c->train.max_steps; step++) {
        double t0 = cu_now();
        step_stats_t st = {0};
        watchdog_progress(&t->wd, step, WD_STEP);
        if (step == stall_step) stall_forever();
        atomic_store(&t->step_started, watchdog_mono_ns());
        atomic_store(&t->step_busy, 1);
        rc = train_step(t, step, &st, err);
        atomic_store(&t->step_busy, 0);
        if (rc) break;
        if (step == stop_step) raise(SIGSTOP);
        double dt = cu_now() - t0;
        total_step_s += dt;
        long done = step + 1;
        if (step == t->start_step) res->first_loss = st.loss;
        res->final_loss = st.loss;
        res->steps = done;
        if ((rc = record_step(t, step, &st, dt, tokens_per_step / dt,
                              total_step_s / (double)(done - t->start_step), &bar, err)))
            break;
        int last = done == c->train.max_steps, stop_early = 0;
        if (c->eval.every_steps > 0 && (done % c->eval.every_steps == 0 || last)) {
            watchdog_progress(&t->wd, done, WD_EVAL);
            if ((rc = evaluate(t, done, &bar, &stop_early, err))) break;
        }
        int ckpt_due = c->checkpoint.every_steps > 0 && done % c->checkpoint.every_steps == 0;
        st.stop &= !last; /* a stop at the last step is simply the end */
        if (ckpt_due || last || st.stop || stop_early) {
            watchdog_progress(&t->wd, done, WD_CHECKPOINT);
            if ((rc = world_agree(t->w, save_checkpoint(t, done, err)))) break;
        }
        if (st.stop) {
            rc = cu_error_set(err, CU_PREEMPTED, "stopped on request after step %ld", done);
            break;
        }
        if (stop_early) {
            t->stop_reason = "early stop (no improvement in eval.patience evaluations)";
            break;
        }
        if (last) t->stop_reason = "train.max_steps reached";
    }
    progress_finish(&bar);
    double elapsed = cu_now() - start;
    res->tokens_per_s = res->steps > t->start_step
                            ? tokens_per_step * (double)(res->steps - t->start_step) / elapsed
                            : 0.0;
    return rc;
}

/* The job's end in state.json and events.jsonl. */
static void finish(trainer_t *t, int rc, const cu_error_t *err, const train_result_t *res) {
    if (!t->jd_open || atomic_load(&t->wd_failed)) return;
    rundir_state_t disk;
    rundir_state_init(&disk, "");
    if (rc != CU_OK && rundir_read_state(t->run_dir, &disk, NULL) == CU_OK &&
        rundir_status_final(disk.status))
        return;                     /* another witness recorded the end (rank 1 saw rank 0 stop) */
    rundir_release_reserve(&t->jd); /* room for this last record on a full disk */
    t->st.finished_at = rundir_now();
    const char *status = rc == CU_OK ? "COMPLETED" : rc == CU_PREEMPTED ? "PREEMPTED" : "FAILED";
    snprintf(t->st.status, sizeof t->st.status, "%s", status);
    if (rc == CU_OK) {
        event(t, res->steps, "completed", NULL, "%ld steps, final loss %.4f", res->steps,
              res->final_loss);
    } else if (rc == CU_PREEMPTED) {
        event(t, res->steps, "preempted", NULL, "checkpoint saved at step %ld; ready to resume",
              res->steps);
    } else {
        snprintf(t->st.error, sizeof t->st.error, "%s", err && err->code ? err->msg : "failed");
        t->st.error_rank = t->w->rank;
        event(t, res->steps, "failed", NULL, "%s", t->st.error);
    }
    write_state(t, 1);
    if (t->train_log) {
        char now[40];
        rundir_time(t->st.finished_at, now, sizeof now);
        fprintf(t->train_log, "== %s %s at step %ld%s%s\n", now, status, t->st.step,
                t->st.error[0] && rc != CU_OK && rc != CU_PREEMPTED ? ": " : "",
                rc != CU_OK && rc != CU_PREEMPTED ? t->st.error : "");
        fflush(t->train_log);
    }
    cu_error_t e;
    if (write_provenance(t, t->st.finished_at, &e)) fprintf(stderr, "codex-train: %s\n", e.msg);
}

/* Every rank applied the same updates to the same reduced gradients, so
 * their trainable tensors must be bit-identical; a difference is a bug. */
static int check_identical(trainer_t *t, cu_error_t *err) {
    if (t->w->size == 1) return CU_OK;
    size_t n, a, b;
    const float *params = gpt_trainable(t->model, &n);
    int same = 0, rc;
    if (!t->master_sharded) {
        rc = world_identical(t->w, params, n * sizeof(float), &same, err);
    } else { /* what every rank holds: the bf16 copy, the tensors read in fp32 */
        rc = world_identical(t->w, gpt_bf16_params(t->model), n * sizeof(uint16_t), &same, err);
        for (int i = 0; rc == CU_OK && same && next_fp32_run(t, &i, &a, &b);)
            rc = world_identical(t->w, params + a, (b - a) * sizeof(float), &same, err);
    }
    if (rc == CU_OK && !same)
        rc = cu_error_set(err, CU_EINTERNAL, "the trainable weights differ between ranks");
    if (rc == CU_OK && t->w->rank == 0)
        printf("trainable weights bit-identical on all %d ranks%s\n", t->w->size,
               t->master_sharded ? " (in bf16; fp32 for the vectors and embeddings)" : "");
    return rc;
}

int train_run(const cu_config_t *cfg, const cu_world_t *w, const train_options_t *opts,
              train_result_t *res, cu_error_t *err) {
    memset(res, 0, sizeof *res);
    trainer_t t = {.w = w, .opts = opts, .resumed_from = -1};
    t.resolved = *cfg;
    t.cfg = &t.resolved;
    /* every rank follows the best evaluation (best.h5, eval.patience), not
     * only rank 0, whose job directory fills in the rest */
    rundir_state_init(&t.st, cfg->job.name);
    pthread_mutex_init(&t.lock, NULL);
    int rc = world_hosts(w, t.hosts, sizeof t.hosts, err);
    if (rc == CU_OK) rc = setup(&t, err);
    if (opts && opts->check_only) {
        rc = world_agree(w, rc == CU_OK ? check_inputs(&t, err) : rc);
        memcpy(res->problems, t.problems, sizeof res->problems);
        res->n_problems = t.n_problems;
        teardown(&t);
        pthread_mutex_destroy(&t.lock);
        /* an input the job cannot use is the user's to fix: exit 2 */
        if (rc != CU_OK && rc != CU_ENOMEM) rc = CU_EINVAL;
        return rc;
    }
    if (rc == CU_OK) rc = open_job_dir(&t, err);
    rc = world_agree(w, rc);
    double done = t.already_completed;
    if (rc == CU_OK) rc = world_bcast_doubles(w, &done, 1, err);
    if (rc == CU_OK && done != 0.0) {
        res->already_completed = 1;
        if (w->rank == 0)
            printf("job %s already completed (%ld steps, %s/final.h5); nothing to do: raise "
                   "train.max_steps to train it further, or run it again with --overwrite\n",
                   cfg->job.name, cfg->train.max_steps, t.run_dir);
        teardown(&t);
        pthread_mutex_destroy(&t.lock);
        return CU_OK;
    }
    if (rc == CU_OK) rc = world_agree(w, start_watchdog(&t, err));
    if (rc == CU_OK) {
        /* every rank initialised identically from the seed; the broadcast
         * makes that a guarantee rather than an assumption */
        size_t n;
        float *params = gpt_trainable(t.model, &n);
        rc = world_bcast_floats(w, params, n, err);
    }
    if (rc == CU_OK) rc = resume(&t, err);
    if (rc == CU_OK) rc = init_from_weights(&t, err);
    if (rc == CU_OK) rc = shard_master(&t, err);
    if (rc == CU_OK && t.jd_open) {
        t.st.started_at = rundir_now();
        if (t.resumed_from >= 0) {
            rundir_state_t prev = t.st;
            if (rundir_read_state(t.run_dir, &prev, err) == CU_OK)
                t.st.started_at = prev.started_at;
        }
        t.st.step = t.start_step;
        rc = rundir_truncate_metrics(&t.jd, t.start_step, err);
        if (rc == CU_OK) rc = write_provenance(&t, 0.0, err);
        t.st.redactions = t.redactions;
        if (t.redactions > 0)
            event(&t, t.start_step, "safety", "\"stage\": \"data\"",
                  "%ld secret or personal-data matches in %s replaced by placeholders",
                  t.redactions, cfg->data.path);
        if (!cfg->safety.enabled)
            event(&t, t.start_step, "warning", "\"safety\": false",
                  "safety checks are switched off (safety.enabled: false)");
        if (t.st.restarts > 0 && !strcmp(cfg->checkpoint.resume, "never")) {
            /* a requeued job that starts over discards what it had done */
            fprintf(stderr,
                    "codex-train: warning: Slurm restarted this job (SLURM_RESTART_COUNT=%d) "
                    "but checkpoint.resume is 'never': training starts again from step 0\n",
                    t.st.restarts);
            event(&t, 0, "warning", "\"restarts\": true",
                  "Slurm restarted the job (restart %d) but checkpoint.resume is 'never': it "
                  "starts again from step 0; set checkpoint.resume: auto to continue",
                  t.st.restarts);
        }
        if (t.resumed_from < 0)
            event(&t, 0, "started", NULL, "%d rank%s on %s", w->size, w->size == 1 ? "" : "s",
                  t.hosts);
        if (t.cache) base_cache_event(&t);
        write_state(&t, 1);
        atomic_store(&t.wd.state_live, 1);
    }
    rc = world_agree(w, rc);
    if (rc == CU_OK) {
        if (w->rank == 0) print_header(&t);
        rc = run_loop(&t, res, err);
        atomic_store(&t.wd.peers_done, 1); /* ranks now end at their own pace */
    }
    if (rc == CU_OK)
        rc = world_agree(w, save_final(&t, res->steps, res, err));
    else if (rc != CU_PREEMPTED && w->size > 1)
        /* this rank may have failed alone while the others wait for it in
         * a collective: rank 0 records its own error below; another rank
         * leaves its message for rank 0's watchdog to record; then main
         * aborts the job */
        if (w->rank != 0 && t.wd.running) watchdog_report_error(&t.wd, err->msg, 10.0);
    if (rc == CU_OK) rc = check_identical(&t, err);
    finish(&t, rc, err, res);
    if (rc == CU_OK && w->rank == 0) {
        printf("done: %ld steps, loss %.4f -> %.4f, %.0f tokens/s; stopped: %s\n", res->steps,
               res->first_loss, res->final_loss, res->tokens_per_s,
               t.stop_reason ? t.stop_reason : "nothing left to train");
        printf("final weights (step %ld) in %s\n", res->steps, res->output);
        if (t.st.best_step >= 0)
            printf("best weights (val loss %.4f at step %ld) in %s\n", t.st.best_val_loss,
                   t.st.best_step, res->best_output[0] ? res->best_output : "(not kept)");
    }
    teardown(&t);
    pthread_mutex_destroy(&t.lock);
    return rc;
}
