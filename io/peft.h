/*
 * PEFT adapters: Hugging Face peft's LoRA folder (adapter_config.json +
 * adapter_model.safetensors) written from, and read into, our LoRA tensors.
 *
 * Our LoRA tensors are named "<block><N>.<module>.lora_A|lora_B" (for GPT-2
 * "h.3.attn.c_attn.lora_A"), A (r, in) and B (out, r) whatever the base
 * layer's orientation, which is exactly how PEFT stores them. So an adapter
 * differs from ours only in names: PEFT's are
 * "base_model.model.<peft block><N>.<peft module>.lora_A.weight". One
 * peft_arch_t table entry per architecture says how the names map; every
 * function here works from that table and our tensor names, so another
 * architecture is one more entry in PEFT_ARCHS (io/peft.c).
 *
 * fan_in_fan_out only tells PEFT that the base layers are Conv1D (in, out)
 * when it folds B A into them; it does not change the shapes of lora_A and
 * lora_B (PEFT's own Conv1D LoRA layers keep A (r, in), B (out, r)), so the
 * reader checks shapes and never transposes.
 */
#ifndef CU_IO_PEFT_H
#define CU_IO_PEFT_H

#include <stddef.h>

#include "core/error.h"
#include "model/gpt.h"

#define PEFT_MAX_MODULES 16

/* One adaptable linear layer of a block. */
typedef struct {
    const char *ours; /* module path in our tensor names: "attn.c_attn" */
    const char *peft; /* module path in the HF model under the block: "attn.c_attn" */
    int target;       /* its LORA_* bit index in lora_config_t.targets */
} peft_module_t;

typedef struct {
    const char *arch;       /* model.arch: "gpt2" */
    const char *our_block;  /* prefix of our per-layer names before N: "h." */
    const char *peft_block; /* PEFT's: "base_model.model.transformer.h." */
    int fan_in_fan_out;     /* the base layers are Conv1D, weight (in, out) */
    int n_modules;
    peft_module_t modules[PEFT_MAX_MODULES];
} peft_arch_t;

/* The table entry for a model.arch value, NULL when there is none. */
const peft_arch_t *peft_arch_find(const char *arch);

/* "h.3.attn.c_attn.lora_A" -> "base_model.model.transformer.h.3.attn.c_attn.lora_A.weight". */
int peft_name_from_ours(const peft_arch_t *a, const char *ours, char *out, size_t cap,
                        cu_error_t *err);
/* The inverse; also accepts PEFT's in-memory form with ".default" before
 * ".weight". CU_EFORMAT for a name that is not one of the table's. */
int peft_name_to_ours(const peft_arch_t *a, const char *peft, char *out, size_t cap,
                      cu_error_t *err);

/* The LoRA settings adapter_config.json carries. */
typedef struct {
    int r;
    double alpha;
    double dropout;
    int rslora;
    int fan_in_fan_out;
    unsigned targets;       /* LORA_* bits that target_modules selects */
    char *target_modules;   /* as written, for messages: "c_attn, c_proj" (owned) */
    char *base_model;       /* base_model_name_or_path, NULL when absent (owned) */
    char base_sha256[65];   /* the base's sha256 (codex_base_sha256 metadata), "" unknown */
    char config_sha256[65]; /* of adapter_config.json (reader only) */
    char sha256[65];        /* of adapter_model.safetensors (reader only) */
} peft_adapter_t;

/* Writes dir/adapter_model.safetensors (F32; our tensors t[0..nt) from buf,
 * renamed) and dir/adapter_config.json. p->targets, r, alpha, dropout,
 * rslora, base_model and base_sha256 (written as the safetensors metadata
 * codex_base_sha256 when known) are used; fan_in_fan_out comes from the table. Each
 * file goes to a temporary name and is renamed. */
int peft_write(const char *dir, const peft_arch_t *a, const peft_adapter_t *p, const float *buf,
               const gpt_tensor_t *t, int nt, cu_error_t *err);

/* target_modules for the adapted layers (targets bits) as PEFT matches them
 * (a module whose name ends in ".<entry>"): the module's last name when no
 * other module of the block shares it unadapted, else its qualified path.
 * Fills names[] (pointers into the table) and returns how many. */
int peft_target_modules(const peft_arch_t *a, unsigned targets, const char **names, int cap);

/* Reads dir/adapter_config.json into *p (LoRA type, r, lora_alpha,
 * use_rslora, fan_in_fan_out, target_modules mapped onto the table, the
 * base model) and hashes both files. Errors name the file and key.
 * peft_adapter_free releases the strings (also after a failure). */
int peft_read_config(const char *dir, const peft_arch_t *a, peft_adapter_t *p, cu_error_t *err);
void peft_adapter_free(peft_adapter_t *p);

/* Reads dir/adapter_model.safetensors (F32, F16 or BF16) into buf laid out
 * as our tensors t[0..nt): every one must be present with its shape, and no
 * other tensor may be there; errors name the tensor. */
int peft_read_tensors(const char *dir, const peft_arch_t *a, float *buf, const gpt_tensor_t *t,
                      int nt, cu_error_t *err);

#endif
