/*
 * One status from two witnesses. state.json is what codex-train last
 * wrote; Slurm knows what happened to the job from outside (a time limit,
 * a node failure, a cancel, a requeue). The file is trusted while the job
 * runs and for a training that completed; Slurm for how a job ended
 * otherwise. codexctl (status, list) and codex-ita both use this, so they
 * never disagree.
 */
#include <stdio.h>
#include <string.h>

#include "slurm/slurm.h"

int slurm_status_active(const char *status) {
    return !strcmp(status, "SUBMITTED") || !strcmp(status, "PENDING") ||
           !strcmp(status, "RUNNING") || !strcmp(status, "PREEMPTED");
}

int slurm_status_final(const char *status) {
    return !strcmp(status, "COMPLETED") || !strcmp(status, "FAILED") ||
           !strcmp(status, "CANCELLED") || !strcmp(status, "TIMEOUT");
}

void slurm_merge_status(const char *f, const slurm_job_info_t *s, char *status, size_t scap,
                        char *detail, size_t dcap) {
    detail[0] = '\0';
    if (!s->terminal) {
        if (!strcmp(s->status, "RUNNING") && slurm_status_final(f)) {
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
