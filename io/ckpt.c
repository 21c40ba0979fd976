/*
 * Checkpoint files (see ckpt.h).
 */
#include "io/ckpt.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/ckpt_internal.h"
#include "io/h5util.h"

/* The loop state as text: hashed with the tensors and stored as attributes. */
void ckpt_meta_text(const ckpt_meta_t *m, char *buf, size_t len) {
    snprintf(buf, len,
             "step=%ld cursor=%ld adam_t=%ld epoch=%ld best_step=%ld best=%.17g since=%ld "
             "rng=%016" PRIx64 "%016" PRIx64 "%016" PRIx64 "%016" PRIx64 " world=%d gbs=%d",
             m->step, m->sample_cursor, m->adam_t, m->epoch, m->best_step, m->best_val_loss,
             m->evals_since_best, m->rng[0], m->rng[1], m->rng[2], m->rng[3], m->world_size,
             m->global_batch_size);
}

int ckpt_meta_parse(const char *s, ckpt_meta_t *m) {
    int n = sscanf(s,
                   "step=%ld cursor=%ld adam_t=%ld epoch=%ld best_step=%ld best=%lg since=%ld "
                   "rng=%16" SCNx64 "%16" SCNx64 "%16" SCNx64 "%16" SCNx64 " world=%d gbs=%d",
                   &m->step, &m->sample_cursor, &m->adam_t, &m->epoch, &m->best_step,
                   &m->best_val_loss, &m->evals_since_best, &m->rng[0], &m->rng[1], &m->rng[2],
                   &m->rng[3], &m->world_size, &m->global_batch_size);
    return n == 13 ? 0 : -1;
}

size_t ckpt_span(const gpt_tensor_t *t, int n) {
    size_t floats = 0;
    for (int i = 0; i < n; i++)
        if (t[i].offset + gpt_tensor_numel(&t[i]) > floats)
            floats = t[i].offset + gpt_tensor_numel(&t[i]);
    return floats;
}

size_t ckpt_chunk_count(const gpt_tensor_t *t, int n) {
    size_t count = 0;
    for (int i = 0; i < n; i++) {
        size_t o = t[i].offset, e = o + gpt_tensor_numel(&t[i]);
        if (e > o) count += (e - 1) / CKPT_CHUNK - o / CKPT_CHUNK + 1;
    }
    return count;
}

void ckpt_chunk_digests(const float *const bufs[3], const size_t bases[3], const gpt_tensor_t *t,
                        int n, size_t lo, size_t hi, unsigned char *out) {
    size_t count = ckpt_chunk_count(t, n);
    for (int g = 0; g < 3; g++) {
        size_t idx = (size_t)g * count;
        for (int i = 0; i < n; i++) {
            size_t pos = t[i].offset, e = pos + gpt_tensor_numel(&t[i]);
            while (pos < e) {
                size_t cut = (pos / CKPT_CHUNK + 1) * CKPT_CHUNK, end = cut < e ? cut : e;
                if (pos >= lo && pos < hi)
                    EVP_Digest(bufs[g] + (pos - bases[g]), (end - pos) * sizeof(float),
                               out + 32 * idx, NULL, EVP_sha256(), NULL);
                idx++;
                pos = end;
            }
        }
    }
}

