/*
 * HDF5 attribute and tensor-group helpers (see h5util.h).
 */
#include "io/h5util.h"

#include <stdlib.h>
#include <string.h>

int h5u_write_string_attr(hid_t obj, const char *name, const char *value) {
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, strlen(value) + 1);
    H5Tset_strpad(type, H5T_STR_NULLTERM);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = attr < 0 ? -1 : H5Awrite(attr, type, value);
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
    return rc < 0 ? -1 : 0;
}

char *h5u_read_string_attr(hid_t obj, const char *name) {
    if (H5Aexists(obj, name) <= 0) return NULL;
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (attr < 0) return NULL;
    hid_t type = H5Aget_type(attr);
    char *out = NULL;
    if (H5Tget_class(type) == H5T_STRING && !H5Tis_variable_str(type)) {
        size_t size = H5Tget_size(type);
        out = calloc(size + 1, 1);
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, size);
        if (out && H5Aread(attr, mem, out) < 0) {
            free(out);
            out = NULL;
        }
        H5Tclose(mem);
    }
    H5Tclose(type);
    H5Aclose(attr);
    return out;
}

int h5u_write_group(hid_t file, const char *group, const float *buf, const gpt_tensor_t *tensors,
                    int n, const char *path, cu_error_t *err) {
    hid_t g = H5Gcreate2(file, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return cu_error_set(err, CU_EIO, "%s: cannot create group %s", path, group);
    int rc = CU_OK;
    for (int i = 0; rc == CU_OK && i < n; i++) {
        const gpt_tensor_t *t = &tensors[i];
        hsize_t dims[2] = {(hsize_t)t->shape[0], (hsize_t)t->shape[1]};
        hid_t space = H5Screate_simple(t->ndim, dims, NULL);
        hid_t ds =
            H5Dcreate2(g, t->name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (ds < 0 ||
            H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf + t->offset) < 0)
            rc = cu_error_set(err, CU_EIO, "%s: cannot write %s/%s", path, group, t->name);
        if (ds >= 0) H5Dclose(ds);
        H5Sclose(space);
    }
    H5Gclose(g);
    return rc;
}

/* Opens tensor t of group g and checks its shape; on success the caller
 * closes *space and *ds. */
static int open_tensor(hid_t g, const gpt_tensor_t *t, const char *group, const char *path,
                       hid_t *ds, hid_t *space, cu_error_t *err) {
    *ds = H5Dopen2(g, t->name, H5P_DEFAULT);
    if (*ds < 0)
        return cu_error_set(err, CU_EFORMAT, "%s: tensor %s/%s is missing", path, group, t->name);
    *space = H5Dget_space(*ds);
    hsize_t dims[2] = {0, 0};
    int nd = H5Sget_simple_extent_dims(*space, dims, NULL);
    if (nd == t->ndim && (int)dims[0] == t->shape[0] && (nd != 2 || (int)dims[1] == t->shape[1]))
        return CU_OK;
    H5Sclose(*space);
    H5Dclose(*ds);
    return cu_error_set(err, CU_EFORMAT,
                        "%s: tensor %s/%s has shape (%llu, %llu), expected (%d, %d)", path, group,
                        t->name, (unsigned long long)dims[0], (unsigned long long)dims[1],
                        t->shape[0], t->shape[1]);
}

int h5u_read_group(hid_t file, const char *group, float *buf, const gpt_tensor_t *tensors, int n,
                   const char *path, cu_error_t *err) {
    hid_t g = H5Gopen2(file, group, H5P_DEFAULT);
    if (g < 0) return cu_error_set(err, CU_EFORMAT, "%s has no /%s group", path, group);
    int rc = CU_OK;
    for (int i = 0; rc == CU_OK && i < n; i++) {
        const gpt_tensor_t *t = &tensors[i];
        hid_t ds, space;
        if ((rc = open_tensor(g, t, group, path, &ds, &space, err))) break;
        if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf + t->offset) < 0)
            rc = cu_error_set(err, CU_EIO, "%s: cannot read tensor %s/%s", path, group, t->name);
        H5Sclose(space);
        H5Dclose(ds);
    }
    H5Gclose(g);
    return rc;
}

