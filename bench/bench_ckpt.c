/*
 * Benchmark: checkpoint save and load times at GPT-2 124M shapes, for LoRA
 * (r=8, all-linear) and full fine-tuning state (weights and both AdamW
 * moments), on the file system holding the given directory.
 *
 * usage: bench_ckpt [DIR]   (default /tmp)
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/timer.h"
#include "io/ckpt.h"
#include "model/gpt.h"

static int one(const char *dir, int lora) {
    gpt_config_t gc = {
        .n_layer = 12, .n_head = 12, .n_embd = 768, .vocab_size = 50257, .max_seq_len = 1024};
    lora_config_t lc = {.enabled = lora, .targets = 15u, .r = 8, .alpha = 16.0f};
    gpt_t *m;
    cu_error_t err;
    if (gpt_create(&m, &gc, &lc, &err)) {
        fprintf(stderr, "bench_ckpt: %s\n", err.msg);
        return 1;
    }
    gpt_init_weights(m, 1, 0.02f);
    gpt_init_lora(m, 2);
    size_t n;
    float *p = gpt_trainable(m, &n);
    float *mo = calloc(n, sizeof(float)), *v = calloc(n, sizeof(float));
    float *p2 = malloc(n * sizeof(float)), *m2 = malloc(n * sizeof(float)),
          *v2 = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) mo[i] = 1e-3f * (float)(i % 97), v[i] = 1e-6f * (float)(i % 89);
    int nt;
    const gpt_tensor_t *t = gpt_trainable_tensors(m, &nt);
    ckpt_data_t d = {.params = p, .m = mo, .v = v, .tensors = t, .n_tensors = nt};
    ckpt_meta_t meta = {.step = 1};
    char path[4200];
    snprintf(path, sizeof path, "%s/bench_ckpt_%d.h5", dir, (int)getpid());
    double t0 = cu_now();
    int rc = ckpt_save(path, &d, &meta, &err);
    double save = cu_now() - t0;
    t0 = cu_now();
    if (rc == CU_OK) rc = ckpt_load(path, p2, m2, v2, t, nt, &meta, &err);
    double load = cu_now() - t0;
    if (rc)
        fprintf(stderr, "bench_ckpt: %s\n", err.msg);
    else
        printf("%-22s %8.1f MB  save %6.3f s (%6.0f MB/s)  load+verify %6.3f s (%6.0f MB/s)\n",
               lora ? "LoRA r=8 all-linear" : "full fine-tuning", 3.0 * n * 4 / 1e6, save,
               3.0 * n * 4 / 1e6 / save, load, 3.0 * n * 4 / 1e6 / load);
    unlink(path);
    free(mo), free(v), free(p2), free(m2), free(v2);
    gpt_free(m);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    printf("checkpoint (weights + AdamW moments) at GPT-2 124M shapes in %s\n", dir);
    return one(dir, 1) | one(dir, 0);
}
