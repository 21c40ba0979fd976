/*
 * Unit tests of the job configuration (io/config.h): defaults, the YAML
 * reader's every error class with its exact file:line:column, "did you mean"
 * suggestions, command-line overrides, the resolved YAML's round trip,
 * cross-field validation messages, the Markdown reference and the demo job.
 *
 * Fixtures live in tests/fixtures/config/; CTest sets CU_SOURCE_DIR.
 */
#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "io/config.h"

/* ------------------------------------------------------------- helpers */

/* CTest sets CU_SOURCE_DIR; the build's own path lets the binary run by hand. */
static const char *source_dir(void) {
    const char *d = getenv("CU_SOURCE_DIR");
#ifdef CU_TEST_SOURCE_DIR
    if (!d) d = CU_TEST_SOURCE_DIR;
#endif
    return d ? d : ".";
}

static void fixture(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/tests/fixtures/config/%s", source_dir(), name);
}

static int parse(cu_config_t *cfg, const char *yaml, cu_error_t *err) {
    config_defaults(cfg);
    cu_error_clear(err);
    return config_parse_yaml(cfg, yaml, strlen(yaml), "t.yaml", err);
}

/* Parses yaml over the defaults and expects CU_EINVAL with a message that
 * contains every fragment given. */
#define EXPECT_YAML_ERROR(yaml, ...)                                                               \
    do {                                                                                           \
        cu_config_t c_;                                                                            \
        cu_error_t e_;                                                                             \
        int rc_ = parse(&c_, (yaml), &e_);                                                         \
        CHECK_MSG(rc_ == CU_EINVAL, "rc %d for %s", rc_, (yaml));                                  \
        const char *frags_[] = {__VA_ARGS__};                                                      \
        for (size_t i_ = 0; i_ < sizeof frags_ / sizeof frags_[0]; i_++)                           \
            CHECK_MSG(strstr(e_.msg, frags_[i_]), "'%s' not in: %s", frags_[i_], e_.msg);          \
    } while (0)

/* Expects the exact message. */
#define EXPECT_YAML_MSG(yaml, expected)                                                            \
    do {                                                                                           \
        cu_config_t c_;                                                                            \
        cu_error_t e_;                                                                             \
        int rc_ = parse(&c_, (yaml), &e_);                                                         \
        CHECK_MSG(rc_ == CU_EINVAL, "rc %d for %s", rc_, (yaml));                                  \
        CHECK_MSG(!strcmp(e_.msg, (expected)), "\n  got:  %s\n  want: %s", e_.msg, (expected));    \
    } while (0)

#define EXPECT_OVERRIDE_MSG(assignment, expected)                                                  \
    do {                                                                                           \
        cu_config_t c_;                                                                            \
        cu_error_t e_ = {0};                                                                       \
        config_defaults(&c_);                                                                      \
        int rc_ = config_apply_override(&c_, (assignment), &e_);                                   \
        CHECK_MSG(rc_ == CU_EINVAL, "rc %d for %s", rc_, (assignment));                            \
        CHECK_MSG(!strcmp(e_.msg, (expected)), "\n  got:  %s\n  want: %s", e_.msg, (expected));    \
    } while (0)

static void expect_ok(cu_config_t *cfg, const char *yaml) {
    cu_error_t e;
    int rc = parse(cfg, yaml, &e);
    CHECK_MSG(rc == CU_OK, "%s -> %s", yaml, e.msg);
}

static void override_ok(cu_config_t *cfg, const char *assignment) {
    cu_error_t e = {0};
    int rc = config_apply_override(cfg, assignment, &e);
    CHECK_MSG(rc == CU_OK, "%s -> %s", assignment, e.msg);
}

/* -------------------------------------------------------------- schema */

static void test_schema_is_consistent(void) {
    cu_error_t e = {0};
    CHECK_MSG(config_schema_check(&e) == CU_OK, "%s", e.msg);
}

static void test_defaults(void) {
    cu_config_t c;
    config_defaults(&c);
    CHECK(!strcmp(c.job.name, "demo") && !strcmp(c.job.runs_dir, "runs") && c.job.seed == 1337);
    CHECK(!strcmp(c.model.arch, "gpt2") && !strcmp(c.model.init, "random"));
    CHECK(c.model.n_layer == 2 && c.model.n_head == 2 && c.model.n_embd == 64);
    CHECK(c.model.vocab_size == 0 && c.model.max_seq_len == 256 && c.model.init_std == 0.02f);
    CHECK(!strcmp(c.tokenizer.kind, "byte") && c.tokenizer.path[0] == '\0');
    CHECK(c.lora.enabled == 1 && c.lora.targets.n == 1);
    CHECK(!strcmp(c.lora.targets.items[0], "all-linear"));
    CHECK(c.lora.r == 8 && c.lora.alpha == 16.0f && c.lora.rslora == 0);
    CHECK(c.lora.dropout == 0.0f && !strcmp(c.lora.init, "kaiming"));
    CHECK(!strcmp(c.data.source, "random") && c.data.path[0] == '\0');
    CHECK(!strcmp(c.data.token_dtype, "uint16") && c.data.seq_len == 64);
    CHECK(c.train.global_batch_size == 8 && c.train.micro_batch_size == 8);
    CHECK(c.train.max_steps == 100 && c.train.lr == 1e-3f && c.train.min_lr == 0.0f);
    CHECK(c.train.warmup_steps == 0 && !strcmp(c.train.schedule, "cosine"));
    CHECK(c.train.weight_decay == 0.0f && c.train.beta1 == 0.9f && c.train.beta2 == 0.999f);
    CHECK(c.train.eps == 1e-8f && c.train.grad_clip == 1.0f && c.train.threads == 1);
    CHECK(c.train.log_every == 1 && c.train.output[0] == '\0');
    CHECK(c.eval.every_steps == 0 && c.eval.batches == 4 && c.eval.prompts.n == 0);
    CHECK(c.eval.max_new_tokens == 32 && c.eval.temperature == 0.8f && c.eval.top_k == 40);
    CHECK(c.eval.top_p == 0.95f && c.eval.patience == 0);
    CHECK(c.checkpoint.every_steps == 0 && c.checkpoint.keep_last == 3);
    CHECK(!strcmp(c.checkpoint.resume, "auto"));
    CHECK(c.safety.enabled == 1 && !strcmp(c.safety.policy, "built-in"));
    CHECK(c.slurm.partition[0] == '\0' && !strcmp(c.slurm.time, "01:00:00"));
    CHECK(c.slurm.mem[0] == '\0' && c.slurm.account[0] == '\0' && c.slurm.qos[0] == '\0');
    CHECK(c.slurm.constraint[0] == '\0' && c.slurm.nodes == 1 && c.slurm.ntasks_per_node == 2);
    CHECK(c.slurm.cpus_per_task == 1 && !strcmp(c.slurm.launcher, "srun"));
    CHECK(c.slurm.signal_grace_s == 120 && c.slurm.extra.n == 0);
    cu_error_t e = {0};
    CHECK_MSG(config_validate(&c, 1, &e) == CU_OK, "%s", e.msg);
}

/* ------------------------------------------------------------- reading */

static void test_full_file(void) {
    char path[1024];
    fixture(path, sizeof path, "full.yaml");
    cu_config_t c;
    cu_error_t e = {0};
    int rc = config_load_file(&c, path, &e);
    CHECK_MSG(rc == CU_OK, "%s", e.msg);
    CHECK(!strcmp(c.job.name, "full-test_1.0") && c.job.seed == 42);
    CHECK(!strcmp(c.model.init, "base/model.safetensors") && c.model.vocab_size == 50257);
    CHECK(c.model.init_std == 0.01f && !strcmp(c.tokenizer.kind, "gpt2"));
    CHECK(c.lora.enabled == 1 && c.lora.rslora == 1 && c.lora.targets.n == 2);
    CHECK(!strcmp(c.lora.targets.items[1], "mlp_fc") && c.lora.dropout == 0.05f);
    CHECK(!strcmp(c.data.source, "tokens") && !strcmp(c.data.token_dtype, "uint32"));
    CHECK(c.train.max_steps == 1000 && c.train.lr == 3e-4f && c.train.min_lr == 3e-5f);
    CHECK(!strcmp(c.train.schedule, "linear") && c.train.eps == 1e-6f);
    CHECK(!strcmp(c.train.output, "out/final.h5"));
    CHECK(c.eval.prompts.n == 2 && !strcmp(c.eval.prompts.items[1], "int main(void) {"));
    CHECK(c.eval.temperature == 0.0f && c.eval.top_k == 0 && c.eval.patience == 3);
    CHECK(c.checkpoint.keep_last == 0 && !strcmp(c.checkpoint.resume, "never"));
    CHECK(c.safety.enabled == 0 && c.safety.policy[0] == '\0');
    CHECK(!strcmp(c.slurm.time, "2-12:00:00") && !strcmp(c.slurm.constraint, "avx512&ib"));
    CHECK(c.slurm.extra.n == 2 && !strcmp(c.slurm.extra.items[1], "--mail-type=END"));
    CHECK(!strcmp(c.slurm.launcher, "mpirun") && c.slurm.signal_grace_s == 300);
    CHECK_MSG(config_validate(&c, 8, &e) == CU_OK, "%s", e.msg);
}

