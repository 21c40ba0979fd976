/*
 * Provenance: what produced a job's results, written to
 * runs/<job>/provenance.json at the start and completed at the end, and
 * stored with every checkpoint: the resolved config and its sha256, the
 * data's and the base model's hashes, the code version and compiler, the
 * versions of Open MPI, OpenBLAS, HDF5, ScaLAPACK and h2o, hosts, world
 * size, threads, seeds and times.
 */
#ifndef CU_JOBS_PROVENANCE_H
#define CU_JOBS_PROVENANCE_H

#include "core/error.h"
#include "io/config.h"
#include "mpi/world.h"

typedef struct {
    const cu_config_t *cfg;
    const cu_world_t *world;
    const char *hosts;              /* comma-separated */
    const char *tokenizer_hash;     /* sha256 hex */
    const char *data_hash;          /* sha256 hex of the data file, or "" */
    const char *base_hash;          /* sha256 hex of model.init, or "" */
    double started_at, finished_at; /* Unix seconds; 0 = not yet */
    long resumed_from_step;         /* -1 = fresh start */
    const char *safety_json;        /* the safety policy's provenance (JSON), or NULL */
    const char *lora_init_hash;     /* sha256 hex of lora.init_from's weights file, or "" */
} provenance_t;

/* The provenance as a JSON document. Allocates; free() it. */
char *provenance_json(const provenance_t *p);

/* sha256 hex of a file's bytes (65 bytes with the NUL). */
int provenance_file_sha256(const char *path, char hex[65], cu_error_t *err);
/* sha256 hex of a string. */
void provenance_text_sha256(const char *text, char hex[65]);

#endif
