/*
 * Counters are indexed by (route, status slot): the statuses codex-ita
 * answers are few and known, and any other lands in a last "other" slot, so
 * the series count is fixed and small whatever clients send.
 */
#include "ita/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rundir/status.h"

static const int STATUSES[ITA_STATUS_SLOTS - 1] = {200, 201, 202, 304, 400, 401, 403, 404, 405,
                                                   406, 409, 413, 414, 429, 431, 500, 502, 503};
static const double BOUNDS[ITA_LATENCY_BUCKETS - 1] = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0};

static const char *ROUTE_LABELS[ITA_ROUTE_COUNT] = {
    "/healthz",
    "/v1/jobs",
    "/v1/jobs/{id}",
    "/v1/jobs/{id}/metrics",
    "/v1/jobs/{id}/events",
    "/v1/jobs/{id}/checkpoints",
    "/metrics",
    "/v1/keys",
    "/",
    "/v1/hygiene/scan",
    "/v1/tests/run",
    "POST /v1/jobs",
    "POST /v1/jobs/{id}/cancel",
    "/openapi.json",
    "/mcp",
    "/v1/kb/search",
    "/v1/repos/{name}/pulls",
    "/v1/jobs/{id}/config",
    "other",
};

const char *ita_route_label(ita_route_t r) {
    return r < ITA_ROUTE_COUNT ? ROUTE_LABELS[r] : "other";
}

static int status_slot(int status) {
    for (int i = 0; i < ITA_STATUS_SLOTS - 1; i++)
        if (STATUSES[i] == status) return i;
    return ITA_STATUS_SLOTS - 1;
}

/* Single writer: a relaxed load and store is enough and costs a plain move. */
static void bump(_Atomic uint64_t *c, uint64_t by) {
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by,
                          memory_order_relaxed);
}

void ita_metrics_observe(ita_metrics_t *m, ita_route_t route, int status, double seconds) {
    if (route >= ITA_ROUTE_COUNT) route = ITA_ROUTE_OTHER;
    int s = status_slot(status);
    int b = 0;
    while (b < ITA_LATENCY_BUCKETS - 1 && seconds > BOUNDS[b]) b++;
    bump(&m->count[route][s], 1);
    bump(&m->sum_ns[route][s], (uint64_t)(seconds * 1e9));
    bump(&m->bucket[route][s][b], 1);
}

typedef struct {
    char *buf;
    size_t len, cap;
    int failed;
} sbuf_t;

__attribute__((format(printf, 2, 3))) static void emit(sbuf_t *s, const char *fmt, ...) {
    if (s->failed) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            s->failed = 1;
            return;
        }
        if ((size_t)n < s->cap - s->len) {
            s->len += (size_t)n;
            return;
        }
        size_t cap = s->cap * 2 + (size_t)n;
        char *g = realloc(s->buf, cap);
        if (!g) {
            s->failed = 1;
            return;
        }
        s->buf = g;
        s->cap = cap;
    }
}

static uint64_t load(const _Atomic uint64_t *c) {
    return atomic_load_explicit(c, memory_order_relaxed);
}

static void status_label(int slot, char out[8]) {
    if (slot == ITA_STATUS_SLOTS - 1)
        snprintf(out, 8, "other");
    else
        snprintf(out, 8, "%d", STATUSES[slot]);
}

