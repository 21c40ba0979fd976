/*
 * The scheduler's view of one job. squeue knows the jobs slurmctld still
 * holds (pending, running, and finished ones for MinJobAge seconds, with
 * --states=all); sacct knows the rest when accounting is enabled. Both are
 * asked for an explicit, '|'-separated format without a header, so the
 * parsing does not depend on column widths or the user's SQUEUE_FORMAT.
 *
 * Slurm's states map onto ours (docs/formats.md): a requeued job is
 * PENDING again, NODE_FAIL/BOOT_FAIL/OUT_OF_MEMORY are FAILED with the
 * Slurm state as the reason, DEADLINE is a TIMEOUT.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slurm/slurm.h"

typedef struct {
    const char *slurm, *ours;
    int terminal;
} state_map_t;

static const state_map_t STATES[] = {
    {"PENDING", "PENDING", 0},      {"CONFIGURING", "PENDING", 0}, {"REQUEUED", "PENDING", 0},
    {"REQUEUE_HOLD", "PENDING", 0}, {"REQUEUE_FED", "PENDING", 0}, {"RESV_DEL_HOLD", "PENDING", 0},
    {"RUNNING", "RUNNING", 0},      {"COMPLETING", "RUNNING", 0},  {"SIGNALING", "RUNNING", 0},
    {"RESIZING", "RUNNING", 0},     {"STAGE_OUT", "RUNNING", 0},   {"SUSPENDED", "PREEMPTED", 0},
    {"STOPPED", "PREEMPTED", 0},    {"PREEMPTED", "PREEMPTED", 1}, {"COMPLETED", "COMPLETED", 1},
    {"FAILED", "FAILED", 1},        {"NODE_FAIL", "FAILED", 1},    {"BOOT_FAIL", "FAILED", 1},
    {"OUT_OF_MEMORY", "FAILED", 1}, {"SPECIAL_EXIT", "FAILED", 1}, {"CANCELLED", "CANCELLED", 1},
    {"REVOKED", "CANCELLED", 1},    {"TIMEOUT", "TIMEOUT", 1},     {"DEADLINE", "TIMEOUT", 1},
};

const char *slurm_map_state(const char *slurm_state, int *terminal) {
    char word[32];
    size_t n = 0;
    while (slurm_state[n] && !isspace((unsigned char)slurm_state[n]) && n + 1 < sizeof word) {
        word[n] = slurm_state[n];
        n++;
    }
    word[n] = '\0';
    for (size_t i = 0; i < sizeof STATES / sizeof STATES[0]; i++)
        if (!strcmp(word, STATES[i].slurm)) {
            if (terminal) *terminal = STATES[i].terminal;
            return STATES[i].ours;
        }
    if (terminal) *terminal = 0;
    return NULL;
}

/* Copies field k (0-based) of a '|'-separated line into out. */
static int field(const char *line, int k, char *out, size_t cap) {
    const char *p = line;
    for (int i = 0; i < k; i++) {
        p = strchr(p, '|');
        if (!p) return 0;
        p++;
    }
    size_t n = strcspn(p, "|\n");
    if (n >= cap) n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return 1;
}

/* Fills status/terminal/reason from slurm_state; the reason for FAILED
 * states other than FAILED itself is the Slurm state. */
static int finish_info(slurm_job_info_t *info, cu_error_t *err) {
    info->status = slurm_map_state(info->slurm_state, &info->terminal);
    if (!info->status)
        return cu_error_set(err, CU_EFORMAT, "unknown Slurm job state '%s'", info->slurm_state);
    char *sp = strchr(info->slurm_state, ' ');
    if (sp) *sp = '\0'; /* "CANCELLED by 0" */
    if (!strcmp(info->status, "FAILED") && strcmp(info->slurm_state, "FAILED"))
        snprintf(info->reason, sizeof info->reason, "%s", info->slurm_state);
    if (!strcmp(info->reason, "None")) info->reason[0] = '\0';
    return CU_OK;
}