static void test_file_errors(void) {
    char path[1024];
    cu_config_t c;
    cu_error_t e = {0};
    CHECK(config_load_file(&c, "/nonexistent/job.yaml", &e) == CU_EIO);
    CHECK_MSG(strstr(e.msg, "/nonexistent/job.yaml") && strstr(e.msg, "No such file"), "%s", e.msg);
    snprintf(path, sizeof path, "%s/tests/fixtures/config", source_dir());
    CHECK(config_load_file(&c, path, &e) == CU_EIO);

    fixture(path, sizeof path, "empty.yaml");
    CHECK(config_load_file(&c, path, &e) == CU_EINVAL);
    CHECK_MSG(strstr(e.msg, "empty.yaml holds no settings"), "%s", e.msg);
    fixture(path, sizeof path, "comments_only.yaml");
    CHECK(config_load_file(&c, path, &e) == CU_EINVAL);
    CHECK_MSG(strstr(e.msg, "holds no settings"), "%s", e.msg);

    fixture(path, sizeof path, "typo.yaml");
    CHECK(config_load_file(&c, path, &e) == CU_EINVAL);
    char want[1200];
    snprintf(want, sizeof want, "unknown key 'train.lrr' at %s:5:3; did you mean 'train.lr'?",
             path);
    CHECK_MSG(!strcmp(e.msg, want), "\n  got:  %s\n  want: %s", e.msg, want);

    fixture(path, sizeof path, "tabs.yaml");
    CHECK(config_load_file(&c, path, &e) == CU_EINVAL);
    CHECK_MSG(strstr(e.msg, "tabs.yaml:4:1") && strstr(e.msg, "not tabs"), "%s", e.msg);

    fixture(path, sizeof path, "latin1.yaml");
    CHECK(config_load_file(&c, path, &e) == CU_EINVAL);
    CHECK_MSG(strstr(e.msg, "latin1.yaml:2:10") && strstr(e.msg, "UTF-8"), "%s", e.msg);
}

static void test_unknown_keys_suggest(void) {
    EXPECT_YAML_MSG("train:\n  lrr: 1\n", "unknown key 'train.lrr' at t.yaml:2:3; did you mean "
                                          "'train.lr'?");
    EXPECT_YAML_MSG("trian:\n  lr: 1\n", "unknown section 'trian' at t.yaml:1:1; did you mean "
                                         "'train'?");
    EXPECT_YAML_MSG("job:\n  name: x\nlr: 3\n",
                    "unknown section 'lr' at t.yaml:3:1; did you mean 'train.lr'? (keys go under "
                    "their section)");
    EXPECT_YAML_MSG("model:\n  n_embed: 64\n", "unknown key 'model.n_embed' at t.yaml:2:3; did "
                                               "you mean 'model.n_embd'?");
    /* the name exists, in another section */
    EXPECT_YAML_MSG("train:\n  seq_len: 64\n", "unknown key 'train.seq_len' at t.yaml:2:3; did "
                                               "you mean 'data.seq_len'?");
    /* another trainer's name for it */
    EXPECT_YAML_MSG("train:\n  learning_rate: 1\n",
                    "unknown key 'train.learning_rate' at t.yaml:2:3; did you mean 'train.lr'?");
    EXPECT_YAML_MSG("lora:\n  lora_alpha: 1\n", "unknown key 'lora.lora_alpha' at t.yaml:2:3; did "
                                                "you mean 'lora.alpha'?");
    /* a prefix of the real name */
    EXPECT_YAML_MSG("train:\n  warmup: 1\n", "unknown key 'train.warmup' at t.yaml:2:3; did you "
                                             "mean 'train.warmup_steps'?");
    /* ambiguous: both are offered */
    EXPECT_YAML_MSG("every_steps: 1\n", "unknown section 'every_steps' at t.yaml:1:1; did you "
                                        "mean 'eval.every_steps' or 'checkpoint.every_steps'? "
                                        "(keys go under their section)");
    /* nothing close: no guess */
    EXPECT_YAML_MSG("train:\n  colour: blue\n", "unknown key 'train.colour' at t.yaml:2:3");
    EXPECT_YAML_MSG("x: 1\n", "unknown section 'x' at t.yaml:1:1");
    /* a dotted key at the top level */
    EXPECT_YAML_MSG("train.lrr: 1\n", "unknown key 'train.lrr' at t.yaml:1:1; did you mean "
                                      "'train.lr'?");
}

static void test_type_errors(void) {
    EXPECT_YAML_MSG("train:\n  lr: fast\n", "expected a number for train.lr, got 'fast' at "
                                            "t.yaml:2:7");
    EXPECT_YAML_MSG("train:\n  max_steps: 2.5\n", "expected an integer for train.max_steps, got "
                                                  "'2.5' at t.yaml:2:14");
    EXPECT_YAML_MSG("lora:\n  enabled: maybe\n", "expected true or false for lora.enabled, got "
                                                 "'maybe' at t.yaml:2:12");
    /* an empty value points at its key */
    EXPECT_YAML_MSG("train:\n  lr:\n  eps: 1\n", "expected a number for train.lr, got an empty "
                                                 "value at t.yaml:2:3");
    EXPECT_YAML_MSG("model:\n  n_layer: ~\n", "expected an integer for model.n_layer, got an "
                                              "empty value at t.yaml:2:3");
    EXPECT_YAML_ERROR("train:\n  lr: 0x10\n", "got '0x10' at t.yaml:2:7");
    EXPECT_YAML_ERROR("train:\n  lr: .inf\n", "got '.inf' at t.yaml:2:7");
    EXPECT_YAML_ERROR("train:\n  lr: nan\n", "got 'nan'");
    EXPECT_YAML_ERROR("train:\n  lr: 1__0\n", "got '1__0'");
    EXPECT_YAML_ERROR("train:\n  lr: _10\n", "got '_10'");
    EXPECT_YAML_ERROR("train:\n  lr: 10_\n", "got '10_'");
    EXPECT_YAML_ERROR("train:\n  lr: 1e\n", "got '1e'");
    EXPECT_YAML_ERROR("train:\n  lr: 1.0.0\n", "got '1.0.0'");
    EXPECT_YAML_ERROR("train:\n  lr: 1 2\n", "got '1 2'");
    EXPECT_YAML_MSG("job:\n  seed: 99999999999999999999\n",
                    "job.seed is out of range: 99999999999999999999 does not fit in 64 bits at "
                    "t.yaml:2:9");
    EXPECT_YAML_MSG("lora:\n  alpha: 1e39\n", "lora.alpha is out of range: 1e39 is too large for "
                                              "a float at t.yaml:2:10");
}

static void test_number_syntax(void) {
    cu_config_t c;
    expect_ok(&c, "train:\n  lr: 3e-4\n  max_steps: 1_000_000\n  warmup_steps: 1e3\n"
                  "  min_lr: .5e-5\n  weight_decay: +0.1\n  grad_clip: \"2.5\"\n"
                  "  global_batch_size: 16.0\n  micro_batch_size: '4'\n");
    CHECK(c.train.lr == 3e-4f && c.train.max_steps == 1000000 && c.train.warmup_steps == 1000);
    CHECK(c.train.min_lr == 5e-6f && c.train.weight_decay == 0.1f && c.train.grad_clip == 2.5f);
    CHECK(c.train.global_batch_size == 16 && c.train.micro_batch_size == 4);
    expect_ok(&c, "job:\n  seed: 9223372036854775807\n");
    CHECK(c.job.seed == 9223372036854775807L);
    expect_ok(&c, "train:\n  lr: 1E-3\n  max_steps: 0007\n");
    CHECK(c.train.lr == 1e-3f && c.train.max_steps == 7);
}

