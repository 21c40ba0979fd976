/*
 * Terminal progress bar (see progress.h).
 */
#include "jobs/progress.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/timer.h"

void progress_init(progress_t *p, long total, int enabled) {
    p->total = total > 0 ? total : 1;
    p->enabled = enabled;
    /* CU_PROGRESS=0/1 overrides the guess: under mpirun every rank's stdout
     * is a pseudo-terminal even when mpirun's own output is a file */
    const char *force = getenv("CU_PROGRESS");
    p->tty = enabled && (force && *force ? strcmp(force, "0") != 0 : isatty(STDOUT_FILENO));
    p->start = cu_now();
    p->drawn = 0;
}

static void clear_bar(progress_t *p) {
    if (p->drawn) fputs("\r\033[K", stdout);
    p->drawn = 0;
}

void progress_log(progress_t *p, const char *line) {
    if (!p->enabled) return;
    clear_bar(p);
    puts(line);
    fflush(stdout);
    if (p->log) {
        fprintf(p->log, "%s\n", line);
        fflush(p->log);
    }
}

void progress_update(progress_t *p, long done, double loss, double tokens_per_s) {
    if (!p->tty) return;
    const int width = 30;
    int filled = (int)((double)done / (double)p->total * width);
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    double elapsed = cu_now() - p->start;
    double eta = done > 0 ? elapsed / (double)done * (double)(p->total - done) : 0.0;
    clear_bar(p);
    printf("[%s] %ld/%ld loss %.4f %.0f tok/s eta %.0fs", bar, done, p->total, loss, tokens_per_s,
           eta);
    fflush(stdout);
    p->drawn = 1;
}

void progress_finish(progress_t *p) {
    if (!p->tty) return;
    clear_bar(p);
    fflush(stdout);
}
