/*
 * Memory of a bf16 LoRA rank over a Llama-shaped bf16 base: the base read
 * into private memory (copy: fp32 params plus their bf16 copy, what bf16
 * LoRA did before) or lent in place from a shared read-only mapping of the
 * safetensors file (mapped: what codex-train does now).
 *
 *   bench_base_map gen DIR L C H KV F V    random bf16 weights into DIR
 *   bench_base_map gen7b DIR [L]           Llama-2-7B's shapes (L=32: 13.5 GB;
 *                                          fewer layers for a smaller disk)
 *   bench_base_map copy|mapped DIR T STEPS LoRA r=16 on all seven linears,
 *                                          B=1, activation checkpointing
 *   bench_base_map ranks N DIR T STEPS     mapped, N processes at once
 *
 * The generator streams the file (st_stream_*): memory stays a few MB
 * whatever the model's size.
 *
 * Prints s/step, tokens/s, GFLOP/s (gpt_flops_per_step: the model's
 * products once, as bench_train_step counts them; the checkpointed blocks'
 * recomputation is not counted, so the kernels run faster than that), peak
 * RSS (VmHWM) and PSS after the steps
 * (/proc/self/smaps_rollup) of each process. `ranks N` runs N processes
 * over the same mapping at once, as N ranks of a node (each computes on its
 * own; the adapters' allreduce is a few MB and left out), and reads every
 * PSS once all have finished their steps and still hold the mapping.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/rng.h"
#include "io/hf_gpt2.h"
#include "io/safetensors.h"
#include "model/gpt.h"
#include "model/optim.h"

static long proc_kb(const char *file, const char *key) {
    FILE *f = fopen(file, "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n)) v = atol(line + n);
    if (f) fclose(f);
    return v;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Random bf16 weights for a Llama of config c into dir, streamed tensor by
 * tensor (st_stream_*): the fp32 model is never built, so a 13.5 GB file
 * is written with a few MB of memory. Norm weights are 1, the rest uniform
 * with standard deviation 0.02. */
static int gen_config(const char *dir, const gpt_config_t *c) {
    /* the model only for its tensor table: its lazily mapped params stay
     * untouched, and a token adapter keeps it from allocating full-size
     * gradients */
    lora_config_t tiny = {.enabled = 1, .targets = 1, .r = 1, .alpha = 1.0f};
    gpt_t *m = NULL;
    cu_error_t err;
    int rc = gpt_create(&m, c, &tiny, &err), n = 0;
    const gpt_tensor_t *t = rc == CU_OK ? gpt_param_tensors(m, &n) : NULL;
    st_tensor_t *st = calloc((size_t)n + 1, sizeof *st);
    char(*names)[128] = calloc((size_t)n + 1, sizeof *names);
    enum { CHUNK = 1 << 20 };
    float *buf = malloc(sizeof(float) * CHUNK);
    if (rc == CU_OK && (!st || !names || !buf)) rc = cu_error_set(&err, CU_ENOMEM, "out of memory");
    for (int i = 0; rc == CU_OK && i < n; i++) {
        int conv;
        rc = hf_gpt2_name(t[i].name, names[i], sizeof names[i], &conv);
        if (rc) {
            rc = cu_error_set(&err, CU_EINVAL, "no Hugging Face name for %s", t[i].name);
            break;
        }
        st[i] = (st_tensor_t){.name = names[i], .ndim = t[i].ndim};
        for (int d = 0; d < t[i].ndim; d++) st[i].shape[d] = t[i].shape[d];
    }
    char path[4200];
    st_stream_t *out = NULL;
    const char *meta[] = {"format", "pt"};
    if (rc == CU_OK) rc = cu_format(path, sizeof path, &err, "%s/model.safetensors", dir);
    if (rc == CU_OK) rc = st_stream_begin(path, st, n, ST_BF16, meta, 1, &out, &err);
    cu_rng_t rng;
    cu_rng_seed(&rng, 1);
    const float half_width = 0.02f * 1.7320508f; /* uniform(-a, a) has std a / sqrt(3) */
    for (int i = 0; rc == CU_OK && i < n; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        int norm = strstr(t[i].name, "norm") != NULL;
        for (size_t done = 0; rc == CU_OK && done < numel; done += CHUNK) {
            size_t k = numel - done < CHUNK ? numel - done : CHUNK;
            for (size_t j = 0; j < k; j++)
                buf[j] = norm ? 1.0f : half_width * (2.0f * cu_rng_uniform(&rng) - 1.0f);
            rc = st_stream_put(out, buf, k, &err);
        }
    }
    if (out && rc == CU_OK) {
        rc = st_stream_end(out, &err);
        out = NULL;
    }
    st_stream_abort(out);
    if (rc == CU_OK) rc = hf_gpt2_write_config(dir, NULL, c, ST_BF16, &err);
    gpt_free(m);
    free(st), free(names), free(buf);
    if (rc) fprintf(stderr, "gen: %s\n", err.msg);
    return rc ? 1 : 0;
}