static void test_bools_and_nulls(void) {
    const char *yes[] = {"true", "True", "TRUE", "yes", "Yes", "on", "ON", "1"};
    const char *no[] = {"false", "False", "no", "NO", "off", "Off", "0"};
    char yaml[128];
    cu_config_t c;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        snprintf(yaml, sizeof yaml, "lora:\n  rslora: %s\n", yes[i]);
        expect_ok(&c, yaml);
        CHECK_MSG(c.lora.rslora == 1, "%s", yes[i]);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        snprintf(yaml, sizeof yaml, "lora:\n  enabled: %s\n", no[i]);
        expect_ok(&c, yaml);
        CHECK_MSG(c.lora.enabled == 0, "%s", no[i]);
    }
    EXPECT_YAML_ERROR("lora:\n  enabled: 2\n", "expected true or false", "got '2' at t.yaml:2:12");
    /* null: "" for strings, [] for lists, an empty section is fine */
    expect_ok(&c, "train:\n  output:\nlora:\n  targets: ~\neval:\nslurm:\n  mem: null\n");
    CHECK(c.train.output[0] == '\0' && c.lora.targets.n == 0 && c.slurm.mem[0] == '\0');
    /* a quoted "null" is the text null */
    expect_ok(&c, "train:\n  output: \"null\"\n");
    CHECK(!strcmp(c.train.output, "null"));
    /* a plain string that looks like a number or bool is text for a string key */
    expect_ok(&c, "job:\n  name: \"2024\"\n  runs_dir: yes\n");
    CHECK(!strcmp(c.job.name, "2024") && !strcmp(c.job.runs_dir, "yes"));
}

static void test_range_errors(void) {
    EXPECT_YAML_MSG("lora:\n  dropout: 1\n",
                    "lora.dropout must be in [0, 1), got 1 at t.yaml:2:12");
    EXPECT_YAML_MSG("train:\n  lr: 0\n", "train.lr must be > 0, got 0 at t.yaml:2:7");
    EXPECT_YAML_MSG("train:\n  lr: -1e-3\n", "train.lr must be > 0, got -1e-3 at t.yaml:2:7");
    EXPECT_YAML_MSG("model:\n  n_layer: 0\n", "model.n_layer must be in [1, 1024], got 0 at "
                                              "t.yaml:2:12");
    EXPECT_YAML_MSG("train:\n  warmup_steps: -5\n", "train.warmup_steps must be in [0, "
                                                    "1000000000000], got -5 at t.yaml:2:17");
    EXPECT_YAML_MSG("eval:\n  top_p: 0\n", "eval.top_p must be in (0, 1], got 0 at t.yaml:2:10");
    EXPECT_YAML_MSG("train:\n  beta2: 0.99999999\n",
                    "train.beta2 must be in [0, 1); 0.99999999 rounds to 1 as a 32-bit float at "
                    "t.yaml:2:10");
    EXPECT_YAML_MSG("job:\n  seed: -1\n", "job.seed must be >= 0, got -1 at t.yaml:2:9");
    EXPECT_YAML_MSG("slurm:\n  signal_grace_s: 70000\n", "slurm.signal_grace_s must be in [0, "
                                                         "65535], got 70000 at t.yaml:2:19");
    /* the edges themselves */
    cu_config_t c;
    expect_ok(&c, "lora:\n  dropout: 0.999\neval:\n  top_p: 1\n  temperature: 0\n");
    CHECK(c.lora.dropout == 0.999f && c.eval.top_p == 1.0f);
}

static void test_enum_errors(void) {
    EXPECT_YAML_MSG("train:\n  schedule: cosin\n",
                    "train.schedule must be one of cosine, linear, constant; got 'cosin' at "
                    "t.yaml:2:13; did you mean 'cosine'?");
    EXPECT_YAML_MSG("tokenizer:\n  kind: bpe\n",
                    "tokenizer.kind must be one of byte, gpt2; got 'bpe' at t.yaml:2:9");
    EXPECT_YAML_MSG(
        "model:\n  arch: lama\n",
        "model.arch must be one of gpt2, llama, starcoder2; got 'lama' at t.yaml:2:9; did you mean "
        "'llama'?");
    EXPECT_YAML_ERROR("slurm:\n  launcher: SRUN\n", "one of srun, mpirun; got 'SRUN'",
                      "did you mean 'srun'?");
    EXPECT_YAML_ERROR("data:\n  source:\n",
                      "data.source must be one of random, text, tokens, hdf5; "
                      "got '' at t.yaml:2:3");
}

static void test_duplicates(void) {
    EXPECT_YAML_MSG("train:\n  lr: 1\n  eps: 1\n  lr: 2\n",
                    "duplicate key 'train.lr' at t.yaml:4:3; it was already set at t.yaml:2:3");
    EXPECT_YAML_MSG("train:\n  lr: 1\ntrain:\n  eps: 1\n",
                    "duplicate section 'train' at t.yaml:3:1; it already appeared at t.yaml:1:1 "
                    "(merge the two)");
    EXPECT_YAML_MSG("train: {lr: 1, lr: 2}\n",
                    "duplicate key 'train.lr' at t.yaml:1:16; it was already set at t.yaml:1:9");
    EXPECT_YAML_MSG("train:\n  lr: 1\ntrain.lr: 2\n",
                    "duplicate key 'train.lr' at t.yaml:3:1; it was already set at t.yaml:2:3");
}

static void test_shape_errors(void) {
    EXPECT_YAML_MSG("train:\n  lr: [1, 2]\n",
                    "train.lr takes a single value but got a list at t.yaml:2:7");
    EXPECT_YAML_MSG("train:\n  lr:\n    warmup_steps: 3\n",
                    "train.lr takes a single value but got a mapping at t.yaml:3:5; check the "
                    "indentation of the lines below it");
    EXPECT_YAML_MSG("lora:\n  targets: {qkv: 1}\n",
                    "lora.targets takes a list but got a mapping at t.yaml:2:12; check the "
                    "indentation of the lines below it");
    EXPECT_YAML_MSG("lora:\n  targets:\n    - [qkv]\n",
                    "entries of lora.targets must be single values but got a list at t.yaml:3:7");
    EXPECT_YAML_MSG("job: demo\n", "section 'job' must hold keys, one per indented line such as "
                                   "'  name: demo'; got a single value at t.yaml:1:6");
    EXPECT_YAML_MSG("train:\n  - lr\n", "section 'train' must hold keys, one per indented line "
                                        "such as '  global_batch_size: 8'; got a list at "
                                        "t.yaml:2:3");
    EXPECT_YAML_MSG("- job\n- train\n", "the top level must be a mapping of sections (job:, "
                                        "model:, train:, ...) but got a list at t.yaml:1:1");
    EXPECT_YAML_MSG("just text\n", "the top level must be a mapping of sections (job:, model:, "
                                   "train:, ...) but got a single value at t.yaml:1:1");
    EXPECT_YAML_MSG("train:\n  [lr]: 1\n", "keys must be plain names but got a list at "
                                           "t.yaml:2:3");
}

