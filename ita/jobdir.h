/*
 * Reading the runs directory (docs/formats.md): job ids from URLs are
 * checked, every file is opened beneath the runs directory with
 * openat2(RESOLVE_BENEATH) so neither ".." nor a symlink can lead out of it,
 * state.json is parsed once and reparsed only when its inode, size or mtime
 * change, and .jsonl files are read through an incremental index of line
 * offsets that stops at the last complete line (a partial last line is
 * being appended and is ignored).
 *
 * One ita_jobdir_t belongs to one worker thread: nothing here locks.
 * Summaries merge state.json with the scheduler view (sched.h) the worker
 * last synced to. The writes (a submitted job's first state, a cancel)
 * are in jobwrite.c.
 */
#ifndef CU_ITA_JOBDIR_H
#define CU_ITA_JOBDIR_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "ita/sched.h"

#define ITA_ENOENT 100 /* no such job (or file of a job): answered as 404 */
#define ITA_JOB_ID_MAX 128

typedef struct ita_jobdir ita_jobdir_t;

/* A job's state as the API reports it. */
typedef struct {
    char id[ITA_JOB_ID_MAX + 1];
    char status[16];       /* effective: LOST when the heartbeat is stale */
    char state_status[16]; /* as state.json says */
    int lost;
    int64_t step, max_steps;
    double loss, tokens_per_s; /* NAN when null */
    double lr;                 /* of the last step, NAN when null */
    double val_loss;           /* of the last evaluation (state.json's last_eval), NAN when none */
    double best_val_loss;      /* best_eval's, NAN when none */
    double progress;           /* step / max_steps, NAN when unknown */
    double eta_s;              /* NAN when unknown */
    double heartbeat_age_s;    /* NAN when updated_at is missing */
    double updated_at;         /* epoch seconds, 0 when missing (ages it when rendered) */
    double started_at;         /* epoch seconds, 0 when missing */
    char started_at_text[32];
    char updated_at_text[32];
    char slurm_job_id[64];          /* "" when the job has none (or not a valid one) */
    const ita_sched_entry_t *sched; /* the scheduler's view of it, NULL when not asked */
    char detail[256];               /* why the status is what it is, when not plain */
    char reason[512];               /* detail, or a FAILED job's first error line */
} ita_job_summary_t;

/* Opens the runs directory. lost_after_s: heartbeat age that makes a
 * RUNNING job LOST. max_jobs bounds listings. Allocates; ita_jobdir_free. */
int ita_jobdir_open(ita_jobdir_t **out, const char *runs_dir, double lost_after_s, int max_jobs,
                    cu_error_t *err);
void ita_jobdir_free(ita_jobdir_t *jd);

/* The scheduler view summaries are merged with (borrowed; NULL: none). The
 * status is then Slurm's word for how a job ended (TIMEOUT, CANCELLED,
 * NODE_FAIL as FAILED) over a stale RUNNING, and a stale heartbeat makes
 * a job LOST only when no scheduler knows it. */
void ita_jobdir_set_view(ita_jobdir_t *jd, const ita_sched_view_t *view);

/* 1 while the job's launcher.pid (a local launch) names a live process,
 * 0 when that process is gone, -1 when there is no launcher.pid. */
int ita_jobdir_launcher_alive(ita_jobdir_t *jd, const char *id);

/* Writes runs/<id>/<name> atomically (a temporary file beside it, then
 * rename), beneath the runs directory. */
int ita_jobdir_write_file(ita_jobdir_t *jd, const char *id, const char *name, const char *text,
                          size_t len, cu_error_t *err);

/* Appends one line (newline added) to runs/<id>/<name> with one write. */
int ita_jobdir_append_line(ita_jobdir_t *jd, const char *id, const char *name, const char *line,
                           cu_error_t *err);

/* Rewrites state.json with status (and finished_at, updated_at, and
 * error.message when message is not NULL), every other field kept. */
int ita_jobdir_record_status(ita_jobdir_t *jd, const char *id, const char *status,
                             const char *message, cu_error_t *err);

/* 1 when s[0..len) may name a job: 1-128 of [A-Za-z0-9._-], not starting
 * with '.', so never "." or "..". */
int ita_job_id_valid(const char *s, size_t len);

/* Opens runs/<id>/<rel> beneath the runs directory (flags as open(2)).
 * Returns an fd, or -1 with errno (EXDEV/ELOOP for an escape attempt). */
int ita_jobdir_openat(ita_jobdir_t *jd, const char *id, const char *rel, int flags);

/* The job's summary and its parsed state.json (borrowed: valid until the
 * next call on jd). ITA_ENOENT when there is no such job. */
int ita_jobdir_state(ita_jobdir_t *jd, const char *id, ita_job_summary_t *sum, const json_t **state,
                     cu_error_t *err);

/* The serialised state.json of the job as cached (borrowed, like above). */
const char *ita_jobdir_state_text(ita_jobdir_t *jd, const char *id);

/* Every job with a readable state.json, newest first (started_at, then
 * id). *out is malloc'd; free() it. */
int ita_jobdir_list(ita_jobdir_t *jd, ita_job_summary_t **out, size_t *n, cu_error_t *err);

/* The same without a copy: *out points into the index kept between
 * listings (newest first), valid until the next listing on jd. */
int ita_jobdir_index(ita_jobdir_t *jd, const ita_job_summary_t *const **out, size_t *n,
                     cu_error_t *err);

/* Which .jsonl file of a job. */
typedef enum { ITA_JSONL_METRICS = 0, ITA_JSONL_EVENTS = 1 } ita_jsonl_kind_t;

typedef struct {
    int64_t since_step;       /* records with step > since_step; INT64_MIN for all */
    int64_t cursor;           /* byte offset to continue from; -1 when unset */
    size_t limit;             /* records */
    size_t max_bytes;         /* of record text read */
    const char *const *names; /* metric names to keep (NULL: everything) */
    size_t n_names;
} ita_jsonl_query_t;

typedef struct {
    json_t *records;     /* array, owned by the caller */
    int64_t next_cursor; /* offset after the last record consumed */
    int more;            /* complete lines remain after next_cursor */
} ita_jsonl_page_t;

/* Reads one page of a job's metrics.jsonl or events.jsonl. CU_EINVAL for a
 * cursor that is not at a line start. A missing file is an empty page. */
int ita_jobdir_jsonl(ita_jobdir_t *jd, const char *id, ita_jsonl_kind_t kind,
                     const ita_jsonl_query_t *q, ita_jsonl_page_t *page, cu_error_t *err);

/* Offset of the end of the last complete line of the file (0 if absent):
 * where an event stream that wants only new events starts. */
int64_t ita_jobdir_jsonl_end(ita_jobdir_t *jd, const char *id, ita_jsonl_kind_t kind);

/* The evaluation record (val_loss, ...) logged at step, or NULL (new ref). */
json_t *ita_jobdir_eval_at(ita_jobdir_t *jd, const char *id, int64_t step);

/* Formats a summary as a JSON object (new reference). */
json_t *ita_job_summary_json(const ita_job_summary_t *s);

/* The same with the "scheduler" object filled from view. */
json_t *ita_job_summary_json_view(const ita_job_summary_t *s, const ita_sched_view_t *view);

#endif
