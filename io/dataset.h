/*
 * Tokenised datasets in HDF5: what `codexctl prepare` writes and the "hdf5"
 * token source reads (docs/formats.md, "Datasets", has the layout).
 *
 * The writer streams. Each split (train, val) keeps one buffer of at most a
 * chunk of tokens and a buffer of document offsets; full buffers are
 * appended to extendible, chunked datasets, so memory stays bounded however
 * large the corpus is. Documents are joined with the end-of-text token after
 * each. The file is written under a temporary name and renamed by
 * dataset_finish, so a reader never sees half a dataset.
 */
#ifndef CU_IO_DATASET_H
#define CU_IO_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define DATASET_FORMAT "codex-universal-dataset-1"
#define DATASET_CHUNK_TOKENS (1u << 20) /* 1 Mi tokens per chunk */

enum { DATASET_TRAIN = 0, DATASET_VAL = 1 };

/* What a dataset records about how it was made. Strings are copied. */
typedef struct {
    const char *tokenizer_kind;   /* "byte" | "gpt2" */
    int vocab_size;               /* ids are < vocab_size */
    const char *tokenizer_sha256; /* hex */
    int eot_id;
    uint64_t seed;         /* the split's hash key */
    double val_fraction;   /* share of documents hashed into val (0 with val_sources) */
    const char *val_split; /* "fraction" or "explicit" (--val) */
} dataset_info_t;

/* One manifest row: a source file and what became of it. */
typedef struct {
    const char *path;
    uint64_t bytes;
    const char *sha256; /* hex, "" when unreadable */
    const char *split;  /* "train" | "val" | "mixed" (a JSONL file) | "" (skipped) */
    uint64_t documents;
    uint64_t tokens;    /* including one end-of-text per document */
    const char *status; /* "ok" | "skipped" | "rejected" */
    const char *reason; /* "" or binary, invalid_utf8, empty, unreadable, too_large, bad_jsonl */
} dataset_file_t;

typedef struct dataset_writer dataset_writer_t;

/* Creates path's temporary file (path.tmp.<pid>) and the empty datasets;
 * ids are stored as uint16 when vocab_size <= 65536, else uint32.
 * Allocates *out; end with dataset_finish or dataset_abort. */
int dataset_create(dataset_writer_t **out, const char *path, const dataset_info_t *info,
                   cu_error_t *err);
/* Appends one document (n ids, then the end-of-text id) to split. Every id
 * must be in [0, vocab_size). */
int dataset_append_doc(dataset_writer_t *w, int split, const int32_t *ids, size_t n,
                       cu_error_t *err);
/* Records a manifest row (strings copied). */
int dataset_add_file(dataset_writer_t *w, const dataset_file_t *f, cu_error_t *err);
/* Sets the `safety_report` root attribute (JSON text); the default is
 * {"enabled": false, "redactions": {}}. */
int dataset_set_safety_report(dataset_writer_t *w, const char *json, cu_error_t *err);
uint64_t dataset_tokens(const dataset_writer_t *w, int split);
uint64_t dataset_documents(const dataset_writer_t *w, int split);
/* Flushes, writes the manifest and attributes, closes and renames to the
 * final path. Frees w, also on failure (the temporary file is removed). */
int dataset_finish(dataset_writer_t *w, cu_error_t *err);
/* Discards the temporary file and frees w. */
void dataset_abort(dataset_writer_t *w);

/* What a reader needs to know before it reads tokens. */
typedef struct {
    char tokenizer_kind[32];
    char tokenizer_sha256[65];
    int vocab_size;
    int eot_id;
    int bytes_per_token; /* 2 or 4 */
    uint64_t tokens[2];  /* per split */
    uint64_t documents[2];
} dataset_meta_t;

/* Reads the root attributes and the sizes of both splits, checking the
 * format. Errors name the file. */
int dataset_read_meta(const char *path, dataset_meta_t *meta, cu_error_t *err);

/* "train" -> DATASET_TRAIN, "val" -> DATASET_VAL, else -1. */
int dataset_split_index(const char *name);

#endif
