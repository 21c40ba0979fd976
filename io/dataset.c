/*
 * The HDF5 dataset writer and its metadata reader (see dataset.h). The
 * token datasets are 1-D, chunked and unlimited; a full buffer is appended
 * by growing the extent and writing a hyperslab at the old end. The manifest
 * is a compound dataset built at the end from rows kept in memory (one row a
 * source file: small next to the tokens).
 */
#include "io/dataset.h"

#include <errno.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/h5util.h"

#define OFFSETS_CHUNK (1u << 16)
#define DEFAULT_SAFETY_REPORT "{\"enabled\": false, \"redactions\": {}}"

static const char *const SPLIT_NAMES[2] = {"train", "val"};

typedef struct {
    hid_t tokens, offsets;
    void *buf; /* uint16_t or uint32_t, DATASET_CHUNK_TOKENS */
    size_t buf_n;
    uint64_t written; /* tokens in the file */
    uint64_t *offs;   /* OFFSETS_CHUNK */
    size_t offs_n;
    uint64_t offs_written;
} split_t;

/* A manifest row as stored: HDF5 variable-length strings are char *. */
typedef struct {
    char *path;
    uint64_t bytes;
    char *sha256;
    char *split;
    uint64_t documents;
    uint64_t tokens;
    char *status;
    char *reason;
} manifest_row_t;

struct dataset_writer {
    hid_t file;
    char path[4096], tmp[4200];
    int vocab, eot, wide;
    char kind[32], tok_sha[65], val_split[32];
    uint64_t seed;
    double val_fraction;
    char *safety;
    split_t split[2];
    manifest_row_t *rows;
    size_t n_rows, cap_rows;
};

int dataset_split_index(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "train")) return DATASET_TRAIN;
    if (!strcmp(name, "val")) return DATASET_VAL;
    return -1;
}

