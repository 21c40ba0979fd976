/*
 * The job configuration's schema: one table row per key with its dotted
 * path, type, default, range and meaning, and the field of cu_config_t it
 * fills. Everything else reads this table — defaults, the YAML reader, the
 * overrides, validation, the resolved YAML written back and docs/config.md —
 * so adding a key is adding a field to config.h and a row here.
 *
 * This file also holds the lookups over the table and the "did you mean"
 * suggestions: edit distance over whole dotted keys and over the last part,
 * a key's name found under another section, and the names other trainers
 * use for the same thing (learning_rate, lora_alpha, block_size, ...).
 */
#include "io/config.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/config_internal.h"

/* ------------------------------------------------------- string formats */

static int check_name(const char *s, char *why, size_t cap) {
    for (const char *p = s; *p; p++) {
        if (!isalnum((unsigned char)*p) && *p != '.' && *p != '_' && *p != '-') {
            snprintf(why, cap,
                     "may hold only letters, digits, '.', '_' and '-' (it names a folder)");
            return 1;
        }
    }
    if (s[0] == '.' || s[0] == '-') {
        snprintf(why, cap, "must not start with '%c'", s[0]);
        return 1;
    }
    return 0;
}

/* Reads 1..max_digits digits; returns the count read (0 if none). */
static int read_digits(const char **p, int max_digits) {
    int n = 0;
    while (isdigit((unsigned char)**p) && n < max_digits) (*p)++, n++;
    return isdigit((unsigned char)**p) ? 0 : n;
}

/* sbatch --time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS. */
static int check_slurm_time(const char *s, char *why, size_t cap) {
    if (!strcmp(s, "UNLIMITED") || !strcmp(s, "INFINITE")) return 0;
    const char *p = s;
    int fields = 0;
    if (!read_digits(&p, 9) || *p != '-')
        p = s; /* no "D-" prefix */
    else
        p++;
    while (fields < 3) {
        if (!read_digits(&p, 9)) break;
        fields++;
        if (*p != ':') break;
        p++;
    }
    int ok = *p == '\0' && fields >= 1 && p[-1] != ':';
    if (!ok) {
        snprintf(why, cap,
                 "must be a Slurm time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS");
        return 1;
    }
    return 0;
}

static int check_slurm_mem(const char *s, char *why, size_t cap) {
    if (!*s) return 0;
    const char *p = s;
    int digits = read_digits(&p, 12);
    if (digits && *p && strchr("KMGTkmgt", *p)) p++;
    if (!digits || *p) {
        snprintf(why, cap, "must be a memory size such as 4000M or 16G (sbatch --mem)");
        return 1;
    }
    return 0;
}

static int check_no_space(const char *s, char *why, size_t cap) {
    for (const char *p = s; *p; p++) {
        if (*p == ' ') {
            snprintf(why, cap, "must not contain spaces");
            return 1;
        }
    }
    return 0;
}

static int check_sbatch_option(const char *s, char *why, size_t cap) {
    if (!strncmp(s, "#SBATCH", 7)) {
        snprintf(why, cap, "is written without '#SBATCH': give just the option, e.g. --exclusive");
        return 1;
    }
    if (s[0] != '-') {
        snprintf(why, cap, "must be an sbatch option starting with '-', e.g. --exclusive");
        return 1;
    }
    return 0;
}

static const cfg_format_t FMT_NAME = {check_name, "letters, digits, `.`, `_`, `-`"};
static const cfg_format_t FMT_TIME = {
    check_slurm_time, "`MM`, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`, `UNLIMITED`"};
static const cfg_format_t FMT_MEM = {check_slurm_mem, "empty or a size: `4000M`, `16G`"};
static const cfg_format_t FMT_TOKEN = {check_no_space, "no spaces"};
static const cfg_format_t FMT_SBATCH = {check_sbatch_option, "sbatch options: `--exclusive`"};

/* ---------------------------------------------------------------- table */

#define OFF(f) offsetof(cu_config_t, f)
#define SZ(f) sizeof(((cu_config_t *)0)->f)
#define OPEN_LO (-HUGE_VAL)
#define OPEN_HI HUGE_VAL
#define NUM(key, type, f, def, lo, hi, flags, meaning)                                             \
    { key, type, OFF(f), SZ(f), def, lo, hi, flags, NULL, NULL, meaning }
#define INT(key, f, def, lo, hi, meaning) NUM(key, CFG_INT, f, def, lo, hi, 0, meaning)
#define LONG(key, f, def, lo, hi, meaning) NUM(key, CFG_LONG, f, def, lo, hi, 0, meaning)
#define FLOAT(key, f, def, lo, hi, flags, meaning)                                                 \
    NUM(key, CFG_FLOAT, f, def, lo, hi, flags, meaning)
#define BOOL(key, f, def, meaning) NUM(key, CFG_BOOL, f, def, 0, 1, 0, meaning)
#define STR(key, f, def, flags, fmt, meaning)                                                      \
    { key, CFG_STRING, OFF(f), SZ(f), def, 0, 0, flags, NULL, fmt, meaning }