static void test_string_limits(void) {
    char yaml[4096], name[300];
    cu_config_t c;
    memset(name, 'a', 255);
    name[255] = '\0';
    snprintf(yaml, sizeof yaml, "job:\n  name: %s\n", name);
    expect_ok(&c, yaml);
    CHECK(strlen(c.job.name) == 255);
    snprintf(yaml, sizeof yaml, "job:\n  name: %sb\n", name);
    EXPECT_YAML_MSG(yaml, "job.name is 256 bytes long at t.yaml:2:9; at most 255 fit");
    snprintf(yaml, sizeof yaml, "eval:\n  prompts: [%s, %sb]\n", name, name);
    EXPECT_YAML_MSG(yaml, "entry 2 of eval.prompts is 256 bytes long at t.yaml:2:270; at most "
                          "255 fit");

    strcpy(yaml, "eval:\n  prompts:\n");
    for (int i = 0; i < 16; i++) strcat(yaml, "    - p\n");
    expect_ok(&c, yaml);
    CHECK(c.eval.prompts.n == 16);
    strcat(yaml, "    - p\n");
    EXPECT_YAML_MSG(yaml, "eval.prompts has more than 16 entries at t.yaml:19:7");

    EXPECT_YAML_MSG("job:\n  name: \"a\\nb\"\n",
                    "job.name contains a control character (byte 0x0a) at t.yaml:2:9; only "
                    "eval.prompts may hold line breaks or tabs");
    EXPECT_YAML_MSG("job:\n  name: \"a\\0b\"\n", "job.name contains a NUL byte at t.yaml:2:9");
    EXPECT_YAML_MSG("job:\n  name: \"\"\n", "job.name must not be empty at t.yaml:2:9");
    EXPECT_YAML_MSG("job:\n  name: ../up\n",
                    "job.name may hold only letters, digits, '.', '_' and '-' (it names a "
                    "folder); got '../up' at t.yaml:2:9");
    EXPECT_YAML_MSG("slurm:\n  time: 1 hour\n",
                    "slurm.time must be a Slurm time limit: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM "
                    "or D-HH:MM:SS; got '1 hour' at t.yaml:2:9");
    EXPECT_YAML_ERROR("slurm:\n  mem: 4 GB\n", "slurm.mem must be a memory size", "t.yaml:2:8");
    EXPECT_YAML_ERROR("slurm:\n  extra: [exclusive]\n", "entry 1 of slurm.extra must be an sbatch",
                      "t.yaml:2:11");
    EXPECT_YAML_ERROR("slurm:\n  extra: ['#SBATCH --exclusive']\n", "without '#SBATCH'");
    const char *times[] = {"30", "30:00", "01:00:00", "2-12", "2-12:30", "2-12:30:00", "UNLIMITED"};
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        snprintf(yaml, sizeof yaml, "slurm:\n  time: \"%s\"\n  mem: 16G\n", times[i]);
        expect_ok(&c, yaml);
    }
    EXPECT_YAML_ERROR("slurm:\n  time: \"1:2:3:4\"\n", "Slurm time limit");
    EXPECT_YAML_ERROR("slurm:\n  time: \"01:\"\n", "Slurm time limit");
    /* multi-line prompts keep their line breaks and tabs */
    expect_ok(&c, "eval:\n  prompts:\n    - |\n      def f(x):\n      \treturn x\n");
    CHECK(c.eval.prompts.n == 1 && !strcmp(c.eval.prompts.items[0], "def f(x):\n\treturn x\n"));
}

static void test_syntax_errors(void) {
    EXPECT_YAML_ERROR("train:\n  lr: [1, 2\n", "YAML syntax error at t.yaml:", "t.yaml");
    EXPECT_YAML_MSG("train:\n  lr: 1\n bad: 2\n",
                    "YAML syntax error at t.yaml:3:2: did not find expected key (while parsing a "
                    "block mapping at line 1)");
    EXPECT_YAML_MSG("train:\n  lr: 1: 2\n", "YAML syntax error at t.yaml:2:8: mapping values are "
                                            "not allowed in this context");
    EXPECT_YAML_ERROR("train:\n\tlr: 1\n", "YAML syntax error at t.yaml:2:1",
                      "YAML indents with spaces, not tabs");
    EXPECT_YAML_ERROR("job:\n  name: \"open\n", "YAML syntax error at t.yaml:");
    EXPECT_YAML_ERROR("job:\n  name: *nothing\n", "YAML syntax error", "t.yaml:2:9");
    EXPECT_YAML_MSG("job:\n  name: a\n---\ntrain:\n  lr: 1\n",
                    "a second YAML document starts at t.yaml:4:1; a job config is one document "
                    "(remove the '---' line)");
    EXPECT_YAML_ERROR("job:\n  name: a\n---\n[\n", "YAML syntax error at t.yaml:");
    EXPECT_YAML_MSG("", "t.yaml holds no settings (it is empty or only comments); "
                        "configs/demo.yaml is a complete example");
    EXPECT_YAML_ERROR("---\n", "holds no settings");
    EXPECT_YAML_ERROR("job:\n  name: \xff\n", "YAML syntax error at t.yaml:2:9", "UTF-8");
    /* absurd nesting is refused before libyaml's scanner slows to a crawl */
    size_t n = 5000;
    char *deep = malloc(2 * n + 16);
    strcpy(deep, "x: ");
    memset(deep + 3, '[', n);
    memset(deep + 3 + n, ']', n);
    deep[3 + 2 * n] = '\0';
    EXPECT_YAML_MSG(deep, "t.yaml nests '[' or '{' over 1000 levels deep by line 1");
    free(deep);
    /* over 1 MiB is refused before parsing */
    size_t big = (1u << 20) + 1;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    huge[big] = '\0';
    EXPECT_YAML_MSG(huge, "t.yaml is 1048577 bytes; a job config may be at most 1048576");
    free(huge);
    /* anchors and aliases are fine */
    cu_config_t c;
    expect_ok(&c, "train:\n  lr: &rate 2e-3\n  min_lr: *rate\n");
    CHECK(c.train.min_lr == 2e-3f);
}

static void test_lists(void) {
    cu_config_t c;
    expect_ok(&c, "lora:\n  targets: qkv\n");
    CHECK(c.lora.targets.n == 1 && !strcmp(c.lora.targets.items[0], "qkv"));
    expect_ok(&c, "lora:\n  targets: [qkv, attn_proj]\n");
    CHECK(c.lora.targets.n == 2 && !strcmp(c.lora.targets.items[1], "attn_proj"));
    expect_ok(&c, "lora:\n  targets:\n    - mlp_fc\n    - mlp_proj\n");
    CHECK(c.lora.targets.n == 2 && !strcmp(c.lora.targets.items[0], "mlp_fc"));
    expect_ok(&c, "lora:\n  targets: []\n");
    CHECK(c.lora.targets.n == 0);
    /* a scalar holding commas stays one entry in a file, with a hint */
    EXPECT_YAML_MSG(
        "lora:\n  targets: qkv, mlp_fc\n",
        "entry 1 of lora.targets must be one of qkv, attn_proj, mlp_fc, mlp_proj, "
        "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, c_fc, "
        "c_proj, all-linear; got 'qkv, mlp_fc' at t.yaml:2:12; to give several, write a list "
        "such as [qkv, mlp_fc]");
    EXPECT_YAML_MSG("lora:\n  targets: [qkv, mlp_fc, qvk]\n",
                    "entry 3 of lora.targets must be one of qkv, attn_proj, mlp_fc, mlp_proj, "
                    "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, c_fc, "
                    "c_proj, all-linear; got 'qvk' at t.yaml:2:26; did you mean 'qkv'?");
    EXPECT_YAML_MSG("lora:\n  targets: [qkv, mlp_fc, qkv]\n",
                    "lora.targets names 'qkv' twice at t.yaml:2:26");
    EXPECT_YAML_MSG("eval:\n  prompts:\n    - a\n    -\n",
                    "entry 2 of eval.prompts is empty at t.yaml:4:6; quote it (\"\") if that is "
                    "meant");
    expect_ok(&c, "eval:\n  prompts: [\"\", \"a, b\"]\n");
    CHECK(c.eval.prompts.n == 2 && c.eval.prompts.items[0][0] == '\0');
    CHECK(!strcmp(c.eval.prompts.items[1], "a, b"));
}

static void test_dotted_top_level(void) {
    cu_config_t c;
    expect_ok(&c, "train.lr: 5e-4\nlora.targets: [qkv]\ntrain:\n  eps: 1e-7\n");
    CHECK(c.train.lr == 5e-4f && c.train.eps == 1e-7f && c.lora.targets.n == 1);
}

