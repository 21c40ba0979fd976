/*
 * The bf16 cache of an fp32 base (io/base_cache.h): made once and reused;
 * read in place it computes what the bf16 copy of the fp32 base computes,
 * bit for bit; a corrupt cache is found and rebuilt, a changed source gets
 * a new cache, a full disk leaves no file under the cache's name; and a
 * rank's private memory does not grow with the base when it reads the
 * cache (measured in a fresh process: the Anonymous line of
 * /proc/self/smaps_rollup, i.e. the resident set without file pages).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/rng.h"
#include "harness.h"
#include "io/base_cache.h"
#include "io/hf_gpt2.h"
#include "model/gemm.h"
#include "model/gpt.h"

enum { B = 2, T = 8, STEPS = 2, V = 61 };

static gpt_config_t cfg(int C, int ffn) {
    return (gpt_config_t){.arch = GPT_ARCH_LLAMA,
                          .n_layer = 2,
                          .n_head = 4,
                          .n_kv_head = 2,
                          .n_embd = C,
                          .ffn_hidden = ffn,
                          .vocab_size = V,
                          .max_seq_len = 16,
                          .rope_theta = 10000.0f,
                          .norm_eps = 1e-5f};
}

/* GPT-2 (tied head, Conv1D weights stored (in, out) in its files). */
static gpt_config_t cfg_gpt2(int C) {
    return (gpt_config_t){.arch = GPT_ARCH_GPT2,
                          .n_layer = 2,
                          .n_head = 4,
                          .n_kv_head = 4,
                          .n_embd = C,
                          .ffn_hidden = 4 * C,
                          .vocab_size = V,
                          .max_seq_len = 16,
                          .norm_eps = 1e-5f,
                          .tie_embeddings = 1};
}

static lora_config_t lora_for(int arch) {
    return (lora_config_t){
        .enabled = 1, .targets = (1u << gpt_n_targets(arch)) - 1, .r = 4, .alpha = 8.0f};
}

/* A folder of random fp32 weights (Llama: untied head). */
static int write_folder(const char *dir, gpt_config_t c, uint64_t seed) {
    if (c.arch != GPT_ARCH_GPT2) c.tie_embeddings = 0;
    lora_config_t none = {0};
    gpt_t *m = NULL;
    cu_error_t err;
    int rc = gpt_create(&m, &c, &none, &err);
    if (rc == CU_OK) {
        gpt_init_weights(m, seed, 0.2f);
        int n;
        const gpt_tensor_t *t = gpt_param_tensors(m, &n);
        rc = hf_gpt2_save_weights(dir, gpt_params(m, NULL), t, n, ST_F32, NULL, 0, &err);
        if (rc == CU_OK) rc = hf_gpt2_write_config(dir, NULL, &c, ST_F32, &err);
    }
    CHECK_MSG(rc == CU_OK, "%s", err.msg);
    gpt_free(m);
    return rc;
}

static void shell(const char *fmt, const char *a, const char *b) {
    char cmd[10000];
    snprintf(cmd, sizeof cmd, fmt, a, b);
    CHECK_MSG(system(cmd) == 0, "%s", cmd);
}

/* Locates and prepares the cache of the folder's base under root. */
static int prepare(const char *dir, const char *root, base_cache_t *c, cu_error_t *err) {
    char w[600];
    snprintf(w, sizeof w, "%s/model.safetensors", dir);
    st_model_t *src = NULL;
    int rc = st_open(w, &src, err);
    if (rc == CU_OK) rc = base_cache_locate(src, w, root, c, err);
    if (rc == CU_OK) rc = base_cache_prepare(src, w, c, NULL, err);
    st_close(src);
    return rc;
}