int slurm_parse_squeue_line(const char *line, slurm_job_info_t *info, cu_error_t *err) {
    memset(info, 0, sizeof *info);
    if (!field(line, 0, info->id, sizeof info->id) || !info->id[0] ||
        !field(line, 1, info->slurm_state, sizeof info->slurm_state) ||
        !field(line, 2, info->reason, sizeof info->reason) ||
        !field(line, 3, info->nodes, sizeof info->nodes))
        return cu_error_set(err, CU_EFORMAT, "squeue printed '%.80s', not id|state|reason|nodes",
                            line);
    snprintf(info->source, sizeof info->source, "squeue");
    return finish_info(info, err);
}

int slurm_parse_sacct(const char *text, const char *id, slurm_job_info_t *info, int *found,
                      cu_error_t *err) {
    *found = 0;
    const char *line = text;
    while (line && *line) {
        char jid[64];
        if (field(line, 0, jid, sizeof jid) && !strcmp(jid, id)) {
            memset(info, 0, sizeof *info);
            snprintf(info->id, sizeof info->id, "%s", jid);
            if (!field(line, 1, info->slurm_state, sizeof info->slurm_state) ||
                !field(line, 2, info->exit_code, sizeof info->exit_code) ||
                !field(line, 3, info->nodes, sizeof info->nodes))
                return cu_error_set(err, CU_EFORMAT, "sacct printed '%.80s'", line);
            snprintf(info->source, sizeof info->source, "sacct");
            *found = 1;
            /* the last line of a job is its latest incarnation (requeues) */
        }
        line = strchr(line, '\n');
        if (line) line++;
    }
    return *found ? finish_info(info, err) : CU_OK;
}

static int query_squeue(const char *id, slurm_job_info_t *info, int *found, cu_error_t *err) {
    char jobs[96];
    snprintf(jobs, sizeof jobs, "--jobs=%s", id);
    const char *argv[] = {"squeue", "--noheader",           "--states=all",
                          jobs,     "--format=%i|%T|%r|%N", NULL};
    char *out = NULL;
    int status = 0;
    *found = 0;
    int rc = slurm_run(argv, &out, NULL, &status, err);
    if (rc != CU_OK) return rc;
    /* exit 1 with "Invalid job id": slurmctld no longer holds the job */
    if (status == 0) {
        slurm_job_info_t first;
        int have_first = 0;
        char *save = NULL;
        for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            slurm_job_info_t cur;
            if (slurm_parse_squeue_line(line, &cur, err) != CU_OK) {
                free(out);
                return err->code;
            }
            if (!have_first) first = cur, have_first = 1;
            if (!strcmp(cur.id, id)) {
                *info = cur;
                *found = 1;
                break;
            }
        }
        if (!*found && have_first) *info = first, *found = 1;
    }
    free(out);
    return CU_OK;
}

/* What sacct knows of the ids not yet found (found[i] == 0); silent when
 * there is no accounting storage or no sacct. timeout_s 0 waits for it. */
static void sacct_rest(const char *const ids[], size_t n, slurm_job_info_t *infos, int *found,
                       double timeout_s) {
    size_t cap = 16, len = 0, asked = 0;
    for (size_t i = 0; i < n; i++) cap += strlen(ids[i]) + 1;
    char *jobs = malloc(cap);
    if (!jobs) return;
    len = (size_t)snprintf(jobs, cap, "--jobs=");
    for (size_t i = 0; i < n; i++) {
        if (found[i]) continue;
        len += (size_t)snprintf(jobs + len, cap - len, "%s%s", asked ? "," : "", ids[i]);
        asked++;
    }
    if (asked == 0) {
        free(jobs);
        return;
    }
    const char *argv[] = {"sacct",       "--noheader",
                          "--parsable2", "--duplicates",
                          jobs,          "--format=JobID,State,ExitCode,NodeList",
                          NULL};
    char *out = NULL;
    int status = 0;
    cu_error_t ignored = {0};
    /* no accounting storage, or no sacct: the scheduler has nothing more to say */
    if (slurm_run_timeout(argv, timeout_s, &out, NULL, &status, &ignored) == CU_OK && status == 0)
        for (size_t i = 0; i < n; i++)
            if (!found[i] &&
                slurm_parse_sacct(out, ids[i], &infos[i], &found[i], &ignored) != CU_OK)
                found[i] = 0;
    free(out);
    free(jobs);
}