#define ENUM(key, f, def, allowed, meaning)                                                        \
    { key, CFG_ENUM, OFF(f), SZ(f), def, 0, 0, 0, allowed, NULL, meaning }
#define LIST(key, f, def, flags, allowed, fmt, meaning)                                            \
    { key, CFG_LIST, OFF(f), SZ(f), def, 0, 0, flags, allowed, fmt, meaning }

static const cfg_section_t SECTIONS[] = {
    {"job", "the run's name, folder and seed"},
    {"model", "the network and where its weights come from"},
    {"tokenizer", "how text becomes token ids"},
    {"lora", "the low-rank adapters that are trained"},
    {"data", "what is trained on"},
    {"train", "the optimiser, schedule and batches"},
    {"eval", "validation loss, sample generation and early stopping"},
    {"checkpoint", "saving and resuming"},
    {"safety", "secret/PII scanning of data and generated text"},
    {"slurm", "how `codexctl submit` asks Slurm for resources"},
};

static const cfg_key_t KEYS[] = {
    STR("job.name", job.name, "demo", CFG_NONEMPTY, &FMT_NAME,
        "Job name; the run directory is `<runs_dir>/<name>`."),
    STR("job.runs_dir", job.runs_dir, "runs", CFG_NONEMPTY, NULL,
        "Folder that holds the run directories (default `$CU_RUNS_DIR` when set, else `runs`)."),
    LONG("job.seed", job.seed, "1337", 0, OPEN_HI,
         "Master seed: initial weights, LoRA init, dropout and data order."),

    ENUM("model.arch", model.arch, "gpt2", "gpt2|llama|starcoder2",
         "Architecture: `gpt2` (learned positions, LayerNorm, GELU, tied head), `llama` "
         "(rotary positions, RMSNorm, SwiGLU, grouped-query attention, no biases) or "
         "`starcoder2` (llama's attention with biases, LayerNorm, a GELU MLP of `c_fc` and "
         "`c_proj`). A Hugging Face `model.init` decides it from config.json's `model_type` "
         "(`llama`, `qwen2` and `mistral` are all `llama`, their differences read from the "
         "folder: docs/export.md#supported-model-families)."),
    STR("model.init", model.init, "random", CFG_NONEMPTY, NULL,
        "`random` for fresh weights, or the path of a base model (.safetensors or .h5)."),
    INT("model.n_layer", model.n_layer, "2", 1, 1024, "Transformer blocks."),
    INT("model.n_head", model.n_head, "2", 1, 1024,
        "Attention heads per block; must divide `n_embd`."),
    INT("model.n_embd", model.n_embd, "64", 1, 65536, "Width of the residual stream."),
    INT("model.vocab_size", model.vocab_size, "0", 0, 16777216,
        "Rows of the token embedding; 0 takes the tokenizer's vocabulary size."),
    INT("model.max_seq_len", model.max_seq_len, "256", 1, 1048576,
        "Longest context the model accepts (learned positions)."),
    FLOAT("model.init_std", model.init_std, "0.02", 0, 1, CFG_MIN_EXCL,
          "Standard deviation of randomly initialised weights."),
    INT("model.n_kv_head", model.n_kv_head, "0", 0, 1024,
        "llama, starcoder2: key/value heads (grouped-query attention), must divide `n_head`; 0 = "
        "`n_head`."),
    INT("model.head_dim", model.head_dim, "0", 0, 65536,
        "llama: width of one attention head (`head_dim`), even; 0 = `n_embd / n_head`. When it "
        "differs, `q_proj` is (`n_head` * `head_dim`, `n_embd`) and `o_proj` its transpose, and "
        "`n_embd` need not be divisible by `n_head`."),
    INT("model.ffn_hidden", model.ffn_hidden, "0", 0, 1048576,
        "llama, starcoder2: width of the MLP (`intermediate_size`); 0 = 4 * `n_embd`."),
    FLOAT("model.rope_theta", model.rope_theta, "10000", 0, OPEN_HI, CFG_MIN_EXCL,
          "llama, starcoder2: base of the rotary position embeddings."),
    FLOAT("model.norm_eps", model.norm_eps, "1e-05", 0, 1, CFG_MIN_EXCL,
          "llama: epsilon of RMSNorm (`rms_norm_eps`); starcoder2's LayerNorm uses 1e-5."),
    BOOL("model.tie_embeddings", model.tie_embeddings, "false",
         "llama, starcoder2: the output head is the token embedding (GPT-2 always ties it)."),

    ENUM("tokenizer.kind", tokenizer.kind, "byte", "byte|gpt2",
         "`byte`: 256 byte values plus end-of-text; `gpt2`: byte-level BPE (GPT-2's, or a "
         "Hugging Face tokenizer.json such as Llama-3's). A `model.init` folder that ships "
         "tokenizer files needs `gpt2`."),
    STR("tokenizer.path", tokenizer.path, "", 0, NULL,
        "gpt2: folder with encoder.json + vocab.bpe, vocab.json + merges.txt, or a Hugging Face "
        "tokenizer.json (byte-level BPE, e.g. GPT-2's or Llama-3's); its tokenizer_config.json / "
        "config.json name the special tokens (docs/formats.md). Empty with `gpt2`: the "
        "`model.init` "
        "folder when it holds tokenizer files (a Hugging Face model's own tokenizer)."),

    BOOL("lora.enabled", lora.enabled, "true",
         "Train low-rank adapters; `false` fine-tunes every weight."),
    LIST("lora.targets", lora.targets, "all-linear", CFG_UNIQUE,
         "qkv|attn_proj|mlp_fc|mlp_proj|q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj|"
         "c_fc|c_proj|all-linear",
         NULL,
         "Linear layers that get adapters: gpt2's `qkv`, `attn_proj`, `mlp_fc`, `mlp_proj`; "
         "llama's `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`, `down_proj`; "
         "starcoder2's `q_proj`, `k_proj`, `v_proj`, `o_proj`, `c_fc`, `c_proj`; "
         "`all-linear` is every one of the architecture's (PEFT's meaning: every linear of the "
         "blocks, not the output head)."),
    INT("lora.r", lora.r, "8", 1, 4096, "Adapter rank."),
    FLOAT("lora.alpha", lora.alpha, "16", 0, OPEN_HI, CFG_MIN_EXCL,
          "Adapter scale: updates are multiplied by alpha/r."),
    BOOL("lora.rslora", lora.rslora, "false",
         "Rank-stabilised LoRA: scale by alpha/sqrt(r) instead of alpha/r."),
    FLOAT("lora.dropout", lora.dropout, "0.0", 0, 1, CFG_MAX_EXCL,
          "Dropout on the adapters' input while training."),
    ENUM(
        "lora.init", lora.init, "kaiming", "kaiming|gaussian|pissa|olora",
        "Initialisation of the adapters. `kaiming` (uniform) or `gaussian` A with B zero, so "
        "training starts from the base model. `pissa`: A and B from the top-r singular triplets "
        "of each adapted weight W (A = sqrt(S_r/s) V_r^T, B = U_r sqrt(S_r/s), s the adapter "
        "scale); `olora`: B = Q[:, :r], A = R[:r] of the QR of W. For both the frozen base becomes "
        "W - s B A, so the model starts unchanged; the factorisations run on all ranks "
        "(ScaLAPACK) and the starting adapters are stored with the run (`/lora_init`)."),
    STR("lora.init_from", lora.init_from, "", 0, NULL,
        "A PEFT adapter folder (adapter_config.json + adapter_model.safetensors, e.g. from "
        "`codexctl export --format peft`) whose A and B start the training instead of "
        "`lora.init`. Its r, lora_alpha, use_rslora and target_modules must equal lora.r, "
        "lora.alpha, lora.rslora and lora.targets (a mismatch is an error naming both values); "
        "its base must be model.init. A checkpoint to resume from still wins."),

    ENUM("data.source", data.source, "random", "random|text|tokens|hdf5",
         "`random` tokens (smoke tests), a UTF-8 `text` file, a raw `tokens` file, or an `hdf5` "
         "dataset from `codexctl prepare` (its own train and val splits)."),
    STR("data.path", data.path, "", 0, NULL,
        "The text file, tokens file, or HDF5 dataset (`codexctl prepare`)."),
    ENUM("data.token_dtype", data.token_dtype, "uint16", "uint16|uint32",
         "Element type of a tokens file (little-endian)."),
    INT("data.seq_len", data.seq_len, "64", 1, 1048576,
        "Tokens per training sequence; at most `model.max_seq_len`."),
    FLOAT("data.val_fraction", data.val_fraction, "0.1", 0, 0.5, 0,
          "Share of a `text` or `tokens` source held out (its last windows) for evaluation; an "
          "`hdf5` dataset brings its own val split."),

    INT("train.global_batch_size", train.global_batch_size, "8", 1, 1048576,
        "Sequences per optimiser step, summed over all ranks."),
    INT("train.micro_batch_size", train.micro_batch_size, "8", 1, 65536,
        "Sequences per forward/backward pass on one rank; gradients accumulate."),
    LONG("train.max_steps", train.max_steps, "100", 1, 1e12, "Optimiser steps to run."),
    FLOAT("train.lr", train.lr, "1e-3", 0, OPEN_HI, CFG_MIN_EXCL,
          "Peak learning rate (reached after warm-up)."),
    FLOAT("train.min_lr", train.min_lr, "0", 0, OPEN_HI, 0,
          "Learning rate at the end of the cosine or linear decay."),
    LONG("train.warmup_steps", train.warmup_steps, "0", 0, 1e12,
         "Steps of linear warm-up from 0 to `lr`."),
    ENUM("train.schedule", train.schedule, "cosine", "cosine|linear|constant",
         "Decay from `lr` to `min_lr` after warm-up."),
    FLOAT("train.weight_decay", train.weight_decay, "0", 0, OPEN_HI, 0,
          "AdamW decoupled weight decay."),
    FLOAT("train.beta1", train.beta1, "0.9", 0, 1, CFG_MAX_EXCL, "AdamW first-moment decay."),
    FLOAT("train.beta2", train.beta2, "0.999", 0, 1, CFG_MAX_EXCL, "AdamW second-moment decay."),
    FLOAT("train.eps", train.eps, "1e-8", 0, OPEN_HI, CFG_MIN_EXCL, "AdamW denominator epsilon."),
    FLOAT("train.grad_clip", train.grad_clip, "1.0", 0, OPEN_HI, 0,
          "Largest global gradient norm; 0 turns clipping off."),
    INT("train.threads", train.threads, "1", 1, 1024,
        "Threads per rank: OpenBLAS's and oneDNN's, and the OpenMP threads of the work outside "
        "the matrix products (attention heads, norm, softmax and loss rows, GELU/SwiGLU, AdamW). "
        "Results do not depend on it."),
    ENUM("train.precision", train.precision, "fp32", "fp32|bf16",
         "Compute precision of the products with base weights. `fp32`: OpenBLAS, exact against "
         "the PyTorch reference. `bf16`: the base weights are held in bf16 and the forward and "
         "input-gradient products run on oneDNN with fp32 accumulation (about twice fp32's speed "
         "on CPUs with AVX-512 BF16 or AMX); LoRA A/B, gradients, AdamW, norms, softmax, the loss "
         "and the allreduce stay fp32, and full fine-tuning keeps fp32 master weights. See "
         "docs/performance.md."),
    BOOL("train.activation_checkpointing", train.activation_checkpointing, "false",
         "Keep only each block's input in the forward and recompute the block in the backward: "
         "activation memory of one block instead of all of them, for about a third more compute; "
         "losses and gradients are bit for bit the same."),
    BOOL("train.shard_optimizer", train.shard_optimizer, "false",
         "ZeRO stages 1 and 2 on CPUs: each rank owns a contiguous 1/W slice of the trainable "
         "parameters, receives only that slice's summed gradient (each micro-batch's gradient "
         "is handed to the owners bucket by bucket during its backward, and the exchanged part "
         "of the gradient buffer is given back), keeps only that slice's AdamW moments and "
         "updates only it; the updated slices are then gathered on every rank. Checkpoints are "
         "written by every rank at once into one file (parallel HDF5). In bf16 full "
         "fine-tuning each rank also keeps the fp32 master weights of its own slice of the "
         "matrices only (the bf16 copy the products read is gathered after each update; norms, "
         "biases and embeddings stay whole in fp32), and final.h5/best.h5 are gathered to rank 0 "
         "piece by piece. Weights are bit for bit "
         "those of `false` on the same number of ranks, and (with either setting) the same on "
         "any number of ranks from 2 up; a run may resume with either setting on any number of "
         "ranks. See docs/performance.md for the memory."),
    INT("train.log_every", train.log_every, "1", 1, 1000000000,
        "Steps between lines in metrics.jsonl and the log."),
    STR("train.output", train.output, "", 0, NULL,
        "Where the final trainable state goes; empty means `<run dir>/final.h5`."),

    LONG("eval.every_steps", eval.every_steps, "0", 0, 1e12,
         "Steps between evaluations; 0 turns evaluation off."),
    INT("eval.batches", eval.batches, "4", 1, 1048576, "Validation batches per evaluation."),
    LIST("eval.prompts", eval.prompts, "", CFG_MULTILINE, NULL, NULL,
         "Prompts to sample a completion for at each evaluation."),
    INT("eval.max_new_tokens", eval.max_new_tokens, "32", 1, 1048576,
        "Tokens generated per prompt."),
    FLOAT("eval.temperature", eval.temperature, "0.8", 0, 100, 0,
          "Sampling temperature; 0 is greedy decoding."),
    INT("eval.top_k", eval.top_k, "40", 0, 16777216,
        "Sample among the k most likely tokens; 0 turns it off."),
    FLOAT("eval.top_p", eval.top_p, "0.95", 0, 1, CFG_MIN_EXCL,
          "Nucleus sampling: the smallest set of tokens with this much probability; 1 is off."),
    LONG("eval.patience", eval.patience, "0", 0, 1e12,
         "Stop after this many evaluations without a better loss; 0 never stops early."),
    STR("eval.exec_tasks", eval.exec_tasks, "", 0, NULL,
        "JSON-lines file of code tasks `{name, prompt, test}` run in the sandbox at each "
        "evaluation (pass@1); empty = off."),
    LIST("eval.exec_command", eval.exec_command, "python3,solution.py", 0, NULL, NULL,
         "Command that runs a task's program (prompt + completion + test) in the sandbox."),
    STR("eval.exec_file", eval.exec_file, "solution.py", CFG_NONEMPTY, NULL,
        "File name the program is written to in the sandbox's private directory."),
    FLOAT("eval.exec_timeout_s", eval.exec_timeout_s, "10", 0.1, 3600, 0,
          "Wall-clock limit for one task's run."),
    BOOL("eval.exec_allow_rlimits_only", eval.exec_allow_rlimits_only, "false",
         "Run tasks even where the sandbox cannot have a cgroup of its own (a container without "
         "them): held by rlimits only, which memory in memfd/shmem and the process count escape. "
         "Off: such runs are refused (docs/safety.md)."),

    LONG("checkpoint.every_steps", checkpoint.every_steps, "0", 0, 1e12,
         "Steps between checkpoints; 0 saves only at the end (and on pre-emption)."),
    INT("checkpoint.keep_last", checkpoint.keep_last, "3", 0, 1000000,
        "Checkpoints kept, newest first; 0 keeps all."),
    STR("checkpoint.resume", checkpoint.resume, "auto", CFG_NONEMPTY, NULL,
        "`auto` (the run's latest checkpoint, if any), `never`, or a checkpoint path."),

    BOOL("safety.enabled", safety.enabled, "true",
         "Scan training data and generated text for secrets and personal data."),
    STR("safety.policy", safety.policy, "built-in", 0, NULL,
        "The safety policy: what to do when a detector matches. `built-in` is the policy "
        "shipped as configs/safety/policy.yaml, compiled into the programs (so a job runs from "
        "any folder); otherwise a policy file (docs/safety.md; write ./built-in for a file of "
        "that name)."),

    STR("slurm.partition", slurm.partition, "", 0, &FMT_TOKEN,
        "`--partition`; empty uses the cluster's default."),
    STR("slurm.time", slurm.time, "01:00:00", CFG_NONEMPTY, &FMT_TIME, "`--time` limit."),
    STR("slurm.mem", slurm.mem, "", 0, &FMT_MEM, "`--mem` per node; empty uses the default."),
    STR("slurm.account", slurm.account, "", 0, &FMT_TOKEN, "`--account` to charge."),
    STR("slurm.qos", slurm.qos, "", 0, &FMT_TOKEN, "`--qos`."),
    STR("slurm.constraint", slurm.constraint, "", 0, NULL, "`--constraint` (node features)."),
    INT("slurm.nodes", slurm.nodes, "1", 1, 100000, "`--nodes`."),
    INT("slurm.ntasks_per_node", slurm.ntasks_per_node, "2", 1, 4096,
        "`--ntasks-per-node`: ranks per node."),
    INT("slurm.cpus_per_task", slurm.cpus_per_task, "1", 1, 4096,
        "`--cpus-per-task`; match `train.threads`."),
    ENUM("slurm.launcher", slurm.launcher, "srun", "srun|mpirun",
         "How the batch script starts the ranks."),
    INT("slurm.signal_grace_s", slurm.signal_grace_s, "120", 0, 65535,
        "Seconds before the time limit that Slurm signals the job to checkpoint and requeue."),
    LIST("slurm.extra", slurm.extra, "", 0, NULL, &FMT_SBATCH,
         "More `#SBATCH` options, one per entry."),
};

