/*
 * The scheduler's view, cached. GET /v1/jobs/{id} is answered tens of
 * thousands of times a second, so no request runs squeue or sacct: one
 * background thread asks Slurm about every job of the runs directory that
 * has a Slurm id (one squeue for all of them, one sacct for the ones squeue
 * no longer holds) every slurm.refresh_s seconds, and publishes the answers
 * as an immutable, reference-counted snapshot. A worker thread swaps its
 * snapshot only when a new one has been published (one atomic load per
 * request) and reads it without locks.
 *
 * The same thread finishes cancels (POST /v1/jobs/{id}/cancel): once the
 * job has stopped it records CANCELLED again if codex-train wrote something
 * else on its way out, and it reaps the local launchers codex-ita started.
 */
#ifndef CU_ITA_SCHED_H
#define CU_ITA_SCHED_H

#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/error.h"
#include "ita/config.h"
#include "slurm/slurm.h"

typedef struct {
    char slurm_id[64];
    int known; /* squeue or sacct knows the job */
    slurm_job_info_t info;
    char *json; /* the view's fields as JSON object members, no braces */
} ita_sched_entry_t;

typedef struct {
    atomic_int refs;
    double refreshed_at; /* wall clock of the last answer from squeue; 0 never */
    char *error_json;    /* why the last refresh failed, as a JSON value ("null" when it did not) */
    size_t n;
    ita_sched_entry_t *e; /* sorted by slurm_id */
} ita_sched_view_t;

typedef struct ita_sched ita_sched_t;

/* Starts the refresh thread (none when cfg->slurm_refresh_s is 0: the view
 * stays empty). Allocates; ita_sched_stop. */
int ita_sched_start(ita_sched_t **out, const ita_config_t *cfg, cu_error_t *err);
void ita_sched_stop(ita_sched_t *s);

/* Makes *view the newest published snapshot (dropping the reference to the
 * one it held). Cheap when nothing changed. */
void ita_sched_sync(ita_sched_t *s, ita_sched_view_t **view, unsigned long *gen);
void ita_sched_view_release(ita_sched_view_t *v);

/* Asks for a refresh now (after a submit or a cancel). */
void ita_sched_kick(ita_sched_t *s);

/* Watches a cancelled job until it has stopped, then makes sure state.json
 * says CANCELLED. */
void ita_sched_watch_cancel(ita_sched_t *s, const char *job);

/* A local launcher codex-ita started: reaped when it exits. */
void ita_sched_track_pid(ita_sched_t *s, pid_t pid);

/* The entry for a Slurm id, or NULL when the view has not asked about it. */
const ita_sched_entry_t *ita_sched_find(const ita_sched_view_t *v, const char *slurm_id);

/* The "scheduler" object of a job with Slurm id slurm_id, as JSON text:
 * {"slurm_job_id", "array_job_id", "array_task_id", "known", "state",
 * "status", "reason", "nodes", "exit_code", "source", "view_age_s",
 * "error"}. Returns the length, or -1 when cap is too small. */
int ita_sched_render(const ita_sched_view_t *v, const char *slurm_id, double now, char *out,
                     size_t cap);

#endif
