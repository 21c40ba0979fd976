/*
 * Named float32 tensors in an HDF5 file: the final trainable state of a job
 * (and the base of checkpoints). Each tensor is a dataset under /tensors
 * with its shape; string attributes on the root carry metadata such as the
 * resolved config, and tensors_sha256 the sha256 of the tensors' bytes. Files are written to a
 * temporary name and renamed, so a reader never sees half a file.
 */
#ifndef CU_IO_TENSOR_H5_H
#define CU_IO_TENSOR_H5_H

#include "core/error.h"
#include "model/gpt.h"

typedef struct {
    const char *name;
    const char *value;
} h5_attr_t;

int h5_save_tensors(const char *path, const float *buf, const gpt_tensor_t *tensors, int n,
                    const h5_attr_t *attrs, int n_attrs, cu_error_t *err);
/* The same with a second group of the same tensors (same names and shapes,
 * laid out by `tensors` in extra), e.g. /lora_init: the adapters a PiSSA or
 * OLoRA run started from. extra NULL writes no second group. */
int h5_save_tensors_with(const char *path, const float *buf, const char *extra_group,
                         const float *extra, const gpt_tensor_t *tensors, int n,
                         const h5_attr_t *attrs, int n_attrs, cu_error_t *err);

/* The same file written piece by piece, for weights that no one buffer
 * holds whole (sharded master weights: rank 0 writes what the owners send
 * it): the tensors' values in table order and each tensor's in row-major
 * order, any number at a time; the checksum grows as they come. After a
 * failure further puts do nothing and return it again; h5_writer_close
 * writes the attributes and renames the file into place, or removes the
 * temporary if anything failed (or not every value came), and frees w. */
typedef struct h5_writer h5_writer_t;
int h5_writer_open(h5_writer_t **out, const char *path, const gpt_tensor_t *tensors, int n,
                   cu_error_t *err);
int h5_writer_put(h5_writer_t *w, const float *vals, size_t count, cu_error_t *err);
int h5_writer_close(h5_writer_t *w, const h5_attr_t *attrs, int n_attrs, cu_error_t *err);

/* Reads every tensor named in `tensors` into buf at its offset; a missing
 * tensor or a shape that differs is an error naming it. The file's checksum
 * is verified: a checkpoint's sha256 (ckpt_verify_tensors), else the
 * tensors_sha256 attribute h5_save_tensors writes (files written before it
 * existed have none); a mismatch is CU_EFORMAT naming the file. Every
 * reader of a final.h5 or checkpoint's tensors goes through here. */
int h5_load_tensors(const char *path, float *buf, const gpt_tensor_t *tensors, int n,
                    cu_error_t *err);

/* HDF5's version, for provenance. */
void h5_library_version(char *buf, size_t len);

#endif
