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
 * events.jsonl before the launcher's SIGKILL arrives. The thread never calls
 * MPI.
 */
#ifndef CU_JOBS_WATCHDOG_H
#define CU_JOBS_WATCHDOG_H

#include <pthread.h>
#include <signal.h>

#include "rundir/rundir.h"

typedef struct {
    /* set by the caller before watchdog_start */
    char ranks_dir[4200];
    char run_dir[4096];
    int rank, size;
    const volatile sig_atomic_t *stop; /* the stop request flag, may be NULL */
    double stale_s;                    /* a peer silent this long is dead */
    /* rank 0: the job directory and its state, shared with the main thread */
    rundir_t *jd;
    rundir_state_t *st;
    pthread_mutex_t *lock; /* guards st and state.json writes */
    volatile int *step_busy;
    volatile double *step_started;
    volatile int *failed; /* set by the watchdog when it recorded FAILED */
    /* set by the main thread when the training loop has ended: ranks then
     * leave at their own pace, and a peer that exited is no failure */
    volatile int peers_done;
    /* internal */
    double started; /* when this incarnation's watchdog started (Unix s) */
    pthread_t thread;
    volatile int quit;
    int running;
} watchdog_t;

int watchdog_start(watchdog_t *w, cu_error_t *err);
void watchdog_stop(watchdog_t *w);

/* A rank that failed on its own (a bad token, a read error) while the
 * others may wait for it in a collective: writes ranks/error with its rank,
 * host and message for rank 0's watchdog to record, and waits up to wait_s
 * for state.json to show an end. The caller then aborts the job. */
int watchdog_report_error(const watchdog_t *w, const char *message, double wait_s);

#endif