void ckpt_chunks_final(const unsigned char *digests, size_t n_digests, const char *meta,
                       char hex[65]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, digests, 32 * n_digests);
    EVP_DigestUpdate(ctx, meta, strlen(meta));
    unsigned char md[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* The chunked checksum of whole buffers p, m, v (one writer or reader). */
static int chunked_checksum(const float *p, const float *m, const float *v, const gpt_tensor_t *t,
                            int n, const char *meta, char hex[65]) {
    size_t count = ckpt_chunk_count(t, n);
    unsigned char *dig = malloc(3 * count * 32 + 1);
    if (!dig) return -1;
    const float *bufs[3] = {p, m, v};
    size_t bases[3] = {0, 0, 0};
    ckpt_chunk_digests(bufs, bases, t, n, 0, (size_t)-1, dig);
    ckpt_chunks_final(dig, 3 * count, meta, hex);
    free(dig);
    return 0;
}

/* sha256 over the non-NULL tensor groups, tensor by tensor, then the meta
 * text: the checksum of files written before the chunked one, and of
 * /lora_init. */
static void checksum(const float *p, const float *m, const float *v, const gpt_tensor_t *t, int n,
                     const char *meta, char hex[65]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    const float *bufs[3] = {p, m, v};
    for (int b = 0; b < 3; b++)
        for (int i = 0; bufs[b] && i < n; i++)
            EVP_DigestUpdate(ctx, bufs[b] + t[i].offset, gpt_tensor_numel(&t[i]) * sizeof(float));
    EVP_DigestUpdate(ctx, meta, strlen(meta));
    unsigned char md[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

void ckpt_lora_init_sha256(const float *lora_init, const gpt_tensor_t *tensors, int n_tensors,
                           char hex[65]) {
    checksum(lora_init, NULL, NULL, tensors, n_tensors, "lora_init", hex);
}

int ckpt_save(const char *path, const ckpt_data_t *d, const ckpt_meta_t *meta, cu_error_t *err) {
    char tmp[4200], mt[512], sum[65];
    if (cu_format(tmp, sizeof tmp, err, "%s.tmp.%d", path, (int)getpid())) return err->code;
    ckpt_meta_text(meta, mt, sizeof mt);
    if (chunked_checksum(d->params, d->m, d->v, d->tensors, d->n_tensors, mt, sum))
        return cu_error_set(err, CU_ENOMEM, "out of memory (checkpoint checksum)");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return cu_error_set(err, CU_EIO, "cannot create checkpoint %s", tmp);
    int rc = h5u_write_group(file, "tensors", d->params, d->tensors, d->n_tensors, tmp, err);
    if (rc == CU_OK) rc = h5u_write_group(file, "adam_m", d->m, d->tensors, d->n_tensors, tmp, err);
    if (rc == CU_OK) rc = h5u_write_group(file, "adam_v", d->v, d->tensors, d->n_tensors, tmp, err);
    if (rc == CU_OK && d->lora_init) {
        char init_sum[65];
        checksum(d->lora_init, NULL, NULL, d->tensors, d->n_tensors, "lora_init", init_sum);
        rc = h5u_write_group(file, "lora_init", d->lora_init, d->tensors, d->n_tensors, tmp, err);
        if (rc == CU_OK && h5u_write_string_attr(file, "lora_init_sha256", init_sum) < 0)
            rc = cu_error_set(err, CU_EIO, "%s: cannot write attribute lora_init_sha256", tmp);
    }
    const char *names[6] = {"format", "state", "sha256", "sha256_scheme", "config", "provenance"};
    const char *values[6] = {CKPT_FORMAT,
                             mt,
                             sum,
                             CKPT_SCHEME,
                             d->config_yaml ? d->config_yaml : "",
                             d->provenance_json ? d->provenance_json : "{}"};
    for (int i = 0; rc == CU_OK && i < 6; i++)
        if (h5u_write_string_attr(file, names[i], values[i]) < 0)
            rc = cu_error_set(err, CU_EIO, "%s: cannot write attribute %s", tmp, names[i]);
    if (rc == CU_OK && d->fingerprint &&
        h5u_write_string_attr(file, "fingerprint", d->fingerprint) < 0)
        rc = cu_error_set(err, CU_EIO, "%s: cannot write attribute fingerprint", tmp);
    if (H5Fclose(file) < 0 && rc == CU_OK)
        rc = cu_error_set(err, CU_EIO, "cannot finish writing %s", tmp);
    if (rc == CU_OK && rename(tmp, path) != 0)
        rc = cu_error_set(err, CU_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (rc != CU_OK) unlink(tmp);
    return rc;
}

/* Reads the Adam moments of an open checkpoint into m and v and checks the
 * file's sha256 over params, m, v and the loop state. */
static int read_moments_checked(hid_t file, const char *path, const float *params, float *m,
                                float *v, const gpt_tensor_t *tensors, int n_tensors,
                                const char *state, const char *sum, cu_error_t *err) {
    char *scheme = h5u_read_string_attr(file, "sha256_scheme");
    int chunked = scheme != NULL, known = !scheme || strcmp(scheme, CKPT_SCHEME) == 0;
    free(scheme);
    if (!known)
        return cu_error_set(err, CU_EFORMAT,
                            "%s: unknown checksum scheme (written by a newer version?)", path);
    int rc = h5u_read_group(file, "adam_m", m, tensors, n_tensors, path, err);
    if (rc == CU_OK) rc = h5u_read_group(file, "adam_v", v, tensors, n_tensors, path, err);
    if (rc != CU_OK) return rc;
    char again[65];
    if (!chunked)
        checksum(params, m, v, tensors, n_tensors, state, again);
    else if (chunked_checksum(params, m, v, tensors, n_tensors, state, again))
        return cu_error_set(err, CU_ENOMEM, "out of memory (checkpoint checksum)");
    if (strcmp(again, sum) != 0)
        return cu_error_set(err, CU_EFORMAT, "%s: checksum mismatch (file corrupted)", path);
    return CU_OK;
}

int ckpt_load(const char *path, float *params, float *m, float *v, const gpt_tensor_t *tensors,
              int n_tensors, ckpt_meta_t *meta, cu_error_t *err) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return cu_error_set(err, CU_EFORMAT, "%s is not a readable HDF5 file (truncated?)", path);
    int rc = CU_OK;
    char *format = h5u_read_string_attr(file, "format");
    char *state = h5u_read_string_attr(file, "state");
    char *sum = h5u_read_string_attr(file, "sha256");
    if (!format || strcmp(format, CKPT_FORMAT) != 0 || !state || !sum)
        rc = cu_error_set(err, CU_EFORMAT, "%s is not a Codex-Universal checkpoint", path);
    else if (ckpt_meta_parse(state, meta) != 0)
        rc = cu_error_set(err, CU_EFORMAT, "%s: unreadable loop state '%s'", path, state);
    if (rc == CU_OK) rc = h5u_read_group(file, "tensors", params, tensors, n_tensors, path, err);
    if (rc == CU_OK)
        rc = read_moments_checked(file, path, params, m, v, tensors, n_tensors, state, sum, err);
    free(format);
    free(state);
    free(sum);
    H5Fclose(file);
    return rc;
}

int ckpt_verify_tensors(const char *path, const float *params, const gpt_tensor_t *tensors,
                        int n_tensors, cu_error_t *err) {
    size_t floats = ckpt_span(tensors, n_tensors);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return cu_error_set(err, CU_EFORMAT, "%s is not a readable HDF5 file (truncated?)", path);
    char *state = h5u_read_string_attr(file, "state");
    char *sum = h5u_read_string_attr(file, "sha256");
    float *m = malloc((floats ? floats : 1) * sizeof(float));
    float *v = malloc((floats ? floats : 1) * sizeof(float));
    int rc = m && v ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory");
    if (rc == CU_OK && (!state || !sum))
        rc = cu_error_set(err, CU_EFORMAT, "%s: checkpoint without its state or sha256", path);
    if (rc == CU_OK)
        rc = read_moments_checked(file, path, params, m, v, tensors, n_tensors, state, sum, err);
    free(m);
    free(v);
    free(state);
    free(sum);
    H5Fclose(file);
    return rc;
}

int ckpt_load_lora_init(const char *path, float *lora_init, const gpt_tensor_t *tensors,
                        int n_tensors, cu_error_t *err) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return cu_error_set(err, CU_EFORMAT, "%s is not a readable HDF5 file (truncated?)", path);
    /* checkpoints and final.h5 carry a checksum of the group; final.h5
     * files written before it was added carry none */
    char *sum = h5u_read_string_attr(file, "lora_init_sha256");
    int rc = H5Lexists(file, "lora_init", H5P_DEFAULT) > 0
                 ? CU_OK
                 : cu_error_set(
                       err, CU_EFORMAT,
                       "%s has no /lora_init (the adapters a PiSSA/OLoRA run started from)", path);
    if (rc == CU_OK)
        rc = h5u_read_group(file, "lora_init", lora_init, tensors, n_tensors, path, err);
    if (rc == CU_OK && sum) {
        char again[65];
        checksum(lora_init, NULL, NULL, tensors, n_tensors, "lora_init", again);
        if (strcmp(again, sum) != 0)
            rc = cu_error_set(err, CU_EFORMAT, "%s: /lora_init checksum mismatch (file corrupted)",
                              path);
    }
    free(sum);
    H5Fclose(file);
    return rc;
}

int ckpt_path(char *buf, size_t len, const char *dir, long step, cu_error_t *err) {
    return cu_format(buf, len, err, "%s/step_%08ld.h5", dir, step);
}

static int cmp_desc(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x < y) - (x > y);
}

int ckpt_list(const char *dir, long **steps, int *n, cu_error_t *err) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return errno == ENOENT
                   ? CU_OK
                   : cu_error_set(err, CU_EIO, "cannot list %s: %s", dir, strerror(errno));
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long step;
        char tail[8];
        if (sscanf(e->d_name, "step_%8ld%7s", &step, tail) != 2 || strcmp(tail, ".h5") != 0 ||
            strlen(e->d_name) != 16)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            long *grown = realloc(*steps, sizeof(long) * (size_t)cap);
            if (!grown) {
                closedir(d);
                free(*steps);
                *steps = NULL;
                return cu_error_set(err, CU_ENOMEM, "out of memory listing %s", dir);
            }
            *steps = grown;
        }
        (*steps)[(*n)++] = step;
    }
    closedir(d);
    if (*n > 1) qsort(*steps, (size_t)*n, sizeof(long), cmp_desc);
    return CU_OK;
}