static hid_t create_1d(hid_t group, const char *name, hid_t type, hsize_t chunk) {
    hsize_t dims = 0, maxdims = H5S_UNLIMITED;
    hid_t space = H5Screate_simple(1, &dims, &maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    hid_t ds = H5Dcreate2(group, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(space);
    return ds;
}

/* Grows ds by n elements and writes buf (memory type mem) at the old end. */
static int append_1d(hid_t ds, hid_t mem, const void *buf, uint64_t at, size_t n) {
    if (n == 0) return 0;
    hsize_t start = at, count = n, size = at + n;
    if (H5Dset_extent(ds, &size) < 0) return -1;
    hid_t fspace = H5Dget_space(ds);
    hid_t mspace = H5Screate_simple(1, &count, NULL);
    herr_t rc = H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &count, NULL);
    if (rc >= 0) rc = H5Dwrite(ds, mem, mspace, fspace, H5P_DEFAULT, buf);
    H5Sclose(mspace);
    H5Sclose(fspace);
    return rc < 0 ? -1 : 0;
}

static int split_open(dataset_writer_t *w, int i, cu_error_t *err) {
    split_t *s = &w->split[i];
    s->tokens = s->offsets = -1;
    hid_t g = H5Gcreate2(w->file, SPLIT_NAMES[i], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        return cu_error_set(err, CU_EIO, "%s: cannot create group /%s", w->tmp, SPLIT_NAMES[i]);
    s->tokens =
        create_1d(g, "tokens", w->wide ? H5T_STD_U32LE : H5T_STD_U16LE, DATASET_CHUNK_TOKENS);
    s->offsets = create_1d(g, "doc_offsets", H5T_STD_U64LE, OFFSETS_CHUNK);
    H5Gclose(g);
    if (s->tokens < 0 || s->offsets < 0)
        return cu_error_set(err, CU_EIO, "%s: cannot create /%s datasets", w->tmp, SPLIT_NAMES[i]);
    s->buf = malloc((size_t)DATASET_CHUNK_TOKENS * (w->wide ? 4 : 2));
    s->offs = malloc(sizeof(uint64_t) * OFFSETS_CHUNK);
    if (!s->buf || !s->offs) return cu_error_set(err, CU_ENOMEM, "out of memory (dataset buffers)");
    return CU_OK;
}

static void copy_str(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "");
}

int dataset_create(dataset_writer_t **out, const char *path, const dataset_info_t *info,
                   cu_error_t *err) {
    *out = NULL;
    if (info->vocab_size < 1 || info->eot_id < 0 || info->eot_id >= info->vocab_size)
        return cu_error_set(err, CU_EINVAL, "%s: bad tokenizer (vocab %d, end-of-text id %d)", path,
                            info->vocab_size, info->eot_id);
    dataset_writer_t *w = calloc(1, sizeof *w);
    if (!w) return cu_error_set(err, CU_ENOMEM, "out of memory (dataset writer)");
    w->file = -1;
    w->split[0].tokens = w->split[0].offsets = w->split[1].tokens = w->split[1].offsets = -1;
    if (cu_format(w->path, sizeof w->path, err, "%s", path) ||
        cu_format(w->tmp, sizeof w->tmp, err, "%s.tmp.%d", path, (int)getpid())) {
        free(w);
        return CU_EINVAL;
    }
    w->vocab = info->vocab_size;
    w->eot = info->eot_id;
    w->wide = info->vocab_size > 65536;
    copy_str(w->kind, sizeof w->kind, info->tokenizer_kind);
    copy_str(w->tok_sha, sizeof w->tok_sha, info->tokenizer_sha256);
    copy_str(w->val_split, sizeof w->val_split, info->val_split ? info->val_split : "fraction");
    w->seed = info->seed;
    w->val_fraction = info->val_fraction;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0) {
        cu_error_set(err, CU_EIO, "cannot create %s (is the directory writable?)", w->tmp);
        dataset_abort(w);
        return CU_EIO;
    }
    for (int i = 0; i < 2; i++) {
        int rc = split_open(w, i, err);
        if (rc) {
            dataset_abort(w);
            return rc;
        }
    }
    *out = w;
    return CU_OK;
}

static int flush_tokens(dataset_writer_t *w, split_t *s, cu_error_t *err) {
    hid_t mem = w->wide ? H5T_NATIVE_UINT32 : H5T_NATIVE_UINT16;
    if (append_1d(s->tokens, mem, s->buf, s->written, s->buf_n) < 0)
        return cu_error_set(err, CU_EIO, "%s: cannot append tokens (disk full?)", w->tmp);
    s->written += s->buf_n;
    s->buf_n = 0;
    return CU_OK;
}

static int flush_offsets(dataset_writer_t *w, split_t *s, cu_error_t *err) {
    if (append_1d(s->offsets, H5T_NATIVE_UINT64, s->offs, s->offs_written, s->offs_n) < 0)
        return cu_error_set(err, CU_EIO, "%s: cannot append document offsets", w->tmp);
    s->offs_written += s->offs_n;
    s->offs_n = 0;
    return CU_OK;
}

static int push_token(dataset_writer_t *w, split_t *s, uint32_t id, cu_error_t *err) {
    if (w->wide)
        ((uint32_t *)s->buf)[s->buf_n++] = id;
    else
        ((uint16_t *)s->buf)[s->buf_n++] = (uint16_t)id;
    return s->buf_n == DATASET_CHUNK_TOKENS ? flush_tokens(w, s, err) : CU_OK;
}