/* The model over the cache, as codex-train reads it. */
static gpt_t *load_cached(const char *dir, const base_cache_t *c, st_model_t **keep) {
    hf_gpt2_info_t info;
    gpt_config_t gc = {0};
    lora_config_t l;
    gpt_t *m = NULL;
    cu_error_t err;
    int n_lent = 0, rc = hf_gpt2_read_config(dir, &info, &err);
    if (rc == CU_OK) rc = hf_gpt2_apply_config(&info, &gc, &err);
    l = lora_for(gc.arch);
    if (rc == CU_OK) rc = gpt_create(&m, &gc, &l, &err);
    if (rc == CU_OK) rc = gpt_set_precision(m, GPT_PREC_BF16, &err);
    if (rc == CU_OK)
        rc = hf_gpt2_load_cache(dir, c->path, c->source_sha256, &info, m, keep, &n_lent, &err);
    CHECK_MSG(rc == CU_OK, "%s", err.msg);
    if (rc == CU_OK) {
        /* Llama: seven linears a block and the untied head; GPT-2: its
         * four Conv1D weights a block (the head is wte, tied) */
        int want = gc.arch == GPT_ARCH_GPT2 ? 4 * gc.n_layer : 7 * gc.n_layer + 1;
        CHECK_MSG(n_lent == want, "%d tensors lent, expected %d", n_lent, want);
        CHECK(!strcmp(info.sha256, c->source_sha256));
    }
    if (rc) gpt_free(m);
    return rc ? NULL : m;
}

/* The copy path: the fp32 base read into memory, rounded to bf16. */
static gpt_t *load_copy(const char *dir, int arch, char sha[65]) {
    lora_config_t l = lora_for(arch);
    gpt_t *m = NULL;
    hf_gpt2_info_t info;
    cu_error_t err;
    CHECK_MSG(hf_gpt2_load(dir, &l, &m, &info, &err) == CU_OK, "%s", err.msg);
    if (m) CHECK(gpt_set_precision(m, GPT_PREC_BF16, &err) == CU_OK);
    if (sha) memcpy(sha, info.sha256, 65);
    return m;
}

/* A few LoRA steps; the losses and the adapters' gradients. */
static void run_steps(gpt_t *m, double loss[STEPS], float **grads, size_t *n) {
    int32_t in[B * T], tg[B * T];
    cu_rng_t rng;
    cu_rng_seed(&rng, 8);
    for (int i = 0; i < B * T; i++) {
        in[i] = (int32_t)cu_rng_below(&rng, V);
        tg[i] = (int32_t)cu_rng_below(&rng, V);
    }
    gpt_init_lora(m, 6);
    float *p = gpt_trainable(m, n), *g = gpt_grads(m, NULL);
    for (size_t i = 0; i < *n; i++) p[i] += 0.02f * cu_rng_normal(&rng);
    for (int s = 0; s < STEPS; s++) {
        gpt_loss_t l;
        cu_error_t err;
        gpt_zero_grad(m);
        CHECK(gpt_forward(m, in, tg, B, T, 1, 1.0f / (B * T), 11 + s, &l, &err) == CU_OK);
        gpt_backward(m);
        loss[s] = l.loss_sum;
        for (size_t i = 0; i < *n; i++) p[i] -= 0.01f * g[i];
        gpt_params_updated(m);
    }
    *grads = malloc(*n * sizeof(float));
    if (*grads) memcpy(*grads, g, *n * sizeof(float));
}

static void tmp_dir(char *dir, size_t cap, const char *what) {
    snprintf(dir, cap, "/tmp/cu_base_cache_%s_%ld", what, (long)getpid());
    shell("rm -rf %s && mkdir -p %s", dir, dir);
}

