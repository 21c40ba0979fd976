/*
 * The few writes codex-ita makes to a job directory: a submitted job's
 * first files (POST /v1/jobs), a cancel's CANCELLED (POST
 * /v1/jobs/{id}/cancel and the scheduler thread that finishes it), and an
 * event line naming who asked. Every file is reached through
 * ita_jobdir_openat (beneath the runs directory, no symlink out of it),
 * then written by rundir/ (state.json replaced atomically, the same
 * record codex-train and codexctl write); events are appended with one
 * write (docs/formats.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "io/json_text.h"
#include "ita/jobdir.h"
#include "ita/trace.h"
#include "rundir/rundir.h"
#include "rundir/status.h"

int ita_jobdir_launcher_alive(ita_jobdir_t *jd, const char *id) {
    int fd = ita_jobdir_openat(jd, id, "launcher.pid", O_RDONLY);
    if (fd < 0) return -1;
    char buf[32];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return 0;
    buf[n] = 0;
    long pid = strtol(buf, NULL, 10);
    return pid > 1 && (kill((pid_t)pid, 0) == 0 || errno == EPERM);
}

int ita_jobdir_write_file(ita_jobdir_t *jd, const char *id, const char *name, const char *text,
                          size_t len, cu_error_t *err) {
    int dfd = ita_jobdir_openat(jd, id, "", O_RDONLY | O_DIRECTORY);
    if (dfd < 0) return cu_error_set(err, CU_EIO, "job '%s': %s", id, strerror(errno));
    int rc = rundir_write_atomic_at(dfd, name, text, len, err);
    close(dfd);
    if (rc) cu_error_prefix(err, "job '%s'", id);
    return rc;
}

int ita_jobdir_append_line(ita_jobdir_t *jd, const char *id, const char *name, const char *line,
                           cu_error_t *err) {
    char rel[128];
    snprintf(rel, sizeof rel, "%s", name);
    int fd = ita_jobdir_openat(jd, id, rel, O_WRONLY | O_APPEND | O_CREAT);
    if (fd < 0) return cu_error_set(err, CU_EIO, "job '%s': %s: %s", id, name, strerror(errno));
    size_t n = strlen(line);
    char *buf = malloc(n + 1);
    int ok = buf != NULL;
    if (ok) {
        memcpy(buf, line, n);
        buf[n] = '\n';
        ok = write(fd, buf, n + 1) == (ssize_t)(n + 1); /* one write: a reader sees all or none */
    }
    free(buf);
    close(fd);
    return ok ? CU_OK : cu_error_set(err, CU_EIO, "job '%s': cannot append to %s", id, name);
}

int ita_jobdir_record_status(ita_jobdir_t *jd, const char *id, const char *status,
                             const char *message, cu_error_t *err) {
    int dfd = ita_jobdir_openat(jd, id, "", O_RDONLY | O_DIRECTORY);
    if (dfd < 0) return cu_error_set(err, CU_EIO, "job '%s': %s", id, strerror(errno));
    int rc = rundir_record_status_at(dfd, status, message, err);
    close(dfd);
    if (rc) cu_error_prefix(err, "job '%s'", id);
    return rc;
}
