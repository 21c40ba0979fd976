/*
 * Requests whose work runs in the worker pool (pool.h): the loop side. The
 * request's memory pool holds a guard that forgets the job's request when
 * h2o disposes of it (a client that left, an HTTP/2 stream reset), so a
 * result arriving later is dropped instead of written to freed memory.
 *
 * A job that reads or writes job directories cannot use its loop's
 * ita_jobdir_t (one per loop thread, nothing in it locks): it opens its
 * own on the pool thread (ita_offload_jobs_open), with the newest
 * scheduler view, and closes it when done.
 */
#include "ita/http.h"

static void on_req_gone(void *p) {
    ita_pool_job_t **slot = p;
    if (*slot) (*slot)->owner = NULL;
}

int ita_offload_try(ita_req_t *rq, ita_pool_job_t *j) {
    ita_worker_t *w = rq->w;
    ita_pool_job_t **slot = h2o_mem_alloc_shared(&rq->req->pool, sizeof *slot, on_req_gone);
    *slot = j;
    j->guard = slot;
    j->owner = rq;
    j->worker = w;
    if (ita_pool_submit(w->srv->pool, j, &w->pool_back) != 0) {
        *slot = NULL;
        j->guard = NULL;
        j->owner = NULL;
        return -1;
    }
    w->pool_out++;
    return 0;
}

ita_pool_job_t *ita_offload_job(ita_req_t *rq, size_t size, size_t body_at, const char *body,
                                size_t len) {
    ita_pool_job_t *j = calloc(1, sizeof *j);
    char *in = j ? calloc(1, size + len + 1) : NULL; /* body_at <= size */
    if (!in) {
        free(j);
        ita_problem(rq, 500, "out of memory");
        return NULL;
    }
    if (len) memcpy(in + body_at, body, len);
    j->in = in;
    j->free_in = free;
    return j;
}

void ita_offload(ita_req_t *rq, ita_pool_job_t *j) {
    if (ita_offload_try(rq, j) == 0) return;
    ita_pool_job_free(j);
    ita_add_header(rq, "retry-after", "1");
    ita_problem(rq, 503, "the service's worker pool is full; retry after the given seconds");
}

void ita_offload_done(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages) {
    ita_worker_t *w = H2O_STRUCT_FROM_MEMBER(ita_worker_t, pool_back, receiver);
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *m =
            H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&m->link);
        ita_pool_job_t *j = H2O_STRUCT_FROM_MEMBER(ita_pool_job_t, msg, m);
        w->pool_out--;
        ita_req_t *rq = j->owner;
        if (rq) {
            *j->guard = NULL;
            if (j->done) {
                j->done(j, rq);
            } else if (j->status == 200) {
                ita_respond_json(rq, j->out);
                j->out = NULL;
            } else {
                ita_problem(rq, j->status, j->detail);
            }
        }
        ita_pool_job_free(j);
    }
}

int ita_offload_jobs_open(ita_server_t *srv, ita_jobdir_t **jobs, ita_sched_view_t **view,
                          cu_error_t *err) {
    *view = NULL;
    int rc =
        ita_jobdir_open(jobs, srv->cfg.runs_dir, srv->cfg.lost_after_s, srv->cfg.max_jobs, err);
    if (rc) return rc;
    if (srv->sched) {
        unsigned long gen = 0;
        ita_sched_sync(srv->sched, view, &gen);
        ita_jobdir_set_view(*jobs, *view);
    }
    return CU_OK;
}

void ita_offload_jobs_close(ita_jobdir_t *jobs, ita_sched_view_t *view) {
    ita_jobdir_free(jobs);
    ita_sched_view_release(view);
}
