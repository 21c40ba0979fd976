/*
 * The job configuration: a YAML file with the sections job, model, tokenizer,
 * lora, data, train, eval, checkpoint, safety and slurm, plus `a.b=value`
 * overrides from the command line. Every key has a type, a default and a
 * one-line meaning in one schema table (config.c); parsing, validation, the
 * resolved YAML written back and docs/config.md all come from that table.
 *
 * Errors name the file, line and column of the offending key and, for an
 * unknown key, suggest the nearest valid one ("did you mean train.lr?").
 */
#ifndef CU_IO_CONFIG_H
#define CU_IO_CONFIG_H

#include <stddef.h>

#include "core/error.h"

#define CU_CFG_STR 256     /* longest string value, including the NUL */
#define CU_CFG_MAX_LIST 16 /* most entries in a list value */

typedef struct {
    int n;
    char items[CU_CFG_MAX_LIST][CU_CFG_STR];
} cu_cfg_list_t;

typedef struct {
    struct {
        char name[CU_CFG_STR];     /* job name; the run directory is runs_dir/name */
        char runs_dir[CU_CFG_STR]; /* where run directories live */
        long seed;                 /* master seed: weights, LoRA init, dropout, data order */
    } job;
    struct {
        char arch[CU_CFG_STR]; /* "gpt2" or "llama" */
        char init[CU_CFG_STR]; /* "random" or a path to a base model */
        int n_layer, n_head, n_embd;
        int vocab_size; /* 0 = take the tokenizer's */
        int max_seq_len;
        float init_std;
        /* llama only */
        int n_kv_head;  /* 0 = n_head */
        int head_dim;   /* 0 = n_embd / n_head */
        int ffn_hidden; /* 0 = 4 * n_embd */
        float rope_theta, norm_eps;
        int tie_embeddings;
    } model;
    struct {
        char kind[CU_CFG_STR]; /* "byte" or "gpt2" */
        /* gpt2: folder with encoder.json+vocab.bpe or vocab.json+merges.txt */
        char path[CU_CFG_STR];
    } tokenizer;
    struct {
        int enabled;           /* 0: full fine-tuning */
        cu_cfg_list_t targets; /* per model.arch (gpt.h's lora_target_bits) */
        int r;
        float alpha;
        int rslora; /* scale alpha/sqrt(r) instead of alpha/r */
        float dropout;
        char init[CU_CFG_STR];      /* "kaiming" or "gaussian" */
        char init_from[CU_CFG_STR]; /* a PEFT adapter folder to continue, "" = none */
    } lora;
    struct {
        char source[CU_CFG_STR]; /* "random", "text" or "tokens" */
        char path[CU_CFG_STR];   /* text: a UTF-8 file; tokens: raw little-endian uint16/uint32 */
        char token_dtype[CU_CFG_STR]; /* tokens: "uint16" or "uint32" */
        int seq_len;
        float val_fraction; /* held-out share of a text/tokens source */
    } data;
    struct {
        int global_batch_size; /* sequences per optimizer step, over all ranks */
        int micro_batch_size;  /* sequences per forward/backward on one rank */
        long max_steps;
        float lr, min_lr;
        long warmup_steps;
        char schedule[CU_CFG_STR]; /* "cosine", "linear" or "constant" */
        float weight_decay, beta1, beta2, eps;
        float grad_clip;            /* max global gradient norm; 0 = off */
        int threads;                /* BLAS, oneDNN and OpenMP threads per rank */
        char precision[CU_CFG_STR]; /* "fp32" or "bf16" */
        int activation_checkpointing;
        int shard_optimizer; /* ZeRO 1/2: moments and reduced gradients by slice */
        int log_every;
        char output[CU_CFG_STR]; /* final trainable state; "" = <run dir>/final.h5 */
    } train;
    struct {
        long every_steps; /* 0 = off */
        int batches;
        cu_cfg_list_t prompts;
        int max_new_tokens;
        float temperature;
        int top_k;
        float top_p;
        long patience;               /* evaluations without improvement before stopping; 0 = off */
        char exec_tasks[CU_CFG_STR]; /* JSON lines {name, prompt, test}; "" = off */
        cu_cfg_list_t exec_command;  /* the command that runs a program, e.g. [python3, x.py] */
        char exec_file[CU_CFG_STR];  /* the file the program is written to */
        float exec_timeout_s;
        int exec_allow_rlimits_only; /* run tasks where the sandbox gets no cgroup */
    } eval;
    struct {
        long every_steps; /* 0 = only at the end */
        int keep_last;
        char resume[CU_CFG_STR]; /* "auto", "never" or a checkpoint path */
    } checkpoint;
    struct {
        int enabled;
        char policy[CU_CFG_STR];
    } safety;
    struct {
        char partition[CU_CFG_STR], time[CU_CFG_STR], mem[CU_CFG_STR];
        char account[CU_CFG_STR], qos[CU_CFG_STR], constraint[CU_CFG_STR];
        int nodes, ntasks_per_node, cpus_per_task;
        char launcher[CU_CFG_STR]; /* "srun" or "mpirun" */
        int signal_grace_s;
        cu_cfg_list_t extra; /* extra #SBATCH directives */
    } slurm;
} cu_config_t;