static void cache_equals_copy(gpt_config_t gc) {
    char dir[300], root[300];
    tmp_dir(dir, sizeof dir, "src");
    tmp_dir(root, sizeof root, "root");
    if (write_folder(dir, gc, 21)) return;
    base_cache_t c, again;
    cu_error_t err;
    CHECK_MSG(prepare(dir, root, &c, &err) == CU_OK, "%s", err.msg);
    CHECK(c.action == BASE_CACHE_CONVERTED && c.bytes > 0);
    CHECK_MSG(prepare(dir, root, &again, &err) == CU_OK, "%s", err.msg);
    CHECK(again.action == BASE_CACHE_REUSED && !strcmp(again.path, c.path));
    char sha[65] = "";
    st_model_t *keep = NULL;
    gpt_t *a = load_copy(dir, gc.arch, sha), *b = load_cached(dir, &c, &keep);
    CHECK_MSG(!strcmp(sha, c.source_sha256), "the job's base hash is the source's: %s vs %s", sha,
              c.source_sha256);
    if (a && b) {
        double la[STEPS], lb[STEPS];
        float *ga = NULL, *gb = NULL;
        size_t na, nb;
        run_steps(a, la, &ga, &na);
        run_steps(b, lb, &gb, &nb);
        for (int s = 0; s < STEPS; s++)
            CHECK_MSG(la[s] == lb[s], "step %d: copy %.17g, cache %.17g", s, la[s], lb[s]);
        CHECK(na == nb && ga && gb && !memcmp(ga, gb, na * sizeof(float)));
        free(ga), free(gb);
    }
    gpt_free(a), gpt_free(b);
    st_close(keep);
    shell("rm -rf %s %s", dir, root);
}

/* Llama: the fp32 base's bf16 cache trains bit for bit as the copy. */
static void test_cache_equals_copy(void) {
    cache_equals_copy(cfg(32, 48));
}

/* GPT-2: its Conv1D weights are (in, out) in the source and (out, in) in
 * the cache, marked so, and lent from it; training is bit for bit the
 * copy's (which transposes them on load). */
static void test_cache_equals_copy_gpt2(void) {
    cache_equals_copy(cfg_gpt2(32));
    char dir[300], root[300];
    tmp_dir(dir, sizeof dir, "src");
    tmp_dir(root, sizeof root, "root");
    if (write_folder(dir, cfg_gpt2(32), 25)) return;
    base_cache_t c;
    cu_error_t err;
    CHECK_MSG(prepare(dir, root, &c, &err) == CU_OK, "%s", err.msg);
    char w[400];
    snprintf(w, sizeof w, "%s/model.safetensors", dir);
    st_model_t *src = NULL, *m = NULL;
    CHECK(st_open(w, &src, &err) == CU_OK && st_open(c.path, &m, &err) == CU_OK);
    if (src && m) {
        const st_entry_t *a = st_find(src, "transformer.h.0.attn.c_attn.weight"),
                         *b = st_find(m, "transformer.h.0.attn.c_attn.weight");
        CHECK(a && b && a->shape[0] == 32 && a->shape[1] == 96 && a->dtype == ST_F32);
        CHECK(b && b->shape[0] == 96 && b->shape[1] == 32 && b->dtype == ST_BF16);
        const char *layout = st_metadata(m, "conv1d");
        CHECK(layout && !strcmp(layout, "out,in"));
        /* element (i, o) of the source is (o, i) of the cache, rounded */
        float fa[32 * 96], fb[32 * 96];
        if (a && b && st_read_f32(src, a, fa, &err) == CU_OK &&
            st_read_f32(m, b, fb, &err) == CU_OK) {
            uint16_t r;
            gemm_to_bf16(&r, &fa[5 * 96 + 70], 1);
            float want;
            gemm_from_bf16(&want, &r, 1);
            CHECK_MSG(fb[70 * 32 + 5] == want, "%g vs %g", fb[70 * 32 + 5], want);
        }
    }
    st_close(src);
    st_close(m);
    shell("rm -rf %s %s", dir, root);
}

static void test_corrupt_rebuilt(void) {
    char dir[300], root[300];
    tmp_dir(dir, sizeof dir, "src");
    tmp_dir(root, sizeof root, "root");
    if (write_folder(dir, cfg(32, 48), 22)) return;
    base_cache_t c;
    cu_error_t err;
    CHECK_MSG(prepare(dir, root, &c, &err) == CU_OK, "%s", err.msg);
    shell("cp %s %s.orig", c.path, c.path);
    /* one byte of the data flipped, far from the header */
    FILE *f = fopen(c.path, "r+b");
    CHECK(f != NULL);
    if (f) {
        fseek(f, -100, SEEK_END);
        int ch = fgetc(f);
        fseek(f, -100, SEEK_END);
        fputc(ch ^ 0x10, f);
        fclose(f);
    }
    base_cache_t r;
    CHECK_MSG(prepare(dir, root, &r, &err) == CU_OK, "%s", err.msg);
    CHECK_MSG(r.action == BASE_CACHE_REBUILT && strstr(r.why, "sha256"), "action %d, why '%s'",
              (int)r.action, r.why);
    shell("cmp -s %s %s.orig", c.path, c.path); /* the conversion is deterministic */
    /* a cut file (the header intact) is rebuilt too */
    shell("truncate -s -4 %s%s", c.path, "");
    CHECK(prepare(dir, root, &r, &err) == CU_OK && r.action == BASE_CACHE_REBUILT);
    CHECK(prepare(dir, root, &r, &err) == CU_OK && r.action == BASE_CACHE_REUSED);
    shell("rm -rf %s %s", dir, root);
}