#define N_KEYS ((int)(sizeof KEYS / sizeof KEYS[0]))
#define N_SECTIONS ((int)(sizeof SECTIONS / sizeof SECTIONS[0]))

const cfg_key_t *cfg_keys(int *n) {
    *n = N_KEYS;
    return KEYS;
}

const char *config_key_name(int i, const char **values) {
    if (values) *values = NULL;
    if (i < 0 || i >= N_KEYS) return NULL;
    if (values && KEYS[i].type == CFG_ENUM) *values = KEYS[i].allowed;
    if (values && KEYS[i].type == CFG_BOOL) *values = "true|false";
    return KEYS[i].key;
}

const cfg_section_t *cfg_sections(int *n) {
    *n = N_SECTIONS;
    return SECTIONS;
}

size_t cfg_section_len(const cfg_key_t *k) {
    return (size_t)(strchr(k->key, '.') - k->key);
}

const cfg_key_t *cfg_find_key_n(const char *dotted, size_t len) {
    for (int i = 0; i < N_KEYS; i++) {
        if (strlen(KEYS[i].key) == len && !memcmp(KEYS[i].key, dotted, len)) return &KEYS[i];
    }
    return NULL;
}

const cfg_key_t *cfg_find_key(const char *dotted) {
    return cfg_find_key_n(dotted, strlen(dotted));
}

