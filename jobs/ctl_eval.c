/*
 * codexctl eval: loss, perplexity and token accuracy of a trained run's
 * model (adapter unmerged on its base) or a Hugging Face GPT-2 or Llama folder on a
 * split of a dataset from `codexctl prepare`.
 */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/dataset.h"
#include "io/tokens.h"
#include "jobs/run_model.h"
#include "jobs/train_eval.h"

static const char USAGE[] =
    "usage: codexctl eval MODEL_OR_RUN --data DATASET.h5 [options]\n"
    "\n"
    "Measures a run's model (a run directory, its final.h5 or a checkpoint: the\n"
    "adapter applied unmerged on its base) or a Hugging Face GPT-2 or Llama folder on a\n"
    "dataset made by `codexctl prepare`.\n"
    "\n"
    "  --data DATASET.h5        the dataset (required)\n"
    "  --split val|train        which split (default val)\n"
    "  --seq-len T              tokens per window (default: the run's data.seq_len)\n"
    "  --batch-size B           windows per forward pass (default 8)\n"
    "  --max-windows N          at most N windows (default 256; 0: all); of a run's\n"
    "                           val split, the first N its job evaluated: N =\n"
    "                           eval.batches x train.global_batch_size gives the job's\n"
    "                           own validation loss\n"
    "  --base DIR               a different base than the run's model.init\n"
    "  --which best|final       a run directory's best.h5 (the best evaluation) or\n"
    "                           final.h5 (default)\n"
    "  --json                   one JSON object instead of text\n"
    "  -h, --help               this text\n"
    "\n"
    "Exit status: 0 measured, 1 failure, 2 bad usage or input.\n";

typedef struct {
    const char *model, *data, *split, *base, *which;
    int seq_len, batch;
    long max_windows;
    int json;
} eval_opts_t;