int ckpt_retain(const char *dir, int keep_last, cu_error_t *err) {
    return ckpt_retain_except(dir, keep_last, -1, err);
}

int ckpt_retain_except(const char *dir, int keep_last, long keep_step, cu_error_t *err) {
    if (keep_last <= 0) return CU_OK;
    long *steps;
    int n, rc = ckpt_list(dir, &steps, &n, err);
    for (int i = keep_last; rc == CU_OK && i < n; i++) {
        if (steps[i] == keep_step) continue;
        char path[4200];
        rc = ckpt_path(path, sizeof path, dir, steps[i], err);
        if (rc == CU_OK && unlink(path) != 0 && errno != ENOENT)
            rc = cu_error_set(err, CU_EIO, "cannot remove %s: %s", path, strerror(errno));
    }
    free(steps);
    return rc;
}

int ckpt_write_latest(const char *dir, long step, cu_error_t *err) {
    char path[4200], tmp[4300], line[64];
    if (cu_format(path, sizeof path, err, "%s/latest", dir) ||
        cu_format(tmp, sizeof tmp, err, "%s.tmp", path))
        return err->code;
    snprintf(line, sizeof line, "step_%08ld.h5\n", step);
    FILE *f = fopen(tmp, "w");
    if (!f) return cu_error_set(err, CU_EIO, "cannot write %s: %s", tmp, strerror(errno));
    int bad = fputs(line, f) < 0;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0)
        return cu_error_set(err, CU_EIO, "cannot write %s: %s", path, strerror(errno));
    return CU_OK;
}