const cfg_section_t *cfg_find_section(const char *name, size_t len) {
    for (int i = 0; i < N_SECTIONS; i++) {
        if (strlen(SECTIONS[i].name) == len && !memcmp(SECTIONS[i].name, name, len))
            return &SECTIONS[i];
    }
    return NULL;
}

/* ---------------------------------------------------------- suggestions */

#define CFG_EDIT_MAX 64

/* Optimal string alignment distance: insertions, deletions, substitutions
 * and swaps of neighbours ("trian" -> "train" is one edit). Case-insensitive. */
int cfg_edit_distance(const char *a, size_t la, const char *b, size_t lb) {
    if (la > CFG_EDIT_MAX || lb > CFG_EDIT_MAX) return INT_MAX / 2;
    int d[CFG_EDIT_MAX + 1][CFG_EDIT_MAX + 1];
    for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
            int best = d[i - 1][j - 1] + (ca != cb);
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
                tolower((unsigned char)a[i - 2]) == cb && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    }
    return d[la][lb];
}

/* Names other trainers (Hugging Face, nanoGPT, PEFT) give our keys. */
static const struct {
    const char *alias, *key;
} ALIASES[] = {
    {"learning_rate", "train.lr"},
    {"lr_min", "train.min_lr"},
    {"batch_size", "train.global_batch_size"},
    {"per_device_train_batch_size", "train.micro_batch_size"},
    {"steps", "train.max_steps"},
    {"num_steps", "train.max_steps"},
    {"max_iters", "train.max_steps"},
    {"epochs", "train.max_steps"},
    {"num_train_epochs", "train.max_steps"},
    {"warmup", "train.warmup_steps"},
    {"warmup_iters", "train.warmup_steps"},
    {"scheduler", "train.schedule"},
    {"lr_scheduler_type", "train.schedule"},
    {"max_grad_norm", "train.grad_clip"},
    {"clip_grad_norm", "train.grad_clip"},
    {"adam_beta1", "train.beta1"},
    {"adam_beta2", "train.beta2"},
    {"adam_epsilon", "train.eps"},
    {"logging_steps", "train.log_every"},
    {"log_interval", "train.log_every"},
    {"num_threads", "train.threads"},
    {"rank", "lora.r"},
    {"lora_r", "lora.r"},
    {"lora_alpha", "lora.alpha"},
    {"lora_dropout", "lora.dropout"},
    {"target_modules", "lora.targets"},
    {"use_rslora", "lora.rslora"},
    {"block_size", "model.max_seq_len"},
    {"n_ctx", "model.max_seq_len"},
    {"n_positions", "model.max_seq_len"},
    {"context_length", "model.max_seq_len"},
    {"max_position_embeddings", "model.max_seq_len"},
    {"hidden_size", "model.n_embd"},
    {"num_key_value_heads", "model.n_kv_head"},
    {"n_kv_heads", "model.n_kv_head"},
    {"intermediate_size", "model.ffn_hidden"},
    {"rms_norm_eps", "model.norm_eps"},
    {"tie_word_embeddings", "model.tie_embeddings"},
    {"model_type", "model.arch"},
    {"d_model", "model.n_embd"},
    {"num_hidden_layers", "model.n_layer"},
    {"num_layers", "model.n_layer"},
    {"n_layers", "model.n_layer"},
    {"num_attention_heads", "model.n_head"},
    {"num_heads", "model.n_head"},
    {"n_heads", "model.n_head"},
    {"sequence_length", "data.seq_len"},
    {"max_seq_length", "data.seq_len"},
    {"eval_steps", "eval.every_steps"},
    {"eval_interval", "eval.every_steps"},
    {"save_steps", "checkpoint.every_steps"},
    {"save_total_limit", "checkpoint.keep_last"},
    {"resume_from_checkpoint", "checkpoint.resume"},
    {"output_dir", "job.runs_dir"},
    {"time_limit", "slurm.time"},
    {"ntasks", "slurm.ntasks_per_node"},
};