static void test_parse_is_atomic(void) {
    cu_config_t c, before;
    cu_error_t e = {0};
    config_defaults(&c);
    const char *yaml = "train:\n  lr: 0.5\n  max_steps: 7\n  eps: bad\n";
    CHECK(config_parse_yaml(&c, yaml, strlen(yaml), "t.yaml", &e) == CU_EINVAL);
    config_defaults(&before);
    CHECK(!memcmp(&c, &before, sizeof c));
    /* parsing layers over what cfg already holds */
    config_apply_override(&c, "train.lr=0.25", &e);
    yaml = "train:\n  eps: 1e-5\n";
    CHECK(config_parse_yaml(&c, yaml, strlen(yaml), "t.yaml", &e) == CU_OK);
    CHECK(c.train.lr == 0.25f && c.train.eps == 1e-5f);
}

/* ----------------------------------------------------------- overrides */

static void test_overrides(void) {
    cu_config_t c;
    config_defaults(&c);
    override_ok(&c, "train.lr=3e-4");
    override_ok(&c, " train.max_steps = 2_000 ");
    override_ok(&c, "lora.rslora=yes");
    override_ok(&c, "job.name=my-run");
    override_ok(&c, "slurm.time=02:00:00");
    override_ok(&c, "slurm.extra=--exclusive");
    CHECK(c.train.lr == 3e-4f && c.train.max_steps == 2000 && c.lora.rslora == 1);
    CHECK(!strcmp(c.job.name, "my-run") && !strcmp(c.slurm.time, "02:00:00"));
    CHECK(c.slurm.extra.n == 1 && !strcmp(c.slurm.extra.items[0], "--exclusive"));
    override_ok(&c, "lora.targets=[qkv,mlp_fc]");
    CHECK(c.lora.targets.n == 2 && !strcmp(c.lora.targets.items[1], "mlp_fc"));
    override_ok(&c, "lora.targets=qkv, attn_proj,mlp_proj");
    CHECK(c.lora.targets.n == 3 && !strcmp(c.lora.targets.items[1], "attn_proj"));
    override_ok(&c, "lora.targets=[]");
    CHECK(c.lora.targets.n == 0);
    override_ok(&c, "lora.targets=");
    CHECK(c.lora.targets.n == 0);
    override_ok(&c, "eval.prompts=\"def f(a, b):\"");
    CHECK(c.eval.prompts.n == 1 && !strcmp(c.eval.prompts.items[0], "def f(a, b):"));
    override_ok(&c, "eval.prompts=['x = 1\\n', \"y\\tz\"]");
    CHECK(c.eval.prompts.n == 2 && !strcmp(c.eval.prompts.items[0], "x = 1\\n"));
    CHECK(!strcmp(c.eval.prompts.items[1], "y\tz"));
    override_ok(&c, "train.output=");
    CHECK(c.train.output[0] == '\0');
    override_ok(&c, "job.name=\"quoted\"");
    CHECK(!strcmp(c.job.name, "quoted"));
    override_ok(&c, "data.path=a=b.txt");
    CHECK(!strcmp(c.data.path, "a=b.txt"));
    override_ok(&c, "data.path=#not-a-comment");
    CHECK(!strcmp(c.data.path, "#not-a-comment"));
}

static void test_override_errors(void) {
    EXPECT_OVERRIDE_MSG("train.lrr=3", "unknown key 'train.lrr' on the command line; did you "
                                       "mean 'train.lr'?");
    EXPECT_OVERRIDE_MSG("train.lr=fast", "expected a number for train.lr, got 'fast' on the "
                                         "command line");
    EXPECT_OVERRIDE_MSG("train.lr=", "expected a number for train.lr, got an empty value on the "
                                     "command line");
    EXPECT_OVERRIDE_MSG("train.lr", "expected section.key=value on the command line, got "
                                    "'train.lr' (e.g. train.lr=3e-4)");
    EXPECT_OVERRIDE_MSG("=3", "expected section.key=value on the command line, got '=3' (e.g. "
                              "train.lr=3e-4)");
    EXPECT_OVERRIDE_MSG("lr=3", "unknown key 'lr' on the command line; did you mean 'train.lr'? "
                                "(keys go under their section)");
    EXPECT_OVERRIDE_MSG("train=3", "'train' is a section; on the command line set one of its "
                                   "keys, e.g. train.global_batch_size=8");
    EXPECT_OVERRIDE_MSG("lora.targets=qkv,qvk",
                        "entry 2 of lora.targets must be one of qkv, attn_proj, mlp_fc, mlp_proj, "
                        "q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, c_fc, "
                        "c_proj, all-linear; got 'qvk' on the command line; did you mean 'qkv'?");
    EXPECT_OVERRIDE_MSG("lora.targets=qkv,,mlp_fc", "entry 2 of lora.targets is empty on the "
                                                    "command line; quote it (\"\") if that is "
                                                    "meant");
    EXPECT_OVERRIDE_MSG("train.schedule=cosin",
                        "train.schedule must be one of cosine, linear, constant; got 'cosin' on "
                        "the command line; did you mean 'cosine'?");
    EXPECT_OVERRIDE_MSG("train.lr=[1]", "train.lr takes a single value but got a list on the "
                                        "command line");
    EXPECT_OVERRIDE_MSG("train.lr={a: 1}", "train.lr takes a single value but got a mapping on "
                                           "the command line; check the indentation of the lines "
                                           "below it");
    EXPECT_OVERRIDE_MSG("lora.targets=[qkv", "YAML syntax error in the value of lora.targets on "
                                             "the command line, at its end: did not find "
                                             "expected ',' or ']'");
    EXPECT_OVERRIDE_MSG("lora.targets=[qkv]]", "YAML syntax error in the value of lora.targets on "
                                               "the command line, at column 6: did not find "
                                               "expected <document start>");
    EXPECT_OVERRIDE_MSG("lora.dropout=1.5", "lora.dropout must be in [0, 1), got 1.5 on the "
                                            "command line");
    EXPECT_OVERRIDE_MSG("job.name=\xc3(", "job.name is not valid UTF-8 on the command line");
    /* a failed override leaves the config as it was */
    cu_config_t c, before;
    cu_error_t e = {0};
    config_defaults(&c);
    config_defaults(&before);
    CHECK(config_apply_override(&c, "lora.targets=[qkv, nope]", &e) == CU_EINVAL);
    CHECK(!memcmp(&c, &before, sizeof c));
    CHECK(config_apply_override(&c, NULL, &e) == CU_EINVAL);
}

/* ---------------------------------------------------------- round trip */

static void round_trip(const cu_config_t *c) {
    char *yaml = config_to_yaml(c);
    CHECK(yaml != NULL);
    if (!yaml) return;
    cu_config_t back;
    cu_error_t e = {0};
    config_defaults(&back);
    int rc = config_parse_yaml(&back, yaml, strlen(yaml), "resolved.yaml", &e);
    CHECK_MSG(rc == CU_OK, "%s\n%s", e.msg, yaml);
    char diff[1024];
    int n = config_diff(c, &back, diff, sizeof diff);
    CHECK_MSG(n == 0, "%d keys differ: %s", n, diff);
    CHECK_MSG(!memcmp(c, &back, sizeof back), "structs differ after the round trip");
    free(yaml);
}

static void test_round_trip_defaults(void) {
    cu_config_t c;
    config_defaults(&c);
    round_trip(&c);
    char *yaml = config_to_yaml(&c);
    CHECK(strstr(yaml, "\ntrain:\n  global_batch_size: 8\n"));
    CHECK(strstr(yaml, "  lr: 0.001\n") && strstr(yaml, "  eps: 1e-08\n"));
    CHECK(strstr(yaml, "  targets: [all-linear]\n") && strstr(yaml, "  prompts: []\n"));
    CHECK(strstr(yaml, "  time: \"01:00:00\"\n") && strstr(yaml, "  path: \"\"\n"));
    free(yaml);
}

