/*
 * The worker pool (pool.h): a mutex, a condition variable and a FIFO of
 * admitted jobs. n_in counts jobs admitted and not yet run to the end, so
 * the bound does not depend on whether a thread has picked a job up yet.
 */
#include "ita/pool.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct ita_pool {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    ita_pool_job_t *head, *tail;
    int n_in, cap, stop;
    unsigned long refused;
    int n_threads;
    pthread_t *tids;
    ita_pool_thread_t *ts;
    char hold[1024];
};

/* Tests only: wait while the hold file exists (at most 120 s). */
static void wait_hold(ita_pool_t *p) {
    if (!p->hold[0]) return;
    for (int i = 0; i < 12000 && access(p->hold, F_OK) == 0; i++) {
        pthread_mutex_lock(&p->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop) return;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

static void *pool_main(void *arg) {
    ita_pool_thread_t *t = arg;
    ita_pool_t *p = t->pool;
    /* below the event loops: a pathological scan takes the CPU the loops
     * leave, not the loops' own (Linux: nice is per thread) */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->head && !p->stop) pthread_cond_wait(&p->cv, &p->mu);
        ita_pool_job_t *j = p->head;
        if (!j) { /* stopping with nothing left */
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        p->head = j->next;
        if (!p->head) p->tail = NULL;
        pthread_mutex_unlock(&p->mu);
        wait_hold(p);
        j->run(j, t);
        pthread_mutex_lock(&p->mu);
        p->n_in--;
        pthread_mutex_unlock(&p->mu);
        h2o_multithread_send_message(j->back, &j->msg);
    }
}

int ita_pool_start(ita_pool_t **out, int threads, int queue, const char *hold_path,
                   cu_error_t *err) {
    *out = NULL;
    ita_pool_t *p = calloc(1, sizeof *p);
    if (!p) return cu_error_set(err, CU_ENOMEM, "out of memory");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    p->cap = threads + queue;
    if (hold_path) snprintf(p->hold, sizeof p->hold, "%s", hold_path);
    p->tids = calloc((size_t)threads, sizeof *p->tids);
    p->ts = calloc((size_t)threads, sizeof *p->ts);
    if (!p->tids || !p->ts) {
        ita_pool_stop(p);
        return cu_error_set(err, CU_ENOMEM, "out of memory");
    }
    for (int i = 0; i < threads; i++) {
        p->ts[i].pool = p;
        /* each thread compiles its own scanner: no scanner state shared */
        int rc = safety_engine_new(NULL, &p->ts[i].safety, err);
        if (rc) {
            ita_pool_stop(p);
            return cu_error_prefix(err, "safety policy for the worker pool");
        }
        if (pthread_create(&p->tids[i], NULL, pool_main, &p->ts[i])) {
            safety_engine_free(p->ts[i].safety);
            p->ts[i].safety = NULL;
            ita_pool_stop(p);
            return cu_error_set(err, CU_EINTERNAL, "cannot start pool thread %d", i);
        }
        p->n_threads = i + 1;
    }
    *out = p;
    return CU_OK;
}

int ita_pool_submit(ita_pool_t *p, ita_pool_job_t *j, h2o_multithread_receiver_t *back) {
    pthread_mutex_lock(&p->mu);
    if (p->stop || p->n_in >= p->cap) {
        p->refused++;
        pthread_mutex_unlock(&p->mu);
        return -1;
    }
    j->back = back;
    j->next = NULL;
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->n_in++;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return 0;
}

void ita_pool_counts(ita_pool_t *p, int *in_pool, unsigned long *refused) {
    *in_pool = 0;
    *refused = 0;
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    *in_pool = p->n_in;
    *refused = p->refused;
    pthread_mutex_unlock(&p->mu);
}

void ita_pool_job_free(ita_pool_job_t *j) {
    if (!j) return;
    if (j->free_in) j->free_in(j->in);
    json_decref(j->out);
    free(j);
}

void ita_pool_stop(ita_pool_t *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++) pthread_join(p->tids[i], NULL);
    for (int i = 0; p->ts && i < p->n_threads; i++) safety_engine_free(p->ts[i].safety);
    free(p->tids);
    free(p->ts);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
