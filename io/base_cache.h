/*
 * The bf16 cache of a base model stored in fp32 or fp16 (issue 14).
 *
 * A LoRA job in train.precision bf16 reads a bf16 base in place from its
 * files (hf_gpt2_load_mapped), so the ranks of a node share its pages. A
 * base in fp32 or fp16 is converted once into one safetensors file of the
 * same tensors, the product weights (hf_gpt2_is_product_weight) in BF16 and
 * every other tensor in F32 (exact for fp16 and fp32 sources), which is
 * then mapped the same way and reused by later jobs. A GPT-2 base (any
 * dtype) is cached too: its Conv1D weights, (in, out) in its files, are
 * written transposed to our (out, in) so that they can be lent in place
 * (metadata conv1d "out,in").
 *
 * Where: <root>/<key>/model.safetensors, locked through <root>/<key>.lock
 * (flock). The key is the first 32 hex digits of the sha256 of the
 * source's identity: for each of its files (the index first, then each
 * shard) its name, size, inode, mtime and ctime in nanoseconds. Writing a
 * file changes its mtime and ctime (ctime cannot be set back), replacing it
 * changes its inode, so a changed source gets a new key and never an old
 * cache; the identity has no directory path, so hosts that mount a shared
 * file system at different places find the same cache.
 *
 * Inside (its __metadata__): codex_base_cache "1", source (the path it was
 * made from), source_identity (the text hashed for the key, compared again
 * on use), source_sha256 (hf_gpt2_weights_sha256 of the source, which the
 * job records as its base hash without reading the source again) and
 * data_sha256 (of the bytes after the header), checked every time a job
 * prepares the cache: a file that fails any check is reported and rebuilt.
 *
 * Concurrency: base_cache_prepare holds the lock while it checks or builds,
 * so one process converts and the others (other jobs, other nodes on a
 * shared file system) wait, then check and use its file. The file is
 * written to a temporary name, synced and renamed: a crash or a full disk
 * never leaves a file under the cache's name.
 */
#ifndef CU_IO_BASE_CACHE_H
#define CU_IO_BASE_CACHE_H

#include <stdint.h>
#include <stdio.h>

#include "core/error.h"
#include "io/safetensors.h"

#define BASE_CACHE_VERSION "1"

typedef enum { BASE_CACHE_REUSED, BASE_CACHE_CONVERTED, BASE_CACHE_REBUILT } base_cache_action_t;

typedef struct {
    char path[4200]; /* <root>/<key>/model.safetensors */
    char lock[4200]; /* <root>/<key>.lock */
    char key[33];
    char identity[16384];
    char source_sha256[65];
    base_cache_action_t action; /* what base_cache_prepare did */
    char why[512];              /* BASE_CACHE_REBUILT: what was wrong with the old file */
    double seconds;             /* base_cache_prepare's wall time */
    uint64_t bytes;             /* of the cache file */
} base_cache_t;

/* Whether a base needs the cache: some product weight is stored in F32 or
 * F16, or it has GPT-2's Conv1D weights. */
int base_cache_needed(const st_model_t *src);

/* Fills c's key, identity and paths for the base opened as src (from
 * weights_path: its file, index or folder) under root. */
int base_cache_locate(const st_model_t *src, const char *weights_path, const char *root,
                      base_cache_t *c, cu_error_t *err);

/* Under the lock: checks the cache file and uses it, or (when it is
 * missing, or fails a check: the reason goes to progress and c->why)
 * converts the source into it. Progress lines (and a line when another
 * process holds the lock) go to `progress` (NULL: none). On success the
 * file is complete and checked, c->source_sha256 and c->action are set.
 * Test hook: with CU_TEST_BASE_CACHE_HOLD=<file> set, the process holding
 * the lock creates <file>.held and waits until <file> exists. */
int base_cache_prepare(st_model_t *src, const char *weights_path, base_cache_t *c, FILE *progress,
                       cu_error_t *err);

/* For a rank whose node's cache another rank prepared: reads the header,
 * checks its version and identity (not the data checksum) and sets
 * c->source_sha256. */
int base_cache_open_prepared(base_cache_t *c, cu_error_t *err);

const char *base_cache_action_name(base_cache_action_t a);

#endif