static void test_round_trip_everything(void) {
    char path[1024];
    fixture(path, sizeof path, "full.yaml");
    cu_config_t c;
    cu_error_t e = {0};
    CHECK(config_load_file(&c, path, &e) == CU_OK);
    round_trip(&c);
    /* strings that a careless writer would mangle */
    const char *tricky[] = {"yes",         "null",   "~",   "123",     "1e5",    "-",     "a: b",
                            "#x",          "[x]",    "{y}", "'q'",     "\"dq\"", " lead", "trail ",
                            "back\\slash", "é→✓",    "a,b", "&anchor", "*alias", "!tag",  "%pct",
                            "@at",         "`tick`", "-x",  "?"};
    c.eval.prompts.n = 0;
    for (size_t i = 0; i < sizeof tricky / sizeof tricky[0] && i < CU_CFG_MAX_LIST; i++) {
        memset(c.eval.prompts.items[i], 0, CU_CFG_STR);
        strcpy(c.eval.prompts.items[c.eval.prompts.n++], tricky[i]);
    }
    round_trip(&c);
    memset(&c.eval.prompts, 0, sizeof c.eval.prompts);
    const char *more[] = {
        "line1\nline2\n",  "\ttabbed",         "cr\r\nlf",    "nel\xc2\x85x",
        "ls\xe2\x80\xa8x", "bom\xef\xbb\xbfx", "c1\xc2\x80x", "astral \xf0\x9f\x98\x80"};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) {
        memset(c.eval.prompts.items[i], 0, CU_CFG_STR);
        strcpy(c.eval.prompts.items[c.eval.prompts.n++], more[i]);
    }
    for (size_t i = 0; i < sizeof tricky / sizeof tricky[0]; i++) {
        memset(c.train.output, 0, CU_CFG_STR);
        strcpy(c.train.output, tricky[i]);
        memset(c.data.path, 0, CU_CFG_STR);
        strcpy(c.data.path, tricky[(i + 1) % (sizeof tricky / sizeof tricky[0])]);
        round_trip(&c);
    }
}

/* Every float the writer prints reads back bit for bit. */
static void test_float_round_trip(void) {
    cu_config_t c;
    config_defaults(&c);
    uint32_t x = 12345;
    for (int i = 0; i < 20000; i++) {
        x = x * 1664525u + 1013904223u;
        uint32_t bits = x & 0x7F7FFFFFu; /* positive and finite */
        float f;
        memcpy(&f, &bits, sizeof f);
        c.train.weight_decay = f;
        char text[64];
        cu_error_t e = {0};
        CHECK(config_format_value(&c, "train.weight_decay", text, sizeof text, &e) == CU_OK);
        cu_config_t back;
        config_defaults(&back);
        char assignment[128];
        snprintf(assignment, sizeof assignment, "train.weight_decay=%s", text);
        CHECK_MSG(config_apply_override(&back, assignment, &e) == CU_OK, "%s", e.msg);
        if (memcmp(&back.train.weight_decay, &f, sizeof f)) {
            CHECK_MSG(0, "%.9g printed as %s", (double)f, text);
            break;
        }
    }
    char text[64];
    c.train.lr = 3e-4f;
    config_format_value(&c, "train.lr", text, sizeof text, NULL);
    CHECK_MSG(!strcmp(text, "0.0003"), "%s", text);
    c.train.lr = 0.1f;
    config_format_value(&c, "train.lr", text, sizeof text, NULL);
    CHECK_MSG(!strcmp(text, "0.1"), "%s", text);
}

/* ---------------------------------------------------------- validation */

static int validate(const cu_config_t *c, int world, cu_error_t *e) {
    cu_error_clear(e);
    return config_validate(c, world, e);
}

static void expect_invalid(const cu_config_t *c, int world, const char *expected) {
    cu_error_t e;
    int rc = validate(c, world, &e);
    CHECK_MSG(rc == CU_EINVAL, "rc %d, expected: %s", rc, expected);
    CHECK_MSG(!strcmp(e.msg, expected), "\n  got:  %s\n  want: %s", e.msg, expected);
}

static void test_validate_model_and_batches(void) {
    cu_config_t c;
    config_defaults(&c);
    c.model.n_embd = 100;
    c.model.n_head = 3;
    expect_invalid(&c, 1,
                   "model.n_embd (100) must be divisible by model.n_head (3): set n_head "
                   "to 2, 4 or 5, or n_embd to a multiple of 3");
    config_defaults(&c);
    c.train.global_batch_size = 10;
    c.train.micro_batch_size = 4;
    expect_invalid(&c, 2,
                   "train.global_batch_size (10) must be a multiple of "
                   "train.micro_batch_size x ranks (4 x 2 = 8): set global_batch_size to "
                   "8 or 16, or micro_batch_size to 1 or 5");
    /* the advice passes the next check too: multiples of micro x ranks
     * (12 would split over 4 ranks but not into micro batches of 4) */
    expect_invalid(&c, 4,
                   "train.global_batch_size (10) cannot be split evenly over 4 ranks: set "
                   "it to 16");
    expect_invalid(&c, 16,
                   "train.global_batch_size (10) cannot be split evenly over 16 ranks: "
                   "set it to 64");
    cu_error_t e;
    config_defaults(&c);
    c.train.global_batch_size = 32;
    c.train.micro_batch_size = 4;
    CHECK(validate(&c, 1, &e) == CU_OK && validate(&c, 2, &e) == CU_OK);
    CHECK(validate(&c, 8, &e) == CU_OK);
    expect_invalid(&c, 0, "world size 0: a job needs at least one rank");
    config_defaults(&c);
    c.data.seq_len = 512;
    expect_invalid(&c, 1,
                   "data.seq_len (512) exceeds model.max_seq_len (256): lower data.seq_len "
                   "or raise model.max_seq_len");
    config_defaults(&c);
    c.model.vocab_size = 100;
    CHECK(validate(&c, 1, &e) == CU_OK); /* random tokens below 100 are fine */
    strcpy(c.data.source, "text");
    strcpy(c.data.path, "corpus.txt");
    expect_invalid(&c, 1,
                   "model.vocab_size (100) is smaller than the byte tokenizer's 257 "
                   "tokens: set it to 0 to take the tokenizer's size");
    config_defaults(&c);
    strcpy(c.tokenizer.kind, "gpt2");
    expect_invalid(&c, 1,
                   "tokenizer.kind is gpt2 but tokenizer.path is empty (and model.init is "
                   "no folder with tokenizer files): point it at a folder with encoder.json "
                   "+ vocab.bpe, vocab.json + merges.txt or tokenizer.json");
}

