/*
 * Checkpoints written and read by every rank at once (see ckpt.h): one HDF5
 * file through the MPI-IO driver, each rank writing its slice of every
 * tensor with collective transfers, and the chunked checksum assembled from
 * each rank's piece digests (io/ckpt_internal.h).
 */
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/ckpt.h"
#include "io/ckpt_internal.h"
#include "io/h5util.h"

/* The largest return code of all ranks, so every rank sees a failure. */
static int agree(int rc) {
    int all = rc;
    if (MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        return CU_EMPI;
    return all;
}

/* Every rank's digests of its own pieces, OR-ed together: each place of the
 * list is written by exactly one rank, the others leave it zero. */
static int gather_digests(unsigned char *dig, size_t bytes, cu_error_t *err) {
    if (bytes > (size_t)INT_MAX)
        return cu_error_set(err, CU_EINVAL, "checkpoint too large for one digest exchange");
    int size = 1;
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size > 1 && MPI_Allreduce(MPI_IN_PLACE, dig, (int)bytes, MPI_BYTE, MPI_BOR,
                                  MPI_COMM_WORLD) != MPI_SUCCESS)
        return cu_error_set(err, CU_EMPI, "exchanging checkpoint digests failed");
    return CU_OK;
}

static int slice_checksum(const float *p, const float *m, const float *v, size_t lo, size_t hi,
                          const gpt_tensor_t *t, int n, const char *meta, char hex[65],
                          cu_error_t *err) {
    size_t count = ckpt_chunk_count(t, n);
    unsigned char *dig = calloc(3 * count * 32 + 1, 1);
    if (!dig) return cu_error_set(err, CU_ENOMEM, "out of memory (checkpoint checksum)");
    const float *bufs[3] = {p, m, v};
    size_t bases[3] = {0, lo, lo};
    ckpt_chunk_digests(bufs, bases, t, n, lo, hi, dig);
    int rc = gather_digests(dig, 3 * count * 32, err);
    if (rc == CU_OK) ckpt_chunks_final(dig, 3 * count, meta, hex);
    free(dig);
    return rc;
}

static int write_file(const char *tmp, const ckpt_data_t *d, size_t lo, size_t hi, const char *mt,
                      const char *sum, cu_error_t *err) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL);
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (file < 0) return cu_error_set(err, CU_EIO, "cannot create checkpoint %s", tmp);
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE);
    const gpt_tensor_t *t = d->tensors;
    int n = d->n_tensors;
    int rc = h5u_write_group_range(file, "tensors", d->params, 0, lo, hi, t, n, dxpl, tmp, err);
    if (rc == CU_OK)
        rc = h5u_write_group_range(file, "adam_m", d->m, lo, lo, hi, t, n, dxpl, tmp, err);
    if (rc == CU_OK)
        rc = h5u_write_group_range(file, "adam_v", d->v, lo, lo, hi, t, n, dxpl, tmp, err);
    char init_sum[65];
    if (rc == CU_OK && d->lora_init) {
        ckpt_lora_init_sha256(d->lora_init, t, n, init_sum);
        rc =
            h5u_write_group_range(file, "lora_init", d->lora_init, 0, lo, hi, t, n, dxpl, tmp, err);
    }
    /* attributes are collective: every rank writes the same bytes */
    const char *names[8] = {"format", "state",      "sha256",      "sha256_scheme",
                            "config", "provenance", "fingerprint", "lora_init_sha256"};
    const char *values[8] = {CKPT_FORMAT,
                             mt,
                             sum,
                             CKPT_SCHEME,
                             d->config_yaml ? d->config_yaml : "",
                             d->provenance_json ? d->provenance_json : "{}",
                             d->fingerprint,
                             d->lora_init ? init_sum : NULL};
    for (int i = 0; rc == CU_OK && i < 8; i++)
        if (values[i] && h5u_write_string_attr(file, names[i], values[i]) < 0)
            rc = cu_error_set(err, CU_EIO, "%s: cannot write attribute %s", tmp, names[i]);
    H5Pclose(dxpl);
    if (H5Fclose(file) < 0 && rc == CU_OK)
        rc = cu_error_set(err, CU_EIO, "cannot finish writing %s", tmp);
    return rc;
}

