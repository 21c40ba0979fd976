/*
 * The job directory as rank 0 writes it (docs/formats.md): state.json
 * replaced atomically (temp file, fsync, rename), metrics.jsonl and
 * events.jsonl appended one whole line at a time with a single write, so a
 * reader sees either the line or nothing of it.
 */
#ifndef CU_JOBS_JOBDIR_H
#define CU_JOBS_JOBDIR_H

#include <stdio.h>

#include "core/error.h"

typedef struct {
    char job[256];
    char status[16];
    long step, max_steps, epoch;
    double loss, lr, grad_norm, tokens_per_s, eta_s; /* NaN = null */
    int world_size, threads;
    char hosts[1024];               /* comma-separated */
    char slurm_job_id[64];          /* <array>_<task> for an array task */
    int restarts;                   /* SLURM_RESTART_COUNT: how often Slurm restarted the job */
    double started_at, finished_at; /* Unix seconds; 0 = null */
    long ckpt_step;                 /* -1 = no checkpoint */
    char ckpt_file[512];
    long best_step; /* -1 = no evaluation */
    double best_val_loss;
    long redactions, output_findings, blocked_outputs;
    char error[1024]; /* "" = null */
    int error_rank;
} job_state_t;

typedef struct {
    char dir[4096];
    FILE *metrics, *events;
} jobdir_t;

/* mkdir -p */
int jobdir_mkdirs(const char *path, cu_error_t *err);

/* Creates the directory (and parents) and opens the logs for appending. */
int jobdir_open(jobdir_t *d, const char *dir, cu_error_t *err);
void jobdir_close(jobdir_t *d);

/* A job state with every field at its null value. */
void job_state_init(job_state_t *s, const char *job);
int jobdir_write_state(jobdir_t *d, const job_state_t *s, cu_error_t *err);
/* Reads back the fields a resumed job carries on (started_at, best eval,
 * safety counts); a missing file leaves s unchanged and is not an error. */
int jobdir_read_state(const char *dir, job_state_t *s, cu_error_t *err);

/* Appends one metrics line. json_fields is the inside of the object after
 * time and step, e.g. "\"loss\": 2.5, \"lr\": 0.001" (may be ""). */
int jobdir_metric(jobdir_t *d, long step, const char *json_fields, cu_error_t *err);
/* Appends one event; message is escaped; extra_json as for jobdir_metric. */
int jobdir_event(jobdir_t *d, long step, const char *type, const char *message,
                 const char *extra_json, cu_error_t *err);

/* Drops metrics lines whose step is greater than `step` (a resumed job
 * replays from its checkpoint and must not duplicate steps). */
int jobdir_truncate_metrics(jobdir_t *d, long step, cu_error_t *err);

/* RFC 3339 UTC with milliseconds, e.g. 2026-11-24T07:00:00.123Z. */
void jobdir_time(double unix_seconds, char *buf, size_t len);
double jobdir_now(void);

/* Writes text to path atomically (temp file in the same directory, fsync,
 * rename). */
int jobdir_write_atomic(const char *path, const char *text, size_t len, cu_error_t *err);

#endif
