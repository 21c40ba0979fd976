/*
 * Checkpoints: everything a job needs to continue exactly where it stopped,
 * in one HDF5 file runs/<job>/checkpoints/step_<8 digits>.h5:
 *   /tensors/<name>   trainable tensors
 *   /adam_m/<name>    AdamW first moments
 *   /adam_v/<name>    AdamW second moments
 *   /lora_init/<name> PiSSA/OLoRA runs only: the adapters training started from
 * and root attributes: format, step, sample_cursor, adam_t, epoch, best eval,
 * the evaluation RNG state, world size and global batch at save time, the
 * resolved config, provenance JSON, and a sha256 over all tensor bytes and
 * the loop state (computed chunk by chunk, io/ckpt_internal.h, so that ranks
 * can hash their own slices), verified on load. Written to a temporary name
 * and renamed; a `latest` file in the same directory names the newest.
 *
 * A sharded run (train.shard_optimizer) writes the same file with every rank
 * at once (parallel HDF5 over MPI-IO, collective writes of each rank's
 * slice) and reads it back by slices, on any number of ranks.
 */
#ifndef CU_IO_CKPT_H
#define CU_IO_CKPT_H

#include <stdint.h>

#include "core/error.h"
#include "model/gpt.h"

#define CKPT_FORMAT "codex-universal-checkpoint-1" /* the root attribute format */

typedef struct {
    long step;          /* optimizer steps completed */
    long sample_cursor; /* global samples consumed */
    long adam_t;        /* AdamW's step count (bias correction) */
    long epoch;
    long best_step; /* -1: no evaluation yet */
    double best_val_loss;
    long evals_since_best; /* for early stopping */
    uint64_t rng[4];       /* evaluation sampling RNG */
    int world_size;
    int global_batch_size;
} ckpt_meta_t;

typedef struct {
    const float *params, *m, *v; /* each laid out by `tensors` */
    const gpt_tensor_t *tensors;
    int n_tensors;
    const char *config_yaml;
    const char *provenance_json;
    /* optional: the adapters a PiSSA/OLoRA run started from (laid out by
     * `tensors`), written as /lora_init with their own sha256 attribute */
    const float *lora_init;
    /* optional: the run's fingerprint (jobs/fingerprint.h), attribute
     * "fingerprint" */
    const char *fingerprint;
} ckpt_data_t;

int ckpt_save(const char *path, const ckpt_data_t *d, const ckpt_meta_t *meta, cu_error_t *err);

/* Loads into params/m/v (laid out by tensors) and meta; a missing tensor, a
 * shape that differs, an unreadable or truncated file, or a checksum that
 * does not match is an error (CU_EFORMAT) naming the file. */
int ckpt_load(const char *path, float *params, float *m, float *v, const gpt_tensor_t *tensors,
              int n_tensors, ckpt_meta_t *meta, cu_error_t *err);

/* Collective over MPI_COMM_WORLD: every rank writes its slice [lo, hi) of
 * each group into one file. d->params is the whole trainable buffer, d->m
 * and d->v hold only the slice (element i at m[i - lo]); lo and hi are
 * multiples of the checksum chunk (mpi/reducer.h's slices are) or the end.
 * Every rank passes the same meta and strings. The file is written under
 * path.tmp.<tmp_id> and renamed by rank 0. Returns the same code on every
 * rank. */
int ckpt_save_parallel(const char *path, const ckpt_data_t *d, size_t lo, size_t hi,
                       const ckpt_meta_t *meta, long tmp_id, cu_error_t *err);

/* Collective: every rank reads its slice [lo, hi) of /tensors into
 * params[lo, hi) and of the moments into m and v (element i at m[i - lo]),
 * and meta; the checksum is verified from every rank's slice hashes. A file
 * with the earlier whole-file checksum is read whole on every rank. Any
 * rank's failure fails all of them (CU_EFORMAT naming the file). Gathering
 * the other slices of params is the caller's. */
int ckpt_load_slice(const char *path, float *params, float *m, float *v, size_t lo, size_t hi,
                    const gpt_tensor_t *tensors, int n_tensors, ckpt_meta_t *meta, cu_error_t *err);

/* Checks a checkpoint's sha256 for tensors already read into params (as
 * h5_load_tensors does): reads its AdamW moments and loop state and hashes
 * them as ckpt_save did. CU_EFORMAT naming the file when it does not match. */
int ckpt_verify_tensors(const char *path, const float *params, const gpt_tensor_t *tensors,
                        int n_tensors, cu_error_t *err);

/* Loads /lora_init (see ckpt_data_t) of a checkpoint or final.h5 and
 * verifies its checksum when the file has one; a file without the group is
 * CU_EFORMAT. */
int ckpt_load_lora_init(const char *path, float *lora_init, const gpt_tensor_t *tensors,
                        int n_tensors, cu_error_t *err);

/* The checksum of a /lora_init group as ckpt_save writes it (attribute
 * lora_init_sha256), for other writers of the group (final.h5). */
void ckpt_lora_init_sha256(const float *lora_init, const gpt_tensor_t *tensors, int n_tensors,
                           char hex[65]);

/* dir/step_<8 digits>.h5 */
int ckpt_path(char *buf, size_t len, const char *dir, long step, cu_error_t *err);
/* Steps of the step_*.h5 files in dir, newest first. Allocates *steps. */
int ckpt_list(const char *dir, long **steps, int *n, cu_error_t *err);
/* Keeps the newest keep_last checkpoints (0 keeps all), deletes the rest. */
int ckpt_retain(const char *dir, int keep_last, cu_error_t *err);
/* The same, keeping the checkpoint of step `keep_step` too (the best
 * evaluation's; -1: none) whatever its age. */
int ckpt_retain_except(const char *dir, int keep_last, long keep_step, cu_error_t *err);
/* Points dir/latest at step's file. */
int ckpt_write_latest(const char *dir, long step, cu_error_t *err);

#endif