int ckpt_save_parallel(const char *path, const ckpt_data_t *d, size_t lo, size_t hi,
                       const ckpt_meta_t *meta, long tmp_id, cu_error_t *err) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    char tmp[4200], mt[512], sum[65];
    int rc = cu_format(tmp, sizeof tmp, err, "%s.tmp.%ld", path, tmp_id);
    ckpt_meta_text(meta, mt, sizeof mt);
    if (rc == CU_OK)
        rc = slice_checksum(d->params, d->m, d->v, lo, hi, d->tensors, d->n_tensors, mt, sum, err);
    if ((rc = agree(rc)) != CU_OK) {
        if (!err->code) cu_error_set(err, rc, "%s: another rank could not hash its slice", path);
        return rc;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    rc = write_file(tmp, d, lo, hi, mt, sum, err);
    if (agree(rc) == CU_OK && rank == 0 && rename(tmp, path) != 0)
        rc = cu_error_set(err, CU_EIO, "cannot rename %s to %s", tmp, path);
    int all = agree(rc);
    if (all != CU_OK && rank == 0) unlink(tmp);
    if (all != CU_OK && rc == CU_OK)
        rc = cu_error_set(err, all, "%s: another rank could not write its slice", path);
    return rc;
}

/* A file with the earlier whole-file checksum: read whole into temporaries,
 * keep the slice (only params[lo, hi) of the caller's buffer is touched). */
static int load_slice_whole(const char *path, float *params, float *m, float *v, size_t lo,
                            size_t hi, const gpt_tensor_t *t, int n, ckpt_meta_t *meta,
                            cu_error_t *err) {
    size_t span = ckpt_span(t, n);
    float *all = malloc((3 * span + 1) * sizeof(float));
    int rc = all ? ckpt_load(path, all, all + span, all + 2 * span, t, n, meta, err)
                 : cu_error_set(err, CU_ENOMEM, "out of memory (resume)");
    if (rc == CU_OK && hi > lo) {
        memcpy(params + lo, all + lo, (hi - lo) * sizeof(float));
        memcpy(m, all + span + lo, (hi - lo) * sizeof(float));
        memcpy(v, all + 2 * span + lo, (hi - lo) * sizeof(float));
    }
    free(all);
    return rc;
}

int ckpt_load_slice(const char *path, float *params, float *m, float *v, size_t lo, size_t hi,
                    const gpt_tensor_t *tensors, int n_tensors, ckpt_meta_t *meta,
                    cu_error_t *err) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = file < 0 ? cu_error_set(err, CU_EFORMAT, "%s is not a readable HDF5 file (truncated?)",
                                     path)
                      : CU_OK;
    char *format = NULL, *state = NULL, *sum = NULL, *scheme = NULL;
    if (file >= 0) {
        format = h5u_read_string_attr(file, "format");
        state = h5u_read_string_attr(file, "state");
        sum = h5u_read_string_attr(file, "sha256");
        scheme = h5u_read_string_attr(file, "sha256_scheme");
        if (!format || strcmp(format, CKPT_FORMAT) != 0 || !state || !sum)
            rc = cu_error_set(err, CU_EFORMAT, "%s is not a Codex-Universal checkpoint", path);
        else if (ckpt_meta_parse(state, meta) != 0)
            rc = cu_error_set(err, CU_EFORMAT, "%s: unreadable loop state '%s'", path, state);
        else if (scheme && strcmp(scheme, CKPT_SCHEME) != 0)
            rc = cu_error_set(err, CU_EFORMAT, "%s: unknown checksum scheme '%s'", path, scheme);
    }
    int chunked = scheme != NULL;
    if (rc == CU_OK && chunked) {
        rc =
            h5u_read_group_range(file, "tensors", params, 0, lo, hi, tensors, n_tensors, path, err);
        if (rc == CU_OK)
            rc = h5u_read_group_range(file, "adam_m", m, lo, lo, hi, tensors, n_tensors, path, err);
        if (rc == CU_OK)
            rc = h5u_read_group_range(file, "adam_v", v, lo, lo, hi, tensors, n_tensors, path, err);
    }
    if (file >= 0) H5Fclose(file);
    if (rc == CU_OK && !chunked)
        rc = load_slice_whole(path, params, m, v, lo, hi, tensors, n_tensors, meta, err);
    int all = agree(rc);
    if (all != CU_OK && rc == CU_OK)
        rc = cu_error_set(err, CU_EFORMAT, "%s: another rank could not read its slice", path);
    if (all == CU_OK && chunked) {
        char again[65];
        rc = slice_checksum(params, m, v, lo, hi, tensors, n_tensors, state, again, err);
        if (rc == CU_OK && strcmp(again, sum) != 0)
            rc = cu_error_set(err, CU_EFORMAT, "%s: checksum mismatch (file corrupted)", path);
    }
    free(format);
    free(state);
    free(sum);
    free(scheme);
    return rc;
}
