/*
 * Named tensors in HDF5 (see tensor_h5.h).
 */
#include "io/tensor_h5.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int write_string_attr(hid_t obj, const char *name, const char *value) {
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

static int write_tensor(hid_t group, const float *buf, const gpt_tensor_t *t) {
    hsize_t dims[2] = {(hsize_t)t->shape[0], (hsize_t)t->shape[1]};
    hid_t space = H5Screate_simple(t->ndim, dims, NULL);
    hid_t ds =
        H5Dcreate2(group, t->name, H5T_IEEE_F32LE, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc =
        ds < 0 ? -1
               : H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf + t->offset);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(space);
    return rc < 0 ? -1 : 0;
}

int h5_save_tensors(const char *path, const float *buf, const gpt_tensor_t *tensors, int n,
                    const h5_attr_t *attrs, int n_attrs, cu_error_t *err) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported by us, with context */
    hid_t file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (file < 0) return cu_error_set(err, CU_EIO, "cannot create %s", tmp);
    int bad = 0;
    hid_t group = H5Gcreate2(file, "tensors", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (group < 0) bad = 1;
    for (int i = 0; !bad && i < n; i++) {
        if (write_tensor(group, buf, &tensors[i]) < 0) {
            cu_error_set(err, CU_EIO, "cannot write tensor %s to %s", tensors[i].name, tmp);
            bad = 1;
        }
    }
    for (int i = 0; !bad && i < n_attrs; i++) {
        if (write_string_attr(file, attrs[i].name, attrs[i].value) < 0) {
            cu_error_set(err, CU_EIO, "cannot write attribute %s to %s", attrs[i].name, tmp);
            bad = 1;
        }
    }
    if (group >= 0) H5Gclose(group);
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
    hid_t group = H5Gopen2(file, "tensors", H5P_DEFAULT);
    int rc = CU_OK;
    if (group < 0) rc = cu_error_set(err, CU_EFORMAT, "%s has no /tensors group", path);
    for (int i = 0; rc == CU_OK && i < n; i++) {
        const gpt_tensor_t *t = &tensors[i];
        hid_t ds = H5Dopen2(group, t->name, H5P_DEFAULT);
        if (ds < 0) {
            rc = cu_error_set(err, CU_EFORMAT, "%s: tensor %s is missing", path, t->name);
            break;
        }
        hid_t space = H5Dget_space(ds);
        hsize_t dims[2] = {0, 0};
        int nd = H5Sget_simple_extent_dims(space, dims, NULL);
        if (nd != t->ndim || (int)dims[0] != t->shape[0] ||
            (nd == 2 && (int)dims[1] != t->shape[1]))
            rc = cu_error_set(err, CU_EFORMAT,
                              "%s: tensor %s has shape (%llu, %llu), expected (%d, %d)", path,
                              t->name, (unsigned long long)dims[0], (unsigned long long)dims[1],
                              t->shape[0], t->shape[1]);
        else if (H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf + t->offset) < 0)
            rc = cu_error_set(err, CU_EIO, "%s: cannot read tensor %s", path, t->name);
        H5Sclose(space);
        H5Dclose(ds);
    }
    if (group >= 0) H5Gclose(group);
    H5Fclose(file);
    return rc;
}

void h5_library_version(char *buf, size_t len) {
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    snprintf(buf, len, "%u.%u.%u", maj, min, rel);
}
