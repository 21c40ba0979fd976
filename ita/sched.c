/*
 * The scheduler view's refresh thread (sched.h). Each round: list the runs
 * directory through the thread's own job-directory reader, collect the
 * Slurm ids, ask Slurm about those it has not yet seen end (an ended job's
 * answer is kept: Slurm does not change its mind), and publish a new
 * snapshot. A failed round keeps the previous answers and records why, so
 * the view's age and error tell a client how much to trust it.
 *
 * Snapshots are reference counted: the thread holds the current one, each
 * worker the one it last synced to; the last release frees it.
 */
#include "ita/sched.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "ita/jobdir.h"
#include "ita/trace.h"

#define MAX_WATCH 256
#define MAX_PIDS 256
#define WATCH_GIVE_UP_S 900.0
#define IDLE_PERIOD_S 2.0 /* without Slurm refreshes: how often watches are looked at */

struct ita_sched {
    ita_config_t cfg;
    pthread_t tid;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int stop, kicked;
    ita_sched_view_t *cur; /* under mu */
    atomic_ulong gen;
    ita_jobdir_t *jd; /* the thread's own reader */
    struct {
        char job[ITA_JOB_ID_MAX + 1];
        double since;
    } watch[MAX_WATCH];
    int n_watch; /* under mu */
    pid_t pids[MAX_PIDS];
    int n_pids; /* under mu */
};

/* ---- snapshots ---- */

static void view_free(ita_sched_view_t *v) {
    for (size_t i = 0; i < v->n; i++) free(v->e[i].json);
    free(v->e);
    free(v->error_json);
    free(v);
}

void ita_sched_view_release(ita_sched_view_t *v) {
    if (v && atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1) view_free(v);
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const ita_sched_entry_t *)a)->slurm_id,
                  ((const ita_sched_entry_t *)b)->slurm_id);
}

const ita_sched_entry_t *ita_sched_find(const ita_sched_view_t *v, const char *slurm_id) {
    if (!v || !v->n) return NULL;
    ita_sched_entry_t key;
    snprintf(key.slurm_id, sizeof key.slurm_id, "%s", slurm_id);
    return bsearch(&key, v->e, v->n, sizeof *v->e, cmp_entry);
}

/* The entry's members: ids, and Slurm's word when some scheduler knows the job. */
static char *entry_json(const char *id, int known, const slurm_job_info_t *in) {
    json_t *o = json_object();
    json_object_set_new(o, "slurm_job_id", json_string(id));
    const char *u = strchr(id, '_');
    if (u) {
        json_object_set_new(o, "array_job_id", json_stringn(id, (size_t)(u - id)));
        json_object_set_new(o, "array_task_id", json_integer(strtoll(u + 1, NULL, 10)));
    } else {
        json_object_set_new(o, "array_job_id", json_null());
        json_object_set_new(o, "array_task_id", json_null());
    }
    json_object_set_new(o, "known", json_boolean(known));
#define STR_OR_NULL(s) (known && (s)[0] ? json_string(s) : json_null())
    json_object_set_new(o, "state", STR_OR_NULL(in->slurm_state));
    json_object_set_new(o, "status", known && in->status ? json_string(in->status) : json_null());
    json_object_set_new(o, "reason", STR_OR_NULL(in->reason));
    json_object_set_new(o, "nodes", STR_OR_NULL(in->nodes));
    json_object_set_new(o, "exit_code", STR_OR_NULL(in->exit_code));
    json_object_set_new(o, "source", STR_OR_NULL(in->source));
#undef STR_OR_NULL
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!text) return NULL;
    size_t n = strlen(text); /* drop the braces: the route adds the age */
    memmove(text, text + 1, n - 2);
    text[n - 2] = '\0';
    return text;
}

static ita_sched_view_t *view_new(size_t cap) {
    ita_sched_view_t *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->e = calloc(cap ? cap : 1, sizeof *v->e);
    v->error_json = strdup("null");
    if (!v->e || !v->error_json) {
        free(v->e);
        free(v->error_json);
        free(v);
        return NULL;
    }
    atomic_init(&v->refs, 1);
    return v;
}