int dataset_append_doc(dataset_writer_t *w, int split, const int32_t *ids, size_t n,
                       cu_error_t *err) {
    if (split != DATASET_TRAIN && split != DATASET_VAL)
        return cu_error_set(err, CU_EINVAL, "dataset split %d is neither train nor val", split);
    split_t *s = &w->split[split];
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= w->vocab)
            return cu_error_set(err, CU_EINVAL, "%s: token id %d outside the vocabulary of %d",
                                w->tmp, ids[i], w->vocab);
    s->offs[s->offs_n++] = s->written + s->buf_n;
    int rc = s->offs_n == OFFSETS_CHUNK ? flush_offsets(w, s, err) : CU_OK;
    for (size_t i = 0; rc == CU_OK && i < n; i++) rc = push_token(w, s, (uint32_t)ids[i], err);
    return rc ? rc : push_token(w, s, (uint32_t)w->eot, err);
}

static char *dup_str(const char *s) {
    return strdup(s ? s : "");
}

int dataset_add_file(dataset_writer_t *w, const dataset_file_t *f, cu_error_t *err) {
    if (w->n_rows == w->cap_rows) {
        size_t cap = w->cap_rows ? 2 * w->cap_rows : 64;
        manifest_row_t *grown = realloc(w->rows, cap * sizeof *grown);
        if (!grown) return cu_error_set(err, CU_ENOMEM, "out of memory (manifest)");
        w->rows = grown;
        w->cap_rows = cap;
    }
    manifest_row_t *r = &w->rows[w->n_rows];
    *r = (manifest_row_t){dup_str(f->path), f->bytes,  dup_str(f->sha256), dup_str(f->split),
                          f->documents,     f->tokens, dup_str(f->status), dup_str(f->reason)};
    if (!r->path || !r->sha256 || !r->split || !r->status || !r->reason)
        return cu_error_set(err, CU_ENOMEM, "out of memory (manifest)");
    w->n_rows++;
    return CU_OK;
}

int dataset_set_safety_report(dataset_writer_t *w, const char *json, cu_error_t *err) {
    char *copy = strdup(json);
    if (!copy) return cu_error_set(err, CU_ENOMEM, "out of memory (safety report)");
    free(w->safety);
    w->safety = copy;
    return CU_OK;
}

uint64_t dataset_tokens(const dataset_writer_t *w, int split) {
    return w->split[split].written + w->split[split].buf_n;
}

uint64_t dataset_documents(const dataset_writer_t *w, int split) {
    return w->split[split].offs_written + w->split[split].offs_n;
}

static hid_t manifest_type(void) {
    hid_t str = H5Tcopy(H5T_C_S1);
    H5Tset_size(str, H5T_VARIABLE);
    H5Tset_cset(str, H5T_CSET_UTF8);
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(manifest_row_t));
    H5Tinsert(t, "path", HOFFSET(manifest_row_t, path), str);
    H5Tinsert(t, "bytes", HOFFSET(manifest_row_t, bytes), H5T_NATIVE_UINT64);
    H5Tinsert(t, "sha256", HOFFSET(manifest_row_t, sha256), str);
    H5Tinsert(t, "split", HOFFSET(manifest_row_t, split), str);
    H5Tinsert(t, "documents", HOFFSET(manifest_row_t, documents), H5T_NATIVE_UINT64);
    H5Tinsert(t, "tokens", HOFFSET(manifest_row_t, tokens), H5T_NATIVE_UINT64);
    H5Tinsert(t, "status", HOFFSET(manifest_row_t, status), str);
    H5Tinsert(t, "reason", HOFFSET(manifest_row_t, reason), str);
    H5Tclose(str);
    return t;
}