static void test_validate_llama(void) {
    cu_config_t c;
    config_defaults(&c);
    snprintf(c.model.arch, sizeof c.model.arch, "llama");
    c.model.n_head = 4;
    c.model.n_kv_head = 3;
    expect_invalid(&c, 1,
                   "model.n_kv_head (3) must divide model.n_head (4): every key/value head "
                   "serves the same number of query heads");
    config_defaults(&c);
    snprintf(c.model.arch, sizeof c.model.arch, "llama");
    c.lora.targets.n = 1;
    snprintf(c.lora.targets.items[0], CU_CFG_STR, "qkv");
    expect_invalid(&c, 1,
                   "lora.targets: 'qkv' is not a linear layer of model.arch llama (q_proj, "
                   "k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
    config_defaults(&c);
    c.lora.targets.n = 1;
    snprintf(c.lora.targets.items[0], CU_CFG_STR, "q_proj");
    expect_invalid(&c, 1,
                   "lora.targets: 'q_proj' is not a linear layer of model.arch gpt2 (qkv, "
                   "attn_proj, mlp_fc, mlp_proj)");
    config_defaults(&c);
    snprintf(c.model.arch, sizeof c.model.arch, "llama");
    c.model.n_head = 4;
    c.model.n_kv_head = 2;
    snprintf(c.lora.targets.items[0], CU_CFG_STR, "all-linear");
    cu_error_t e;
    CHECK(validate(&c, 1, &e) == CU_OK);
}

static void test_validate_train_lora_data(void) {
    cu_config_t c;
    config_defaults(&c);
    c.train.min_lr = 0.01f;
    expect_invalid(&c, 1,
                   "train.min_lr (0.01) is above train.lr (0.001): the schedule decays "
                   "from lr down to min_lr, so lower min_lr");
    config_defaults(&c);
    c.train.warmup_steps = 200;
    expect_invalid(&c, 1,
                   "train.warmup_steps (200) exceeds train.max_steps (100): lower "
                   "warmup_steps or raise max_steps");
    config_defaults(&c);
    c.lora.targets.n = 0;
    expect_invalid(&c, 1,
                   "lora.targets is empty while lora.enabled is true: name the layers "
                   "(e.g. [all-linear]), or set lora.enabled: false for full "
                   "fine-tuning");
    c.lora.enabled = 0;
    cu_error_t e;
    CHECK(validate(&c, 1, &e) == CU_OK);
    config_defaults(&c);
    override_ok(&c, "lora.targets=[all-linear, qkv]");
    expect_invalid(&c, 1,
                   "lora.targets mixes all-linear with other entries: all-linear already "
                   "means qkv, attn_proj, mlp_fc and mlp_proj; give it alone, or list the "
                   "layers without it");
    config_defaults(&c);
    c.lora.r = 128;
    expect_invalid(&c, 1,
                   "lora.r (128) exceeds model.n_embd (64): a rank above the layer width "
                   "adds parameters and nothing else; lower lora.r");
    config_defaults(&c);
    strcpy(c.data.source, "text");
    expect_invalid(&c, 1,
                   "data.source is text but data.path is empty: point data.path at the "
                   "UTF-8 text file");
    strcpy(c.data.source, "tokens");
    c.model.vocab_size = 100000;
    expect_invalid(&c, 1,
                   "2 problems in the config:\n"
                   "  - data.source is tokens but data.path is empty: point data.path at "
                   "the raw tokens file\n"
                   "  - data.token_dtype uint16 cannot hold the ids of model.vocab_size "
                   "100000: use uint32");
    config_defaults(&c);
    c.eval.patience = 2;
    expect_invalid(&c, 1,
                   "eval.patience (2) needs evaluations to count: set eval.every_steps, or "
                   "eval.patience to 0");
    config_defaults(&c);
    c.safety.policy[0] = '\0';
    expect_invalid(&c, 1,
                   "safety.enabled is true but safety.policy is empty: give a policy file "
                   "or built-in (the shipped default), or set safety.enabled: false");
}

/* A struct filled in code gets the same per-key checks as a file. */
static void test_validate_rechecks_keys(void) {
    cu_config_t c;
    config_defaults(&c);
    c.train.lr = -1.0f;
    c.lora.dropout = 1.0f;
    strcpy(c.train.schedule, "wavy");
    c.lora.enabled = 7;
    expect_invalid(&c, 1,
                   "4 problems in the config:\n"
                   "  - lora.enabled must be 0 or 1 (false or true), got 7\n"
                   "  - lora.dropout must be in [0, 1), got 1\n"
                   "  - train.lr must be > 0, got -1\n"
                   "  - train.schedule must be one of cosine, linear, constant; got "
                   "'wavy'");
    config_defaults(&c);
    memset(c.job.name, 'x', sizeof c.job.name);
    cu_error_t e;
    CHECK(validate(&c, 1, &e) == CU_EINVAL);
    CHECK_MSG(strstr(e.msg, "job.name is not NUL-terminated"), "%s", e.msg);
    config_defaults(&c);
    c.train.lr = NAN;
    CHECK(validate(&c, 1, &e) == CU_EINVAL);
    CHECK_MSG(strstr(e.msg, "train.lr must be a finite number"), "%s", e.msg);
}

/* ------------------------------------------------------- odds and ends */

static void test_diff_and_format_value(void) {
    cu_config_t a, b;
    config_defaults(&a);
    config_defaults(&b);
    CHECK(config_diff(&a, &b, NULL, 0) == 0);
    b.train.lr = 0.002f;
    b.lora.r = 16;
    override_ok(&b, "lora.targets=qkv,mlp_fc");
    char out[512];
    CHECK(config_diff(&a, &b, out, sizeof out) == 3);
    CHECK_MSG(!strcmp(out, "lora.targets: [all-linear] -> [qkv, mlp_fc]; lora.r: 8 -> 16; "
                           "train.lr: 0.001 -> 0.002"),
              "%s", out);
    char small[10];
    CHECK(config_diff(&a, &b, small, sizeof small) == 3 && strlen(small) == 9);

    cu_error_t e = {0};
    CHECK(config_format_value(&b, "lora.targets", out, sizeof out, &e) == CU_OK);
    CHECK(!strcmp(out, "[qkv, mlp_fc]"));
    CHECK(config_format_value(&b, "slurm.time", out, sizeof out, &e) == CU_OK);
    CHECK(!strcmp(out, "\"01:00:00\""));
    CHECK(config_format_value(&b, "lora.enabled", out, sizeof out, &e) == CU_OK);
    CHECK(!strcmp(out, "true"));
    CHECK(config_format_value(&b, "lora.rank", out, sizeof out, &e) == CU_EINVAL);
    CHECK_MSG(!strcmp(e.msg, "unknown key 'lora.rank'; did you mean 'lora.r'?"), "%s", e.msg);
}

static void test_reference_markdown(void) {
    char *md = config_reference_markdown();
    CHECK(md != NULL);
    if (!md) return;
    CHECK(strstr(md, "### `train`: the optimiser, schedule and batches\n"));
    CHECK_MSG(strstr(md, "| `train.lr` | number | `1e-3` | > 0 | Peak learning rate"), "%s", md);
    CHECK(strstr(md, "| `lora.dropout` | number | `0.0` | in [0, 1) |"));
    CHECK(strstr(md, "| `train.schedule` | enum | `cosine` | `cosine`, `linear`, `constant` |"));
    CHECK(strstr(md, "| `lora.targets` | list | `[all-linear]` | entries: `qkv`, `attn_proj`, "
                     "`mlp_fc`, `mlp_proj`, `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, "
                     "`up_proj`, `down_proj`, `c_fc`, `c_proj`, `all-linear`; each once; at most "
                     "16 entries |"));
    CHECK(strstr(md, "| `tokenizer.path` | string | `\"\"` |"));
    CHECK(strstr(md, "| `lora.enabled` | bool | `true` | `true`, `false` |"));
    /* every key has its row */
    cu_config_t c;
    config_defaults(&c);
    char *yaml = config_to_yaml(&c);
    int keys = 0;
    for (const char *p = yaml; (p = strstr(p, "\n  ")); p++) keys++;
    int rows = 0;
    for (const char *p = md; (p = strstr(p, "\n| `")); p++) rows++;
    CHECK_MSG(keys == rows && rows > 60, "%d keys, %d rows", keys, rows);
    free(yaml);
    free(md);
}

static void test_doc_update(void) {
    const char *doc =
        "# Config\n\nintro\n\n" CU_CONFIG_DOC_BEGIN "\nstale\n" CU_CONFIG_DOC_END "\n\ntail\n";
    char *out = NULL;
    int changed = 0;
    cu_error_t e = {0};
    CHECK(config_doc_update(doc, strlen(doc), &out, &changed, &e) == CU_OK && changed);
    char *md = config_reference_markdown();
    CHECK(out && strstr(out, md) && !strstr(out, "stale") && strstr(out, "intro\n"));
    CHECK(out && strstr(out, CU_CONFIG_DOC_END "\n\ntail\n"));
    char *again = NULL;
    CHECK(config_doc_update(out, strlen(out), &again, &changed, &e) == CU_OK && !changed);
    CHECK(again && !strcmp(again, out));
    free(again);
    free(out);
    free(md);
    const char *no_end = "x\n" CU_CONFIG_DOC_BEGIN "\n";
    CHECK(config_doc_update(no_end, strlen(no_end), &out, &changed, &e) == CU_EFORMAT);
    CHECK_MSG(strstr(e.msg, "found 1 and 0"), "%s", e.msg);
    const char *reversed = CU_CONFIG_DOC_END "\n" CU_CONFIG_DOC_BEGIN "\n";
    CHECK(config_doc_update(reversed, strlen(reversed), &out, &changed, &e) == CU_EFORMAT);
}

/* SQLite's lesson: feed the reader damaged input on purpose. Every mutant
 * of a full config either parses or fails with CU_EINVAL and a message that
 * names the file; none crashes (run under ASan+UBSan). */
static void test_mutations_never_crash(void) {
    char path[1024];
    fixture(path, sizeof path, "full.yaml");
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f) return;
    char base[4096];
    size_t len = fread(base, 1, sizeof base - 1, f);
    fclose(f);
    static const char pieces[] = ":-[]{},#&*!|>'\"\t\n ~%@`0xe.";
    uint32_t x = 2463534242u;
    int parsed = 0, failed = 0;
    for (int i = 0; i < 3000; i++) {
        char text[4200];
        memcpy(text, base, len);
        size_t n = len;
        for (int m = 0; m < 1 + i % 4; m++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            size_t at = x % n;
            char c = (x >> 8) & 1 ? pieces[(x >> 9) % (sizeof pieces - 1)] : (char)(x >> 16);
            if ((x >> 24) % 3 == 0 && n + 1 < sizeof text) { /* insert */
                memmove(text + at + 1, text + at, n - at);
                text[at] = c;
                n++;
            } else if ((x >> 24) % 3 == 1 && n > 1) { /* delete */
                memmove(text + at, text + at + 1, n - at - 1);
                n--;
            } else {
                text[at] = c;
            }
        }
        cu_config_t c;
        cu_error_t e = {0};
        config_defaults(&c);
        int rc = config_parse_yaml(&c, text, n, "t.yaml", &e);
        if (rc == CU_OK) {
            parsed++;
            char *yaml = config_to_yaml(&c);
            CHECK(yaml != NULL);
            free(yaml);
            continue;
        }
        failed++;
        CHECK_MSG(rc == CU_EINVAL, "rc %d: %s", rc, e.msg);
        if (!strstr(e.msg, "t.yaml")) {
            CHECK_MSG(0, "message names no file: %s\n---\n%.*s", e.msg, (int)n, text);
            break;
        }
    }
    CHECK(parsed > 0 && failed > 0);
}

