/*
 * Token sources, data order and HDF5 tensor files.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "io/ckpt.h"
#include "io/tensor_h5.h"
#include "io/tokens.h"

static void test_permute_is_bijection(void) {
    uint64_t sizes[] = {1, 2, 3, 7, 64, 1000, 4099};
    for (int s = 0; s < 7; s++) {
        uint64_t n = sizes[s];
        unsigned char *seen = calloc(n, 1);
        int moved = 0;
        for (uint64_t i = 0; i < n; i++) {
            uint64_t p = tokens_permute(i, n, 12345);
            CHECK(p < n);
            if (p < n) seen[p]++;
            moved += p != i;
        }
        int all_once = 1;
        for (uint64_t i = 0; i < n; i++) all_once &= seen[i] == 1;
        CHECK_MSG(all_once, "permutation of %llu is not a bijection", (unsigned long long)n);
        if (n >= 64)
            CHECK_MSG(moved > (int)n / 2, "permutation of %llu barely shuffles",
                      (unsigned long long)n);
        free(seen);
    }
    /* a different key (epoch) gives a different order */
    int differ = 0;
    for (uint64_t i = 0; i < 100; i++)
        differ += tokens_permute(i, 100, 1) != tokens_permute(i, 100, 2);
    CHECK(differ > 50);
}

static token_source_t *counting_source(size_t n, uint64_t seed) {
    int32_t *ids = malloc(sizeof(int32_t) * n);
    for (size_t i = 0; i < n; i++) ids[i] = (int32_t)(i % 50);
    token_source_t *src;
    cu_error_t err;
    CHECK(tokens_open_ids(&src, ids, n, 50, seed, "counting", &err) == CU_OK);
    return src;
}

static void test_windows_cover_epoch(void) {
    /* 41 tokens, seq_len 8: windows start at 0, 8, 16, 24, 32 (each 9 long) */
    token_source_t *src = counting_source(41, 9);
    long windows;
    CHECK(tokens_windows(src, 8, &windows, NULL) == CU_OK);
    CHECK(windows == 5);
    int32_t w[9];
    int starts[5] = {0};
    for (long g = 0; g < 5; g++) {
        long epoch;
        tokens_sample(src, g, 8, w, &epoch, NULL);
        CHECK(epoch == 0);
        CHECK(w[0] % 8 == 0);
        for (int i = 1; i < 9; i++) CHECK(w[i] == (w[0] + i) % 50);
        starts[w[0] / 8]++;
    }
    for (int i = 0; i < 5; i++)
        CHECK_MSG(starts[i] == 1, "window %d seen %d times in an epoch", i, starts[i]);
    long epoch;
    tokens_sample(src, 7, 8, w, &epoch, NULL);
    CHECK(epoch == 1);
    tokens_free(src);
}

static void test_order_depends_on_seed_only(void) {
    token_source_t *a = counting_source(1000, 5), *b = counting_source(1000, 5),
                   *c = counting_source(1000, 6);
    int32_t wa[17], wb[17], wc[17];
    int same_c = 0;
    for (long g = 0; g < 50; g++) {
        tokens_sample(a, g, 16, wa, NULL, NULL);
        tokens_sample(b, g, 16, wb, NULL, NULL);
        tokens_sample(c, g, 16, wc, NULL, NULL);
        CHECK(memcmp(wa, wb, sizeof wa) == 0);
        same_c += memcmp(wa, wc, sizeof wa) == 0;
    }
    CHECK(same_c < 10);
    tokens_free(a), tokens_free(b), tokens_free(c);
}

static void test_random_source(void) {
    token_source_t *src;
    CHECK(tokens_open_random(&src, 257, 3, NULL) == CU_OK);
    int32_t w1[33], w2[33];
    tokens_sample(src, 12, 32, w1, NULL, NULL);
    tokens_sample(src, 12, 32, w2, NULL, NULL);
    CHECK(memcmp(w1, w2, sizeof w1) == 0);
    int distinct = 0;
    for (int i = 0; i < 33; i++) {
        CHECK(w1[i] >= 0 && w1[i] < 257);
        distinct += i > 0 && w1[i] != w1[i - 1];
    }
    CHECK(distinct > 25);
    tokens_free(src);
}

