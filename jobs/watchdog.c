/*
 * The watchdog thread (see watchdog.h).
 */
#include "jobs/watchdog.h"

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

static void record_failure(watchdog_t *w, int rank, const char *why) {
    pthread_mutex_lock(w->lock);
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

static void *watch(void *arg) {
    watchdog_t *w = arg;
    double last_live = 0.0, last_heartbeat = rundir_now(), last_scan = 0.0;
    while (!w->quit) {
        double now = rundir_now();
        if (now - last_live >= 1.0) {
            write_liveness(w);
            last_live = now;
        }
        if (w->rank == 0 && w->jd) {
            /* a stop request that the step does not answer within half a
             * second, or a silent peer, means a rank is probably gone */
            int stuck = w->stop && *w->stop && *w->step_busy && now - *w->step_started > 0.5;
            int scan_due = w->size > 1 && (stuck || now - last_scan >= 2.0);
            char why[512];
            int dead = scan_due && !*w->failed ? find_dead_peer(w, why, sizeof why) : -1;
            if (scan_due) last_scan = now;
            if (dead >= 0) record_failure(w, dead, why);
            if (now - last_heartbeat >= 10.0 && !*w->failed) {
                pthread_mutex_lock(w->lock);
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