static int is_alias_of(const char *name, size_t len, const char *alias) {
    return strlen(alias) == len && !strncasecmp(name, alias, len);
}

static const char *alias_target(const char *leaf, size_t len) {
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0]; i++) {
        if (is_alias_of(leaf, len, ALIASES[i].alias)) return ALIASES[i].key;
    }
    return NULL;
}

/* How far `dotted` (section `sec`, last part `leaf`) is from key k: the
 * closer of the whole path and the last part, the latter one step further
 * when it sits in another section. A leaf that starts another key's name
 * ("warmup" of "warmup_steps") counts as one step. */
static int key_score(const cfg_key_t *k, const char *dotted, const char *sec, size_t sec_len,
                     const char *leaf) {
    size_t ksec = cfg_section_len(k);
    const char *kleaf = k->key + ksec + 1;
    size_t ll = strlen(leaf), kl = strlen(kleaf);
    int other = sec_len && !(sec_len == ksec && !memcmp(sec, k->key, ksec));
    int d = cfg_edit_distance(dotted, strlen(dotted), k->key, strlen(k->key));
    int dl = cfg_edit_distance(leaf, ll, kleaf, kl) + other;
    if (dl < d) d = dl;
    if (ll >= 4 && ll < kl && !strncasecmp(leaf, kleaf, ll) && 1 + other < d) d = 1 + other;
    return d;
}

