/*
 * Prometheus metrics. Each worker thread counts its own requests in an
 * ita_metrics_t (single writer, relaxed atomics, no locks on the request
 * path); a scrape sums the workers' counters and adds gauges read from the
 * runs directory: jobs by status and, per job, an info series (status and
 * scheduler state as labels), step, loss, validation loss (last and best),
 * learning rate, tokens/s, progress, ETA, and the heartbeat's age while a
 * job is active or LOST. Text exposition format 0.0.4.
 */
#ifndef CU_ITA_METRICS_H
#define CU_ITA_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "ita/jobdir.h"

typedef enum {
    ITA_ROUTE_HEALTHZ = 0,
    ITA_ROUTE_JOBS,
    ITA_ROUTE_JOB,
    ITA_ROUTE_JOB_METRICS,
    ITA_ROUTE_JOB_EVENTS,
    ITA_ROUTE_JOB_CHECKPOINTS,
    ITA_ROUTE_PROMETHEUS,
    ITA_ROUTE_KEYS,
    ITA_ROUTE_DASHBOARD,
    ITA_ROUTE_HYGIENE_SCAN,
    ITA_ROUTE_TESTS_RUN,
    ITA_ROUTE_JOB_SUBMIT,
    ITA_ROUTE_JOB_CANCEL,
    ITA_ROUTE_OPENAPI,
    ITA_ROUTE_MCP,
    ITA_ROUTE_KB_SEARCH,
    ITA_ROUTE_REPO_PULLS,
    ITA_ROUTE_JOB_CONFIG,
    ITA_ROUTE_OTHER,
    ITA_ROUTE_COUNT
} ita_route_t;

#define ITA_STATUS_SLOTS 19    /* 18 known statuses and "other" */
#define ITA_LATENCY_BUCKETS 14 /* the last is +Inf */

typedef struct {
    _Atomic uint64_t count[ITA_ROUTE_COUNT][ITA_STATUS_SLOTS];
    _Atomic uint64_t sum_ns[ITA_ROUTE_COUNT][ITA_STATUS_SLOTS];
    _Atomic uint64_t bucket[ITA_ROUTE_COUNT][ITA_STATUS_SLOTS][ITA_LATENCY_BUCKETS];
    _Atomic uint64_t audit_failures;
} ita_metrics_t;

/* The route's label ("/v1/jobs/{id}"). */
const char *ita_route_label(ita_route_t r);

/* Counts one request; called only by the thread owning m. */
void ita_metrics_observe(ita_metrics_t *m, ita_route_t route, int status, double seconds);

/* Renders the exposition text: request counters and histograms summed over
 * the n workers' metrics, then job gauges from jd. Returns a malloc'd
 * string (caller frees) of *len bytes, or NULL when out of memory. */
char *ita_metrics_render(ita_metrics_t *const *workers, size_t n, ita_jobdir_t *jd, size_t *len);

#endif
