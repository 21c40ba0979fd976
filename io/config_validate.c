/*
 * Cross-field checks of a finished configuration (file plus overrides): the
 * constraints no single key can express, each reported with what to change
 * ("set global_batch_size to 8 or 16, or micro_batch_size to 1, 2 or 4").
 * Every key's own range is checked again too, since a config can also be
 * filled in code.
 *
 * All problems are collected and reported at once, so a user fixes a config
 * in one pass rather than one error per run.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "io/config_internal.h"
#include "model/gpt.h"

#define MAX_PROBLEMS 16
#define BYTE_VOCAB 257 /* 256 bytes and <|endoftext|> (tokenizer/tokenizer.h) */

typedef struct {
    int n;
    char msg[MAX_PROBLEMS][512];
} problems_t;

static void add(problems_t *pr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void add(problems_t *pr, const char *fmt, ...) {
    if (pr->n < MAX_PROBLEMS) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(pr->msg[pr->n], sizeof pr->msg[0], fmt, ap);
        va_end(ap);
    }
    pr->n++;
}

/* "a", "a or b", "a, b or c" from up to n numbers. */
static void or_list(const int *v, int n, char *out, size_t cap) {
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        const char *sep = i == 0 ? "" : (i == n - 1 ? " or " : ", ");
        int w = snprintf(out + used, cap - used, "%s%d", sep, v[i]);
        if (w < 0 || (size_t)w >= cap - used) return;
        used += (size_t)w;
    }
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The (up to 3) divisors of n closest to `near`, ascending, as text; of
 * two as close, the larger (more heads, fuller micro-batches). */
static void near_divisors(int n, int near, char *out, size_t cap) {
    int best[3], count = 0;
    for (int d = n; d >= 1; d--) {
        if (n % d) continue;
        int dist = abs(d - near);
        if (count < 3) {
            best[count++] = d;
            continue;
        }
        int worst = 0;
        for (int i = 1; i < 3; i++)
            if (abs(best[i] - near) > abs(best[worst] - near)) worst = i;
        if (dist < abs(best[worst] - near)) best[worst] = d;
    }
    qsort(best, (size_t)count, sizeof best[0], cmp_int);
    or_list(best, count, out, cap);
}

/* The multiples of m just below and above v (the lower only if > 0). */
static void near_multiples(int v, int m, char *out, size_t cap) {
    int opts[2], n = 0;
    if (v / m > 0) opts[n++] = v / m * m;
    opts[n++] = (v / m + 1) * m;
    or_list(opts, n, out, cap);
}

/* ---------------------------------------------------------- the checks */

static void check_keys(const cu_config_t *cfg, problems_t *pr) {
    int n_keys;
    const cfg_key_t *keys = cfg_keys(&n_keys);
    for (int i = 0; i < n_keys; i++) {
        cu_error_t e = {0};
        if (cfg_check_value(cfg, &keys[i], &e)) add(pr, "%s", e.msg);
    }
}

static void check_model(const cu_config_t *cfg, problems_t *pr) {
    int E = cfg->model.n_embd, H = cfg->model.n_head, HD = cfg->model.head_dim;
    if (HD > 0 && strcmp(cfg->model.arch, "llama"))
        add(pr, "model.head_dim (%d) is for model.arch llama only; set it to 0 for %s", HD,
            cfg->model.arch);
    if (HD > 0 && HD % 2) add(pr, "model.head_dim (%d) must be even for the rotary embeddings", HD);
    if (HD == 0 && E > 0 && H > 0 && E % H) {
        char opts[64];
        near_divisors(E, H, opts, sizeof opts);
        add(pr,
            "model.n_embd (%d) must be divisible by model.n_head (%d): set n_head to %s, or "
            "n_embd to a multiple of %d",
            E, H, opts, H);
    }
    int KVH = cfg->model.n_kv_head;
    int rotary = !strcmp(cfg->model.arch, "llama") || !strcmp(cfg->model.arch, "starcoder2");
    if (rotary && KVH > 0 && H > 0 && H % KVH)
        add(pr,
            "model.n_kv_head (%d) must divide model.n_head (%d): every key/value head serves "
            "the same number of query heads",
            KVH, H);
    if (rotary && HD == 0 && E > 0 && H > 0 && E % H == 0 && (E / H) % 2)
        add(pr,
            "model.n_embd / model.n_head (head size %d) must be even for %s's rotary "
            "embeddings",
            E / H, cfg->model.arch);
    if (cfg->data.seq_len > cfg->model.max_seq_len)
        add(pr,
            "data.seq_len (%d) exceeds model.max_seq_len (%d): lower data.seq_len or raise "
            "model.max_seq_len",
            cfg->data.seq_len, cfg->model.max_seq_len);
    /* Random tokens may use fewer ids than the tokenizer has; real text
     * may not. */
    int V = cfg->model.vocab_size;
    if (!strcmp(cfg->tokenizer.kind, "byte") && strcmp(cfg->data.source, "random") != 0 && V != 0 &&
        V < BYTE_VOCAB)
        add(pr,
            "model.vocab_size (%d) is smaller than the byte tokenizer's %d tokens: set it to 0 "
            "to take the tokenizer's size",
            V, BYTE_VOCAB);
    if (!strcmp(cfg->tokenizer.kind, "gpt2") && !cfg->tokenizer.path[0])
        add(pr, "tokenizer.kind is gpt2 but tokenizer.path is empty (and model.init is no folder "
                "with tokenizer files): point it at a folder with encoder.json + vocab.bpe, "
                "vocab.json + merges.txt or tokenizer.json");
}

