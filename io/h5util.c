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

int h5u_read_group(hid_t file, const char *group, float *buf, const gpt_tensor_t *tensors, int n,
                   const char *path, cu_error_t *err) {
    hid_t g = H5Gopen2(file, group, H5P_DEFAULT);
    if (g < 0) return cu_error_set(err, CU_EFORMAT, "%s has no /%s group", path, group);
    int rc = CU_OK;
    for (int i = 0; rc == CU_OK && i < n; i++) {
        const gpt_tensor_t *t = &tensors[i];
        hid_t ds = H5Dopen2(g, t->name, H5P_DEFAULT);
        if (ds < 0) {
            rc = cu_error_set(err, CU_EFORMAT, "%s: tensor %s/%s is missing", path, group, t->name);
            break;
        }
        hid_t space = H5Dget_space(ds);
        hsize_t dims[2] = {0, 0};
        int nd = H5Sget_simple_extent_dims(space, dims, NULL);
        if (nd != t->ndim || (int)dims[0] != t->shape[0] ||
            (nd == 2 && (int)dims[1] != t->shape[1]))
            rc = cu_error_set(err, CU_EFORMAT,
                              "%s: tensor %s/%s has shape (%llu, %llu), expected (%d, %d)", path,
                              group, t->name, (unsigned long long)dims[0],
                              (unsigned long long)dims[1], t->shape[0], t->shape[1]);
        else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf + t->offset) < 0)
            rc = cu_error_set(err, CU_EIO, "%s: cannot read tensor %s/%s", path, group, t->name);
        H5Sclose(space);
        H5Dclose(ds);
    }
    H5Gclose(g);
    return rc;
}