static int parse(int argc, char **argv, eval_opts_t *o) {
    static const struct option longs[] = {{"data", required_argument, 0, 'd'},
                                          {"split", required_argument, 0, 's'},
                                          {"seq-len", required_argument, 0, 'T'},
                                          {"batch-size", required_argument, 0, 'B'},
                                          {"max-windows", required_argument, 0, 'n'},
                                          {"base", required_argument, 0, 'b'},
                                          {"which", required_argument, 0, 'W'},
                                          {"json", no_argument, 0, 'j'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    *o = (eval_opts_t){.split = "val", .batch = 8, .max_windows = 256};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        char *end = NULL;
        long v = 0;
        if (c == 'T' || c == 'B' || c == 'n') {
            v = strtol(optarg, &end, 10);
            if (!end || *end || v < (c == 'n' ? 0 : 1)) {
                fprintf(stderr, "codexctl eval: '%s' is not a valid count\n", optarg);
                return 2;
            }
        }
        switch (c) {
        case 'h':
            fputs(USAGE, stdout);
            return -1;
        case 'd':
            o->data = optarg;
            break;
        case 's':
            o->split = optarg;
            break;
        case 'W':
            o->which = optarg;
            break;
        case 'b':
            o->base = optarg;
            break;
        case 'j':
            o->json = 1;
            break;
        case 'T':
            o->seq_len = (int)v;
            break;
        case 'B':
            o->batch = (int)v;
            break;
        case 'n':
            o->max_windows = v;
            break;
        default:
            fprintf(stderr, "codexctl eval: bad option '%s' (codexctl eval --help)\n",
                    argv[optind - 1]);
            return 2;
        }
    }
    if (optind != argc - 1 || !o->data) {
        fputs("codexctl eval: give one MODEL_OR_RUN and --data DATASET.h5 (codexctl eval --help)\n",
              stderr);
        return 2;
    }
    if (strcmp(o->split, "val") && strcmp(o->split, "train")) {
        fprintf(stderr, "codexctl eval: --split is val or train, not '%s'\n", o->split);
        return 2;
    }
    o->model = argv[optind];
    return 0;
}

typedef struct {
    double loss_sum;
    long valid, correct, windows;
} tally_t;

static int measure(run_model_t *rm, const eval_opts_t *o, int T, tally_t *t, cu_error_t *err) {
    dataset_meta_t meta;
    int rc = dataset_read_meta(o->data, &meta, err);
    if (rc) return rc;
    if (strcmp(meta.tokenizer_sha256, tokenizer_hash(rm->tok)) != 0)
        return cu_error_set(err, CU_EINVAL,
                            "%s was tokenised with another tokenizer (%s) than the "
                            "model's",
                            o->data, meta.tokenizer_kind);
    token_source_t *src;
    int V = gpt_config(rm->model)->vocab_size;
    /* a run's val split in the order the job's own evaluations walk it:
     * its first eval.batches x train.global_batch_size windows are the
     * ones the job measured */
    uint64_t seed = rm->src[0] && !strcmp(o->split, "val") ? eval_val_seed(&rm->cfg) : 0;
    if ((rc = tokens_open_h5(&src, o->data, o->split, V, seed, err))) return rc;
    long windows = 0;
    rc = tokens_windows(src, T, &windows, err);
    if (rc == CU_OK && o->max_windows > 0 && windows > o->max_windows) windows = o->max_windows;
    int B = o->batch;
    int32_t *win = malloc(sizeof(int32_t) * (size_t)(T + 1));
    int32_t *in = malloc(sizeof(int32_t) * (size_t)B * T),
            *tg = malloc(sizeof(int32_t) * (size_t)B * T);
    if (rc == CU_OK && (!win || !in || !tg)) rc = cu_error_set(err, CU_ENOMEM, "out of memory");
    /* one epoch of the seeded permutation visits every window once; with
     * --max-windows the first N of it are a spread-out sample */
    for (long g0 = 0; rc == CU_OK && g0 < windows; g0 += B) {
        int b = 0;
        for (; b < B && g0 + b < windows && rc == CU_OK; b++) {
            rc = tokens_sample(src, g0 + b, T, win, NULL, err);
            memcpy(in + (long)b * T, win, sizeof(int32_t) * (size_t)T);
            memcpy(tg + (long)b * T, win + 1, sizeof(int32_t) * (size_t)T);
        }
        gpt_loss_t l;
        if (rc == CU_OK) rc = gpt_forward(rm->model, in, tg, b, T, 0, 1.0f, 0, &l, err);
        if (rc == CU_OK) {
            t->loss_sum += l.loss_sum;
            t->valid += l.n_valid;
            t->correct += l.n_correct;
            t->windows += b;
        }
    }
    free(win), free(in), free(tg);
    tokens_free(src);
    return rc;
}

int ctl_eval(int argc, char **argv) {
    eval_opts_t o;
    int code = parse(argc, argv, &o);
    if (code) return code < 0 ? 0 : code;
    run_model_t rm;
    cu_error_t err = {0};
    char picked[4200];
    int rc = run_pick_which(o.model, o.which, picked, sizeof picked, &err);
    if (rc) {
        fprintf(stderr, "codexctl: %s\n", err.msg);
        return 2;
    }
    rc = run_model_open(picked, o.base, &rm, &err);
    int T = o.seq_len ? o.seq_len : rm.cfg.data.seq_len;
    tally_t t = {0};
    if (rc == CU_OK && T > gpt_config(rm.model)->max_seq_len)
        rc = cu_error_set(&err, CU_EINVAL, "--seq-len %d exceeds the model's context of %d", T,
                          gpt_config(rm.model)->max_seq_len);
    if (rc == CU_OK) rc = measure(&rm, &o, T, &t, &err);
    if (rc == CU_OK && t.valid == 0)
        rc = cu_error_set(&err, CU_EINVAL, "%s's %s split has no window of %d tokens", o.data,
                          o.split, T + 1);
    if (rc == CU_OK) {
        double loss = t.loss_sum / (double)t.valid, acc = (double)t.correct / (double)t.valid;
        if (o.json)
            printf("{\"model\": \"%s\", \"data\": \"%s\", \"split\": \"%s\", \"windows\": %ld, "
                   "\"tokens\": %ld, \"loss\": %.6f, \"perplexity\": %.4f, \"token_accuracy\": "
                   "%.6f}\n",
                   o.model, o.data, o.split, t.windows, t.valid, loss, exp(loss), acc);
        else
            printf("%s on %s (%s): %ld windows, %ld tokens | loss %.4f | perplexity %.2f | "
                   "token accuracy %.3f\n",
                   o.model, o.data, o.split, t.windows, t.valid, loss, exp(loss), acc);
    } else {
        fprintf(stderr, "codexctl eval: %s\n", err.msg);
    }
    if (rm.model || rm.tok) run_model_close(&rm);
    return rc == CU_OK ? 0 : rc == CU_EINVAL || rc == CU_EFORMAT ? 2 : 1;
}