static int write_manifest(dataset_writer_t *w) {
    hid_t mem = manifest_type();
    /* stored with the same layout: the native types are the little-endian ones here */
    hsize_t n = w->n_rows;
    hid_t space = H5Screate_simple(1, &n, NULL);
    hid_t ds = H5Dcreate2(w->file, "manifest", mem, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : n ? H5Dwrite(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, w->rows) : 0;
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(space);
    H5Tclose(mem);
    return rc < 0 ? -1 : 0;
}

static int write_scalar_attr(hid_t obj, const char *name, hid_t file_type, hid_t mem_type,
                             const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = attr < 0 ? -1 : H5Awrite(attr, mem_type, value);
    if (attr >= 0) H5Aclose(attr);
    H5Sclose(space);
    return rc < 0 ? -1 : 0;
}

static int write_root_attrs(dataset_writer_t *w) {
    int64_t vocab = w->vocab, eot = w->eot;
    int bad = 0;
    bad |= h5u_write_string_attr(w->file, "format", DATASET_FORMAT);
    bad |= h5u_write_string_attr(w->file, "tokenizer_kind", w->kind);
    bad |=
        write_scalar_attr(w->file, "tokenizer_vocab_size", H5T_STD_I64LE, H5T_NATIVE_INT64, &vocab);
    bad |= h5u_write_string_attr(w->file, "tokenizer_sha256", w->tok_sha);
    bad |= write_scalar_attr(w->file, "eot_id", H5T_STD_I64LE, H5T_NATIVE_INT64, &eot);
    bad |= write_scalar_attr(w->file, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, &w->seed);
    bad |= write_scalar_attr(w->file, "val_fraction", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE,
                             &w->val_fraction);
    bad |= h5u_write_string_attr(w->file, "val_split", w->val_split);
    bad |= h5u_write_string_attr(w->file, "safety_report",
                                 w->safety ? w->safety : DEFAULT_SAFETY_REPORT);
    return bad ? -1 : 0;
}

static int finish_contents(dataset_writer_t *w, cu_error_t *err) {
    for (int i = 0; i < 2; i++) {
        int rc = flush_tokens(w, &w->split[i], err);
        if (!rc) rc = flush_offsets(w, &w->split[i], err);
        if (rc) return rc;
    }
    if (write_manifest(w) < 0)
        return cu_error_set(err, CU_EIO, "%s: cannot write /manifest", w->tmp);
    if (write_root_attrs(w) < 0)
        return cu_error_set(err, CU_EIO, "%s: cannot write the root attributes", w->tmp);
    return CU_OK;
}

static void close_all(dataset_writer_t *w, int *bad) {
    for (int i = 0; i < 2; i++) {
        if (w->split[i].tokens >= 0) H5Dclose(w->split[i].tokens);
        if (w->split[i].offsets >= 0) H5Dclose(w->split[i].offsets);
        w->split[i].tokens = w->split[i].offsets = -1;
    }
    if (w->file >= 0 && H5Fclose(w->file) < 0 && bad) *bad = 1;
    w->file = -1;
}

static void writer_free(dataset_writer_t *w) {
    for (int i = 0; i < 2; i++) {
        free(w->split[i].buf);
        free(w->split[i].offs);
    }
    for (size_t i = 0; i < w->n_rows; i++) {
        manifest_row_t *r = &w->rows[i];
        free(r->path);
        free(r->sha256);
        free(r->split);
        free(r->status);
        free(r->reason);
    }
    free(w->rows);
    free(w->safety);
    free(w);
}

int dataset_finish(dataset_writer_t *w, cu_error_t *err) {
    int rc = finish_contents(w, err);
    int close_bad = 0;
    close_all(w, &close_bad);
    if (!rc && close_bad) rc = cu_error_set(err, CU_EIO, "cannot finish writing %s", w->tmp);
    if (!rc && rename(w->tmp, w->path) != 0)
        rc = cu_error_set(err, CU_EIO, "cannot rename %s to %s: %s", w->tmp, w->path,
                          strerror(errno));
    if (rc) unlink(w->tmp);
    writer_free(w);
    return rc;
}

void dataset_abort(dataset_writer_t *w) {
    if (!w) return;
    close_all(w, NULL);
    unlink(w->tmp);
    writer_free(w);
}

/* ---- reading ---- */

static int read_int_attr(hid_t obj, const char *name, int64_t *v) {
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t attr = H5Aopen(obj, name, H5P_DEFAULT);
    if (attr < 0) return -1;
    herr_t rc = H5Aread(attr, H5T_NATIVE_INT64, v);
    H5Aclose(attr);
    return rc < 0 ? -1 : 0;
}

static int64_t dataset_length(hid_t file, const char *name) {
    hid_t ds = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds < 0) return -1;
    hid_t space = H5Dget_space(ds);
    hsize_t dims = 0;
    int ok = H5Sget_simple_extent_ndims(space) == 1 &&
             H5Sget_simple_extent_dims(space, &dims, NULL) == 1;
    H5Sclose(space);
    H5Dclose(ds);
    return ok ? (int64_t)dims : -1;
}