static gpt_config_t llama_config(int L, int C, int H, int KV, int F, int V) {
    return (gpt_config_t){.arch = GPT_ARCH_LLAMA,
                          .n_layer = L,
                          .n_embd = C,
                          .n_head = H,
                          .n_kv_head = KV,
                          .ffn_hidden = F,
                          .vocab_size = V,
                          .max_seq_len = 4096,
                          .rope_theta = 10000.0f,
                          .norm_eps = 1e-5f};
}

/* a: DIR L C H KV F V */
static int gen(char **a) {
    gpt_config_t c =
        llama_config(atoi(a[1]), atoi(a[2]), atoi(a[3]), atoi(a[4]), atoi(a[5]), atoi(a[6]));
    return gen_config(a[0], &c);
}

/* a: DIR [L]: Llama-2-7B's shapes (L=32 unless given) */
static int gen7b(int argc, char **a) {
    gpt_config_t c = llama_config(argc > 1 ? atoi(a[1]) : 32, 4096, 32, 32, 11008, 32000);
    return gen_config(a[0], &c);
}

static gpt_t *load(const char *dir, int mapped, st_model_t **keep, cu_error_t *err) {
    hf_gpt2_info_t info;
    gpt_config_t gc = {.arch = GPT_ARCH_LLAMA};
    lora_config_t l = {.enabled = 1,
                       .targets = (1u << gpt_n_targets(GPT_ARCH_LLAMA)) - 1,
                       .r = 16,
                       .alpha = 32.0f};
    gpt_t *m = NULL;
    int n_lent = 0, rc = hf_gpt2_read_config(dir, &info, err);
    if (rc == CU_OK) rc = hf_gpt2_apply_config(&info, &gc, err);
    if (rc == CU_OK) rc = gpt_create(&m, &gc, &l, err);
    if (rc == CU_OK && mapped) rc = gpt_set_precision(m, GPT_PREC_BF16, err);
    if (rc == CU_OK && mapped) rc = hf_gpt2_load_mapped(dir, &info, m, keep, &n_lent, err);
    if (rc == CU_OK && !mapped) {
        int n;
        const gpt_tensor_t *t = gpt_param_tensors(m, &n);
        rc = hf_gpt2_load_params(dir, &info, gpt_params(m, NULL), t, n, err);
        if (rc == CU_OK) rc = gpt_set_precision(m, GPT_PREC_BF16, err);
    }
    if (rc) {
        gpt_free(m);
        return NULL;
    }
    fprintf(stderr, "%s: %d tensors lent in place\n", mapped ? "mapped" : "copy", n_lent);
    return m;
}

/* run with a barrier before the memory is read: every rank of `ranks` has
 * finished its steps and still holds its mapping (fd pair; -1: alone) */
static int run_synced(int mapped, const char *dir, int T, int steps, int done_fd, int go_fd);

static int run(int mapped, const char *dir, int T, int steps) {
    return run_synced(mapped, dir, T, steps, -1, -1);
}

