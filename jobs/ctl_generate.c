/*
 * codexctl generate: continue a prompt with a trained run's model (its
 * adapter applied unmerged on its base) or a Hugging Face GPT-2 or Llama folder, on
 * the KV cache, with temperature, top-k and top-p. The output passes the
 * output stage of the safety policy: secrets and personal data it contains
 * are printed redacted, with a note on stderr.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/run_model.h"
#include "model/sample.h"
#include "safety/output.h"

static const char USAGE[] =
    "usage: codexctl generate MODEL_OR_RUN --prompt TEXT [options]\n"
    "\n"
    "Continues TEXT with a run's model (a run directory, its final.h5 or a\n"
    "checkpoint: the adapter applied unmerged on the run's base) or a Hugging\n"
    "Face GPT-2 or Llama folder.\n"
    "\n"
    "  --prompt TEXT            the text to continue (required)\n"
    "  --max-new-tokens N       at most N tokens (default 64)\n"
    "  --temperature T          0 is greedy (default 0.8)\n"
    "  --top-k K                sample among the K likeliest (default 40; 0 off)\n"
    "  --top-p P                nucleus sampling (default 0.95; 1 off)\n"
    "  --seed N                 sampling seed (default 1)\n"
    "  --base DIR               a different base than the run's model.init\n"
    "  --which best|final       a run directory's best.h5 (the best evaluation) or\n"
    "                           final.h5 (default)\n"
    "  --policy PATH            the safety policy for the output (default built in)\n"
    "  -h, --help               this text\n"
    "\n"
    "Exit status: 0 printed, 1 failure or output blocked by the policy, 2 bad usage.\n";

typedef struct {
    const char *model, *prompt, *base, *policy, *which;
    int max_new, top_k;
    float temperature, top_p;
    unsigned long seed;
} gen_opts_t;

static int number(const char *what, const char *s, double lo, double hi, double *v) {
    char *end = NULL;
    *v = strtod(s, &end);
    if (!end || *end || *v < lo || *v > hi) {
        fprintf(stderr, "codexctl generate: %s must be a number in [%g, %g], got '%s'\n", what, lo,
                hi, s);
        return 2;
    }
    return 0;
}

static int parse(int argc, char **argv, gen_opts_t *o) {
    static const struct option longs[] = {{"prompt", required_argument, 0, 'p'},
                                          {"max-new-tokens", required_argument, 0, 'n'},
                                          {"temperature", required_argument, 0, 't'},
                                          {"top-k", required_argument, 0, 'k'},
                                          {"top-p", required_argument, 0, 'P'},
                                          {"seed", required_argument, 0, 's'},
                                          {"base", required_argument, 0, 'b'},
                                          {"which", required_argument, 0, 'W'},
                                          {"policy", required_argument, 0, 'y'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    *o = (gen_opts_t){.max_new = 64, .top_k = 40, .temperature = 0.8f, .top_p = 0.95f, .seed = 1};
    optind = 1;
    opterr = 0;
    int c;
    double v;
    while ((c = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case 'h':
            fputs(USAGE, stdout);
            return -1;
        case 'p':
            o->prompt = optarg;
            break;
        case 'W':
            o->which = optarg;
            break;
        case 'b':
            o->base = optarg;
            break;
        case 'y':
            o->policy = optarg;
            break;
        case 'n':
            bad = number("--max-new-tokens", optarg, 1, 1e6, &v), o->max_new = (int)v;
            break;
        case 'k':
            bad = number("--top-k", optarg, 0, 1e9, &v), o->top_k = (int)v;
            break;
        case 't':
            bad = number("--temperature", optarg, 0, 100, &v), o->temperature = (float)v;
            break;
        case 'P':
            bad = number("--top-p", optarg, 0, 1, &v), o->top_p = (float)v;
            break;
        case 's':
            bad = number("--seed", optarg, 0, 1e18, &v), o->seed = (unsigned long)v;
            break;
        default:
            fprintf(stderr, "codexctl generate: bad option '%s' (codexctl generate --help)\n",
                    argv[optind - 1]);
            return 2;
        }
        if (bad) return bad;
    }
    if (optind != argc - 1 || !o->prompt) {
        fputs("codexctl generate: give one MODEL_OR_RUN and --prompt TEXT "
              "(codexctl generate --help)\n",
              stderr);
        return 2;
    }
    o->model = argv[optind];
    return 0;
}

/* sample_generate keeps the prompt's last tokens when prompt and
 * continuation do not fit the context: say so rather than answer a prompt
 * the model never saw whole. */
