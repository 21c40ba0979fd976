/*
 * HDF5 helpers shared inside io/: string attributes and groups of named
 * float32 tensors. Not a public header of the io library (it exposes HDF5
 * types); other folders use tensor_h5.h and ckpt.h.
 */
#ifndef CU_IO_H5UTIL_H
#define CU_IO_H5UTIL_H

#include <hdf5.h>

#include "core/error.h"
#include "model/gpt.h"

int h5u_write_string_attr(hid_t obj, const char *name, const char *value);
/* Reads a string attribute into a malloc'd buffer; NULL if absent. */
char *h5u_read_string_attr(hid_t obj, const char *name);

/* Writes each tensor of buf (at its offset) as a dataset in a new group. */
int h5u_write_group(hid_t file, const char *group, const float *buf, const gpt_tensor_t *tensors,
                    int n, const char *path, cu_error_t *err);
/* Reads each tensor named in `tensors` from group into buf, checking shapes. */
int h5u_read_group(hid_t file, const char *group, float *buf, const gpt_tensor_t *tensors, int n,
                   const char *path, cu_error_t *err);

/* The slice [lo, hi) of the trainable buffer, tensor by tensor: element i of
 * the buffer is buf[i - base]. A tensor's part of the slice is a run of its
 * row-major elements, selected as up to three hyperslabs.
 * h5u_write_group_range creates every dataset of the group (collective under
 * the MPI-IO driver: every rank calls it with its own slice, dxpl says how
 * the data moves) and writes this rank's part; h5u_read_group_range reads
 * this rank's part, checking shapes. */
int h5u_write_group_range(hid_t file, const char *group, const float *buf, size_t base, size_t lo,
                          size_t hi, const gpt_tensor_t *tensors, int n, hid_t dxpl,
                          const char *path, cu_error_t *err);
/* Selects elements [s, s + c) in row-major order of a 1-D or 2-D space. */
void h5u_select_flat(hid_t space, int ndim, const hsize_t *dims, hsize_t s, hsize_t c);
int h5u_read_group_range(hid_t file, const char *group, float *buf, size_t base, size_t lo,
                         size_t hi, const gpt_tensor_t *tensors, int n, const char *path,
                         cu_error_t *err);

#endif