/* One edit in three characters, at least one edit, never all of them. */
static int close_enough(int d, size_t len) {
    int limit = (int)len / 3;
    return d <= (limit > 1 ? limit : 1) && d < (int)len;
}

/* Appends "'a'", "'a' or 'b'", "'a', 'b' or 'c'". */
static void append_choices(char *hint, size_t cap, const char **names, int n) {
    size_t used = strlen(hint);
    for (int i = 0; i < n && used < cap; i++) {
        const char *sep = i == 0 ? "" : (i == n - 1 ? " or " : ", ");
        int w = snprintf(hint + used, cap - used, "%s'%s'", sep, names[i]);
        if (w < 0 || (size_t)w >= cap - used) return;
        used += (size_t)w;
    }
}

static int suggest_section(const char *name, char *hint, size_t cap) {
    size_t len = strlen(name);
    int best = INT_MAX;
    const char *which = NULL;
    for (int i = 0; i < N_SECTIONS; i++) {
        int d = cfg_edit_distance(name, len, SECTIONS[i].name, strlen(SECTIONS[i].name));
        if (d < best) best = d, which = SECTIONS[i].name;
    }
    if (!which || !close_enough(best, len)) return 0;
    snprintf(hint, cap, "; did you mean '%s'?", which);
    return 1;
}