static void warn_if_cut(const run_model_t *rm, int n_prompt, int max_new) {
    int maxT = gpt_config(rm->model)->max_seq_len;
    if (max_new > maxT - 1) max_new = maxT - 1;
    if (n_prompt + max_new <= maxT) return;
    fprintf(stderr,
            "codexctl generate: warning: the prompt is %d tokens but the model's context is %d "
            "(model.max_seq_len) with %d for new tokens: only its last %d tokens are used; "
            "shorten it or lower --max-new-tokens\n",
            n_prompt, maxT, max_new, maxT - max_new);
}

/* Generates the continuation of o->prompt into *text (malloc'd bytes). */
static int continue_prompt(run_model_t *rm, const gen_opts_t *o, char **text, size_t *len,
                           cu_error_t *err) {
    int32_t *ids = NULL, *out = NULL;
    size_t n = 0, cap = 0, bcap = 0;
    int rc = tokenizer_encode_doc(rm->tok, (const uint8_t *)o->prompt, strlen(o->prompt), &ids, &n,
                                  &cap, err);
    if (rc == CU_OK && n == 0) rc = cu_error_set(err, CU_EINVAL, "--prompt is empty");
    out = rc == CU_OK ? malloc(sizeof(int32_t) * (size_t)o->max_new) : NULL;
    if (rc == CU_OK && !out) rc = cu_error_set(err, CU_ENOMEM, "out of memory");
    cu_rng_t rng;
    cu_rng_seed(&rng, o->seed);
    sample_params_t sp = {.temperature = o->temperature,
                          .top_k = o->top_k,
                          .top_p = o->top_p,
                          .n_vocab = tokenizer_vocab_size(rm->tok)};
    int n_out = 0;
    if (rc == CU_OK) warn_if_cut(rm, (int)n, o->max_new);
    if (rc == CU_OK)
        rc = sample_generate(rm->model, ids, (int)n, o->max_new, &sp, &rng, tokenizer_eot(rm->tok),
                             out, &n_out, err);
    uint8_t *bytes = NULL;
    *len = 0;
    if (rc == CU_OK) rc = tokenizer_decode(rm->tok, out, (size_t)n_out, &bytes, len, &bcap, err);
    *text = (char *)bytes;
    free(ids);
    free(out);
    return rc;
}

int ctl_generate(int argc, char **argv) {
    gen_opts_t o;
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
    char *text = NULL;
    size_t len = 0;
    if (rc == CU_OK) rc = continue_prompt(&rm, &o, &text, &len, &err);
    safety_engine_t *eng = NULL;
    if (rc == CU_OK) rc = safety_engine_new(o.policy, &eng, &err);
    safety_output_result_t r;
    if (rc == CU_OK) rc = safety_check_output(eng, text ? text : "", len, &r, &err);
    if (rc != CU_OK) {
        fprintf(stderr, "codexctl generate: %s\n", err.msg);
        free(text);
        safety_engine_free(eng);
        run_model_close(&rm);
        return rc == CU_EINVAL || rc == CU_EFORMAT ? 2 : 1;
    }
    int blocked = r.verdict == SAFETY_VERDICT_BLOCK;
    fputs(o.prompt, stdout);
    fwrite(r.redacted.findings.count ? r.redacted.text : text, 1,
           r.redacted.findings.count ? r.redacted.len : len, stdout);
    fputc('\n', stdout);
    if (r.redacted.findings.count)
        fprintf(stderr, "codexctl generate: %zu finding(s) of the safety policy redacted%s\n",
                r.redacted.findings.count, blocked ? " (a block rule: exit 1)" : "");
    safety_output_result_free(&r);
    safety_engine_free(eng);
    free(text);
    run_model_close(&rm);
    return blocked ? 1 : 0;
}
