/*
 * Progress on a terminal: a one-line bar redrawn in place, with log lines
 * printed above it. When stdout is not a terminal (a file, Slurm's output)
 * the bar is silent and only the log lines appear, so logs stay readable.
 * CU_PROGRESS=0 or 1 in the environment overrides the terminal test (under
 * mpirun each rank writes to a pseudo-terminal whatever mpirun writes to).
 */
#ifndef CU_JOBS_PROGRESS_H
#define CU_JOBS_PROGRESS_H

#include <stdio.h>

typedef struct {
    long total;
    int enabled; /* this process prints at all */
    int tty;     /* draw the bar */
    double start;
    int drawn;
    FILE *log; /* also gets every log line (the run's train.log); may be NULL */
} progress_t;

void progress_init(progress_t *p, long total, int enabled);
/* Prints a log line (newline added) above the bar. */
void progress_log(progress_t *p, const char *line);
void progress_update(progress_t *p, long done, double loss, double tokens_per_s);
void progress_finish(progress_t *p);

#endif