void cfg_suggest_key(const char *dotted, char *hint, size_t cap) {
    hint[0] = '\0';
    const char *dot = strrchr(dotted, '.');
    const char *leaf = dot ? dot + 1 : dotted;
    size_t sec_len = dot ? (size_t)(strchr(dotted, '.') - dotted) : 0;
    const char *loose = dot ? "" : " (keys go under their section)";
    const char *alias = alias_target(leaf, strlen(leaf));
    if (alias && !cfg_find_key(dotted)) {
        snprintf(hint, cap, "; did you mean '%s'?%s", alias, loose);
        return;
    }
    if (!dot && suggest_section(dotted, hint, cap)) return;
    const char *best[3];
    int n = 0, best_d = INT_MAX;
    for (int i = 0; i < N_KEYS; i++) {
        int d = key_score(&KEYS[i], dotted, dotted, sec_len, leaf);
        if (d < best_d) best_d = d, n = 0;
        if (d == best_d && n < 3) best[n++] = KEYS[i].key;
    }
    if (!n || !close_enough(best_d, strlen(leaf))) return;
    snprintf(hint, cap, "; did you mean ");
    append_choices(hint, cap, best, n);
    size_t used = strlen(hint);
    snprintf(hint + used, cap - used, "?%s", loose);
}

void config_suggest_name(const char *word, const char *const *names, size_t n, char *hint,
                         size_t cap) {
    if (cap) hint[0] = '\0';
    const char *dot = strrchr(word, '.');
    const char *leaf = dot ? dot + 1 : word;
    size_t sec_len = dot ? (size_t)(dot - word) : 0, ll = strlen(leaf);
    const char *best[3];
    int nb = 0, best_d = INT_MAX;
    for (size_t i = 0; i < n; i++) {
        const char *kdot = strrchr(names[i], '.');
        const char *kleaf = kdot ? kdot + 1 : names[i];
        size_t ksec = kdot ? (size_t)(kdot - names[i]) : 0, kl = strlen(kleaf);
        int other = sec_len != ksec || memcmp(word, names[i], sec_len) != 0;
        int d = cfg_edit_distance(word, strlen(word), names[i], strlen(names[i]));
        int dl = cfg_edit_distance(leaf, ll, kleaf, kl) + other;
        if (dl < d) d = dl;
        if (ll >= 4 && ll < kl && !strncasecmp(leaf, kleaf, ll) && 1 + other < d) d = 1 + other;
        if (d < best_d) best_d = d, nb = 0;
        if (d == best_d && nb < 3) best[nb++] = names[i];
    }
    if (!nb || !close_enough(best_d, ll)) return;
    snprintf(hint, cap, "; did you mean ");
    append_choices(hint, cap, best, nb);
    size_t used = strlen(hint);
    if (used < cap) snprintf(hint + used, cap - used, "?");
}

void cfg_suggest_word(const char *word, const char *allowed, char *hint, size_t cap) {
    hint[0] = '\0';
    size_t wl = strlen(word);
    int best_d = INT_MAX;
    char best[64] = "";
    for (const char *p = allowed; *p;) {
        size_t n = strcspn(p, "|");
        int d = cfg_edit_distance(word, wl, p, n);
        if (d < best_d && n < sizeof best) {
            best_d = d;
            memcpy(best, p, n);
            best[n] = '\0';
        }
        p += n + (p[n] == '|');
    }
    if (best[0] && close_enough(best_d, wl)) snprintf(hint, cap, "; did you mean '%s'?", best);
}

void cfg_allowed_text(const char *allowed, const char *quote, char *out, size_t cap) {
    if (!out || cap == 0) return;
    out[0] = '\0';
    size_t used = 0;
    for (const char *p = allowed; *p;) {
        size_t n = strcspn(p, "|");
        int w = snprintf(out + used, cap - used, "%s%s%.*s%s", p == allowed ? "" : ", ", quote,
                         (int)n, p, quote);
        if (w < 0 || (size_t)w >= cap - used) return;
        used += (size_t)w;
        p += n + (p[n] == '|');
    }
}

/* ------------------------------------------------------------- defaults */

