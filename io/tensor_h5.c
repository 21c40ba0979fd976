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

/* sha256 over the tensors' float32 bytes in table order, as hex. */
static void tensors_sha256(const float *buf, const gpt_tensor_t *t, int n, char hex[65]) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    for (int i = 0; i < n; i++) {
        size_t k = (size_t)t[i].shape[0] * (size_t)(t[i].ndim == 2 ? t[i].shape[1] : 1);
        EVP_DigestUpdate(ctx, buf + t[i].offset, k * sizeof(float));
    }
    unsigned char md[32];
    unsigned int len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 32; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

int h5_save_tensors(const char *path, const float *buf, const gpt_tensor_t *tensors, int n,
                    const h5_attr_t *attrs, int n_attrs, cu_error_t *err) {
    return h5_save_tensors_with(path, buf, NULL, NULL, tensors, n, attrs, n_attrs, err);
}

int h5_save_tensors_with(const char *path, const float *buf, const char *extra_group,
                         const float *extra, const gpt_tensor_t *tensors, int n,
                         const h5_attr_t *attrs, int n_attrs, cu_error_t *err) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported by us, with context */
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return cu_error_set(err, CU_EIO, "cannot create %s", tmp);
    int bad = h5u_write_group(file, "tensors", buf, tensors, n, tmp, err) != CU_OK;
    char sum[65];
    tensors_sha256(buf, tensors, n, sum);
    if (!bad && h5u_write_string_attr(file, "tensors_sha256", sum) < 0) {
        cu_error_set(err, CU_EIO, "cannot write attribute tensors_sha256 to %s", tmp);
        bad = 1;
    }
    if (!bad && extra)
        bad = h5u_write_group(file, extra_group, extra, tensors, n, tmp, err) != CU_OK;
    for (int i = 0; !bad && i < n_attrs; i++) {
        if (h5u_write_string_attr(file, attrs[i].name, attrs[i].value) < 0) {
            cu_error_set(err, CU_EIO, "cannot write attribute %s to %s", attrs[i].name, tmp);
            bad = 1;
        }
    }
    if (H5Fclose(file) < 0 && !bad) {
        cu_error_set(err, CU_EIO, "cannot finish writing %s", tmp);
        bad = 1;
    }
    if (!bad && rename(tmp, path) != 0) {
        cu_error_set(err, CU_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        bad = 1;
    }
    if (bad) {
        unlink(tmp);
        return err ? err->code : CU_EIO;
    }
    return CU_OK;
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