static void view_set_error(ita_sched_view_t *v, const char *msg) {
    char text[256];
    snprintf(text, sizeof text, "%.255s", msg);
    json_t *s = json_string(text);
    char *t = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    json_decref(s);
    if (t) {
        free(v->error_json);
        v->error_json = t;
    }
}

static int view_add(ita_sched_view_t *v, const char *id, int known, const slurm_job_info_t *in) {
    ita_sched_entry_t *e = &v->e[v->n];
    memset(e, 0, sizeof *e);
    snprintf(e->slurm_id, sizeof e->slurm_id, "%s", id);
    e->known = known;
    if (known) e->info = *in;
    e->json = entry_json(id, known, in);
    if (!e->json) return -1;
    v->n++;
    return 0;
}

int ita_sched_render(const ita_sched_view_t *v, const char *slurm_id, double now, char *out,
                     size_t cap) {
    const ita_sched_entry_t *e = ita_sched_find(v, slurm_id);
    char age[32];
    if (v && v->refreshed_at > 0)
        snprintf(age, sizeof age, "%.3f", now - v->refreshed_at);
    else
        snprintf(age, sizeof age, "null");
    int n;
    const char *error = v && v->error_json ? v->error_json : "null";
    if (e) {
        n = snprintf(out, cap, "{%s,\"view_age_s\":%s,\"error\":%s}", e->json, age, error);
    } else {
        /* not asked yet (a new job, or no Slurm refresh) */
        const char *u = strchr(slurm_id, '_');
        char arr[160];
        if (u)
            snprintf(arr, sizeof arr, "\"array_job_id\":\"%.*s\",\"array_task_id\":%s",
                     (int)(u - slurm_id), slurm_id, u + 1);
        else
            snprintf(arr, sizeof arr, "\"array_job_id\":null,\"array_task_id\":null");
        n = snprintf(out, cap,
                     "{\"slurm_job_id\":\"%s\",%s,\"known\":null,\"state\":null,\"status\":null,"
                     "\"reason\":null,\"nodes\":null,\"exit_code\":null,\"source\":null,"
                     "\"view_age_s\":%s,\"error\":%s}",
                     slurm_id, arr, age, error);
    }
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

static void publish(ita_sched_t *s, ita_sched_view_t *v) {
    pthread_mutex_lock(&s->mu);
    ita_sched_view_t *old = s->cur;
    s->cur = v;
    atomic_fetch_add_explicit(&s->gen, 1, memory_order_release);
    pthread_mutex_unlock(&s->mu);
    ita_sched_view_release(old);
}

void ita_sched_sync(ita_sched_t *s, ita_sched_view_t **view, unsigned long *gen) {
    unsigned long g = atomic_load_explicit(&s->gen, memory_order_acquire);
    if (*view && g == *gen) return;
    pthread_mutex_lock(&s->mu);
    ita_sched_view_t *v = s->cur;
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    g = atomic_load_explicit(&s->gen, memory_order_relaxed);
    pthread_mutex_unlock(&s->mu);
    ita_sched_view_release(*view);
    *view = v;
    *gen = g;
}

/* ---- one refresh round ---- */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The distinct Slurm ids of the runs directory's jobs (malloc'd array of
 * pointers into *ids_buf). */
static size_t collect_ids(ita_sched_t *s, char ***out, char **buf) {
    ita_job_summary_t *jobs = NULL;
    size_t n = 0;
    cu_error_t err;
    *out = NULL;
    *buf = NULL;
    if (ita_jobdir_list(s->jd, &jobs, &n, &err) != CU_OK || n == 0) {
        free(jobs);
        return 0;
    }
    char **ids = malloc(n * sizeof *ids);
    char *b = malloc(n * 64);
    size_t k = 0;
    for (size_t i = 0; ids && b && i < n; i++) {
        if (!jobs[i].slurm_job_id[0]) continue;
        ids[k] = b + 64 * k;
        snprintf(ids[k], 64, "%s", jobs[i].slurm_job_id);
        k++;
    }
    free(jobs);
    if (!ids || !b) {
        free(ids);
        free(b);
        return 0;
    }
    qsort(ids, k, sizeof *ids, cmp_str);
    size_t u = 0;
    for (size_t i = 0; i < k; i++)
        if (u == 0 || strcmp(ids[u - 1], ids[i])) ids[u++] = ids[i];
    *out = ids;
    *buf = b;
    return u;
}

