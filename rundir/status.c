/*
 * The status rules (see status.h). state.json is what codex-train last
 * wrote; Slurm knows what happened to the job from outside (a time limit,
 * a node failure, a cancel, a requeue); a local launcher's pid and the
 * writer's own pid say whether anything still runs. codexctl (status,
 * list, cancel) and codex-ita (job JSON, dashboard) both resolve through
 * rundir_status_resolve, so they never disagree.
 */
#include "rundir/status.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json_text.h"
#include "rundir/rundir.h"

int rundir_status_active(const char *status) {
    return !strcmp(status, "SUBMITTED") || !strcmp(status, "PENDING") ||
           !strcmp(status, "RUNNING") || !strcmp(status, "PREEMPTED");
}

int rundir_status_final(const char *status) {
    return !strcmp(status, "COMPLETED") || !strcmp(status, "FAILED") ||
           !strcmp(status, "CANCELLED") || !strcmp(status, "TIMEOUT");
}

int rundir_status_known(const char *status) {
    return rundir_status_active(status) || rundir_status_final(status) || !strcmp(status, "LOST");
}

int rundir_status_resumable(const char *status) {
    return rundir_status_known(status) && strcmp(status, "COMPLETED") != 0;
}

static void merge_running(const char *f, const slurm_job_info_t *s, char *status, size_t scap,
                          char *detail, size_t dcap) {
    if (!strcmp(s->status, "RUNNING") && rundir_status_final(f)) {
        /* codex-train wrote its end; the batch script is finishing */
        snprintf(status, scap, "%s", f);
        snprintf(detail, dcap, "the Slurm job is finishing");
    } else if (!strcmp(s->status, "RUNNING") && !strcmp(f, "PREEMPTED")) {
        snprintf(status, scap, "PREEMPTED");
        snprintf(detail, dcap, "checkpoint saved; being requeued or restarting");
    } else if (!strcmp(s->status, "PENDING")) {
        snprintf(status, scap, "PENDING");
        snprintf(detail, dcap, "%s%s%s",
                 !strcmp(f, "PREEMPTED") ? "requeued after a pre-emption, resumes from its "
                                           "checkpoint"
                                         : "queued",
                 s->reason[0] ? "; Slurm: " : "", s->reason);
    } else {
        snprintf(status, scap, "%s", s->status);
    }
}

void rundir_status_merge_slurm(const char *f, const slurm_job_info_t *s, char *status, size_t scap,
                               char *detail, size_t dcap) {
    detail[0] = '\0';
    if (!s->terminal) {
        merge_running(f, s, status, scap, detail, dcap);
        return;
    }
    if (!strcmp(f, "COMPLETED")) {
        snprintf(status, scap, "COMPLETED");
    } else if (!strcmp(s->status, "COMPLETED")) {
        /* the batch script ended normally but training did not finish */
        if (!strcmp(f, "FAILED") || !strcmp(f, "PREEMPTED") || !strcmp(f, "CANCELLED")) {
            snprintf(status, scap, "%s", f);
            if (!strcmp(f, "PREEMPTED"))
                snprintf(detail, dcap,
                         "checkpoint saved but the job was not requeued; submit it again to "
                         "resume");
        } else {
            snprintf(status, scap, "FAILED");
            snprintf(detail, dcap,
                     "the Slurm job ended but codex-train recorded no end; see its logs");
        }
    } else {
        snprintf(status, scap, "%s", s->status);
        if (s->reason[0] && strcmp(s->status, "CANCELLED"))
            snprintf(detail, dcap, "Slurm: %s %s", s->slurm_state, s->reason);
        else
            snprintf(detail, dcap, "Slurm: %s", s->slurm_state);
    }
}

/* The reason a job that may still run by its record does not, or NULL. */
static const char *lost_reason(const rundir_witness_t *w, int stale) {
    const char *f = w->file_status;
    if (!strcmp(f, "PREEMPTED")) return NULL; /* it recorded its own end */
    if (w->launcher == 1) return NULL;
    if (w->writer_gone && !strcmp(f, "RUNNING"))
        return "codex-train's rank 0 is gone without recording an end";
    if (w->has_slurm_id) {
        if (w->sched_asked)
            return stale ? "no scheduler knows the Slurm job and the heartbeat "
                           "stopped"
                         : NULL;
        return stale && !strcmp(f, "RUNNING")
                   ? "the heartbeat stopped and the scheduler has not been asked yet"
                   : NULL;
    }
    if (w->launcher == 0) return "the local launcher exited without recording an end";
    /* SUBMITTED and PENDING have no heartbeat to go stale: only a scheduler
     * that was asked, or a launcher that is gone, says they are lost */
    return stale && !strcmp(f, "RUNNING")
               ? "the heartbeat stopped and no scheduler or launcher knows the job"
               : NULL;
}

int rundir_status_resolve(const rundir_witness_t *w, char *status, size_t scap, char *detail,
                          size_t dcap) {
    const char *f = w->file_status;
    detail[0] = '\0';
    snprintf(status, scap, "%s", f);
    if (w->has_slurm_id && w->sched) {
        rundir_status_merge_slurm(f, w->sched, status, scap, detail, dcap);
        return 0;
    }
    if (!rundir_status_active(f)) return 0;
    int stale = !isnan(w->heartbeat_age_s) && w->heartbeat_age_s > w->lost_after_s;
    const char *why = lost_reason(w, stale);
    if (why) {
        snprintf(status, scap, "LOST");
        snprintf(detail, dcap, "%s", why);
        return 1;
    }
    if (stale && w->launcher == 1)
        snprintf(detail, dcap, "the heartbeat stopped but the launcher runs");
    return 0;
}

