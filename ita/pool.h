/*
 * The worker pool: work that would hold an event loop for long (a hygiene
 * scan of a pathological body, a sandboxed test run, sbatch or scancel, a
 * pull request's git steps, the MCP tools doing any of these) runs on a few threads
 * of its own, so /healthz and the job routes keep answering on the loops.
 * A request's work is admitted only while the jobs in the pool (running
 * and waiting) number fewer than threads + queue; otherwise the route
 * answers 503 with Retry-After at once. Admission is decided on the event
 * loop when the request arrives, never by how far earlier jobs have got.
 *
 * A job's run function works on copies of what it needs (never on the h2o
 * request, which the client may drop meanwhile); its result goes back to
 * the loop that owns the request through that loop's message queue, and is
 * sent there if the request is still alive.
 */
#ifndef CU_ITA_POOL_H
#define CU_ITA_POOL_H

#include <h2o.h>
#include <h2o/multithread.h>
#include <jansson.h>
#include <pthread.h>

#include "core/error.h"
#include "safety/safety.h"

typedef struct ita_pool ita_pool_t;
typedef struct ita_pool_job ita_pool_job_t;

/* What a pool thread lends to the job it runs. */
typedef struct {
    ita_pool_t *pool;
    safety_engine_t *safety; /* this pool thread's scanner */
} ita_pool_thread_t;

struct ita_pool_job {
    h2o_multithread_message_t msg;    /* back to the owning loop */
    ita_pool_job_t *next;             /* in the pool's queue */
    void *owner;                      /* the ita_req_t, NULL once the request is gone */
    ita_pool_job_t **guard;           /* in the request's memory pool: points back here */
    void *worker;                     /* the owning ita_worker_t */
    h2o_multithread_receiver_t *back; /* its loop's receiver */
    /* runs on a pool thread: reads in, fills status and out (200) or
     * detail (a problem); must not touch owner */
    void (*run)(ita_pool_job_t *j, ita_pool_thread_t *t);
    /* runs on the owning loop when the request is still there (NULL: the
     * default answer, out as 200 or detail as a problem of status) */
    void (*done)(ita_pool_job_t *j, void *owner);
    void (*free_in)(void *in);
    void *in;
    int status;
    json_t *out;
    char detail[1024];
};

/* Starts threads pool threads admitting threads + queue jobs at a time.
 * hold_path (tests only, may be NULL): a job waits to start while that
 * file exists. */
int ita_pool_start(ita_pool_t **out, int threads, int queue, const char *hold_path,
                   cu_error_t *err);

/* Admits j (0) or refuses it (-1: the pool is full, j untouched). */
int ita_pool_submit(ita_pool_t *p, ita_pool_job_t *j, h2o_multithread_receiver_t *back);

/* Jobs admitted and not yet finished; jobs refused since the start. */
void ita_pool_counts(ita_pool_t *p, int *in_pool, unsigned long *refused);

/* Frees j, its input and result (on the loop that received it). */
void ita_pool_job_free(ita_pool_job_t *j);

/* Stops the threads after the jobs already admitted. */
void ita_pool_stop(ita_pool_t *p);

#endif