static int run_synced(int mapped, const char *dir, int T, int steps, int done_fd, int go_fd) {
    cu_error_t err;
    st_model_t *keep = NULL;
    gpt_t *m = load(dir, mapped, &keep, &err);
    if (!m) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 1;
    }
    gpt_set_activation_checkpointing(m, 1);
    gpt_init_lora(m, 2);
    int32_t *in = malloc(sizeof(int32_t) * (size_t)T), *tg = malloc(sizeof(int32_t) * (size_t)T);
    cu_rng_t rng;
    cu_rng_seed(&rng, 3);
    for (int i = 0; i < T; i++) in[i] = tg[i] = (int32_t)cu_rng_below(&rng, 32000);
    size_t n;
    float *p = gpt_trainable(m, &n), *g = gpt_grads(m, NULL);
    int nt;
    const gpt_tensor_t *tens = gpt_trainable_tensors(m, &nt);
    adamw_t opt;
    int rc = adamw_init(&opt, n, 0.9f, 0.99f, 1e-8f, 0.0f, &err);
    double t0 = 0, loss = 0;
    for (int s = 0; rc == CU_OK && s <= steps; s++) {
        if (s == 1) t0 = now(); /* step 0 warms up (page faults, primitives) */
        gpt_loss_t l;
        gpt_zero_grad(m);
        rc = gpt_forward(m, in, tg, 1, T, 1, 1.0f / T, (uint64_t)s, &l, &err);
        if (rc == CU_OK) gpt_backward(m), adamw_step(&opt, p, g, tens, nt, 1e-4f);
        loss = l.loss_sum / T;
    }
    double dt = (now() - t0) / steps;
    if (done_fd >= 0) { /* tell the parent, wait until every rank is done */
        char c = rc == CU_OK ? 'k' : 'x';
        if (write(done_fd, &c, 1) != 1 || read(go_fd, &c, 1) < 0) rc = CU_EIO;
    }
    if (rc == CU_OK)
        printf("%s pid %d T=%d: %.2f s/step, %.0f tokens/s, %.1f GFLOP/s, loss %.4f, peak RSS "
               "%.2f GB, PSS %.2f GB\n",
               mapped ? "mapped" : "copy", (int)getpid(), T, dt, T / dt,
               gpt_flops_per_step(m, 1, T) / dt / 1e9, loss,
               proc_kb("/proc/self/status", "VmHWM:") / 1048576.0,
               proc_kb("/proc/self/smaps_rollup", "Pss:") / 1048576.0);
    else
        fprintf(stderr, "step: %s\n", err.msg);
    adamw_free(&opt);
    free(in), free(tg);
    gpt_free(m);
    st_close(keep);
    return rc ? 1 : 0;
}

/* N processes each run the mapped LoRA steps on the same folder at once,
 * as N ranks of one node would (no allreduce: the adapters' is a few MB);
 * each prints its figures after all have finished their steps, so the PSS
 * shows the base's pages shared N ways. */
static int ranks(int n, const char *dir, int T, int steps) {
    int done[2], go[2];
    if (n < 1 || pipe(done) || pipe(go)) return 2;
    fflush(stdout);
    for (int r = 0; r < n; r++) {
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid == 0) {
            close(done[0]), close(go[1]);
            int rc = run_synced(1, dir, T, steps, done[1], go[0]);
            fflush(stdout);
            _exit(rc);
        }
    }
    close(done[1]), close(go[0]);
    int bad = 0;
    for (int r = 0; r < n; r++) {
        char c = 'x';
        if (read(done[0], &c, 1) != 1 || c != 'k') bad = 1;
    }
    close(go[1]); /* releases every rank */
    close(done[0]);
    for (int r = 0; r < n; r++) {
        int st;
        if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st)) bad = 1;
    }
    return bad;
}

int main(int argc, char **argv) {
    if (argc == 9 && !strcmp(argv[1], "gen")) return gen(argv + 2);
    if ((argc == 3 || argc == 4) && !strcmp(argv[1], "gen7b")) return gen7b(argc - 2, argv + 2);
    if (argc == 6 && !strcmp(argv[1], "ranks"))
        return ranks(atoi(argv[2]), argv[3], atoi(argv[4]), atoi(argv[5]));
    if (argc == 5 && (!strcmp(argv[1], "copy") || !strcmp(argv[1], "mapped")))
        return run(!strcmp(argv[1], "mapped"), argv[2], atoi(argv[3]), atoi(argv[4]));
    fprintf(stderr, "usage: bench_base_map gen DIR L C H KV F V\n"
                    "       bench_base_map gen7b DIR [L]\n"
                    "       bench_base_map copy|mapped DIR T STEPS\n"
                    "       bench_base_map ranks N DIR T STEPS\n");
    return 2;
}