static void check_batches(const cu_config_t *cfg, int world_size, problems_t *pr) {
    int G = cfg->train.global_batch_size, M = cfg->train.micro_batch_size;
    if (G < 1 || M < 1 || world_size < 1) return;
    char opts[64], divs[64];
    long step = (long)M * world_size;
    if (G % world_size) {
        /* multiples of micro_batch_size x ranks: advice that, followed,
         * passes the next check too */
        near_multiples(G, (int)(step < 1048576 ? step : 1048576), opts, sizeof opts);
        add(pr, "train.global_batch_size (%d) cannot be split evenly over %d ranks: set it to %s",
            G, world_size, opts);
        return;
    }
    int per_rank = G / world_size;
    if (per_rank % M == 0) return;
    near_multiples(G, (int)(step < 1048576 ? step : 1048576), opts, sizeof opts);
    near_divisors(per_rank, M, divs, sizeof divs);
    add(pr,
        "train.global_batch_size (%d) must be a multiple of train.micro_batch_size x ranks "
        "(%d x %d = %ld): set global_batch_size to %s, or micro_batch_size to %s",
        G, M, world_size, step, opts, divs);
}

static void check_train(const cu_config_t *cfg, problems_t *pr) {
    if (cfg->train.min_lr > cfg->train.lr)
        add(pr,
            "train.min_lr (%g) is above train.lr (%g): the schedule decays from lr down to "
            "min_lr, so lower min_lr",
            (double)cfg->train.min_lr, (double)cfg->train.lr);
    if (cfg->train.warmup_steps > cfg->train.max_steps)
        add(pr,
            "train.warmup_steps (%ld) exceeds train.max_steps (%ld): lower warmup_steps or "
            "raise max_steps",
            cfg->train.warmup_steps, cfg->train.max_steps);
}

void config_settle(cu_config_t *cfg, char *note, size_t cap) {
    if (cap) note[0] = '\0';
    if (cfg->train.warmup_steps > cfg->train.max_steps && cfg->train.max_steps >= 0) {
        snprintf(note, cap,
                 "train.warmup_steps (%ld) exceeds train.max_steps (%ld); using %ld, a warm-up "
                 "over the whole run (lower warmup_steps or raise max_steps to silence this)",
                 cfg->train.warmup_steps, cfg->train.max_steps, cfg->train.max_steps);
        cfg->train.warmup_steps = cfg->train.max_steps;
    }
}

static int list_has(const cu_cfg_list_t *l, const char *s) {
    for (int i = 0; i < l->n && i < CU_CFG_MAX_LIST; i++)
        if (!strcmp(l->items[i], s)) return 1;
    return 0;
}

