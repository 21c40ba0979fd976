/*
 * The few writes codex-ita makes to a job directory: a submitted job's
 * first files (POST /v1/jobs), a cancel's CANCELLED (POST
 * /v1/jobs/{id}/cancel and the scheduler thread that finishes it), and an
 * event line naming who asked. Every file is reached through
 * ita_jobdir_openat (beneath the runs directory, no symlink out of it);
 * state.json is replaced atomically, events are appended with one write,
 * as codex-train does (docs/formats.md).
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
    char tmp[128];
    /* per thread: a worker and the scheduler thread may both write a job */
    snprintf(tmp, sizeof tmp, ".%s.ita.%ld.tmp", name, (long)syscall(SYS_gettid));
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    int ok = fd >= 0;
    for (size_t done = 0; ok && done < len;) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        ok = w > 0;
        if (ok) done += (size_t)w;
    }
    if (fd >= 0) ok = (fsync(fd) == 0) & (close(fd) == 0) & ok;
    ok = ok && renameat(dfd, tmp, dfd, name) == 0;
    int rc =
        ok ? CU_OK
           : cu_error_set(err, CU_EIO, "job '%s': cannot write %s: %s", id, name, strerror(errno));
    if (!ok) unlinkat(dfd, tmp, 0);
    close(dfd);
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
    const json_t *state;
    int rc = ita_jobdir_state(jd, id, NULL, &state, err);
    if (rc) return rc;
    json_t *o = json_deep_copy(state);
    char now[32];
    ita_time_now_rfc3339(now);
    json_object_set_new(o, "status", json_string(status));
    if (!json_is_string(json_object_get(o, "finished_at")))
        json_object_set_new(o, "finished_at", json_string(now));
    json_object_set_new(o, "updated_at", json_string(now));
    if (message && !json_is_object(json_object_get(o, "error")))
        json_object_set_new(o, "error", json_pack("{s:s}", "message", message));
    size_t n;
    char *line = json_text_line(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER, &n);
    json_decref(o);
    if (!line) return cu_error_set(err, CU_ENOMEM, "out of memory");
    rc = ita_jobdir_write_file(jd, id, "state.json", line, n, err);
    free(line);
    return rc;
}