static void test_changed_source_new_cache(void) {
    char dir[300], root[300];
    tmp_dir(dir, sizeof dir, "src");
    tmp_dir(root, sizeof root, "root");
    if (write_folder(dir, cfg(32, 48), 23)) return;
    base_cache_t a, b;
    cu_error_t err;
    CHECK_MSG(prepare(dir, root, &a, &err) == CU_OK, "%s", err.msg);
    /* other weights written over the same file name, same size */
    if (write_folder(dir, cfg(32, 48), 24)) return;
    CHECK_MSG(prepare(dir, root, &b, &err) == CU_OK, "%s", err.msg);
    CHECK(b.action == BASE_CACHE_CONVERTED && strcmp(a.path, b.path) != 0);
    CHECK(strcmp(a.source_sha256, b.source_sha256) != 0);
    /* touching the file (same bytes) also makes a new key: the identity is
     * the file's, not its content's */
    char w[400];
    snprintf(w, sizeof w, "%s/model.safetensors", dir);
    shell("sleep 0.01; touch %s%s", w, "");
    base_cache_t c2;
    CHECK(prepare(dir, root, &c2, &err) == CU_OK && strcmp(c2.key, b.key) != 0);
    CHECK(!strcmp(c2.source_sha256, b.source_sha256));
    shell("rm -rf %s %s", dir, root);
}

static int count_files(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "find %s -type f -name 'model.safetensors*' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p) {
        if (fscanf(p, "%d", &n) != 1) n = -1;
        pclose(p);
    }
    return n;
}

static void test_disk_full(void) {
    char dir[300], root[300];
    tmp_dir(dir, sizeof dir, "src");
    tmp_dir(root, sizeof root, "root");
    if (write_folder(dir, cfg(32, 48), 25)) return;
    /* a file-size limit below the cache's size: writes fail like on a full disk */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 8192;
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &lim);
    base_cache_t c;
    cu_error_t err;
    int rc = prepare(dir, root, &c, &err);
    setrlimit(RLIMIT_FSIZE, &old);
    CHECK(rc == CU_EIO);
    CHECK_MSG(strstr(err.msg, "free in") && strstr(err.msg, "CU_BASE_CACHE"), "%s", err.msg);
    CHECK_MSG(count_files(root) == 0, "%d files left", count_files(root));
    CHECK(prepare(dir, root, &c, &err) == CU_OK && c.action == BASE_CACHE_CONVERTED);
    shell("rm -rf %s %s", dir, root);
}

/* ------------------------------------------------- private memory */

static long anon_kb(void) {
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "Anonymous:", 10)) kb = atol(line + 10);
    if (f) fclose(f);
    return kb;
}

/* CU_TEST_MEASURE=<dir>:<root>:<copy|cache>:<arch>: loads the base one
 * way, runs a step, prints the growth of Anonymous memory in kB. */
static int measure(const char *spec) {
    char dir[300], root[300], how[16];
    int arch;
    if (sscanf(spec, "%299[^:]:%299[^:]:%15[^:]:%d", dir, root, how, &arch) != 4) return 2;
    long before = anon_kb();
    gpt_t *m = NULL;
    st_model_t *keep = NULL;
    if (!strcmp(how, "copy")) {
        m = load_copy(dir, arch, NULL);
    } else {
        base_cache_t c;
        cu_error_t err;
        if (prepare(dir, root, &c, &err) != CU_OK) return 3;
        m = load_cached(dir, &c, &keep);
    }
    if (!m) return 4;
    double loss[STEPS];
    float *g = NULL;
    size_t n;
    run_steps(m, loss, &g, &n);
    printf("%ld\n", anon_kb() - before);
    free(g);
    gpt_free(m);
    st_close(keep);
    return 0;
}