static void test_bad_inputs(void) {
    cu_error_t err;
    token_source_t *src;
    int32_t *ids = malloc(sizeof(int32_t) * 3);
    ids[0] = 1, ids[1] = 99, ids[2] = 2;
    CHECK(tokens_open_ids(&src, ids, 3, 50, 1, "x.bin", &err) == CU_EINVAL);
    CHECK(strstr(err.msg, "x.bin") && strstr(err.msg, "token 1") && strstr(err.msg, "99"));

    src = counting_source(5, 1);
    long w;
    CHECK(tokens_windows(src, 8, &w, &err) == CU_EINVAL);
    CHECK(strstr(err.msg, "fewer than one window") != NULL);
    tokens_free(src);

    CHECK(tokens_open_file(&src, "/nonexistent/tokens.bin", 2, 50, 1, &err) == CU_EINVAL);
    CHECK(strstr(err.msg, "/nonexistent/tokens.bin") != NULL);

    /* an odd byte count is not a uint16 file */
    char path[] = "/tmp/cu_test_tokens_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "\x01\x00\x02", 3) == 3);
    close(fd);
    CHECK(tokens_open_file(&src, path, 2, 50, 1, &err) == CU_EINVAL);
    CHECK(strstr(err.msg, "token_dtype") != NULL);
    /* little-endian uint16 read back */
    fd = open(path, O_WRONLY | O_TRUNC);
    CHECK(write(fd, "\x01\x00\x02\x01\x03\x00", 6) == 6);
    close(fd);
    CHECK(tokens_open_file(&src, path, 2, 300, 1, &err) == CU_OK);
    CHECK(tokens_count(src) == 3);
    int32_t win[3];
    tokens_sample(src, 0, 2, win, NULL, NULL);
    CHECK(win[0] == 1 && win[1] == 258 && win[2] == 3);
    tokens_free(src);
    unlink(path);
}

static void test_split(void) {
    /* 81 tokens whose ids are their positions, seq_len 8: 10 windows; 20%
     * held out is the last 2 */
    int32_t *ids = malloc(sizeof(int32_t) * 81);
    for (int i = 0; i < 81; i++) ids[i] = i;
    token_source_t *src, *val;
    cu_error_t err;
    CHECK(tokens_open_ids(&src, ids, 81, 100, 3, "positions", &err) == CU_OK);
    CHECK(tokens_split(src, 8, 0.2f, &val, &err) == CU_OK);
    long wt, wv;
    CHECK(tokens_windows(src, 8, &wt, NULL) == CU_OK && wt == 8);
    CHECK(val && tokens_windows(val, 8, &wv, NULL) == CU_OK && wv == 2);
    /* no training window reaches into the held-out tokens */
    int32_t w[9];
    int max_start = 0;
    for (long g = 0; g < wt; g++) {
        tokens_sample(src, g, 8, w, NULL, NULL);
        if (w[0] > max_start) max_start = w[0];
    }
    CHECK(max_start == 56); /* window 7 covers tokens 56..64 */
    for (long g = 0; g < wv; g++) {
        tokens_sample(val, g, 8, w, NULL, NULL);
        CHECK(w[0] == 64 || w[0] == 72);
    }
    tokens_free(val);
    /* too small to split */
    token_source_t *tiny = counting_source(10, 3);
    CHECK(tokens_split(tiny, 8, 0.1f, &val, &err) == CU_EINVAL);
    CHECK(strstr(err.msg, "val_fraction") != NULL);
    tokens_free(tiny);
    /* fraction 0: no held-out source */
    CHECK(tokens_split(src, 8, 0.0f, &val, &err) == CU_OK && val == NULL);
    tokens_free(src);
}

static void test_h5_roundtrip(void) {
    gpt_tensor_t t[2] = {{.name = "a.weight", .offset = 0, .ndim = 2, .shape = {2, 3}},
                         {.name = "a.bias", .offset = 6, .ndim = 1, .shape = {4, 0}}};
    float buf[10], back[10] = {0};
    for (int i = 0; i < 10; i++) buf[i] = 0.5f * (float)i - 1.0f;
    char path[] = "/tmp/cu_test_h5_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    h5_attr_t attrs[1] = {{"config", "job:\n  name: x\n"}};
    cu_error_t err;
    CHECK(h5_save_tensors(path, buf, t, 2, attrs, 1, &err) == CU_OK);
    CHECK(h5_load_tensors(path, back, t, 2, &err) == CU_OK);
    CHECK(memcmp(buf, back, sizeof buf) == 0);
    /* a shape mismatch names the tensor */
    gpt_tensor_t wrong = t[0];
    wrong.shape[1] = 4;
    CHECK(h5_load_tensors(path, back, &wrong, 1, &err) == CU_EFORMAT);
    CHECK(strstr(err.msg, "a.weight") != NULL);
    gpt_tensor_t missing = {.name = "nope", .ndim = 1, .shape = {1, 0}};
    CHECK(h5_load_tensors(path, back, &missing, 1, &err) == CU_EFORMAT);
    CHECK(strstr(err.msg, "nope") != NULL);
    unlink(path);
    /* an unwritable destination is an error, and leaves no temporary file */
    CHECK(h5_save_tensors("/nonexistent/dir/x.h5", buf, t, 2, NULL, 0, &err) == CU_EIO);
}