static int token_width(hid_t file, const char *path, int *bytes, cu_error_t *err) {
    hid_t ds = H5Dopen2(file, "train/tokens", H5P_DEFAULT);
    if (ds < 0) return cu_error_set(err, CU_EFORMAT, "%s: no /train/tokens dataset", path);
    hid_t type = H5Dget_type(ds);
    int ok = H5Tget_class(type) == H5T_INTEGER && H5Tget_sign(type) == H5T_SGN_NONE;
    *bytes = (int)H5Tget_size(type);
    H5Tclose(type);
    H5Dclose(ds);
    if (!ok || (*bytes != 2 && *bytes != 4))
        return cu_error_set(err, CU_EFORMAT, "%s: /train/tokens is not uint16 or uint32", path);
    return CU_OK;
}

static int read_meta_open(hid_t file, const char *path, dataset_meta_t *m, cu_error_t *err) {
    char *format = h5u_read_string_attr(file, "format");
    int ok = format && !strcmp(format, DATASET_FORMAT);
    free(format);
    if (!ok)
        return cu_error_set(err, CU_EFORMAT,
                            "%s: not a codex-universal dataset (format attribute is not \"%s\"; "
                            "make one with codexctl prepare)",
                            path, DATASET_FORMAT);
    int64_t vocab, eot;
    char *kind = h5u_read_string_attr(file, "tokenizer_kind");
    char *sha = h5u_read_string_attr(file, "tokenizer_sha256");
    ok = kind && sha && read_int_attr(file, "tokenizer_vocab_size", &vocab) == 0 &&
         read_int_attr(file, "eot_id", &eot) == 0 && vocab > 0 && vocab <= INT32_MAX;
    if (ok) {
        copy_str(m->tokenizer_kind, sizeof m->tokenizer_kind, kind);
        copy_str(m->tokenizer_sha256, sizeof m->tokenizer_sha256, sha);
        m->vocab_size = (int)vocab;
        m->eot_id = (int)eot;
    }
    free(kind);
    free(sha);
    if (!ok) return cu_error_set(err, CU_EFORMAT, "%s: missing or bad tokenizer attributes", path);
    for (int i = 0; i < 2; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s/tokens", SPLIT_NAMES[i]);
        int64_t n = dataset_length(file, name);
        snprintf(name, sizeof name, "%s/doc_offsets", SPLIT_NAMES[i]);
        int64_t d = dataset_length(file, name);
        if (n < 0 || d < 0)
            return cu_error_set(err, CU_EFORMAT, "%s: missing or bad /%s datasets", path,
                                SPLIT_NAMES[i]);
        m->tokens[i] = (uint64_t)n;
        m->documents[i] = (uint64_t)d;
    }
    return token_width(file, path, &m->bytes_per_token, err);
}

int dataset_read_meta(const char *path, dataset_meta_t *meta, cu_error_t *err) {
    memset(meta, 0, sizeof *meta);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0)
        return cu_error_set(
            err, access(path, R_OK) == 0 ? CU_EFORMAT : CU_EINVAL, "cannot open %s as HDF5 (%s)",
            path, access(path, R_OK) == 0 ? "truncated or not an HDF5 file" : strerror(errno));
    int rc = read_meta_open(file, path, meta, err);
    H5Fclose(file);
    return rc;
}
