/*
 * The watchdog thread (see watchdog.h).
 */
#include "jobs/watchdog.h"

#include "rundir/status.h"

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void write_liveness(const watchdog_t *w) {
    char path[4400], text[512], host[256] = "";
    gethostname(host, sizeof host - 1);
    snprintf(path, sizeof path, "%s/%d.json", w->ranks_dir, w->rank);
    int n = snprintf(text, sizeof text,
                     "{\"rank\": %d, \"pid\": %d, \"host\": \"%s\", \"time\": %.3f}\n", w->rank,
                     (int)getpid(), host, rundir_now());
    rundir_write_atomic(path, text, (size_t)n, NULL);
}

typedef struct {
    int pid;
    char host[256];
    double time;
} liveness_t;

static int read_liveness(const watchdog_t *w, int rank, liveness_t *out) {
    char path[4400];
    snprintf(path, sizeof path, "%s/%d.json", w->ranks_dir, rank);
    json_t *o = json_load_file(path, 0, NULL);
    if (!o) return -1;
    out->pid = (int)json_integer_value(json_object_get(o, "pid"));
    snprintf(out->host, sizeof out->host, "%s",
             json_string_value(json_object_get(o, "host"))
                 ? json_string_value(json_object_get(o, "host"))
                 : "");
    out->time = json_number_value(json_object_get(o, "time"));
    json_decref(o);
    return 0;
}

/* The first peer that is gone, with the reason in why; -1 if all look alive. */
static int find_dead_peer(const watchdog_t *w, char *why, size_t len) {
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    double now = rundir_now();
    for (int r = 0; r < w->size; r++) {
        if (r == w->rank) continue;
        liveness_t l;
        if (read_liveness(w, r, &l) != 0) continue; /* not started yet */
        if (l.time < w->started - 1.0) {
            /* left by an earlier run of the job (a requeued or resumed one):
             * its pid is dead but says nothing about this run's rank, which
             * may not have written yet; silent past the limit it is gone */
            if (now - w->started <= w->stale_s) continue;
            snprintf(why, len, "rank %d never reported: no heartbeat for %.0f s since the start", r,
                     now - w->started);
            return r;
        }
        if (strcmp(l.host, host) == 0 && l.pid > 0 && kill(l.pid, 0) != 0 && errno == ESRCH) {
            snprintf(why, len, "rank %d (pid %d on %s) died", r, l.pid, l.host);
            return r;
        }
        if (now - l.time > w->stale_s) {
            snprintf(why, len, "rank %d (pid %d on %s) stopped responding: no heartbeat for %.0f s",
                     r, l.pid, l.host, now - l.time);
            return r;
        }
    }
    return -1;
}

/* ranks/error, written by a rank that failed alone (watchdog_report_error):
 * its rank and message, or -1 when there is none. */
static int read_rank_error(const watchdog_t *w, char *msg, size_t cap) {
    char path[4400];
    snprintf(path, sizeof path, "%s/error", w->ranks_dir);
    json_t *o = json_load_file(path, 0, NULL);
    if (!o) return -1;
    int rank = (int)json_integer_value(json_object_get(o, "rank"));
    const char *m = json_string_value(json_object_get(o, "message"));
    const char *h = json_string_value(json_object_get(o, "host"));
    snprintf(msg, cap, "rank %d on %s: %s", rank, h ? h : "?", m ? m : "failed");
    json_decref(o);
    return rank;
}

/* 1 when state.json already records an end another witness wrote (rank 1
 * saw rank 0 stop, codexctl cancelled): it must not be overwritten. */
static int ended_elsewhere(const watchdog_t *w) {
    rundir_state_t s;
    rundir_state_init(&s, "");
    return rundir_read_state(w->run_dir, &s, NULL) == CU_OK && rundir_status_final(s.status);
}

static void record_failure(watchdog_t *w, int rank, const char *why) {
    pthread_mutex_lock(w->lock);
    if (!*w->failed && ended_elsewhere(w)) *w->failed = 1;
    if (!*w->failed) {
        *w->failed = 1;
        snprintf(w->st->status, sizeof w->st->status, "FAILED");
        snprintf(w->st->error, sizeof w->st->error, "%s", why);
        w->st->error_rank = rank;
        w->st->finished_at = rundir_now();
        rundir_write_state(w->jd, w->st, NULL);
        char extra[64];
        snprintf(extra, sizeof extra, "\"rank\": %d", rank);
        rundir_event(w->jd, w->st->step, "failed", why, extra, NULL);
    }
    pthread_mutex_unlock(w->lock);
    fprintf(stderr, "codex-train: %s; job recorded as FAILED\n", why);
}

/* Ends this process so that the launcher (mpirun, srun) ends the whole
 * job: a rank that stopped or died cannot take part in the collectives the
 * others wait in, so nothing else would end it. */