/* Fills cfg with every key's default. */
void config_defaults(cu_config_t *cfg);

/* Reads YAML text (from a file called `origin` for messages) over the
 * defaults already in cfg. Unknown keys, wrong types and out-of-range values
 * are errors (CU_EINVAL) naming origin:line:column and the key. */
int config_parse_yaml(cu_config_t *cfg, const char *text, size_t len, const char *origin,
                      cu_error_t *err);

/* config_defaults + config_parse_yaml of a file. */
int config_load_file(cu_config_t *cfg, const char *path, cu_error_t *err);

/* Applies one `section.key=value` override (value in YAML scalar/flow syntax,
 * e.g. lora.targets=[qkv,mlp_fc]). */
int config_apply_override(cu_config_t *cfg, const char *assignment, cu_error_t *err);

/* Adjusts a value that has one sensible reading instead of refusing it,
 * after all overrides and before config_validate: train.warmup_steps above
 * train.max_steps becomes max_steps (the warm-up spans the run). What
 * changed goes to note as one sentence for a warning ("" when nothing). */
void config_settle(cu_config_t *cfg, char *note, size_t cap);

/* The i-th key of the schema ("train.lr"), NULL past the last; *values (if
 * values is not NULL) gets an enum's or a boolean's choices as "a|b|c", else
 * NULL. For shell completion (codexctl completion keys). */
const char *config_key_name(int i, const char **values);

/* Fills hint with "; did you mean 'listen.port'?" naming the names[] closest
 * to word (up to three tied), or "" when none is close; for dotted names the
 * closer of the whole name and its last part counts, as for codex-train's
 * keys. codex-ita's ita.yaml uses it for its own keys. */
void config_suggest_name(const char *word, const char *const *names, size_t n, char *hint,
                         size_t cap);

/* Cross-field checks after all overrides (e.g. global_batch_size divisible by
 * micro_batch_size, min_lr <= lr, n_embd divisible by n_head). world_size is
 * the number of ranks that will share each global batch. */
int config_validate(const cu_config_t *cfg, int world_size, cu_error_t *err);

/* The resolved config as YAML, every key present. Allocates; free() it. */
char *config_to_yaml(const cu_config_t *cfg);

/* docs/config.md's reference table generated from the schema. Allocates. */
char *config_reference_markdown(void);

/* ---- Additions: comparison, single values, schema checks, docs ---- */

/* How many keys differ between a and b; describes them in out (if non-NULL)
 * as "train.lr: 0.001 -> 0.002; lora.r: 8 -> 16", truncated to cap. Used to
 * say what changed when a job resumes from a checkpoint of another config. */
int config_diff(const cu_config_t *a, const cu_config_t *b, char *out, size_t cap);

/* One key's value as YAML text (e.g. "0.001", "[qkv, mlp_fc]", "\"\""), as
 * config_to_yaml writes it. CU_EINVAL (with a suggestion) for an unknown key;
 * the text is truncated to cap. */
int config_format_value(const cu_config_t *cfg, const char *key, char *out, size_t cap,
                        cu_error_t *err);

/* Checks the schema itself: unique keys, every default parses and lies in its
 * range, ranges fit the field types. For the unit tests. */
int config_schema_check(cu_error_t *err);

/* The markers around the generated part of docs/config.md. */
#define CU_CONFIG_DOC_BEGIN "<!-- BEGIN GENERATED CONFIG REFERENCE (tools/gen_config_doc.c) -->"
#define CU_CONFIG_DOC_END "<!-- END GENERATED CONFIG REFERENCE -->"

/* Replaces what lies between the markers in doc (docs/config.md's text) with
 * config_reference_markdown(). Allocates *out (free() it); CU_EFORMAT when
 * the markers are missing or out of order. *changed tells whether the text
 * differs from doc. */
int config_doc_update(const char *doc, size_t len, char **out, int *changed, cu_error_t *err);

#endif
