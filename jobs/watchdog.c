/*
 * The watchdog thread (see watchdog.h).
 */
#include "jobs/watchdog.h"

#include "mpi/world.h"
#include "rundir/status.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const PHASE_NAME[WD_PHASES] = {"loading", "training step", "evaluation",
                                                  "checkpoint save"};

long long watchdog_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void watchdog_progress(watchdog_t *w, long step, wd_phase_t phase) {
    long long now = watchdog_mono_ns(), last = atomic_load(&w->progress_ns);
    int prev = atomic_load(&w->progress_phase);
    if (prev >= 0 && prev < WD_PHASES && now - last > atomic_load(&w->longest_ns[prev]))
        atomic_store(&w->longest_ns[prev], now - last);
    atomic_store(&w->progress_step, step);
    atomic_store(&w->progress_phase, (int)phase);
    atomic_store(&w->progress_ns, now);
}

/* How long the current phase may last without progress: the deadline
 * (CU_PROGRESS_TIMEOUT_S); three times it for the first step and for the
 * phases that are legitimately longer than a step (loading, evaluation,
 * a checkpoint save); and never less than ten times the longest earlier run
 * of the same phase, so a big model's slow steps teach it what is normal. */
static double progress_limit(const watchdog_t *w, int phase) {
    long long longest = atomic_load(&w->longest_ns[phase]);
    double base = w->progress_s * (phase != WD_STEP || longest == 0 ? 3.0 : 1.0);
    double learned = 10.0 * (double)longest / 1e9;
    return learned > base ? learned : base;
}

/* The main thread's progress as of now: step, phase, seconds since it last
 * moved and that phase's limit. 0 when it moved while being read. */
static int progress_now(const watchdog_t *w, long *step, int *phase, double *idle, double *limit) {
    long long t0 = atomic_load(&w->progress_ns);
    *phase = atomic_load(&w->progress_phase);
    *step = atomic_load(&w->progress_step);
    if (atomic_load(&w->progress_ns) != t0 || *phase < 0 || *phase >= WD_PHASES) return 0;
    *idle = (double)(watchdog_mono_ns() - t0) / 1e9;
    *limit = progress_limit(w, *phase);
    return 1;
}

/* 1 when this rank's main thread is past its progress deadline (outside
 * the wind-down after the training loop). */
static int progress_late(const watchdog_t *w) {
    long step;
    int phase;
    double idle, limit;
    return w->progress_s > 0 && !atomic_load(&w->peers_done) &&
           progress_now(w, &step, &phase, &idle, &limit) && idle > limit;
}

static void write_liveness(const watchdog_t *w) {
    char path[4400], text[640], host[256] = "";
    gethostname(host, sizeof host - 1);
    snprintf(path, sizeof path, "%s/%d.json", w->ranks_dir, w->rank);
    int n = snprintf(text, sizeof text,
                     "{\"rank\": %d, \"pid\": %d, \"host\": \"%s\", \"time\": %.3f, "
                     "\"step\": %ld, \"phase\": \"%s\", \"collectives\": %lu, \"late\": %s}\n",
                     w->rank, (int)getpid(), host, rundir_now(), atomic_load(&w->progress_step),
                     PHASE_NAME[atomic_load(&w->progress_phase) % WD_PHASES], world_collectives(),
                     progress_late(w) ? "true" : "false");
    rundir_write_atomic(path, text, (size_t)n, NULL);
}

