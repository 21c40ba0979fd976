/*
 * Unit tests of io/peft: the name mapping both ways (and names it must
 * refuse), target_modules as PEFT matches them, a write/read round trip
 * through real files (F32, and BF16 / ".default" names as peft may save
 * them), and every way an adapter folder can be wrong: each error names the
 * file and the key or tensor.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "io/peft.h"
#include "io/safetensors.h"

static char dir[256];

static void test_names(void) {
    const peft_arch_t *a = peft_arch_find("gpt2");
    CHECK(a != NULL && peft_arch_find("nope") == NULL && peft_arch_find(NULL) == NULL);
    if (!a) return;
    char out[256];
    cu_error_t err = {0};
    CHECK(peft_name_from_ours(a, "h.3.attn.c_attn.lora_A", out, sizeof out, &err) == CU_OK);
    CHECK(!strcmp(out, "base_model.model.transformer.h.3.attn.c_attn.lora_A.weight"));
    CHECK(peft_name_from_ours(a, "h.11.mlp.c_proj.lora_B", out, sizeof out, &err) == CU_OK);
    CHECK(!strcmp(out, "base_model.model.transformer.h.11.mlp.c_proj.lora_B.weight"));
    CHECK(peft_name_to_ours(a, "base_model.model.transformer.h.11.mlp.c_proj.lora_B.weight", out,
                            sizeof out, &err) == CU_OK &&
          !strcmp(out, "h.11.mlp.c_proj.lora_B"));
    CHECK(peft_name_to_ours(a, "base_model.model.transformer.h.0.attn.c_proj.lora_A.default.weight",
                            out, sizeof out, &err) == CU_OK &&
          !strcmp(out, "h.0.attn.c_proj.lora_A"));
    static const char *const bad[] = {
        "base_model.model.transformer.h.0.attn.c_attn.lora_C.weight",
        "base_model.model.transformer.h.x.attn.c_attn.lora_A.weight",
        "base_model.model.transformer.h.0.attn.q_proj.lora_A.weight",
        "base_model.model.transformer.h.0.attn.c_attn.lora_A.bias",
        "transformer.h.0.attn.c_attn.lora_A.weight",
        "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight.x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = peft_name_to_ours(a, bad[i], out, sizeof out, &err);
        CHECK_MSG(rc == CU_EFORMAT && strstr(err.msg, bad[i]), "%s: %s", bad[i], err.msg);
    }
    CHECK(peft_name_from_ours(a, "h.0.attn.c_attn.weight", out, sizeof out, &err) != CU_OK);
}

static int has(const char **names, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (!strcmp(names[i], s)) return 1;
    return 0;
}

static void test_target_modules(void) {
    const peft_arch_t *a = peft_arch_find("gpt2");
    const char *names[PEFT_MAX_MODULES];
    unsigned all = (1u << LORA_N_TARGETS) - 1;
    int n = peft_target_modules(a, all, names, PEFT_MAX_MODULES);
    CHECK(n == 3 && has(names, n, "c_attn") && has(names, n, "c_proj") && has(names, n, "c_fc"));
    n = peft_target_modules(a, 1u << LORA_MLP_PROJ, names, PEFT_MAX_MODULES);
    CHECK(n == 1 && !strcmp(names[0], "mlp.c_proj")); /* c_proj would also take attn's */
    n = peft_target_modules(a, (1u << LORA_ATTN_PROJ) | (1u << LORA_QKV), names, PEFT_MAX_MODULES);
    CHECK(n == 2 && has(names, n, "c_attn") && has(names, n, "attn.c_proj"));
}

/* A 2-layer model with n_embd 8, LoRA r 2 on qkv and mlp_proj. */
static gpt_t *small_model(unsigned targets) {
    gpt_config_t gc = {.n_layer = 2, .n_head = 2, .n_embd = 8, .vocab_size = 16, .max_seq_len = 8};
    lora_config_t lc = {.enabled = 1, .targets = targets, .r = 2, .alpha = 4};
    gpt_t *m = NULL;
    cu_error_t err = {0};
    CHECK_MSG(gpt_create(&m, &gc, &lc, &err) == CU_OK, "%s", err.msg);
    return m;
}