int slurm_id_valid(const char *s) {
    size_t n = strlen(s), digits = strspn(s, "0123456789");
    if (n == 0 || n >= 64 || digits == 0) return 0;
    if (digits == n) return 1;
    return s[digits] == '_' && s[digits + 1] &&
           strspn(s + digits + 1, "0123456789") == n - digits - 1;
}

int slurm_query(const char *id, slurm_job_info_t *info, int *found, cu_error_t *err) {
    if (!slurm_id_valid(id)) return cu_error_set(err, CU_EINVAL, "'%s' is not a Slurm job id", id);
    int rc = query_squeue(id, info, found, err);
    if (rc != CU_OK) return rc;
    if (!*found) sacct_rest(&id, 1, info, found, 0);
    return CU_OK;
}

/* ---- many jobs at once ---- */

/* "7" in "0-3,7" (a "%2" throttle suffix ends the list). */
static int in_ranges(const char *list, long v) {
    const char *p = list;
    while (*p && *p != ']' && *p != '%') {
        char *end;
        long lo = strtol(p, &end, 10), hi = lo;
        if (end == p) return 0;
        p = end;
        if (*p == '-') {
            hi = strtol(p + 1, &end, 10);
            if (end == p + 1) return 0;
            p = end;
        }
        if (v >= lo && v <= hi) return 1;
        if (*p == ',') p++;
    }
    return 0;
}

int slurm_array_matches(const char *line_id, const char *task) {
    if (!strcmp(line_id, task)) return 1;
    const char *u = strchr(task, '_');
    size_t base = u ? (size_t)(u - task) : 0;
    if (!u || strncmp(line_id, task, base) || line_id[base] != '_' || line_id[base + 1] != '[')
        return 0;
    char *end;
    long v = strtol(u + 1, &end, 10);
    return *end == '\0' && end != u + 1 && in_ranges(line_id + base + 2, v);
}

static int squeue_all(const char *const ids[], size_t n, slurm_job_info_t *infos, int *found,
                      double timeout_s, cu_error_t *err) {
    /* every job, one line per array task (--array), whatever its state */
    const char *argv[] = {"squeue",       "--noheader",           "--array",
                          "--states=all", "--format=%i|%T|%r|%N", NULL};
    char *out = NULL, *etext = NULL;
    int status = 0;
    int rc = slurm_run_timeout(argv, timeout_s, &out, &etext, &status, err);
    if (rc != CU_OK) return rc;
    if (status != 0) {
        size_t l = strlen(etext);
        while (l && (etext[l - 1] == '\n' || etext[l - 1] == ' ')) etext[--l] = '\0';
        rc = cu_error_set(err, CU_EIO, "squeue failed (exit %d): %.200s", status,
                          etext[0] ? etext : "no message");
        free(out);
        free(etext);
        return rc;
    }
    free(etext);
    char *save = NULL;
    for (char *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        slurm_job_info_t cur;
        cu_error_t lerr = {0};
        if (slurm_parse_squeue_line(line, &cur, &lerr) != CU_OK)
            continue; /* a state we do not know */
        for (size_t i = 0; i < n; i++) {
            if (found[i] == 1 && !strcmp(infos[i].id, ids[i])) continue; /* exact line seen */
            if (!slurm_array_matches(cur.id, ids[i])) continue;
            infos[i] = cur;
            found[i] = 1;
        }
    }
    free(out);
    return CU_OK;
}

int slurm_query_many(const char *const ids[], size_t n, slurm_job_info_t *infos, int *found,
                     double timeout_s, cu_error_t *err) {
    for (size_t i = 0; i < n; i++) {
        found[i] = 0;
        memset(&infos[i], 0, sizeof infos[i]);
        if (!slurm_id_valid(ids[i]))
            return cu_error_set(err, CU_EINVAL, "'%s' is not a Slurm job id", ids[i]);
    }
    if (n == 0) return CU_OK;
    int rc = squeue_all(ids, n, infos, found, timeout_s, err);
    if (rc != CU_OK) return rc;
    sacct_rest(ids, n, infos, found, timeout_s);
    return CU_OK;
}