static long measured(const char *dir, const char *root, const char *how, int arch) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "CU_TEST_MEASURE=%s:%s:%s:%d /proc/%ld/exe", dir, root, how, arch,
             (long)getpid());
    FILE *p = popen(cmd, "r");
    long kb = -1;
    if (p) {
        if (fscanf(p, "%ld", &kb) != 1) kb = -1;
        pclose(p);
    }
    return kb;
}

/* The private memory of a LoRA step over a big base against a tiny one,
 * read from the bf16 cache and copied. prod: the big base's product weights
 * in bf16, kB. */
static void private_memory(gpt_config_t cs, gpt_config_t cb, long prod) {
    char small[300], big[300], root[300];
    tmp_dir(small, sizeof small, "small");
    tmp_dir(big, sizeof big, "big");
    tmp_dir(root, sizeof root, "root");
    if (write_folder(small, cs, 31) || write_folder(big, cb, 32)) return;
    long cache_s = measured(small, root, "cache", cb.arch),
         cache_b = measured(big, root, "cache", cb.arch);
    long copy_s = measured(small, root, "copy", cb.arch),
         copy_b = measured(big, root, "copy", cb.arch);
    printf("measured (%s): private (Anonymous) memory of a LoRA step, base with %ld kB of bf16 "
           "product weights vs a tiny one: read from the bf16 cache %+ld kB, copied %+ld kB\n",
           cb.arch == GPT_ARCH_GPT2 ? "GPT-2" : "Llama", prod, cache_b - cache_s, copy_b - copy_s);
    CHECK(cache_s >= 0 && cache_b >= 0 && copy_s >= 0 && copy_b >= 0);
    /* the copy holds fp32 and bf16: about 3x prod more; the cache: the
     * fp32 embedding and norms, the adapters and activations only */
    CHECK_MSG(copy_b - copy_s > 2 * prod, "copy grows %ld kB", copy_b - copy_s);
#ifndef __SANITIZE_ADDRESS__ /* ASan's shadow of the untouched buffers is private memory */
    CHECK_MSG(cache_b - cache_s < prod / 4, "cache grows %ld kB (product weights %ld kB)",
              cache_b - cache_s, prod);
#endif
    shell("rm -rf %s %s", small, big);
    shell("rm -rf %s%s", root, "");
}

static void test_private_memory(void) {
    /* product weights: 2 layers of 2 C^2 + 2 C kv + 3 C ffn, and the head */
    gpt_config_t cs = cfg(64, 128), cb = cfg(1024, 2816);
    int kv = cb.n_embd / cb.n_head * cb.n_kv_head;
    long per = 2L * cb.n_embd * cb.n_embd + 2L * cb.n_embd * kv + 3L * cb.n_embd * cb.ffn_hidden;
    private_memory(cs, cb, (per * cb.n_layer + (long)V * cb.n_embd) * 2 / 1024);
}

/* GPT-2: the Conv1D weights (12 C^2 a block) lent from the cache. */
static void test_private_memory_gpt2(void) {
    gpt_config_t cs = cfg_gpt2(64), cb = cfg_gpt2(1024);
    private_memory(cs, cb, 12L * cb.n_embd * cb.n_embd * cb.n_layer * 2 / 1024);
}

static const cu_test_case_t CASES[] = {
    TEST(test_cache_equals_copy),  TEST(test_cache_equals_copy_gpt2),
    TEST(test_corrupt_rebuilt),    TEST(test_changed_source_new_cache),
    TEST(test_disk_full),          TEST(test_private_memory),
    TEST(test_private_memory_gpt2)};

int main(void) {
    const char *spec = getenv("CU_TEST_MEASURE");
    if (spec) return measure(spec);
    return cu_test_run(CASES, (int)(sizeof CASES / sizeof CASES[0]));
}
