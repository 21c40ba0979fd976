/*
 * codexctl export: a run's LoRA adapter as a PEFT adapter folder, or the
 * base model with the adapter folded in as a Hugging Face GPT-2 or Llama folder
 * (docs/export.md).
 *
 * The input is a run directory (its final.h5, else the checkpoint that
 * checkpoints/latest names) or one .h5 file; the resolved job config in the
 * file's `config` attribute says what the tensors are (model sizes, LoRA
 * rank, alpha, rsLoRA, targets) and where the base came from (model.init).
 * Our adapter matrices are already PEFT's: A (r, in), B (out, r), whatever
 * the base layer's orientation, so `peft` only renames them (io/peft.c
 * holds the names per architecture); `merged` loads
 * the base, adds scale * B A to each adapted (out, in) weight and writes HF
 * names with Conv1D weights transposed to (in, out).
 *
 * Exit codes: 0 written, 1 a failure while reading or writing, 2 bad usage
 * or an input that is not what it should be.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "io/ckpt.h"
#include "io/config.h"
#include "io/hf_gpt2.h"
#include "io/peft.h"
#include "io/safetensors.h"
#include "io/tensor_h5.h"
#include "io/tokenizer_files.h"
#include "jobs/ctl.h"
#include "jobs/lora_init.h"
#include "jobs/run_model.h"
#include "model/gpt.h"
#include "rundir/rundir.h"
#include "safety/policy.h"
#include "safety/safety.h"

static const char USAGE[] =
    "usage: codexctl export RUN_OR_CHECKPOINT --format peft|merged -o DIR [--base DIR]\n"
    "                       [--dtype f32|bf16]\n"
    "\n"
    "Writes a run's LoRA adapter for use outside Codex-Universal.\n"
    "  RUN_OR_CHECKPOINT  a run directory (its final.h5, else checkpoints/latest)\n"
    "  --which best|final a run directory's best.h5 (the best evaluation) or final.h5\n"
    "                     or a final.h5 / checkpoint .h5 file\n"
    "  --format peft      DIR/adapter_model.safetensors + adapter_config.json, loadable\n"
    "                     with peft.PeftModel.from_pretrained(GPT2LMHeadModel, DIR)\n"
    "  --format merged    DIR/model.safetensors + config.json (+ tokenizer files): the base\n"
    "                     with the adapter folded in, a plain Hugging Face GPT-2 or Llama folder\n"
    "  -o, --output DIR   output folder (created with its parents if missing; files in it\n"
    "                     are replaced)\n"
    "  --base DIR         merged: the base model (a Hugging Face GPT-2 or Llama folder or a full\n"
    "                     fine-tuning final.h5) instead of the run's model.init\n"
    "  --dtype f32|bf16   merged: weight type written (default f32)\n"
    "  --base-name NAME   how the output names its base: adapter_config.json's\n"
    "                     base_model_name_or_path (a hub id such as gpt2, or the base's\n"
    "                     folder on the machine that loads it); default: the run's model.init\n"
    "\n"
    "Exit status: 0 written, 1 a read or write failed, 2 bad usage or input.\n";

typedef struct {
    const char *input, *format, *out, *base, *which, *base_name;
    st_dtype_t dtype;
} opts_t;

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("codexctl export: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (codexctl export --help)\n", stderr);
    va_end(ap);
    return 2;
}

/* 0: parsed; -1: --help shown; 2: bad usage. */
static int parse_args(int argc, char **argv, opts_t *o) {
    static const struct option longs[] = {
        {"format", required_argument, 0, 'f'}, {"output", required_argument, 0, 'o'},
        {"base", required_argument, 0, 'b'},   {"which", required_argument, 0, 'W'},
        {"dtype", required_argument, 0, 'd'},  {"base-name", required_argument, 0, 'N'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    *o = (opts_t){.dtype = ST_F32};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "f:o:h", longs, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(USAGE, stdout);
            return -1;
        case 'f':
            o->format = optarg;
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'W':
            o->which = optarg;
            break;
        case 'b':
            o->base = optarg;
            break;
        case 'N':
            if (!optarg[0]) return usage_error("%s", "--base-name is empty");
            o->base_name = optarg;
            break;
        case 'd':
            if (!strcmp(optarg, "f32"))
                o->dtype = ST_F32;
            else if (!strcmp(optarg, "bf16"))
                o->dtype = ST_BF16;
            else
                return usage_error("--dtype '%s': use f32 or bf16", optarg);
            break;
        default:
            return usage_error("bad or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind + 1 != argc)
        return usage_error("%s", optind >= argc ? "no RUN_OR_CHECKPOINT given"
                                                : "give exactly one RUN_OR_CHECKPOINT");
    o->input = argv[optind];
    if (!o->format) return usage_error("%s", "no --format: give peft or merged");
    if (strcmp(o->format, "peft") && strcmp(o->format, "merged"))
        return usage_error("--format '%s': use peft or merged", o->format);
    if (!o->out) return usage_error("%s", "no output: give -o DIR");
    if (o->base && !strcmp(o->format, "peft"))
        return usage_error("%s", "--base only applies to --format merged");
    return 0;
}

/* ---------------------------------------------------------------- PEFT */

/* A PiSSA/OLoRA adapter as plain LoRA against the original base, as PEFT's
 * path_initial_model_for_weight_conversion does: s (B A - B0 A0) =
 * s [B | -B0] [A ; A0], rank 2r, alpha doubled (times sqrt(2) with rsLoRA)
 * so the scale is unchanged. m holds the trained adapters; allocates *plain
 * (gpt_free), a model whose adapters are the plain ones. */
static int plain_lora_of(gpt_t *m, const lora_config_t *lc, const char *src, gpt_t **plain,
                         cu_error_t *err) {
    *plain = NULL;
    lora_config_t l2 = *lc;
    l2.r = 2 * lc->r;
    l2.alpha = lc->rslora ? lc->alpha * (float)sqrt(2.0) : 2 * lc->alpha;
    gpt_t *m2 = NULL;
    int nt, nt2;
    const gpt_tensor_t *lt = gpt_lora_tensors(m, &nt);
    const float *lora = gpt_lora_params(m, NULL);
    float *lora0 = NULL;
    int rc = run_load_lora_init(m, src, &lora0, err);
    if (rc == CU_OK) rc = gpt_create(&m2, gpt_config(m), &l2, err);
    if (rc) goto done;
    const gpt_tensor_t *lt2 = gpt_lora_tensors(m2, &nt2);
    float *out = gpt_lora_params(m2, NULL);
    for (int i = 0; i + 1 < nt; i += 2) {
        const gpt_tensor_t *A = &lt[i], *B = &lt[i + 1], *A2 = &lt2[i], *B2 = &lt2[i + 1];
        int r = lc->r, in = A->shape[1], rows = B->shape[0];
        /* A2 (2r, in) = [A ; A0] */
        memcpy(out + A2->offset, lora + A->offset, sizeof(float) * (size_t)r * in);
        memcpy(out + A2->offset + (size_t)r * in, lora0 + A->offset,
               sizeof(float) * (size_t)r * in);
        /* B2 (out, 2r) = [B | -B0] */
        for (int o = 0; o < rows; o++)
            for (int k = 0; k < r; k++) {
                out[B2->offset + (size_t)o * 2 * r + k] = lora[B->offset + (size_t)o * r + k];
                out[B2->offset + (size_t)o * 2 * r + r + k] = -lora0[B->offset + (size_t)o * r + k];
            }
    }
    *plain = m2;
    m2 = NULL;
done:
    gpt_free(m2);
    free(lora0);
    return rc;
}

/* -------------------------------------------------------------- merged */

static int copy_file(const char *from, const char *to, cu_error_t *err) {
    FILE *in = fopen(from, "rb");
    if (!in) return cu_error_set(err, CU_EIO, "cannot open %s: %s", from, strerror(errno));
    char tmp[4200];
    int rc = cu_format(tmp, sizeof tmp, err, "%s.tmp.%d", to, (int)getpid());
    FILE *out = rc ? NULL : fopen(tmp, "wb");
    if (!rc && !out) rc = cu_error_set(err, CU_EIO, "cannot create %s: %s", tmp, strerror(errno));
    char buf[65536];
    size_t k;
    while (out && (k = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, k, out) != k) {
            rc = cu_error_set(err, CU_EIO, "cannot write %s", tmp);
            break;
        }
    if (out && fclose(out) != 0 && !rc) rc = cu_error_set(err, CU_EIO, "cannot write %s", tmp);
    fclose(in);
    if (!rc && rename(tmp, to) != 0)
        rc = cu_error_set(err, CU_EIO, "cannot rename %s: %s", tmp, strerror(errno));
    if (rc && out) unlink(tmp);
    return rc;
}

/* Tokenizer files beside a HF base or in the run's tokenizer.path (OpenAI's
 * encoder.json / vocab.bpe are HF's vocab.json / merges.txt under other
 * names), the base's first. The export owns these names in `out`: each is
 * replaced, and one this export has no source for is removed, so a folder
 * exported into before never keeps another model's tokenizer (its
 * tokenizer.json, or vocab.json + merges.txt that a GPT-2-layout tokenizer
 * would be read from). Returns how many were copied, or -1. */
static int copy_tokenizer(const char *base_dir, const cu_config_t *c, const char *out,
                          cu_error_t *err) {
    static const char *const DEST[] = {"vocab.json",
                                       "merges.txt",
                                       "tokenizer.json",
                                       "tokenizer_config.json",
                                       "special_tokens_map.json",
                                       "generation_config.json"};
    enum { N_DEST = sizeof DEST / sizeof DEST[0] };
    static const struct {
        const char *from;
        int to; /* index in DEST */
    } SRC[] = {{"vocab.json", 0},
               {"merges.txt", 1},
               {"tokenizer.json", 2},
               {"tokenizer_config.json", 3},
               {"special_tokens_map.json", 4},
               {"generation_config.json", 5},
               {"encoder.json", 0},
               {"vocab.bpe", 1}};
    const char *dirs[2] = {base_dir, !strcmp(c->tokenizer.kind, "gpt2") ? c->tokenizer.path : NULL};
    int written[N_DEST] = {0}, copied = 0;
    char from[4200], to[4200];
    for (int d = 0; d < 2; d++) {
        if (!dirs[d] || !dirs[d][0] || !cu_is_dir(dirs[d])) continue;
        for (size_t i = 0; i < sizeof SRC / sizeof SRC[0]; i++) {
            if (written[SRC[i].to]) continue;
            if (cu_format(from, sizeof from, err, "%s/%s", dirs[d], SRC[i].from) ||
                cu_format(to, sizeof to, err, "%s/%s", out, DEST[SRC[i].to]))
                return -1;
            if (!cu_is_file(from)) continue;
            if (copy_file(from, to, err)) return -1;
            written[SRC[i].to] = 1;
            copied++;
        }
    }
    for (int k = 0; k < N_DEST; k++) {
        if (written[k]) continue;
        if (cu_format(to, sizeof to, err, "%s/%s", out, DEST[k])) return -1;
        if (cu_is_file(to) && unlink(to) != 0) {
            cu_error_set(err, CU_EIO, "cannot remove the stale %s: %s", to, strerror(errno));
            return -1;
        }
    }
    return copied;
}

static const char *last_component(const char *path);
static void source_label(const char *src, char *out, size_t cap);
static void base_sha256_of(const char *input, const char *src, char hex[65]);

static int write_merged(const opts_t *o, const char *src, const cu_config_t *c,
                        const lora_config_t *lc, cu_error_t *err) {
    const char *base = o->base ? o->base : c->model.init;
    gpt_config_t gc;
    int rc = run_model_config(c, base, &gc, err);
    run_base_t b = {0};
    if (rc == CU_OK) rc = gpt_create(&b.model, &gc, lc, err);
    if (rc == CU_OK) rc = run_load_base(&b, base, c, err);
    if (rc) goto done;
    int np, nt;
    const gpt_tensor_t *pt = gpt_param_tensors(b.model, &np);
    float *params = gpt_params(b.model, NULL);
    if (lc->enabled) {
        const gpt_tensor_t *lt = gpt_lora_tensors(b.model, &nt);
        float *lora = gpt_lora_params(b.model, NULL);
        if ((rc = h5_load_tensors(src, lora, lt, nt, err))) goto done;
        double scale = gpt_lora_scale(b.model);
        if ((rc = lora_fold(b.model, lora, scale, err))) goto done;
        /* PiSSA/OLoRA: the run trained against W - s B0 A0; against the
         * original base the update is s (B A - B0 A0) */
        if (lora_init_from_weights(c->lora.init)) {
            if ((rc = ckpt_load_lora_init(src, lora, lt, nt, err))) goto done;
            if ((rc = lora_fold(b.model, lora, -scale, err))) goto done;
        }
    } else if ((rc = h5_load_tensors(src, params, pt, np, err))) /* full fine-tuning */
        goto done;
    /* names, not this machine's paths: the folder is meant to be shared */
    char source[512], base_label[512], sha[65];
    source_label(src, source, sizeof source);
    if (o->base_name)
        snprintf(base_label, sizeof base_label, "%s", o->base_name);
    else
        snprintf(base_label, sizeof base_label, "%s", last_component(base));
    base_sha256_of(o->input, src, sha);
    const char *meta[] = {"codex_source",      source, "codex_base", base_label,
                          "codex_base_sha256", sha};
    if ((rc = hf_gpt2_save_weights(o->out, params, pt, np, o->dtype, meta, sha[0] ? 3 : 2, err)))
        goto done;
    /* one model.safetensors: an index left by an earlier sharded model in
     * the folder would be read instead of it */
    char idx[4200];
    if ((rc = cu_format(idx, sizeof idx, err, "%s/model.safetensors.index.json", o->out)))
        goto done;
    if (cu_is_file(idx) && unlink(idx) != 0) {
        rc = cu_error_set(err, CU_EIO, "cannot remove the stale %s: %s", idx, strerror(errno));
        goto done;
    }
    char from[4200];
    if (b.from_hf) rc = cu_format(from, sizeof from, err, "%s/config.json", b.hf_dir);
    if (rc == CU_OK) rc = hf_gpt2_write_config(o->out, b.from_hf ? from : NULL, &gc, o->dtype, err);
    if (rc == CU_OK && copy_tokenizer(b.from_hf ? b.hf_dir : NULL, c, o->out, err) < 0)
        rc = err->code;
done:
    gpt_free(b.model);
    return rc;
}

/* -------------------------------------------------------------- main */

/* The run directory an export input belongs to: itself, the folder of its
 * final.h5, or the parent of its checkpoints/ folder. */
static void run_dir_of(const char *in, char *dir, size_t cap) {
    snprintf(dir, cap, "%s", in);
    if (cu_is_dir(dir)) return;
    char *slash = strrchr(dir, '/');
    if (!slash) {
        snprintf(dir, cap, ".");
        return;
    }
    *slash = '\0';
    slash = strrchr(dir, '/');
    const char *last = slash ? slash + 1 : dir;
    if (!strcmp(last, "checkpoints")) {
        if (slash)
            *slash = '\0';
        else
            snprintf(dir, cap, ".");
    }
}

/* The safety policy may refuse to export what a run produced when samples
 * generated during its evaluations broke the output stage. */
static int check_safety(const char *input, const cu_config_t *cfg, cu_error_t *err) {
    if (!cfg->safety.enabled) return CU_OK;
    char dir[4096], path[4200];
    run_dir_of(input, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/state.json", dir);
    json_t *st = json_load_file(path, 0, NULL);
    json_int_t blocked =
        json_integer_value(json_object_get(json_object_get(st, "safety"), "blocked_outputs"));
    json_decref(st);
    if (blocked <= 0) return CU_OK;
    safety_engine_t *eng;
    int rc = safety_engine_new(cfg->safety.policy, &eng, err);
    if (rc) return cu_error_prefix(err, "the run's safety.policy");
    int refuse = safety_policy_refuse_export(safety_engine_policy(eng));
    safety_engine_free(eng);
    if (!refuse) return CU_OK;
    return cu_error_set(err, CU_EPOLICY,
                        "refused: %lld sample(s) generated during %s's evaluations broke the "
                        "safety policy (see the safety events in its events.jsonl), and %s says "
                        "evaluation.refuse_export: true",
                        (long long)blocked, dir, cfg->safety.policy);
}

/* The last component of a path ("random" stays "random"). */
static const char *last_component(const char *path) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    const char *s = path + n;
    while (s > path && s[-1] != '/') s--;
    return s;
}

/* "<run>/final.h5" or "<run>/checkpoints/step_00000100.h5": which file of
 * which run, without the folders above the run. */
static void source_label(const char *src, char *out, size_t cap) {
    char dir[4096];
    run_dir_of(src, dir, sizeof dir);
    size_t dl = strlen(dir);
    const char *rel = !strncmp(src, dir, dl) && src[dl] == '/' ? src + dl + 1 : last_component(src);
    char abs_dir[4096];
    const char *run = realpath(dir, abs_dir) ? last_component(abs_dir) : last_component(dir);
    snprintf(out, cap, "%.200s/%.200s", run, rel);
}

/* A folder transformers' from_pretrained reads: it has a config.json. */
static int is_hf_folder(const char *path) {
    char p[4200];
    if (!path[0] || !cu_is_dir(path)) return 0;
    snprintf(p, sizeof p, "%s/config.json", path);
    return cu_is_file(p);
}

/* The base's sha256 the run recorded in its provenance (the checkpoint's
 * attribute, else the run's provenance.json); "" when unknown. */
static void base_sha256_of(const char *input, const char *src, char hex[65]) {
    hex[0] = '\0';
    char *text = NULL;
    cu_error_t ignored;
    json_t *doc = NULL;
    if (hf_h5_read_attr(src, "provenance", &text, &ignored) == CU_OK && text)
        doc = json_loads(text, 0, NULL);
    free(text);
    if (!doc) {
        char dir[4096], path[4200];
        run_dir_of(input, dir, sizeof dir);
        snprintf(path, sizeof path, "%s/provenance.json", dir);
        doc = json_load_file(path, 0, NULL);
    }
    const char *s =
        json_string_value(json_object_get(json_object_get(doc, "base_model"), "sha256"));
    if (s && strlen(s) == 64) memcpy(hex, s, 65);
    json_decref(doc);
}

static int export_run(const opts_t *o, cu_error_t *err) {
    char src[4096];
    char picked[4200];
    int rc = run_pick_which(o->input, o->which, picked, sizeof picked, err);
    if (rc == CU_OK) rc = run_resolve_input(picked, src, sizeof src, err);
    if (rc) return rc;
    char *yaml = NULL;
    if ((rc = hf_h5_read_attr(src, "config", &yaml, err)))
        return cu_error_prefix(err, "not a final.h5 or checkpoint of a codex-train run");
    cu_config_t cfg;
    config_defaults(&cfg);
    char origin[4200];
    snprintf(origin, sizeof origin, "%s (config attribute)", src);
    rc = config_parse_yaml(&cfg, yaml, strlen(yaml), origin, err);
    free(yaml);
    if (rc) return rc;
    if ((rc = check_safety(o->input, &cfg, err))) return rc;
    lora_config_t lc = {0};
    if (cfg.lora.enabled) {
        lc = run_lora_config(&cfg, src, err, &rc);
        if (rc) return rc;
    } else if (!strcmp(o->format, "peft"))
        return cu_error_set(err, CU_EINVAL,
                            "%s is from a full fine-tuning run (lora.enabled: false): there is "
                            "no adapter; use --format merged",
                            src);
    if (access(o->out, F_OK) == 0 && !cu_is_dir(o->out))
        return cu_error_set(err, CU_EINVAL, "%s is not a directory", o->out);
    if ((rc = rundir_mkdirs(o->out, err))) return rc;
    if (!cu_is_dir(o->out)) return cu_error_set(err, CU_EINVAL, "%s is not a directory", o->out);
    if (!strcmp(o->format, "merged")) return write_merged(o, src, &cfg, &lc, err);
    gpt_config_t gc;
    gpt_t *m = NULL;
    if ((rc = run_model_config(&cfg, NULL, &gc, err)) || (rc = gpt_create(&m, &gc, &lc, err)))
        return rc;
    int nt;
    const gpt_tensor_t *lt = gpt_lora_tensors(m, &nt);
    float *lora = gpt_lora_params(m, NULL);
    rc = h5_load_tensors(src, lora, lt, nt, err);
    const peft_arch_t *arch = peft_arch_find(cfg.model.arch);
    if (rc == CU_OK && !arch)
        rc = cu_error_set(err, CU_EINVAL, "no PEFT naming for model.arch '%s'", cfg.model.arch);
    char base_name[sizeof cfg.model.init];
    snprintf(base_name, sizeof base_name, "%s", o->base_name ? o->base_name : cfg.model.init);
    peft_adapter_t pa = {.r = lc.r,
                         .alpha = lc.alpha,
                         .dropout = lc.dropout,
                         .rslora = lc.rslora,
                         .targets = lc.targets,
                         .base_model = base_name};
    if (!o->base_name && !is_hf_folder(cfg.model.init))
        fprintf(stderr,
                "codexctl export: warning: the run's base (model.init: '%s') is not a Hugging "
                "Face folder, so adapter_config.json's base_model_name_or_path cannot load it; "
                "pass --base-name NAME (a hub id such as gpt2, or the base's folder where the "
                "adapter will be loaded)\n",
                cfg.model.init);
    base_sha256_of(o->input, src, pa.base_sha256);
    gpt_t *plain = NULL; /* PiSSA/OLoRA: rank 2r against the original base */
    if (rc == CU_OK && lora_init_from_weights(cfg.lora.init) &&
        (rc = plain_lora_of(m, &lc, src, &plain, err)) == CU_OK) {
        pa.r = gpt_lora_config(plain)->r;
        pa.alpha = gpt_lora_config(plain)->alpha;
        lora = gpt_lora_params(plain, NULL);
        lt = gpt_lora_tensors(plain, &nt);
    }
    if (rc == CU_OK) rc = peft_write(o->out, arch, &pa, lora, lt, nt, err);
    gpt_free(plain);
    gpt_free(m);
    return rc;
}

int ctl_export(int argc, char **argv) {
    opts_t o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc < 0 ? 0 : rc;
    cu_error_t err = {0};
    rc = export_run(&o, &err);
    if (rc) {
        fprintf(stderr, "codexctl export: %s\n", err.msg);
        return rc == CU_EINVAL || rc == CU_EFORMAT ? 2 : 1; /* a policy refusal is 1 */
    }
    fprintf(stderr, "codexctl export: wrote %s (%s)\n", o.out, o.format);
    return 0;
}