static void end_job(const watchdog_t *w) {
    fprintf(stderr, "codex-train: rank %d: ending the job\n", w->rank);
    fflush(stderr);
    _exit(70);
}

/* Rank 1 watches rank 0: if it died or stopped, nobody else records it. */
static void watch_rank0(watchdog_t *w, double now) {
    char why[512];
    liveness_t l;
    if (read_liveness(w, 0, &l) != 0 || l.time < w->started - 1.0) return;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    if (strcmp(l.host, host) == 0 && l.pid > 0 && kill(l.pid, 0) != 0 && errno == ESRCH)
        snprintf(why, sizeof why, "rank 0 (pid %d on %s) died", l.pid, l.host);
    else if (now - l.time > w->stale_s)
        snprintf(why, sizeof why,
                 "rank 0 (pid %d on %s) stopped responding: no heartbeat for %.0f s", l.pid, l.host,
                 now - l.time);
    else
        return;
    int recorded = 0;
    cu_error_t e;
    rundir_state_t st;
    rundir_state_init(&st, "");
    rundir_read_state(w->run_dir, &st, NULL);
    if (rundir_record_failure(w->run_dir, 0, why, &recorded, &e) != CU_OK) return;
    if (!recorded) return; /* rank 0 had recorded an end: it finished */
    rundir_t d;
    if (rundir_open(&d, w->run_dir, &e) == CU_OK) {
        rundir_event(&d, st.step, "failed", why, "\"rank\": 0", &e);
        rundir_close(&d);
    }
    fprintf(stderr, "codex-train: rank %d: %s; job recorded as FAILED\n", w->rank, why);
    end_job(w);
}

static void *watch(void *arg) {
    watchdog_t *w = arg;
    double last_live = 0.0, last_heartbeat = rundir_now(), last_scan = 0.0;
    while (!w->quit) {
        double now = rundir_now();
        if (now - last_live >= 1.0) {
            write_liveness(w);
            last_live = now;
        }
        if (w->rank == 1 && !w->peers_done && now - last_scan >= 2.0) {
            watch_rank0(w, now);
            last_scan = now;
        }
        if (w->rank == 0 && w->jd) {
            /* a stop request that the step does not answer within half a
             * second, or a silent peer, means a rank is probably gone */
            int stuck = w->stop && *w->stop && *w->step_busy && now - *w->step_started > 0.5;
            int scan_due = w->size > 1 && !w->peers_done && (stuck || now - last_scan >= 2.0);
            char why[512];
            int dead = scan_due && !*w->failed ? find_dead_peer(w, why, sizeof why) : -1;
            if (scan_due) last_scan = now;
            if (dead >= 0) {
                record_failure(w, dead, why);
                end_job(w);
            }
            char msg[1200];
            int bad = w->size > 1 && !*w->failed ? read_rank_error(w, msg, sizeof msg) : -1;
            if (bad >= 0) record_failure(w, bad, msg); /* that rank then aborts the job */
            if (now - last_heartbeat >= 10.0 && !*w->failed) {
                pthread_mutex_lock(w->lock);
                if (ended_elsewhere(w))
                    *w->failed = 1;
                else
                    rundir_write_state(w->jd, w->st, NULL);
                pthread_mutex_unlock(w->lock);
                last_heartbeat = now;
            }
        }
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int watchdog_start(watchdog_t *w, cu_error_t *err) {
    int rc = rundir_mkdirs(w->ranks_dir, err);
    if (rc) return rc;
    w->started = rundir_now();
    write_liveness(w);
    w->quit = 0;
    if (pthread_create(&w->thread, NULL, watch, w) != 0)
        return cu_error_set(err, CU_EINTERNAL, "cannot start the watchdog thread");
    w->running = 1;
    return CU_OK;
}

void watchdog_stop(watchdog_t *w) {
    if (!w->running) return;
    w->quit = 1;
    pthread_join(w->thread, NULL);
    w->running = 0;
}

int watchdog_report_error(const watchdog_t *w, const char *message, double wait_s) {
    char path[4400], host[256] = "";
    gethostname(host, sizeof host - 1);
    snprintf(path, sizeof path, "%s/error", w->ranks_dir);
    json_t *o = json_pack("{s:i,s:s,s:s}", "rank", w->rank, "host", host, "message", message);
    char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    /* the first failing rank's message is the one recorded */
    int rc = text && access(path, F_OK) != 0 ? rundir_write_atomic(path, text, strlen(text), NULL)
                                             : CU_OK;
    free(text);
    char state[4400];
    snprintf(state, sizeof state, "%s/state.json", w->run_dir);
    for (double t0 = rundir_now(); rundir_now() - t0 < wait_s;) {
        rundir_state_t s;
        rundir_state_init(&s, "");
        if (rundir_read_state(w->run_dir, &s, NULL) == CU_OK && rundir_status_final(s.status))
            return rc;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return rc;
}