static void check_lora(const cu_config_t *cfg, problems_t *pr) {
    int from_weights = !strcmp(cfg->lora.init, "pissa") || !strcmp(cfg->lora.init, "olora");
    if (!cfg->lora.enabled && from_weights)
        add(pr,
            "lora.init: %s initialises adapters from the base weights, but lora.enabled is false "
            "(full fine-tuning has no adapters); set lora.enabled: true or lora.init: kaiming",
            cfg->lora.init);
    if (from_weights && cfg->lora.init_from[0])
        add(pr,
            "lora.init: %s and lora.init_from both say where the adapters start; a PEFT adapter "
            "applies to the unmodified base, so use one of them (lora.init: kaiming with "
            "lora.init_from)",
            cfg->lora.init);
    if (!cfg->lora.enabled) return;
    const cu_cfg_list_t *t = &cfg->lora.targets;
    if (t->n == 0)
        add(pr, "lora.targets is empty while lora.enabled is true: name the layers (e.g. "
                "[all-linear]), or set lora.enabled: false for full fine-tuning");
    int arch = gpt_arch_parse(cfg->model.arch);
    if (arch < 0) arch = GPT_ARCH_GPT2; /* model.arch itself is reported elsewhere */
    char names[256];
    if (t->n > 1 && list_has(t, "all-linear")) {
        lora_target_list(arch, ~0u, " and ", names, sizeof names);
        add(pr,
            "lora.targets mixes all-linear with other entries: all-linear already means %s; "
            "give it alone, or list the layers without it",
            names);
    }
    /* a Hugging Face model.init decides the architecture; the trainer checks
     * the targets against it */
    lora_target_list(arch, ~0u, ", ", names, sizeof names);
    for (int i = 0; i < t->n && !strcmp(cfg->model.init, "random"); i++)
        if (!lora_target_bits(arch, t->items[i]))
            add(pr, "lora.targets: '%s' is not a linear layer of model.arch %s (%s)", t->items[i],
                cfg->model.arch, names);
    if (cfg->lora.r > cfg->model.n_embd && cfg->model.n_embd > 0)
        add(pr,
            "lora.r (%d) exceeds model.n_embd (%d): a rank above the layer width adds "
            "parameters and nothing else; lower lora.r",
            cfg->lora.r, cfg->model.n_embd);
}

static void check_data(const cu_config_t *cfg, problems_t *pr) {
    const char *src = cfg->data.source;
    if ((!strcmp(src, "text") || !strcmp(src, "tokens") || !strcmp(src, "hdf5")) &&
        !cfg->data.path[0])
        add(pr, "data.source is %s but data.path is empty: point data.path at the %s file", src,
            !strcmp(src, "text")     ? "UTF-8 text"
            : !strcmp(src, "tokens") ? "raw tokens"
                                     : "HDF5 dataset (codexctl prepare)");
    if (!strcmp(src, "tokens") && !strcmp(cfg->data.token_dtype, "uint16") &&
        cfg->model.vocab_size > 65536)
        add(pr, "data.token_dtype uint16 cannot hold the ids of model.vocab_size %d: use uint32",
            cfg->model.vocab_size);
}

static void check_rest(const cu_config_t *cfg, problems_t *pr) {
    if (cfg->eval.patience > 0 && cfg->eval.every_steps == 0)
        add(pr,
            "eval.patience (%ld) needs evaluations to count: set eval.every_steps, or "
            "eval.patience to 0",
            cfg->eval.patience);
    if (cfg->safety.enabled && !cfg->safety.policy[0])
        add(pr, "safety.enabled is true but safety.policy is empty: give a policy file or "
                "built-in (the shipped default), or set safety.enabled: false");
}

/* One problem: its message. Several: a count and one line each. */
static int report(const problems_t *pr, cu_error_t *err) {
    if (pr->n == 0) return CU_OK;
    if (pr->n == 1) return cu_error_set(err, CU_EINVAL, "%s", pr->msg[0]);
    char text[sizeof err->msg];
    size_t used = (size_t)snprintf(text, sizeof text, "%d problems in the config:", pr->n);
    int shown = pr->n < MAX_PROBLEMS ? pr->n : MAX_PROBLEMS;
    for (int i = 0; i < shown && used < sizeof text; i++) {
        snprintf(text + used, sizeof text - used, "\n  - %s", pr->msg[i]);
        used = strlen(text);
    }
    return cu_error_set(err, CU_EINVAL, "%s", text);
}

static int report_free(problems_t *pr, cu_error_t *err) {
    int rc = report(pr, err);
    free(pr);
    return rc;
}

int config_validate(const cu_config_t *cfg, int world_size, cu_error_t *err) {
    problems_t *pr = calloc(1, sizeof *pr);
    if (!pr) return cu_error_set(err, CU_ENOMEM, "out of memory validating the config");
    if (world_size < 1) add(pr, "world size %d: a job needs at least one rank", world_size);
    check_keys(cfg, pr);
    /* Values out of their own range would only add confusing follow-ups. */
    if (pr->n) return report_free(pr, err);
    check_model(cfg, pr);
    check_batches(cfg, world_size, pr);
    check_train(cfg, pr);
    check_lora(cfg, pr);
    check_data(cfg, pr);
    check_rest(cfg, pr);
    return report_free(pr, err);
}
