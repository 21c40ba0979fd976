/*
 * Named tensors in HDF5 (see tensor_h5.h).
 */
#include "io/tensor_h5.h"

#include "io/ckpt.h"
#include "io/h5util.h"

#include <openssl/evp.h>
#include <stdlib.h>

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct h5_writer {
    char path[4096], tmp[4200];
    hid_t file, group, ds, space; /* ds, space: the tensor being written */
    const gpt_tensor_t *tensors;
    int n, i;   /* tensor i is next */
    size_t pos; /* values of tensor i written so far */
    EVP_MD_CTX *sha;
    int rc;
};

/* The sha256 ctx has summed, as hex. */
static void digest_hex(EVP_MD_CTX *ctx, char hex[65]) {
    unsigned char md[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* sha256 over the tensors' float32 bytes in table order, as hex (what
 * h5_writer_t sums as the values come). */
static void tensors_sha256(const float *buf, const gpt_tensor_t *t, int n, char hex[65]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (int i = 0; i < n; i++)
        EVP_DigestUpdate(ctx, buf + t[i].offset, gpt_tensor_numel(&t[i]) * sizeof(float));
    digest_hex(ctx, hex);
    EVP_MD_CTX_free(ctx);
}

int h5_writer_open(h5_writer_t **out, const char *path, const gpt_tensor_t *tensors, int n,
                   cu_error_t *err) {
    h5_writer_t *w = calloc(1, sizeof *w);
    if (!w || !(w->sha = EVP_MD_CTX_new())) {
        free(w);
        return cu_error_set(err, CU_ENOMEM, "out of memory (writing %s)", path);
    }
    *out = w;
    snprintf(w->path, sizeof w->path, "%s", path);
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%d", path, (int)getpid());
    w->tensors = tensors;
    w->n = n;
    w->ds = w->space = w->group = -1;
    EVP_DigestInit_ex(w->sha, EVP_sha256(), NULL);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported by us, with context */
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) return w->rc = cu_error_set(err, CU_EIO, "cannot create %s", w->tmp);
    w->group = H5Gcreate2(w->file, "tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (w->group < 0)
        return w->rc = cu_error_set(err, CU_EIO, "%s: cannot create group tensors", w->tmp);
    return CU_OK;
}

/* Writes up to count values into the current tensor; returns how many. */
static size_t put_part(h5_writer_t *w, const float *vals, size_t count, cu_error_t *err) {
    const gpt_tensor_t *t = &w->tensors[w->i];
    hsize_t dims[2] = {(hsize_t)t->shape[0], (hsize_t)t->shape[1]};
    if (w->pos == 0) {
        w->space = H5Screate_simple(t->ndim, dims, NULL);
        w->ds = H5Dcreate2(w->group, t->name, H5T_IEEE_F32LE, w->space, H5P_DEFAULT, H5P_DEFAULT,
                           H5P_DEFAULT);
    }
    size_t left = gpt_tensor_numel(t) - w->pos, c = count < left ? count : left;
    hsize_t mc[1] = {c};
    hid_t mem = H5Screate_simple(1, mc, NULL);
    h5u_select_flat(w->space, t->ndim, dims, w->pos, c);
    if (w->ds < 0 || H5Dwrite(w->ds, H5T_NATIVE_FLOAT, mem, w->space, H5P_DEFAULT, vals) < 0)
        w->rc = cu_error_set(err, CU_EIO, "%s: cannot write tensors/%s", w->tmp, t->name);
    H5Sclose(mem);
    EVP_DigestUpdate(w->sha, vals, c * sizeof(float));
    w->pos += c;
    if (w->pos == gpt_tensor_numel(t)) {
        if (w->ds >= 0) H5Dclose(w->ds);
        H5Sclose(w->space);
        w->ds = w->space = -1;
        w->i++;
        w->pos = 0;
    }
    return c;
}

int h5_writer_put(h5_writer_t *w, const float *vals, size_t count, cu_error_t *err) {
    while (w->rc == CU_OK && count > 0) {
        if (w->i == w->n)
            return w->rc = cu_error_set(err, CU_EINTERNAL, "%s: more values than tensors", w->tmp);
        size_t c = put_part(w, vals, count, err);
        vals += c;
        count -= c;
    }
    if (w->rc && err && !err->code) cu_error_set(err, w->rc, "%s: an earlier write failed", w->tmp);
    return w->rc;
}

int h5_writer_close(h5_writer_t *w, const h5_attr_t *attrs, int n_attrs, cu_error_t *err) {
    int rc = w->rc;
    if (rc == CU_OK && w->i < w->n)
        rc = cu_error_set(err, CU_EINTERNAL, "%s: tensor %s incomplete", w->tmp,
                          w->tensors[w->i].name);
    char sum[65];
    digest_hex(w->sha, sum);
    for (int i = -1; rc == CU_OK && i < n_attrs; i++) { /* -1: the checksum */
        h5_attr_t a = i < 0 ? (h5_attr_t){"tensors_sha256", sum} : attrs[i];
        if (h5u_write_string_attr(w->file, a.name, a.value) < 0)
            rc = cu_error_set(err, CU_EIO, "cannot write attribute %s to %s", a.name, w->tmp);
    }
    if (w->ds >= 0) H5Dclose(w->ds);
    if (w->space >= 0) H5Sclose(w->space);
    if (w->group >= 0) H5Gclose(w->group);
    if (w->file >= 0 && H5Fclose(w->file) < 0 && rc == CU_OK)
        rc = cu_error_set(err, CU_EIO, "cannot finish writing %s", w->tmp);
    if (rc == CU_OK && rename(w->tmp, w->path) != 0)
        rc = cu_error_set(err, CU_EIO, "cannot rename %s to %s: %s", w->tmp, w->path,
                          strerror(errno));
    if (rc) unlink(w->tmp);
    EVP_MD_CTX_free(w->sha);
    free(w);
    return rc;
}

int h5_save_tensors(const char *path, const float *buf, const gpt_tensor_t *tensors, int n,
                    const h5_attr_t *attrs, int n_attrs, cu_error_t *err) {
    return h5_save_tensors_with(path, buf, NULL, NULL, tensors, n, attrs, n_attrs, err);
}

int h5_save_tensors_with(const char *path, const float *buf, const char *extra_group,
                         const float *extra, const gpt_tensor_t *tensors, int n,
                         const h5_attr_t *attrs, int n_attrs, cu_error_t *err) {
    h5_writer_t *w;
    int rc = h5_writer_open(&w, path, tensors, n, err);
    if (rc == CU_ENOMEM) return rc;
    for (int i = 0; rc == CU_OK && i < n; i++)
        rc = h5_writer_put(w, buf + tensors[i].offset, gpt_tensor_numel(&tensors[i]), err);
    if (rc == CU_OK && extra)
        w->rc = rc = h5u_write_group(w->file, extra_group, extra, tensors, n, w->tmp, err);
    return h5_writer_close(w, attrs, n_attrs, err);
}

int h5_load_tensors(const char *path, float *buf, const gpt_tensor_t *tensors, int n,
                    cu_error_t *err) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) return cu_error_set(err, CU_EINVAL, "cannot open %s as HDF5", path);
    int rc = h5u_read_group(file, "tensors", buf, tensors, n, path, err);
    char *format = h5u_read_string_attr(file, "format");
    char *sum = h5u_read_string_attr(file, "tensors_sha256");
    H5Fclose(file);
    if (rc == CU_OK && format && !strcmp(format, CKPT_FORMAT))
        rc = ckpt_verify_tensors(path, buf, tensors, n, err);
    else if (rc == CU_OK && sum) {
        char again[65];
        tensors_sha256(buf, tensors, n, again);
        if (strcmp(again, sum) != 0)
            rc = cu_error_set(
                err, CU_EFORMAT,
                "%s: checksum mismatch (tensors_sha256; file corrupted); refusing to use it", path);
    }
    free(format);
    free(sum);
    return rc;
}

void h5_library_version(char *buf, size_t len) {
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    snprintf(buf, len, "%u.%u.%u", maj, min, rel);
}