/* A small checkpoint on disk: 2 tensors, params/m/v filled distinctly. */
static const gpt_tensor_t CK_T[2] = {
    {.name = "h.0.attn.c_attn.lora_A", .offset = 0, .ndim = 2, .shape = {2, 4}},
    {.name = "h.0.attn.c_attn.lora_B", .offset = 8, .ndim = 2, .shape = {4, 2}}};

static void ck_fill(float *p, float *m, float *v) {
    for (int i = 0; i < 16; i++) {
        p[i] = 1.0f + (float)i;
        m[i] = 0.01f * (float)i;
        v[i] = 12345.0f + (float)i; /* a recognisable byte pattern to corrupt */
    }
}

/* Flips the bits `mask` in the first byte of the last place the file holds
 * the float `needle`; returns the file's size. */
static long flip_float_byte(const char *path, float needle, unsigned char mask) {
    FILE *f = fopen(path, "r+b");
    CHECK(f != NULL);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    unsigned char *bytes = malloc((size_t)size);
    fseek(f, 0, SEEK_SET);
    CHECK(fread(bytes, 1, (size_t)size, f) == (size_t)size);
    long at = -1;
    for (long i = 0; i + 4 <= size; i++)
        if (memcmp(bytes + i, &needle, 4) == 0) at = i;
    CHECK(at >= 0);
    if (at >= 0) {
        fseek(f, at, SEEK_SET);
        unsigned char b = bytes[at] ^ mask;
        fwrite(&b, 1, 1, f);
    }
    fclose(f);
    free(bytes);
    return size;
}

static void test_ckpt_roundtrip_and_corruption(void) {
    char dir[] = "/tmp/cu_test_ckpt_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    float p[16], m[16], v[16], p2[16], m2[16], v2[16];
    ck_fill(p, m, v);
    ckpt_meta_t meta = {.step = 40,
                        .sample_cursor = 320,
                        .adam_t = 40,
                        .epoch = 2,
                        .best_step = 30,
                        .best_val_loss = 1.25,
                        .evals_since_best = 1,
                        .rng = {1, 2, 0xffffffffffffffffULL, 4},
                        .world_size = 2,
                        .global_batch_size = 8};
    ckpt_data_t d = {.params = p,
                     .m = m,
                     .v = v,
                     .tensors = CK_T,
                     .n_tensors = 2,
                     .config_yaml = "job:\n  name: t\n",
                     .provenance_json = "{}"};
    char path[4200];
    cu_error_t err;
    CHECK(ckpt_path(path, sizeof path, dir, 40, &err) == CU_OK);
    CHECK(strstr(path, "step_00000040.h5") != NULL);
    CHECK(ckpt_save(path, &d, &meta, &err) == CU_OK);
    ckpt_meta_t back;
    memset(&back, 0, sizeof back);
    CHECK(ckpt_load(path, p2, m2, v2, CK_T, 2, &back, &err) == CU_OK);
    CHECK(memcmp(p, p2, sizeof p) == 0 && memcmp(m, m2, sizeof m) == 0 &&
          memcmp(v, v2, sizeof v) == 0);
    CHECK(back.step == 40 && back.sample_cursor == 320 && back.adam_t == 40 && back.epoch == 2);
    CHECK(back.best_step == 30 && back.best_val_loss == 1.25 && back.evals_since_best == 1);
    CHECK(back.rng[2] == 0xffffffffffffffffULL && back.world_size == 2 &&
          back.global_batch_size == 8);

    /* flip one byte of the stored second moments: the checksum catches it */
    long size = flip_float_byte(path, 12350.0f, 0x40);
    CHECK(ckpt_load(path, p2, m2, v2, CK_T, 2, &back, &err) == CU_EFORMAT);
    CHECK(strstr(err.msg, "checksum") != NULL);

    /* a truncated file is rejected, not crashed on */
    CHECK(truncate(path, size / 2) == 0);
    CHECK(ckpt_load(path, p2, m2, v2, CK_T, 2, &back, &err) == CU_EFORMAT);
    CHECK(strstr(err.msg, path) != NULL);
    unlink(path);
    rmdir(dir);
}