void rundir_status_reason(const char *status, const char *detail, const char *error_message,
                          char *out, size_t cap) {
    out[0] = '\0';
    if (detail && detail[0]) {
        snprintf(out, cap, "%s", detail);
    } else if (error_message && !strcmp(status, "FAILED")) {
        size_t n = strcspn(error_message, "\n");
        snprintf(out, cap, "%.*s", (int)n, error_message);
    }
}

/* state.json of dirfd parsed, or NULL with err set. */
static json_t *load_state_at(int dirfd, cu_error_t *err) {
    int fd = rundir_open_regular(dirfd, "state.json", O_RDONLY, 0);
    if (fd < 0) {
        cu_error_set(err, CU_EIO, "state.json: %s",
                     errno == EINVAL ? "not a regular file" : strerror(errno));
        return NULL;
    }
    json_error_t jerr;
    json_t *o = json_loadfd(fd, 0, &jerr);
    close(fd);
    if (!json_is_object(o)) {
        json_decref(o);
        cu_error_set(err, CU_EFORMAT, "state.json: %s", o ? "not an object" : jerr.text);
        return NULL;
    }
    return o;
}

static int record_status_locked(int dirfd, const char *status, const char *message,
                                cu_error_t *err) {
    json_t *o = load_state_at(dirfd, err);
    if (!o) return err ? err->code : CU_EIO;
    char now[40];
    rundir_time(rundir_now(), now, sizeof now);
    json_object_set_new(o, "status", json_string(status));
    if (!json_is_string(json_object_get(o, "finished_at")))
        json_object_set_new(o, "finished_at", json_string(now));
    json_object_set_new(o, "updated_at", json_string(now));
    if (message && !json_is_object(json_object_get(o, "error")))
        json_object_set_new(o, "error", json_pack("{s:s,s:n}", "message", message, "rank"));
    size_t n;
    char *line = json_text_line(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER, &n);
    json_decref(o);
    if (!line) return cu_error_set(err, CU_ENOMEM, "out of memory (state.json)");
    int rc = rundir_write_atomic_at(dirfd, "state.json", line, n, err);
    free(line);
    return rc;
}

int rundir_record_status_at(int dirfd, const char *status, const char *message, cu_error_t *err) {
    int lk = rundir_state_lock_at(dirfd);
    int rc = record_status_locked(dirfd, status, message, err);
    rundir_state_unlock(lk);
    return rc;
}

int rundir_update_state(rundir_t *d, const rundir_state_t *s, int *ended, cu_error_t *err) {
    *ended = 0;
    int dfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return cu_error_set(err, CU_EIO, "%s: %s", d->dir, strerror(errno));
    int lk = rundir_state_lock_at(dfd);
    json_t *o = load_state_at(dfd, NULL);
    const char *disk = o ? json_string_value(json_object_get(o, "status")) : NULL;
    *ended = disk && rundir_status_final(disk);
    json_decref(o);
    int rc = *ended ? CU_OK : rundir_write_state_at(dfd, s, err);
    rundir_state_unlock(lk);
    close(dfd);
    if (rc) cu_error_prefix(err, "%s", d->dir);
    return rc;
}

int rundir_record_status(const char *dir, const char *status, const char *message,
                         cu_error_t *err) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return cu_error_set(err, CU_EIO, "%s: %s", dir, strerror(errno));
    int rc = rundir_record_status_at(dfd, status, message, err);
    close(dfd);
    if (rc) cu_error_prefix(err, "%s", dir);
    return rc;
}

int rundir_record_failure(const char *dir, int rank, const char *message, int *recorded,
                          cu_error_t *err) {
    *recorded = 0;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return cu_error_set(err, CU_EIO, "%s: %s", dir, strerror(errno));
    int lk = rundir_state_lock_at(dfd);
    json_t *o = load_state_at(dfd, err);
    int rc = o ? CU_OK : (err ? err->code : CU_EIO);
    const char *st = o ? json_string_value(json_object_get(o, "status")) : NULL;
    if (rc == CU_OK && st && rundir_status_active(st) && strcmp(st, "PREEMPTED")) {
        char now[40];
        rundir_time(rundir_now(), now, sizeof now);
        json_object_set_new(o, "status", json_string("FAILED"));
        json_object_set_new(o, "finished_at", json_string(now));
        json_object_set_new(o, "updated_at", json_string(now));
        json_object_set_new(o, "error", json_pack("{s:s,s:i}", "message", message, "rank", rank));
        size_t n;
        char *line = json_text_line(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER, &n);
        rc = line ? rundir_write_atomic_at(dfd, "state.json", line, n, err)
                  : cu_error_set(err, CU_ENOMEM, "out of memory (state.json)");
        free(line);
        *recorded = rc == CU_OK;
    }
    json_decref(o);
    rundir_state_unlock(lk);
    close(dfd);
    return rc;
}