/* The two demo stages (scripts/demo.sh, README's first command) must load
 * and validate, have their corpora, and fit together: the LoRA stage starts
 * from the base stage's final.h5, so their model shapes must agree. */
static int load_demo(const char *name, cu_config_t *c) {
    char path[1024];
    snprintf(path, sizeof path, "%s/configs/%s", source_dir(), name);
    cu_error_t e = {0};
    int ok = config_load_file(c, path, &e) == CU_OK;
    CHECK_MSG(ok, "%s", e.msg);
    if (ok) CHECK_MSG(config_validate(c, 1, &e) == CU_OK, "%s", e.msg);
    snprintf(path, sizeof path, "%s/%s", source_dir(), c->data.path);
    FILE *f = fopen(path, "rb");
    CHECK_MSG(f != NULL, "%s: corpus %s missing", name, path);
    if (f) {
        fseek(f, 0, SEEK_END);
        CHECK_MSG(ftell(f) > 10 * 1000, "%s: corpus %s is nearly empty", name, path);
        fclose(f);
    }
    return ok;
}

static void test_demo_config(void) {
    cu_config_t base, demo;
    if (!load_demo("demo-base.yaml", &base) || !load_demo("demo.yaml", &demo)) return;
    CHECK(!base.lora.enabled && demo.lora.enabled);
    CHECK(!strcmp(base.model.init, "random"));
    char want[600];
    snprintf(want, sizeof want, "%s/%s/final.h5", base.job.runs_dir, base.job.name);
    CHECK_MSG(!strcmp(demo.model.init, want), "demo starts from %s, base writes %s",
              demo.model.init, want);
    CHECK(base.model.n_layer == demo.model.n_layer && base.model.n_head == demo.model.n_head &&
          base.model.n_embd == demo.model.n_embd &&
          base.model.max_seq_len == demo.model.max_seq_len);
    CHECK(!strcmp(base.tokenizer.kind, demo.tokenizer.kind));
    CHECK(strcmp(base.data.path, demo.data.path) != 0); /* adaptation to new data */
}

/* Issue 18: 150k anchors took 32 s in libyaml's loader (quadratic); the
 * caps refuse them before the loader runs. The alarm turns a hang into a
 * failure. */
static void test_anchor_bomb(void) {
    size_t n = 150000, cap = n * 24 + 64, len = 0;
    char *text = malloc(cap);
    if (!text) return;
    len += (size_t)snprintf(text + len, cap - len, "slurm:\n  extra:\n");
    for (size_t i = 0; i < n && len + 32 < cap; i++)
        len += (size_t)snprintf(text + len, cap - len, "  - &a%zu x\n", i);
    alarm(60);
    cu_config_t c;
    cu_error_t e;
    config_defaults(&c);
    int rc = config_parse_yaml(&c, text, len > (1u << 20) ? (1u << 20) - 1 : len, "t.yaml", &e);
    CHECK(rc == CU_EINVAL && strstr(e.msg, "anchors"));
    len = (size_t)snprintf(text, cap, "train:\n  lr: &x 0.001\nx: [");
    for (int i = 0; i < 300; i++) len += (size_t)snprintf(text + len, cap - len, "*x,");
    len += (size_t)snprintf(text + len, cap - len, "*x]\n");
    rc = config_parse_yaml(&c, text, len, "t.yaml", &e);
    CHECK(rc == CU_EINVAL && strstr(e.msg, "aliases"));
    alarm(0);
    free(text);
}

/* Issue 19: warm-up longer than the run is clamped with a note, not refused;
 * the nearest-name suggestion codex-ita shares for ita.yaml. */
static void test_settle_and_suggest(void) {
    cu_config_t c;
    config_defaults(&c);
    char note[512];
    config_settle(&c, note, sizeof note);
    CHECK(note[0] == '\0');
    c.train.max_steps = 20;
    c.train.warmup_steps = 500;
    config_settle(&c, note, sizeof note);
    CHECK(c.train.warmup_steps == 20);
    CHECK_MSG(strstr(note, "train.warmup_steps (500) exceeds train.max_steps (20); using 20"), "%s",
              note);
    cu_error_t e;
    CHECK(validate(&c, 1, &e) == CU_OK);
    config_settle(&c, note, sizeof note); /* settled once: nothing more to say */
    CHECK(note[0] == '\0');

    static const char *const names[] = {"listen.host", "listen.port", "metrics_public",
                                        "rate_limit.per_second", "rate_limit.burst"};
    char hint[256];
    config_suggest_name("listen.prot", names, 5, hint, sizeof hint);
    CHECK_MSG(!strcmp(hint, "; did you mean 'listen.port'?"), "%s", hint);
    config_suggest_name("metrics.public", names, 5, hint, sizeof hint);
    CHECK_MSG(!strcmp(hint, "; did you mean 'metrics_public'?"), "%s", hint);
    config_suggest_name("lisen.host", names, 5, hint, sizeof hint);
    CHECK_MSG(!strcmp(hint, "; did you mean 'listen.host'?"), "%s", hint);
    config_suggest_name("rate_limit.per_sec", names, 5, hint, sizeof hint);
    CHECK_MSG(!strcmp(hint, "; did you mean 'rate_limit.per_second'?"), "%s", hint);
    config_suggest_name("completely.different", names, 5, hint, sizeof hint);
    CHECK_MSG(hint[0] == '\0', "%s", hint);

    const char *values = NULL;
    int n = 0, found_enum = 0;
    for (const char *k; (k = config_key_name(n, &values)) != NULL; n++)
        if (!strcmp(k, "train.schedule")) found_enum = values && strstr(values, "cosine");
    CHECK(n > 50 && found_enum);
    CHECK(config_key_name(n, &values) == NULL && values == NULL);
}

TEST_MAIN(TEST(test_settle_and_suggest), TEST(test_schema_is_consistent), TEST(test_defaults),
          TEST(test_full_file), TEST(test_file_errors), TEST(test_unknown_keys_suggest),
          TEST(test_type_errors), TEST(test_number_syntax), TEST(test_bools_and_nulls),
          TEST(test_range_errors), TEST(test_enum_errors), TEST(test_duplicates),
          TEST(test_shape_errors), TEST(test_string_limits), TEST(test_syntax_errors),
          TEST(test_lists), TEST(test_dotted_top_level), TEST(test_parse_is_atomic),
          TEST(test_overrides), TEST(test_override_errors), TEST(test_round_trip_defaults),
          TEST(test_round_trip_everything), TEST(test_float_round_trip),
          TEST(test_validate_model_and_batches), TEST(test_validate_llama),
          TEST(test_validate_train_lora_data), TEST(test_validate_rechecks_keys),
          TEST(test_diff_and_format_value), TEST(test_reference_markdown), TEST(test_doc_update),
          TEST(test_mutations_never_crash), TEST(test_demo_config), TEST(test_anchor_bomb))