typedef struct {
    int pid;
    char host[256];
    double time;
    long long collectives; /* -1: not written by this version */
    int late;              /* past its own progress deadline */
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
    json_t *c = json_object_get(o, "collectives");
    out->collectives = json_is_integer(c) ? (long long)json_integer_value(c) : -1;
    out->late = json_is_true(json_object_get(o, "late"));
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

/* The lock the main thread shares, waited for at most 5 s: a main thread
 * stuck while holding it (a write on a hung file system) must not keep the
 * watchdog from ending the job. 0 when it was not taken. */
static int lock_bounded(pthread_mutex_t *m) {
    long long end = watchdog_mono_ns() + 5000000000LL;
    while (pthread_mutex_trylock(m) != 0) {
        if (watchdog_mono_ns() > end) return 0;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 1;
}

/* The `failed` event naming the rank that saw the failure. */
static void failed_event(rundir_t *d, long step, int rank, const char *why) {
    char extra[64];
    cu_error_t e;
    snprintf(extra, sizeof extra, "\"rank\": %d", rank);
    rundir_event(d, step, "failed", why, extra, &e);
}

/* Records FAILED through state.json alone (not through the shared state):
 * for a witness that is not rank 0, or rank 0 when its main thread holds
 * the lock. */
static int record_failure_file(const watchdog_t *w, int rank, const char *why) {
    int recorded = 0;
    cu_error_t e;
    rundir_state_t st;
    rundir_state_init(&st, "");
    rundir_read_state(w->run_dir, &st, NULL);
    if (rundir_record_failure(w->run_dir, rank, why, &recorded, &e) != CU_OK || !recorded) return 0;
    rundir_t d;
    if (rundir_open(&d, w->run_dir, &e) == CU_OK) {
        failed_event(&d, st.step, rank, why);
        rundir_close(&d);
    }
    return 1;
}

static void record_failure(watchdog_t *w, int rank, const char *why) {
    if (!lock_bounded(w->lock)) {
        atomic_store(w->failed, 1);
        record_failure_file(w, rank, why);
        fprintf(stderr, "codex-train: %s; job recorded as FAILED\n", why);
        return;
    }
    if (!atomic_load(w->failed) && ended_elsewhere(w)) atomic_store(w->failed, 1);
    if (!atomic_load(w->failed)) {
        atomic_store(w->failed, 1);
        rundir_state_t keep = *w->st;
        snprintf(w->st->status, sizeof w->st->status, "FAILED");
        snprintf(w->st->error, sizeof w->st->error, "%s", why);
        w->st->error_rank = rank;
        w->st->finished_at = rundir_now();
        /* checked again under state.lock: the first witness's end stays */
        int ended = 0;
        if (atomic_load(&w->state_live))
            rundir_update_state(w->jd, w->st, &ended, NULL);
        else
            rundir_write_state(w->jd, w->st, NULL);
        if (ended) {
            *w->st = keep;
        } else {
            failed_event(w->jd, w->st->step, rank, why);
        }
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
    if (!record_failure_file(w, 0, why)) return; /* rank 0 had recorded an end: it finished */
    fprintf(stderr, "codex-train: rank %d: %s; job recorded as FAILED\n", w->rank, why);
    end_job(w);
}

/* 1 when this rank is past its progress deadline and is the one holding
 * the job up: no peer has entered fewer collective calls (a peer behind it
 * is the one stuck; the ranks ahead wait for it in a collective), and of
 * the late ranks at the same place the lowest speaks. Peers' liveness files
 * must be newer than this rank's last progress by a second, so that what
 * they say is about now; a peer silent longer is the heartbeat's case. */
static int progress_stuck(const watchdog_t *w, char *why, size_t len) {
    long step;
    int phase;
    double idle, limit;
    if (w->progress_s <= 0 || atomic_load(&w->peers_done) ||
        !progress_now(w, &step, &phase, &idle, &limit) || idle <= limit)
        return 0;
    long long mine = (long long)world_collectives();
    double since = rundir_now() - idle;
    for (int r = 0; r < w->size; r++) {
        liveness_t l;
        if (r == w->rank) continue;
        if (read_liveness(w, r, &l) != 0 || l.time < since + 1.0 || l.collectives < 0) return 0;
        if (l.collectives < mine) return 0;
        if (l.collectives == mine && l.late && r < w->rank) return 0;
    }
    snprintf(why, len, "no progress since step %ld for %.0f s (%s; deadline %.0f s)", step, idle,
             PHASE_NAME[phase], limit);
    return 1;
}

/* This rank's main thread is stuck: record it (rank 0 itself; another rank
 * through ranks/error for rank 0's watchdog, or itself when rank 0 does not
 * answer) and end the job. An alarm ends the process should recording hang
 * on the same file system that stopped the main thread. */
static void end_stuck(watchdog_t *w, const char *what) {
    char host[256] = "", why[1024];
    gethostname(host, sizeof host - 1);
    snprintf(why, sizeof why, "rank %d on %s: %s", w->rank, host, what);
    fprintf(stderr, "codex-train: %s\n", why);
    alarm(30);
    if (w->rank == 0) {
        if (w->jd) record_failure(w, 0, why);
    } else {
        watchdog_report_error(w, what, 5.0);
        if (!ended_elsewhere(w)) record_failure_file(w, w->rank, why);
    }
    end_job(w);
}

static void *watch(void *arg) {
    watchdog_t *w = arg;
    long long last_live = 0, last_heartbeat = watchdog_mono_ns(), last_scan = 0;
    const long long SEC = 1000000000LL;
    while (!atomic_load(&w->quit)) {
        long long mono = watchdog_mono_ns();
        if (mono - last_live >= SEC) {
            write_liveness(w);
            last_live = mono;
            char what[512];
            if (progress_stuck(w, what, sizeof what)) end_stuck(w, what);
        }
        if (w->rank == 1 && !atomic_load(&w->peers_done) && mono - last_scan >= 2 * SEC) {
            watch_rank0(w, rundir_now());
            last_scan = mono;
        }
        if (w->rank == 0 && w->jd) {
            /* a stop request that the step does not answer within half a
             * second, or a silent peer, means a rank is probably gone */
            int stuck = w->stop && *w->stop && atomic_load(w->step_busy) &&
                        mono - atomic_load(w->step_started) > SEC / 2;
            int scan_due = w->size > 1 && !atomic_load(&w->peers_done) &&
                           (stuck || mono - last_scan >= 2 * SEC);
            char why[512];
            int dead =
                scan_due && !atomic_load(w->failed) ? find_dead_peer(w, why, sizeof why) : -1;
            if (scan_due) last_scan = mono;
            if (dead >= 0) {
                record_failure(w, dead, why);
                end_job(w);
            }
            char msg[1200];
            int bad =
                w->size > 1 && !atomic_load(w->failed) ? read_rank_error(w, msg, sizeof msg) : -1;
            if (bad >= 0) record_failure(w, bad, msg); /* that rank then aborts the job */
            if (mono - last_heartbeat >= 10 * SEC && !atomic_load(w->failed) &&
                atomic_load(&w->state_live) && lock_bounded(w->lock)) {
                int ended = 0;
                rundir_update_state(w->jd, w->st, &ended, NULL);
                if (ended) atomic_store(w->failed, 1);
                pthread_mutex_unlock(w->lock);
                last_heartbeat = mono;
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
    for (int p = 0; p < WD_PHASES; p++) atomic_store(&w->longest_ns[p], 0);
    atomic_store(&w->progress_step, 0);
    atomic_store(&w->progress_phase, WD_START);
    atomic_store(&w->progress_ns, watchdog_mono_ns());
    write_liveness(w);
    atomic_store(&w->quit, 0);
    if (pthread_create(&w->thread, NULL, watch, w) != 0)
        return cu_error_set(err, CU_EINTERNAL, "cannot start the watchdog thread");
    w->running = 1;
    return CU_OK;
}

void watchdog_stop(watchdog_t *w) {
    if (!w->running) return;
    atomic_store(&w->quit, 1);
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
    for (long long t0 = watchdog_mono_ns(); (double)(watchdog_mono_ns() - t0) / 1e9 < wait_s;) {
        rundir_state_t s;
        rundir_state_init(&s, "");
        if (rundir_read_state(w->run_dir, &s, NULL) == CU_OK && rundir_status_final(s.status))
            return rc;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return rc;
}
