/*
 * safetensors: Hugging Face's tensor file. An 8-byte little-endian header
 * length N, N bytes of UTF-8 JSON {name: {dtype, shape, data_offsets}, ...,
 * "__metadata__": {string: string}}, then the raw little-endian tensor bytes;
 * data_offsets are relative to the first byte after the header.
 *
 * The reader trusts nothing in a file: the header length, the JSON, every
 * dtype, shape and offset are checked before a byte of data is read, and a
 * malformed file is an error (CU_EFORMAT) naming the file and the tensor.
 * F32, F16 and BF16 are accepted and every tensor is read as float32. A
 * model split into shards is opened through its
 * `model.safetensors.index.json`, whose weight_map names each tensor's shard.
 *
 * The writer writes F32 (or BF16) tensors with string metadata to a
 * temporary name and renames it, so a reader never sees half a file.
 */
#ifndef CU_IO_SAFETENSORS_H
#define CU_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define ST_MAX_HEADER (100u * 1024u * 1024u) /* largest header accepted */
#define ST_MAX_DIMS 8

typedef enum { ST_F32 = 0, ST_F16 = 1, ST_BF16 = 2 } st_dtype_t;

typedef struct {
    char *name;
    st_dtype_t dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end; /* in the data area of its file */
    int file;            /* index of its shard (0 for a single file) */
} st_entry_t;

/* A parsed header: the entries in file order and the __metadata__ object. */
typedef struct {
    st_entry_t *entries;
    int n;
    char **meta_keys, **meta_values;
    int n_meta;
} st_header_t;

/* Parses and validates header text (json, len bytes) of a file whose data
 * area holds data_len bytes. origin names the file in messages. Allocates
 * into *h; st_header_free releases it (also after a failure). */
int st_parse_header(const char *json, size_t len, uint64_t data_len, const char *origin,
                    st_header_t *h, cu_error_t *err);
void st_header_free(st_header_t *h);

typedef struct st_model st_model_t;

/* Opens a single .safetensors file, a `model.safetensors.index.json`, or a
 * directory holding either (the index wins). Validates every header.
 * Allocates *out; st_close frees it. */
int st_open(const char *path, st_model_t **out, cu_error_t *err);
void st_close(st_model_t *m);

int st_count(const st_model_t *m);
const st_entry_t *st_entry(const st_model_t *m, int i);
/* NULL when no tensor has that name. */
const st_entry_t *st_find(const st_model_t *m, const char *name);
/* The file an entry lives in (for messages and hashing). */
const char *st_file_path(const st_model_t *m, int file);
int st_file_count(const st_model_t *m);
/* A __metadata__ value of the (first) file, or NULL. */
const char *st_metadata(const st_model_t *m, const char *key);

/* Reads an entry's numel values, converted to float32, into dst. */
int st_read_f32(st_model_t *m, const st_entry_t *e, float *dst, cu_error_t *err);

/* The entry's raw bytes in place, from a read-only shared mapping of its
 * file (made on first use, released by st_close): pages of the page cache,
 * shared by every process mapping the file. NULL (with err) when the file
 * cannot be mapped or the tensor starts at an odd byte. */
const void *st_map_entry(st_model_t *m, const st_entry_t *e, cu_error_t *err);

/* One tensor to write: numel = product of shape (1 for ndim 0). */
typedef struct {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
} st_tensor_t;

/* Writes tensors (as dtype ST_F32 or ST_BF16, rounded to nearest even) and
 * metadata pairs (meta[2i] key, meta[2i+1] value) to path, via a temporary
 * file and rename. Names must be unique. */
int st_write(const char *path, const st_tensor_t *tensors, int n, st_dtype_t dtype,
             const char *const *meta, int n_meta, cu_error_t *err);

/* The same file written without holding the tensors: st_stream_begin writes
 * the header for `tensors` (their data is not read and may be NULL), then
 * st_stream_put appends values in order (the first tensor's, then the
 * next's, in chunks of any size, rounded to dtype), and st_stream_end checks
 * that every value came, syncs and renames the temporary file into place.
 * On any failure, and in st_stream_abort, the temporary file is removed and
 * path is left as it was. Memory: one small buffer, whatever the size. */
typedef struct st_stream st_stream_t;
int st_stream_begin(const char *path, const st_tensor_t *tensors, int n, st_dtype_t dtype,
                    const char *const *meta, int n_meta, st_stream_t **out, cu_error_t *err);
/* As st_stream_begin with each tensor's own dtype (ST_F32 or ST_BF16). */
int st_stream_begin_typed(const char *path, const st_tensor_t *tensors, const st_dtype_t *dtypes,
                          int n, const char *const *meta, int n_meta, st_stream_t **out,
                          cu_error_t *err);
/* Asks for the sha256 of the data area (the bytes after the header, as
 * written) in lower-case hex as the value of metadata `key`, which must
 * have been given as a 64-character placeholder: st_stream_end writes it
 * over the placeholder before the file is synced and renamed. */
int st_stream_checksum(st_stream_t *s, const char *key, cu_error_t *err);
int st_stream_put(st_stream_t *s, const float *values, size_t n, cu_error_t *err);
/* Frees s, whether it succeeds or not. */
int st_stream_end(st_stream_t *s, cu_error_t *err);
void st_stream_abort(st_stream_t *s);

/* Conversions, exact for every bit pattern (NaN stays NaN, subnormals and
 * infinities are kept). */
float st_f16_to_f32(uint16_t h);
float st_bf16_to_f32(uint16_t b);
uint16_t st_f32_to_bf16(float f); /* round to nearest even; NaN stays a quiet NaN */

const char *st_dtype_name(st_dtype_t d);

#endif