static void refresh(ita_sched_t *s) {
    char **ids, *buf;
    size_t n = collect_ids(s, &ids, &buf);
    pthread_mutex_lock(&s->mu);
    ita_sched_view_t *old = s->cur;
    atomic_fetch_add_explicit(&old->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&s->mu);
    /* ask only about jobs Slurm has not told us the end of */
    const char **ask = n ? malloc(n * sizeof *ask) : NULL;
    slurm_job_info_t *infos = n ? calloc(n, sizeof *infos) : NULL;
    int *found = n ? calloc(n, sizeof *found) : NULL;
    ita_sched_view_t *v = view_new(n);
    size_t n_ask = 0;
    int rc = CU_OK;
    cu_error_t err = {0};
    if (!v || (n && (!ask || !infos || !found))) {
        rc = cu_error_set(&err, CU_ENOMEM, "out of memory");
    } else {
        for (size_t i = 0; i < n; i++) {
            const ita_sched_entry_t *e = ita_sched_find(old, ids[i]);
            if (!(e && e->known && e->info.terminal)) ask[n_ask++] = ids[i];
        }
        if (n_ask) rc = slurm_query_many(ask, n_ask, infos, found, s->cfg.slurm_timeout_s, &err);
    }
    if (v) {
        size_t j = 0;
        for (size_t i = 0; i < n; i++) {
            const ita_sched_entry_t *e = ita_sched_find(old, ids[i]);
            int asked = j < n_ask && !strcmp(ask[j], ids[i]);
            if (asked && rc == CU_OK)
                view_add(v, ids[i], found[j], &infos[j]);
            else if (e)
                view_add(v, ids[i], e->known, &e->info); /* ended, or this round failed */
            j += asked;
        }
        qsort(v->e, v->n, sizeof *v->e, cmp_entry);
        v->refreshed_at = rc == CU_OK ? ita_wall_now() : old->refreshed_at;
        if (rc != CU_OK) view_set_error(v, err.msg);
        publish(s, v);
    }
    ita_sched_view_release(old);
    free(ask);
    free(infos);
    free(found);
    free(ids);
    free(buf);
}

/* ---- cancels and launchers ---- */

static int job_stopped(ita_sched_t *s, const ita_job_summary_t *sum) {
    if (sum->slurm_job_id[0]) {
        pthread_mutex_lock(&s->mu);
        const ita_sched_entry_t *e = ita_sched_find(s->cur, sum->slurm_job_id);
        int stopped = e && (!e->known || e->info.terminal);
        pthread_mutex_unlock(&s->mu);
        return stopped;
    }
    return ita_jobdir_launcher_alive(s->jd, sum->id) <= 0;
}

static void finish_cancels(ita_sched_t *s) {
    double now = ita_mono_now();
    for (int i = 0;; i++) {
        char job[ITA_JOB_ID_MAX + 1];
        double since;
        pthread_mutex_lock(&s->mu);
        if (i >= s->n_watch) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        snprintf(job, sizeof job, "%s", s->watch[i].job);
        since = s->watch[i].since;
        pthread_mutex_unlock(&s->mu);
        ita_job_summary_t sum;
        cu_error_t err;
        int done = now - since > WATCH_GIVE_UP_S;
        if (ita_jobdir_state(s->jd, job, &sum, NULL, &err) != CU_OK) {
            done = 1;
        } else if (job_stopped(s, &sum)) {
            done = 1;
            if (strcmp(sum.state_status, "CANCELLED"))
                ita_jobdir_record_status(s->jd, job, "CANCELLED", NULL, &err);
        }
        if (!done) continue;
        pthread_mutex_lock(&s->mu);
        for (int k = 0; k < s->n_watch; k++)
            if (!strcmp(s->watch[k].job, job)) {
                s->watch[k] = s->watch[--s->n_watch];
                break;
            }
        pthread_mutex_unlock(&s->mu);
        i--;
    }
}