/* Selects elements [s, s + c) in row-major order of a 1-D or 2-D space. */
void h5u_select_flat(hid_t space, int ndim, const hsize_t *dims, hsize_t s, hsize_t c) {
    H5Sselect_none(space);
    if (c == 0) return;
    if (ndim == 1) {
        hsize_t start[1] = {s}, count[1] = {c};
        H5Sselect_hyperslab(space, H5S_SELECT_SET, start, NULL, count, NULL);
        return;
    }
    hsize_t cols = dims[1], e = s + c;
    if (s % cols) { /* the end of a first, partial row */
        hsize_t n0 = cols - s % cols < c ? cols - s % cols : c;
        hsize_t start[2] = {s / cols, s % cols}, count[2] = {1, n0};
        H5Sselect_hyperslab(space, H5S_SELECT_OR, start, NULL, count, NULL);
        s += n0;
    }
    if (e - s >= cols) { /* whole rows */
        hsize_t start[2] = {s / cols, 0}, count[2] = {(e - s) / cols, cols};
        H5Sselect_hyperslab(space, H5S_SELECT_OR, start, NULL, count, NULL);
        s += count[0] * cols;
    }
    if (s < e) { /* the start of a last, partial row */
        hsize_t start[2] = {s / cols, 0}, count[2] = {1, e - s};
        H5Sselect_hyperslab(space, H5S_SELECT_OR, start, NULL, count, NULL);
    }
}

/* This rank's part [a, b) of tensor t (empty: a == b). */
static void part_of(const gpt_tensor_t *t, size_t lo, size_t hi, size_t *a, size_t *b) {
    size_t o = t->offset, e = o + gpt_tensor_numel(t);
    *a = o > lo ? o : lo;
    *b = e < hi ? e : hi;
    if (*b < *a) *b = *a;
}

/* The file and memory spaces of rank's part of t; the caller closes both. */
static void part_spaces(const gpt_tensor_t *t, size_t a, size_t b, hid_t file_space,
                        hid_t *mem_space) {
    hsize_t dims[2] = {(hsize_t)t->shape[0], (hsize_t)t->shape[1]};
    h5u_select_flat(file_space, t->ndim, dims, a - t->offset, b - a);
    hsize_t count[1] = {b > a ? b - a : 1};
    *mem_space = H5Screate_simple(1, count, NULL);
    if (b == a) H5Sselect_none(*mem_space);
}

int h5u_write_group_range(hid_t file, const char *group, const float *buf, size_t base, size_t lo,
                          size_t hi, const gpt_tensor_t *tensors, int n, hid_t dxpl,
                          const char *path, cu_error_t *err) {
    hid_t g = H5Gcreate2(file, group, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return cu_error_set(err, CU_EIO, "%s: cannot create group %s", path, group);
    /* every byte is written: no fill pass before the data */
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    int rc = CU_OK;
    for (int i = 0; rc == CU_OK && i < n; i++) {
        const gpt_tensor_t *t = &tensors[i];
        hsize_t dims[2] = {(hsize_t)t->shape[0], (hsize_t)t->shape[1]};
        hid_t space = H5Screate_simple(t->ndim, dims, NULL);
        hid_t ds = H5Dcreate2(g, t->name, H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        size_t a, b;
        part_of(t, lo, hi, &a, &b);
        hid_t mem;
        part_spaces(t, a, b, space, &mem);
        if (ds < 0 ||
            H5Dwrite(ds, H5T_NATIVE_FLOAT, mem, space, dxpl, b > a ? buf + (a - base) : buf) < 0)
            rc = cu_error_set(err, CU_EIO, "%s: cannot write %s/%s", path, group, t->name);
        if (ds >= 0) H5Dclose(ds);
        H5Sclose(mem);
        H5Sclose(space);
    }
    H5Pclose(dcpl);
    H5Gclose(g);
    return rc;
}

int h5u_read_group_range(hid_t file, const char *group, float *buf, size_t base, size_t lo,
                         size_t hi, const gpt_tensor_t *tensors, int n, const char *path,
                         cu_error_t *err) {
    hid_t g = H5Gopen2(file, group, H5P_DEFAULT);
    if (g < 0) return cu_error_set(err, CU_EFORMAT, "%s has no /%s group", path, group);
    int rc = CU_OK;
    for (int i = 0; rc == CU_OK && i < n; i++) {
        const gpt_tensor_t *t = &tensors[i];
        hid_t ds, space;
        if ((rc = open_tensor(g, t, group, path, &ds, &space, err))) break;
        size_t a, b;
        part_of(t, lo, hi, &a, &b);
        if (b > a) {
            hid_t mem;
            part_spaces(t, a, b, space, &mem);
            if (H5Dread(ds, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, buf + (a - base)) < 0)
                rc =
                    cu_error_set(err, CU_EIO, "%s: cannot read tensor %s/%s", path, group, t->name);
            H5Sclose(mem);
        }
        H5Sclose(space);
        H5Dclose(ds);
    }
    H5Gclose(g);
    return rc;
}