static void write_file(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void expect_config_error(const char *json, const char *needle) {
    write_file("adapter_config.json", json);
    peft_adapter_t p;
    cu_error_t err = {0};
    int rc = peft_read_config(dir, peft_arch_find("gpt2"), &p, &err);
    CHECK_MSG(rc != CU_OK && strstr(err.msg, needle) && strstr(err.msg, "adapter_config.json"),
              "want '%s', got '%s'", needle, err.msg);
    peft_adapter_free(&p);
}

static void test_round_trip_and_errors(void) {
    snprintf(dir, sizeof dir, "/tmp/cu_peft_test.XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    unsigned targets = (1u << LORA_QKV) | (1u << LORA_MLP_PROJ);
    gpt_t *m = small_model(targets), *back = small_model(targets);
    if (!m || !back) return;
    size_t nl;
    float *lora = gpt_lora_params(m, &nl);
    for (size_t i = 0; i < nl; i++) lora[i] = (float)(i % 64) * 0.5f - 8.0f; /* exact in BF16 */
    int nt;
    const gpt_tensor_t *lt = gpt_lora_tensors(m, &nt);
    const peft_arch_t *a = peft_arch_find("gpt2");
    peft_adapter_t w = {
        .r = 2, .alpha = 4, .dropout = 0.05, .targets = targets, .base_model = "gpt2"};
    memset(w.base_sha256, 'a', 64);
    cu_error_t err = {0};
    CHECK_MSG(peft_write(dir, a, &w, lora, lt, nt, &err) == CU_OK, "%s", err.msg);
    peft_adapter_t p;
    CHECK_MSG(peft_read_config(dir, a, &p, &err) == CU_OK, "%s", err.msg);
    CHECK(p.r == 2 && p.alpha == 4 && !p.rslora && p.fan_in_fan_out && p.targets == targets);
    CHECK(p.base_model && !strcmp(p.base_model, "gpt2") && !strncmp(p.base_sha256, "aaaa", 4));
    CHECK(strlen(p.sha256) == 64 && strlen(p.config_sha256) == 64);
    peft_adapter_free(&p);
    float *got = gpt_lora_params(back, NULL);
    CHECK_MSG(peft_read_tensors(dir, a, got, lt, nt, &err) == CU_OK, "%s", err.msg);
    CHECK(!memcmp(got, lora, nl * sizeof(float)));

    /* BF16 with peft's ".default" names reads as the same values */
    st_tensor_t *st = calloc((size_t)nt, sizeof *st);
    char(*names)[192] = calloc((size_t)nt, sizeof *names);
    for (int i = 0; i < nt; i++) {
        char n[192];
        peft_name_from_ours(a, lt[i].name, n, sizeof n, &err);
        snprintf(names[i], sizeof names[i], "%.*s.default.weight", (int)strlen(n) - 7, n);
        st[i] = (st_tensor_t){names[i], lora + lt[i].offset, 2, {lt[i].shape[0], lt[i].shape[1]}};
    }
    char path[512];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    CHECK(st_write(path, st, nt, ST_BF16, NULL, 0, &err) == CU_OK);
    memset(got, 0, nl * sizeof(float));
    CHECK_MSG(peft_read_tensors(dir, a, got, lt, nt, &err) == CU_OK, "%s", err.msg);
    CHECK(!memcmp(got, lora, nl * sizeof(float)));

    /* a job with one more target: the qkv tensors are there, attn_proj's missing */
    gpt_t *more = small_model(targets | (1u << LORA_ATTN_PROJ));
    int nm;
    const gpt_tensor_t *mt = gpt_lora_tensors(more, &nm);
    CHECK(peft_read_tensors(dir, a, gpt_lora_params(more, NULL), mt, nm, &err) == CU_EFORMAT &&
          strstr(err.msg, "attn.c_proj.lora_A.weight is missing"));
    /* one target fewer: the file has tensors the job does not */
    gpt_t *fewer = small_model(1u << LORA_QKV);
    int nf;
    const gpt_tensor_t *ft = gpt_lora_tensors(fewer, &nf);
    CHECK(peft_read_tensors(dir, a, gpt_lora_params(fewer, NULL), ft, nf, &err) == CU_EFORMAT &&
          strstr(err.msg, "mlp.c_proj.lora_A.default.weight is not part of this job"));
    /* a transposed tensor */
    st[0].shape[0] = lt[0].shape[1];
    st[0].shape[1] = lt[0].shape[0];
    CHECK(st_write(path, st, nt, ST_F32, NULL, 0, &err) == CU_OK);
    CHECK(peft_read_tensors(dir, a, got, lt, nt, &err) == CU_EFORMAT &&
          strstr(err.msg, "has shape (8, 2), this job needs (2, 8)"));
    free(st);
    free(names);
    gpt_free(more);
    gpt_free(fewer);

    expect_config_error("{\"peft_type\": \"IA3\", \"r\": 2}", "peft_type is IA3");
    expect_config_error("{\"peft_type\": \"LORA\", \"r\": 0, \"lora_alpha\": 4}", "r must be");
    expect_config_error("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": \"x\"}",
                        "lora_alpha must be a number");
    expect_config_error("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4}",
                        "target_modules is missing");
    expect_config_error("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, "
                        "\"target_modules\": [\"q_proj\"]}",
                        "target_modules entry 'q_proj' matches no adaptable layer");
    expect_config_error("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, "
                        "\"target_modules\": [\"c_attn\"], \"rank_pattern\": {\"c_attn\": 4}}",
                        "rank_pattern");
    expect_config_error("{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, "
                        "\"target_modules\": [\"c_attn\"], \"bias\": \"all\"}",
                        "bias 'all' is not supported");
    expect_config_error("{not json", "adapter_config.json");
    /* all-linear and a suffix that reaches into the block path */
    write_file("adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, "
                                      "\"target_modules\": \"all-linear\"}");
    peft_adapter_t q;
    CHECK(peft_read_config(dir, a, &q, &err) == CU_OK && q.targets == (1u << LORA_N_TARGETS) - 1);
    peft_adapter_free(&q);
    write_file("adapter_config.json", "{\"peft_type\": \"LORA\", \"r\": 2, \"lora_alpha\": 4, "
                                      "\"target_modules\": [\"attn.c_proj\", \"c_fc\"]}");
    CHECK(peft_read_config(dir, a, &q, &err) == CU_OK &&
          q.targets == ((1u << LORA_ATTN_PROJ) | (1u << LORA_MLP_FC)));
    peft_adapter_free(&q);
    gpt_free(m);
    gpt_free(back);
    unlink(path);
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    unlink(path);
    rmdir(dir);
}

TEST_MAIN(TEST(test_names), TEST(test_target_modules), TEST(test_round_trip_and_errors))
