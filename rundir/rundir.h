/*
 * The run directory runs/<job>/ (docs/formats.md), the one writer and
 * reader of its files for codex-train, codexctl and codex-ita: state.json
 * replaced atomically (temp file, fsync, rename), metrics.jsonl and
 * events.jsonl appended one whole line at a time with a single write, so a
 * reader sees either the line or nothing of it (a write the disk cut short
 * is truncated away again), and the lock a running job holds. The status
 * rules are in rundir/status.h.
 */
#ifndef CU_RUNDIR_RUNDIR_H
#define CU_RUNDIR_RUNDIR_H

#include <stdio.h>

#include "core/error.h"

typedef struct {
    char job[256];
    char status[16];
    long step, max_steps, epoch;
    double loss, lr, grad_norm, tokens_per_s, eta_s; /* NaN = null */
    int world_size, threads;
    long pid;                       /* the writer (codex-train rank 0); 0 = null */
    char hosts[1024];               /* comma-separated */
    char slurm_job_id[64];          /* <array>_<task> for an array task */
    int restarts;                   /* SLURM_RESTART_COUNT: how often Slurm restarted the job */
    double started_at, finished_at; /* Unix seconds; 0 = null */
    long ckpt_step;                 /* -1 = no checkpoint */
    char ckpt_file[512];
    long best_step; /* -1 = no evaluation */
    double best_val_loss;
    long last_eval_step; /* -1 = no evaluation since this process started */
    double last_val_loss;
    long redactions, output_findings, blocked_outputs;
    char error[1024]; /* "" = null */
    int error_rank;
} rundir_state_t;

typedef struct {
    char dir[4096];
    FILE *metrics, *events;
    int lock_fd; /* -1: not locked */
} rundir_t;

/* Opens name under dirfd (AT_FDCWD: a path) as a regular file only: the
 * final component is not followed if it is a symlink and a FIFO, socket or
 * device is refused (errno EINVAL) without blocking in open(), so a hostile
 * file in a run directory cannot stall a reader or writer. O_CLOEXEC is
 * added; the returned descriptor is blocking again. -1 with errno. */
int rundir_open_regular(int dirfd, const char *name, int flags, int mode);
/* Keeps fd (opened O_NONBLOCK) only if it is a regular file, clearing
 * O_NONBLOCK; otherwise closes it and returns -1 with errno EINVAL. */
int rundir_fd_regular(int fd);

/* mkdir -p */
int rundir_mkdirs(const char *path, cu_error_t *err);

/* Creates the directory (and parents) and opens the logs for appending. */
int rundir_open(rundir_t *d, const char *dir, cu_error_t *err);
void rundir_close(rundir_t *d);

/* A job state with every field at its null value. */
void rundir_state_init(rundir_state_t *s, const char *job);
int rundir_write_state(rundir_t *d, const rundir_state_t *s, cu_error_t *err);
/* Reads back the status and step, and the fields a resumed job carries on
 * (started_at, best eval, safety counts); a missing file leaves s
 * unchanged and is not an error. */
int rundir_read_state(const char *dir, rundir_state_t *s, cu_error_t *err);

/* Appends one metrics line. json_fields is the inside of the object after
 * time and step, e.g. "\"loss\": 2.5, \"lr\": 0.001" (may be ""). */
int rundir_metric(rundir_t *d, long step, const char *json_fields, cu_error_t *err);
/* Appends one event; message is escaped; extra_json as for rundir_metric. */
int rundir_event(rundir_t *d, long step, const char *type, const char *message,
                 const char *extra_json, cu_error_t *err);
/* The events.jsonl line rundir_event appends, the one definition of its
 * layout: {"time", "step", "type", "message"[, extra_json]} and a newline;
 * malloc'd, NULL with err. For a writer that appends through its own
 * descriptor (codex-ita's submit flow). */
char *rundir_event_line(long step, const char *type, const char *message, const char *extra_json,
                        cu_error_t *err);
/* The "step" of a metrics.jsonl or events.jsonl line, read without parsing
 * the whole line (indexes over long files); -1 when it has none. */
long long rundir_line_step(const char *line, size_t len);

/* Drops metrics lines whose step is greater than `step` (a resumed job
 * replays from its checkpoint and must not duplicate steps). */
int rundir_truncate_metrics(rundir_t *d, long step, cu_error_t *err);

/* RFC 3339 UTC with milliseconds, e.g. 2026-11-24T07:00:00.123Z. */
void rundir_time(double unix_seconds, char *buf, size_t len);
double rundir_now(void);

/* Parses rundir_time's text (and RFC 3339 without fraction); 0 on failure. */
double rundir_parse_time(const char *text);

/* Writes text to path atomically (temp file <path>.tmp.<thread id> in the
 * same directory, fsync, rename). */
int rundir_write_atomic(const char *path, const char *text, size_t len, cu_error_t *err);
/* The same for name inside the directory dirfd. */
int rundir_write_atomic_at(int dirfd, const char *name, const char *text, size_t len,
                           cu_error_t *err);
/* state.json of a run directory given as dirfd: the submit record of
 * codexctl submit and POST /v1/jobs. */
int rundir_write_state_at(int dirfd, const rundir_state_t *s, cu_error_t *err);
/* Serialises the read-check-write of state.json between its writers in
 * different processes (codex-train's rank 0, a rank that saw rank 0 stop,
 * codexctl cancel, codex-ita): flock on state.lock in the run directory
 * dirfd, waited for at most 2 s (CLOCK_MONOTONIC) so that a holder that
 * was stopped cannot stop the others. Returns the descriptor to pass to
 * rundir_state_unlock (-1 when the file cannot be opened: no lock). */
int rundir_state_lock_at(int dirfd);
void rundir_state_unlock(int fd);

/* ---- the lock (lock.c) ---- */

/* Takes the exclusive lock of the run directory: flock on <dir>/lock,
 * which then holds "pid host start-time". The kernel releases it when the
 * process dies, on any host sharing the file system. A held lock is
 * CU_EINVAL (exit 2) with a message naming the holder. */
int rundir_lock(rundir_t *d, cu_error_t *err);
/* Who holds the lock of dir ("pid 123 on host since ..."), or "" when
 * nobody does; returns 1 when held. */
int rundir_lock_holder(const char *dir, char *holder, size_t cap);
/* Removes <dir>/{,checkpoints/,ranks/}*.tmp.<digits> left by a writer that
 * died before its rename; only call while holding the lock. Returns how
 * many were removed. */
int rundir_remove_stale_tmp(const char *dir);
/* Sets aside `bytes` of disk in <dir>/.reserve, given back by
 * rundir_release_reserve just before the job's last record, so a job that
 * failed because the disk filled can still say so. Best effort. */
void rundir_reserve(rundir_t *d, size_t bytes);
void rundir_release_reserve(rundir_t *d);
/* 1 when host is this machine and pid no longer exists. */
int rundir_pid_gone(long pid, const char *host);

#endif