static int assign_default(cu_config_t *cfg, const cfg_key_t *k, cu_error_t *err) {
    cfg_scalar_t s = {k->def, strlen(k->def), 1, {"the schema's default", 0, 0}};
    if (k->type == CFG_LIST) return cfg_assign_csv(cfg, k, &s, err);
    return cfg_assign_scalar(cfg, k, &s, err);
}

void config_defaults(cu_config_t *cfg) {
    /* Zeroed first so that unused string bytes compare equal (memcmp of two
     * configs holding the same values is then exact). */
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < N_KEYS; i++) assign_default(cfg, &KEYS[i], NULL);
    /* one setting for where runs live: codex-train, codexctl and codex-ita
     * all start from $CU_RUNS_DIR when it is set */
    const char *runs = getenv("CU_RUNS_DIR");
    if (runs && runs[0] && strlen(runs) < sizeof cfg->job.runs_dir)
        snprintf(cfg->job.runs_dir, sizeof cfg->job.runs_dir, "%s", runs);
}

/* --------------------------------------------------------- schema check */

static size_t type_size(cfg_type_t t) {
    switch (t) {
    case CFG_INT:
    case CFG_BOOL:
        return sizeof(int);
    case CFG_LONG:
        return sizeof(long);
    case CFG_FLOAT:
        return sizeof(float);
    case CFG_STRING:
    case CFG_ENUM:
        return CU_CFG_STR;
    case CFG_LIST:
        return sizeof(cu_cfg_list_t);
    }
    return 0;
}

static int same_section(const cfg_key_t *a, const cfg_key_t *b) {
    size_t la = cfg_section_len(a);
    return la == cfg_section_len(b) && !memcmp(a->key, b->key, la);
}

static int check_row(const cfg_key_t *k, int index, cu_error_t *err) {
    size_t sl = cfg_section_len(k);
    if (!strchr(k->key, '.') || strchr(k->key + sl + 1, '.'))
        return cu_error_set(err, CU_EINTERNAL, "schema: key '%s' is not section.name", k->key);
    if (!cfg_find_section(k->key, sl))
        return cu_error_set(err, CU_EINTERNAL, "schema: '%s' has no section row", k->key);
    if (k->size != type_size(k->type))
        return cu_error_set(err, CU_EINTERNAL, "schema: '%s' field size %zu fits not its type",
                            k->key, k->size);
    if (k->type == CFG_INT && (k->min < INT_MIN || k->max > INT_MAX))
        return cu_error_set(err, CU_EINTERNAL, "schema: range of '%s' exceeds int", k->key);
    if ((k->type == CFG_ENUM && !k->allowed) ||
        (k->type != CFG_ENUM && k->type != CFG_LIST && k->allowed))
        return cu_error_set(err, CU_EINTERNAL, "schema: '%s' allowed values misplaced", k->key);
    if (!k->meaning[0] || strchr(k->meaning, '|'))
        return cu_error_set(err, CU_EINTERNAL, "schema: meaning of '%s' empty or has '|'", k->key);
    for (int j = 0; j < index; j++) {
        if (!strcmp(KEYS[j].key, k->key))
            return cu_error_set(err, CU_EINTERNAL, "schema: key '%s' twice", k->key);
    }
    if (index > 0 && !same_section(&KEYS[index - 1], k)) {
        for (int j = 0; j < index - 1; j++) {
            if (same_section(&KEYS[j], k))
                return cu_error_set(err, CU_EINTERNAL, "schema: section of '%s' split", k->key);
        }
    }
    return CU_OK;
}

int config_schema_check(cu_error_t *err) {
    cu_config_t *cfg = calloc(1, sizeof *cfg);
    if (!cfg) return cu_error_set(err, CU_ENOMEM, "out of memory");
    int rc = CU_OK;
    if (N_KEYS > CFG_MAX_KEYS || N_SECTIONS > CFG_MAX_SECTIONS)
        rc = cu_error_set(err, CU_EINTERNAL, "schema: raise CFG_MAX_KEYS or CFG_MAX_SECTIONS");
    for (int i = 0; i < N_KEYS && rc == CU_OK; i++) {
        rc = check_row(&KEYS[i], i, err);
        if (rc == CU_OK) rc = assign_default(cfg, &KEYS[i], err);
        if (rc == CU_OK) rc = cfg_check_value(cfg, &KEYS[i], err);
    }
    for (int i = 0; i < N_SECTIONS && rc == CU_OK; i++) {
        const char *name = SECTIONS[i].name;
        int found = 0;
        for (int j = 0; j < N_KEYS; j++) {
            found |= cfg_section_len(&KEYS[j]) == strlen(name) &&
                     !strncmp(KEYS[j].key, name, strlen(name));
        }
        if (!found) rc = cu_error_set(err, CU_EINTERNAL, "schema: section '%s' has no keys", name);
    }
    for (size_t i = 0; i < sizeof ALIASES / sizeof ALIASES[0] && rc == CU_OK; i++) {
        if (!cfg_find_key(ALIASES[i].key))
            rc = cu_error_set(err, CU_EINTERNAL, "schema: alias of unknown '%s'", ALIASES[i].key);
    }
    free(cfg);
    return rc;
}