static void render_requests(sbuf_t *s, ita_metrics_t *const *w, size_t n) {
    emit(s, "# HELP codex_ita_requests_total HTTP requests answered, by route and status.\n"
            "# TYPE codex_ita_requests_total counter\n");
    for (int r = 0; r < ITA_ROUTE_COUNT; r++)
        for (int k = 0; k < ITA_STATUS_SLOTS; k++) {
            uint64_t c = 0;
            for (size_t i = 0; i < n; i++) c += load(&w[i]->count[r][k]);
            char st[8];
            status_label(k, st);
            if (c)
                emit(s, "codex_ita_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                     ROUTE_LABELS[r], st, (unsigned long long)c);
        }
    emit(s, "# HELP codex_ita_request_duration_seconds Time from request to response.\n"
            "# TYPE codex_ita_request_duration_seconds histogram\n");
    for (int r = 0; r < ITA_ROUTE_COUNT; r++)
        for (int k = 0; k < ITA_STATUS_SLOTS; k++) {
            uint64_t total = 0, sum = 0, cum = 0;
            for (size_t i = 0; i < n; i++) {
                total += load(&w[i]->count[r][k]);
                sum += load(&w[i]->sum_ns[r][k]);
            }
            if (!total) continue;
            char st[8];
            status_label(k, st);
            for (int b = 0; b < ITA_LATENCY_BUCKETS; b++) {
                for (size_t i = 0; i < n; i++) cum += load(&w[i]->bucket[r][k][b]);
                char le[16];
                if (b == ITA_LATENCY_BUCKETS - 1)
                    snprintf(le, sizeof le, "+Inf");
                else
                    snprintf(le, sizeof le, "%g", BOUNDS[b]);
                emit(s,
                     "codex_ita_request_duration_seconds_bucket{route=\"%s\",status=\"%s\","
                     "le=\"%s\"} %llu\n",
                     ROUTE_LABELS[r], st, le, (unsigned long long)cum);
            }
            emit(s,
                 "codex_ita_request_duration_seconds_sum{route=\"%s\",status=\"%s\"} %.9f\n"
                 "codex_ita_request_duration_seconds_count{route=\"%s\",status=\"%s\"} %llu\n",
                 ROUTE_LABELS[r], st, (double)sum * 1e-9, ROUTE_LABELS[r], st,
                 (unsigned long long)total);
        }
    uint64_t af = 0;
    for (size_t i = 0; i < n; i++) af += load(&w[i]->audit_failures);
    emit(s,
         "# HELP codex_ita_audit_write_failures_total Audit lines that could not be written.\n"
         "# TYPE codex_ita_audit_write_failures_total counter\n"
         "codex_ita_audit_write_failures_total %llu\n",
         (unsigned long long)af);
}

static void gauge(sbuf_t *s, const char *name, const char *id, double v) {
    if (isnan(v)) return;
    emit(s, "%s{job=\"%s\"} %.9g\n", name, id, v);
}

/* The scheduler's word for the job: Slurm's state when the view knows it,
 * "unknown" for a Slurm job it does not (or not yet), "local" without one. */
static const char *scheduler_state(const ita_job_summary_t *j) {
    if (!j->slurm_job_id[0]) return "local";
    if (j->sched && j->sched->known && j->sched->info.slurm_state[0])
        return j->sched->info.slurm_state;
    return "unknown";
}

/* Slurm state words are upper-case letters and '_'; anything else would
 * need escaping in a label, so it is reported as "unknown". */
static int label_safe(const char *v) {
    for (; *v; v++)
        if (!((*v >= 'A' && *v <= 'Z') || (*v >= 'a' && *v <= 'z') || (*v >= '0' && *v <= '9') ||
              *v == '_' || *v == '-' || *v == '.' || *v == '+' || *v == ' '))
            return 0;
    return 1;
}

typedef struct {
    const char *name, *help;
    size_t offset; /* of the double in ita_job_summary_t */
    int active_only;
} job_gauge_t;

#define JOB_GAUGE(name, field, help, active)                                                       \
    { name, help, offsetof(ita_job_summary_t, field), active }

static const job_gauge_t JOB_GAUGES[] = {
    JOB_GAUGE("codex_job_loss", loss, "Training loss of the last step.", 0),
    JOB_GAUGE("codex_job_val_loss", val_loss, "Validation loss of the last evaluation.", 0),
    JOB_GAUGE("codex_job_best_val_loss", best_val_loss, "Best validation loss so far.", 0),
    JOB_GAUGE("codex_job_learning_rate", lr, "Learning rate of the last step.", 0),
    JOB_GAUGE("codex_job_tokens_per_second", tokens_per_s, "Training throughput of the last step.",
              0),
    JOB_GAUGE("codex_job_progress", progress, "Fraction of max_steps completed.", 0),
    JOB_GAUGE("codex_job_eta_seconds", eta_s,
              "Estimated seconds until max_steps (running jobs; 0 once completed).", 0),
    JOB_GAUGE("codex_job_heartbeat_age_seconds", heartbeat_age_s,
              "Seconds since state.json's updated_at, for active and LOST jobs only.", 1),
};

static int job_active(const ita_job_summary_t *j) {
    return rundir_status_active(j->status) || !strcmp(j->status, "LOST");
}

static void render_jobs(sbuf_t *s, ita_jobdir_t *jd) {
    static const char *statuses[] = {"SUBMITTED", "PENDING",   "RUNNING", "PREEMPTED", "COMPLETED",
                                     "FAILED",    "CANCELLED", "TIMEOUT", "LOST"};
    ita_job_summary_t *jobs = NULL;
    size_t n = 0;
    cu_error_t err;
    if (ita_jobdir_list(jd, &jobs, &n, &err)) return;
    emit(s, "# HELP codex_jobs Jobs in the runs directory, by status.\n"
            "# TYPE codex_jobs gauge\n");
    for (size_t k = 0; k < sizeof statuses / sizeof statuses[0]; k++) {
        size_t c = 0;
        for (size_t i = 0; i < n; i++) c += !strcmp(jobs[i].status, statuses[k]);
        emit(s, "codex_jobs{status=\"%s\"} %zu\n", statuses[k], c);
    }
    /* Job ids are [A-Za-z0-9._-] (checked when listed): no label escaping. */
    emit(s, "# HELP codex_job_info A job's status and its scheduler's state (always 1).\n"
            "# TYPE codex_job_info gauge\n");
    for (size_t i = 0; i < n; i++) {
        const char *sched = scheduler_state(&jobs[i]);
        emit(s, "codex_job_info{job=\"%s\",status=\"%s\",scheduler_state=\"%s\"} 1\n", jobs[i].id,
             jobs[i].status, label_safe(sched) ? sched : "unknown");
    }
    emit(s, "# HELP codex_job_step Optimizer steps completed.\n# TYPE codex_job_step gauge\n");
    for (size_t i = 0; i < n; i++) gauge(s, "codex_job_step", jobs[i].id, (double)jobs[i].step);
    for (size_t g = 0; g < sizeof JOB_GAUGES / sizeof JOB_GAUGES[0]; g++) {
        const job_gauge_t *jg = &JOB_GAUGES[g];
        emit(s, "# HELP %s %s\n# TYPE %s gauge\n", jg->name, jg->help, jg->name);
        for (size_t i = 0; i < n; i++) {
            if (jg->active_only && !job_active(&jobs[i])) continue;
            double v;
            memcpy(&v, (const char *)&jobs[i] + jg->offset, sizeof v);
            gauge(s, jg->name, jobs[i].id, v);
        }
    }
    free(jobs);
}

char *ita_metrics_render(ita_metrics_t *const *workers, size_t n, ita_jobdir_t *jd, size_t *len) {
    sbuf_t s = {malloc(16384), 0, 16384, 0};
    if (!s.buf) return NULL;
    render_requests(&s, workers, n);
    render_jobs(&s, jd);
    if (s.failed) {
        free(s.buf);
        return NULL;
    }
    *len = s.len;
    return s.buf;
}
