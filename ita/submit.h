/*
 * Submitting and cancelling training jobs (routes_submit.c): the core of
 * POST /v1/jobs and POST /v1/jobs/{id}/cancel, shared by those routes and
 * the MCP tools submit_job and cancel_job, so both go through the same
 * checks, write the same run directory and answer the same documents.
 * The caller checks the key's scope (submit) first.
 */
#ifndef CU_ITA_SUBMIT_H
#define CU_ITA_SUBMIT_H

#include <jansson.h>
#include <pthread.h>

#include "ita/config.h"
#include "ita/jobdir.h"
#include "ita/sched.h"

typedef struct {
    const ita_config_t *cfg;
    ita_jobdir_t *jobs;
    ita_sched_t *sched;         /* may be NULL: no watcher to tell */
    pthread_mutex_t *submit_mu; /* one submission at a time */
    const char *key_name, *key_id;
} ita_submit_ctx_t;

typedef struct {
    int status;                   /* HTTP status: 200 dry run, 201, 202, or >= 400 */
    char detail[1040];            /* the problem's detail when status >= 400 */
    char log[1100];               /* an internal error worth logging, or "" */
    json_t *doc;                  /* the answer when status < 400 (caller's reference) */
    const char *action;           /* "dry_run", "submit", "cancel", or NULL */
    char job[ITA_JOB_ID_MAX + 1]; /* the job concerned, or "" */
    char launched[96];            /* "slurm 123", "local pid 456", or "" */
    char location[300];           /* /v1/jobs/{id} of a new job, or "" */
} ita_submit_result_t;

/* Validates a submission body (a JSON object, docs/ita.md) and, unless
 * dry_run, writes the run directory and launches it. Fills res. */
void ita_submit_run(const ita_submit_ctx_t *c, json_t *body, int dry_run, ita_submit_result_t *res);

/* Cancels job (an id already checked with ita_job_id_valid). Fills res. */
void ita_submit_cancel(const ita_submit_ctx_t *c, const char *job, ita_submit_result_t *res);

#endif
