/*
 * The watchdog: a thread in every rank that makes a job's end visible even
 * when the job cannot end itself.
 *
 * Every rank writes runs/<job>/ranks/<rank>.json (pid, host, time) each
 * second. On rank 0 the thread also refreshes state.json's heartbeat while a
 * long step runs, and watches its peers: when a stop was requested (the
 * launcher sends SIGTERM to every survivor when one rank dies) but the
 * current step does not finish, or a peer's liveness file goes stale, it
 * looks for the rank that is gone — a dead pid on this host, or a heartbeat
 * older than the limit — and records FAILED with that rank in state.json and
 * events.jsonl before the launcher's SIGKILL arrives.
 *
 * It also holds the progress deadline: the main thread reports each phase
 * it enters (watchdog_progress); a rank whose phase has not changed for
 * longer than the deadline (CU_PROGRESS_TIMEOUT_S, see progress_limit in
 * watchdog.c) while it is not waiting for a peer — its count of collective
 * calls entered is not ahead of any peer's — records FAILED naming itself
 * ("no progress since step N for S s (phase)") and ends the job. This
 * catches a main thread stuck in a hung file system or a blocked read while
 * the watchdog thread lives. The thread never calls MPI.
 */
#ifndef CU_JOBS_WATCHDOG_H
#define CU_JOBS_WATCHDOG_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>

#include "rundir/rundir.h"

/* What the main thread is doing, for the progress deadline. */
typedef enum {
    WD_START,      /* loading, resuming: until the first step */
    WD_STEP,       /* a training step */
    WD_EVAL,       /* an evaluation (validation loss, samples, code tasks) */
    WD_CHECKPOINT, /* saving a checkpoint */
    WD_PHASES
} wd_phase_t;

typedef struct {
    /* set by the caller before watchdog_start */
    char ranks_dir[4200];
    char run_dir[4096];
    int rank, size;
    const volatile sig_atomic_t *stop; /* the stop request flag, may be NULL */
    double stale_s;                    /* a peer silent this long is dead */
    double progress_s;                 /* the progress deadline; 0 = off */
    /* rank 0: the job directory and its state, shared with the main thread */
    rundir_t *jd;
    rundir_state_t *st;
    pthread_mutex_t *lock; /* guards st and state.json writes */
    _Atomic int *step_busy;
    _Atomic long long *step_started; /* CLOCK_MONOTONIC ns */
    _Atomic int *failed;             /* set by the watchdog when it recorded FAILED */
    /* set by the main thread when the training loop has ended: ranks then
     * leave at their own pace, and a peer that exited is no failure */
    _Atomic int peers_done;
    /* set by the main thread once this run's RUNNING is in state.json: from
     * then on neither thread writes over an end another witness recorded,
     * and the watchdog keeps the heartbeat fresh */
    _Atomic int state_live;
    /* the main thread's progress (watchdog_progress) */
    _Atomic long progress_step;
    _Atomic int progress_phase;
    _Atomic long long progress_ns;           /* CLOCK_MONOTONIC when it last moved */
    _Atomic long long longest_ns[WD_PHASES]; /* each phase's longest run so far */
    /* internal */
    double started; /* when this incarnation's watchdog started (Unix s: compared
                       with the peers' liveness files, possibly on other hosts) */
    pthread_t thread;
    _Atomic int quit;
    int running;
} watchdog_t;

int watchdog_start(watchdog_t *w, cu_error_t *err);
/* The main thread enters a phase at `step` (steps done); ends the previous
 * one, whose length teaches the deadline what is normal for it. */
void watchdog_progress(watchdog_t *w, long step, wd_phase_t phase);
/* CLOCK_MONOTONIC in nanoseconds. */
long long watchdog_mono_ns(void);
void watchdog_stop(watchdog_t *w);

/* A rank that failed on its own (a bad token, a read error) while the
 * others may wait for it in a collective: writes ranks/error with its rank,
 * host and message for rank 0's watchdog to record, and waits up to wait_s
 * for state.json to show an end. The caller then aborts the job. */
int watchdog_report_error(const watchdog_t *w, const char *message, double wait_s);

#endif
