/*
 * Requests whose work runs in the worker pool (pool.h): the loop side. The
 * request's memory pool holds a guard that forgets the job's request when
 * h2o disposes of it (a client that left, an HTTP/2 stream reset), so a
 * result arriving later is dropped instead of written to freed memory.
 */
#include "ita/http.h"

static void on_req_gone(void *p) {
    ita_pool_job_t **slot = p;
    if (*slot) (*slot)->owner = NULL;
}

void ita_offload(ita_req_t *rq, ita_pool_job_t *j) {
    ita_worker_t *w = rq->w;
    ita_pool_job_t **slot = h2o_mem_alloc_shared(&rq->req->pool, sizeof *slot, on_req_gone);
    *slot = j;
    j->guard = slot;
    j->owner = rq;
    j->worker = w;
    if (ita_pool_submit(w->srv->pool, j, &w->pool_back) != 0) {
        *slot = NULL;
        ita_pool_job_free(j);
        ita_add_header(rq, "retry-after", "1");
        ita_problem(rq, 503, "the service's worker pool is full; retry after the given seconds");
        return;
    }
    w->pool_out++;
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
            if (j->status == 200) {
                ita_respond_json(rq, j->out);
                j->out = NULL;
            } else {
                ita_problem(rq, j->status, j->detail);
            }
        }
        ita_pool_job_free(j);
    }
}
