/*
 * Prints a model's logits on a fixed token sequence, one number a line, so
 * tests/adapter_e2e.py can compare models reached by different roads:
 *   lora_logits run RUN_OR_H5            a run's model (base + adapters, as
 *                                        eval/generate see it)
 *   lora_logits hf DIR                   a Hugging Face GPT-2 folder
 *   lora_logits peft BASE_DIR ADAPTER    a HF base with a PEFT LoRA adapter
 *                                        (adapter_config.json r, lora_alpha,
 *                                        use_rslora) applied unmerged
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/hf_gpt2.h"
#include "io/safetensors.h"
#include "jobs/run_model.h"

enum { T = 24 };

static int print_logits(gpt_t *m, cu_error_t *err) {
    int V = gpt_config(m)->vocab_size;
    int32_t tokens[T];
    for (int i = 0; i < T; i++) tokens[i] = (int32_t)((i * 37 + 11) % (V < 256 ? V : 256));
    int rc = gpt_reserve(m, 1, T, err);
    if (rc == CU_OK) rc = gpt_forward(m, tokens, NULL, 1, T, 0, 1.0f, 0, NULL, err);
    if (rc) return rc;
    float *logits = malloc(sizeof(float) * (size_t)T * V);
    if (!logits) return cu_error_set(err, CU_ENOMEM, "out of memory");
    gpt_logits(m, 0, T, logits);
    for (long i = 0; i < (long)T * V; i++) printf("%.9g\n", logits[i]);
    free(logits);
    return CU_OK;
}

static int peft_model(const char *base, const char *adapter, gpt_t **out, cu_error_t *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/adapter_config.json", adapter);
    json_t *cfg = json_load_file(path, 0, NULL);
    if (!cfg) return cu_error_set(err, CU_EINVAL, "cannot read %s", path);
    lora_config_t lc = {.enabled = 1,
                        .targets = lora_target_bits(GPT_ARCH_GPT2, "all-linear"),
                        .r = (int)json_integer_value(json_object_get(cfg, "r")),
                        .alpha = (float)json_number_value(json_object_get(cfg, "lora_alpha")),
                        .rslora = json_is_true(json_object_get(cfg, "use_rslora"))};
    json_decref(cfg);
    int rc = hf_gpt2_load(base, &lc, out, NULL, err);
    if (rc) return rc;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", adapter);
    st_model_t *st = NULL;
    if ((rc = st_open(path, &st, err))) return rc;
    int n;
    const gpt_tensor_t *lt = gpt_lora_tensors(*out, &n);
    float *lora = gpt_lora_params(*out, NULL);
    for (int i = 0; rc == CU_OK && i < n; i++) {
        char name[160];
        snprintf(name, sizeof name, "base_model.model.transformer.%s.weight", lt[i].name);
        const st_entry_t *e = st_find(st, name);
        if (!e || e->numel != (int64_t)lt[i].shape[0] * lt[i].shape[1])
            rc = cu_error_set(err, CU_EINVAL, "%s: no %s of the expected shape", path, name);
        else
            rc = st_read_f32(st, e, lora + lt[i].offset, err);
    }
    st_close(st);
    return rc;
}

int main(int argc, char **argv) {
    cu_error_t err = {0};
    int rc;
    if (argc == 3 && !strcmp(argv[1], "run")) {
        run_model_t rm;
        if ((rc = run_model_open(argv[2], NULL, &rm, &err)) == CU_OK) {
            rc = print_logits(rm.model, &err);
            run_model_close(&rm);
        }
    } else if (argc == 3 && !strcmp(argv[1], "hf")) {
        gpt_t *m = NULL;
        if ((rc = hf_gpt2_load(argv[2], NULL, &m, NULL, &err)) == CU_OK) rc = print_logits(m, &err);
        gpt_free(m);
    } else if (argc == 4 && !strcmp(argv[1], "peft")) {
        gpt_t *m = NULL;
        if ((rc = peft_model(argv[2], argv[3], &m, &err)) == CU_OK) rc = print_logits(m, &err);
        gpt_free(m);
    } else {
        fprintf(stderr, "usage: lora_logits run RUN | hf DIR | peft BASE_DIR ADAPTER_DIR\n");
        return 2;
    }
    if (rc) fprintf(stderr, "lora_logits: %s\n", err.msg);
    return rc ? 1 : 0;
}