static void reap(ita_sched_t *s) {
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_pids;) {
        int ws;
        pid_t r = waitpid(s->pids[i], &ws, WNOHANG);
        if (r == s->pids[i] || (r < 0 && errno == ECHILD))
            s->pids[i] = s->pids[--s->n_pids];
        else
            i++;
    }
    pthread_mutex_unlock(&s->mu);
}

static void *sched_main(void *arg) {
    ita_sched_t *s = arg;
    double period = s->cfg.slurm_refresh_s > 0 ? s->cfg.slurm_refresh_s : IDLE_PERIOD_S;
    for (;;) {
        if (s->cfg.slurm_refresh_s > 0) refresh(s);
        /* the thread's reader sees the view it just published */
        ita_sched_view_t *v = NULL;
        unsigned long g = 0;
        ita_sched_sync(s, &v, &g);
        ita_jobdir_set_view(s->jd, v);
        finish_cancels(s);
        ita_jobdir_set_view(s->jd, NULL);
        ita_sched_view_release(v);
        reap(s);
        pthread_mutex_lock(&s->mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        double p = s->n_watch && period > IDLE_PERIOD_S ? IDLE_PERIOD_S : period;
        until.tv_sec += (time_t)p;
        until.tv_nsec += (long)((p - (double)(time_t)p) * 1e9);
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
        while (!s->stop && !s->kicked)
            if (pthread_cond_timedwait(&s->cond, &s->mu, &until) == ETIMEDOUT) break;
        int stop = s->stop;
        s->kicked = 0;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
    }
    return NULL;
}

int ita_sched_start(ita_sched_t **out, const ita_config_t *cfg, cu_error_t *err) {
    ita_sched_t *s = calloc(1, sizeof *s);
    if (!s) return cu_error_set(err, CU_ENOMEM, "out of memory");
    s->cfg = *cfg;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->cur = view_new(0);
    atomic_init(&s->gen, 1);
    int rc = s->cur ? ita_jobdir_open(&s->jd, cfg->runs_dir, cfg->lost_after_s, cfg->max_jobs, err)
                    : cu_error_set(err, CU_ENOMEM, "out of memory");
    if (rc == CU_OK && pthread_create(&s->tid, NULL, sched_main, s) != 0)
        rc = cu_error_set(err, CU_EINTERNAL, "cannot start the scheduler view's thread");
    s->started = rc == CU_OK;
    *out = s;
    if (rc != CU_OK) {
        ita_sched_stop(s);
        *out = NULL;
    }
    return rc;
}

void ita_sched_stop(ita_sched_t *s) {
    if (!s) return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->tid, NULL);
    }
    ita_jobdir_free(s->jd);
    ita_sched_view_release(s->cur);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

void ita_sched_kick(ita_sched_t *s) {
    pthread_mutex_lock(&s->mu);
    s->kicked = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

void ita_sched_watch_cancel(ita_sched_t *s, const char *job) {
    pthread_mutex_lock(&s->mu);
    int have = 0;
    for (int i = 0; i < s->n_watch; i++) have |= !strcmp(s->watch[i].job, job);
    if (!have && s->n_watch < MAX_WATCH) {
        snprintf(s->watch[s->n_watch].job, sizeof s->watch[0].job, "%s", job);
        s->watch[s->n_watch].since = ita_mono_now();
        s->n_watch++;
    }
    s->kicked = 1;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
}

void ita_sched_track_pid(ita_sched_t *s, pid_t pid) {
    pthread_mutex_lock(&s->mu);
    if (s->n_pids < MAX_PIDS) s->pids[s->n_pids++] = pid;
    pthread_mutex_unlock(&s->mu);
}