/* /lora_init (PiSSA/OLoRA runs): written with its own checksum, read back
 * bit for bit, a flipped byte caught, and a checkpoint without it refused. */
static void test_ckpt_lora_init(void) {
    char dir[] = "/tmp/cu_test_ckpt_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    float p[16], m[16], v[16], init[16], back[16];
    ck_fill(p, m, v);
    for (int i = 0; i < 16; i++) init[i] = -777.0f - (float)i; /* recognisable bytes */
    ckpt_meta_t meta = {.step = 3};
    ckpt_data_t d = {
        .params = p, .m = m, .v = v, .tensors = CK_T, .n_tensors = 2, .lora_init = init};
    char path[4200], plain[4200];
    cu_error_t err;
    CHECK(ckpt_path(path, sizeof path, dir, 3, &err) == CU_OK);
    CHECK(ckpt_save(path, &d, &meta, &err) == CU_OK);
    CHECK(ckpt_load_lora_init(path, back, CK_T, 2, &err) == CU_OK);
    CHECK(memcmp(init, back, sizeof init) == 0);
    /* the trainable state still loads as before */
    float p2[16], m2[16], v2[16];
    ckpt_meta_t mb;
    CHECK(ckpt_load(path, p2, m2, v2, CK_T, 2, &mb, &err) == CU_OK);

    flip_float_byte(path, -777.0f - 9.0f, 0x01);
    CHECK(ckpt_load_lora_init(path, back, CK_T, 2, &err) == CU_EFORMAT);
    CHECK(strstr(err.msg, "checksum") != NULL);

    d.lora_init = NULL;
    CHECK(ckpt_path(plain, sizeof plain, dir, 4, &err) == CU_OK);
    CHECK(ckpt_save(plain, &d, &meta, &err) == CU_OK);
    CHECK(ckpt_load_lora_init(plain, back, CK_T, 2, &err) == CU_EFORMAT);
    CHECK(strstr(err.msg, "lora_init") != NULL && strstr(err.msg, plain) != NULL);
    unlink(path);
    unlink(plain);
    rmdir(dir);
}

static void test_ckpt_list_retain_latest(void) {
    char dir[] = "/tmp/cu_test_ckpt_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    float p[16], m[16], v[16];
    ck_fill(p, m, v);
    ckpt_meta_t meta = {0};
    ckpt_data_t d = {.params = p, .m = m, .v = v, .tensors = CK_T, .n_tensors = 2};
    long made[4] = {10, 30, 20, 40};
    char path[4200];
    for (int i = 0; i < 4; i++) {
        meta.step = made[i];
        CHECK(ckpt_path(path, sizeof path, dir, made[i], NULL) == CU_OK);
        CHECK(ckpt_save(path, &d, &meta, NULL) == CU_OK);
    }
    /* files that only look alike are ignored */
    char other[4300];
    snprintf(other, sizeof other, "%s/step_00000050.h5.tmp.1", dir);
    fclose(fopen(other, "w"));
    long *steps;
    int n;
    CHECK(ckpt_list(dir, &steps, &n, NULL) == CU_OK);
    CHECK(n == 4 && steps[0] == 40 && steps[1] == 30 && steps[3] == 10);
    free(steps);
    CHECK(ckpt_retain(dir, 2, NULL) == CU_OK);
    CHECK(ckpt_list(dir, &steps, &n, NULL) == CU_OK);
    CHECK(n == 2 && steps[0] == 40 && steps[1] == 30);
    free(steps);
    CHECK(ckpt_write_latest(dir, 40, NULL) == CU_OK);
    char lp[4300], line[64] = {0};
    snprintf(lp, sizeof lp, "%s/latest", dir);
    FILE *f = fopen(lp, "r");
    CHECK(f && fgets(line, sizeof line, f));
    if (f) fclose(f);
    CHECK(strcmp(line, "step_00000040.h5\n") == 0);
    /* an empty or missing directory lists nothing */
    CHECK(ckpt_list("/nonexistent/cu/ckpts", &steps, &n, NULL) == CU_OK && n == 0);
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

TEST_MAIN(TEST(test_ckpt_roundtrip_and_corruption), TEST(test_ckpt_lora_init),
          TEST(test_ckpt_list_retain_latest), TEST(test_permute_is_bijection),
          TEST(test_windows_cover_epoch), TEST(test_order_depends_on_seed_only),
          TEST(test_random_source), TEST(test_bad_inputs), TEST(test_split),
          TEST(test_h5_roundtrip))
