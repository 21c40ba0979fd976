/*
 * The status rules of a run directory, one definition for codexctl and
 * codex-ita (docs/formats.md, "Job status"): which recorded statuses mean
 * the job may still run, which mean it ended, how state.json and the
 * scheduler's view merge into the status a user sees, and when a job is
 * LOST. Also the one rewrite of state.json by a program other than
 * codex-train (a cancel, an ending Slurm reported).
 */
#ifndef CU_RUNDIR_STATUS_H
#define CU_RUNDIR_STATUS_H

#include <stddef.h>

#include "core/error.h"
#include "rundir/rundir.h"
#include "slurm/slurm.h"

/* SUBMITTED, PENDING, RUNNING or PREEMPTED: the job may still run (a
 * PREEMPTED one may be requeued). */
int rundir_status_active(const char *status);
/* COMPLETED, FAILED, CANCELLED or TIMEOUT: the job has ended. */
int rundir_status_final(const char *status);
/* One of the nine status values of DESIGN.md (LOST included). */
int rundir_status_known(const char *status);
/* A run whose checkpoints a new start continues: not COMPLETED. */
int rundir_status_resumable(const char *status);

/* The status to show for a job whose state.json says file_status and that
 * Slurm knows as s: codex-train's record while the job runs and for a
 * training that completed, Slurm's word for how it ended otherwise. */
void rundir_status_merge_slurm(const char *file_status, const slurm_job_info_t *s, char *status,
                               size_t status_cap, char *detail, size_t detail_cap);

/* What the readers know about a job besides its state.json. */
typedef struct {
    const char *file_status;       /* state.json's status */
    double heartbeat_age_s;        /* now - updated_at; NAN when unknown */
    double lost_after_s;           /* a heartbeat older than this has stopped */
    int has_slurm_id;              /* state.json names a Slurm job */
    int sched_asked;               /* the scheduler was asked about it */
    const slurm_job_info_t *sched; /* its answer, NULL when it does not know the job */
    int launcher;                  /* launcher.pid: 1 alive, 0 gone, -1 no such file */
    int writer_gone;               /* state.json's pid was on this host and is gone */
} rundir_witness_t;

/* The status a user sees and why (detail, "" when plain). Returns 1 when
 * the job is LOST: it may still run by its record, but no heartbeat,
 * scheduler, launcher or process says it does. A PREEMPTED job recorded
 * its own end and is never LOST. */
int rundir_status_resolve(const rundir_witness_t *w, char *status, size_t status_cap, char *detail,
                          size_t detail_cap);

/* The reason shown beside a status (codexctl status/list, the ITA's job
 * JSON and dashboard): detail when there is one, else for FAILED the first
 * line of state.json's error.message (error_message may be NULL). */
void rundir_status_reason(const char *status, const char *detail, const char *error_message,
                          char *out, size_t cap);

/* Rewrites state.json in the run directory dirfd with status (and
 * finished_at, updated_at, and error.message when message is not NULL),
 * every other field kept. Used for endings codex-train could not record. */
int rundir_record_status_at(int dirfd, const char *status, const char *message, cu_error_t *err);
/* Records that the job failed on `rank` (error.message, error.rank) when
 * state.json still says it may run; *recorded tells whether it did. For a
 * surviving rank that saw rank 0 die. */
int rundir_record_failure(const char *dir, int rank, const char *message, int *recorded,
                          cu_error_t *err);
/* Writes s as state.json unless state.json already records an end
 * (COMPLETED, FAILED, CANCELLED, TIMEOUT) that another witness wrote (rank 1
 * recorded rank 0 stopped, codexctl cancelled): *ended is then 1 and nothing
 * is written; the first recorded end stays. Under state.lock. A running
 * job's own updates and its own end go through here once its RUNNING is on
 * disk, so a rank that was stopped and continued cannot write RUNNING, or a
 * vaguer cause, over the record of its own stop. */
int rundir_update_state(rundir_t *d, const rundir_state_t *s, int *ended, cu_error_t *err);
/* The same for a run directory path. */
int rundir_record_status(const char *dir, const char *status, const char *message, cu_error_t *err);

#endif
