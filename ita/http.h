/*
 * What the server core shares with the route files: the per-thread worker,
 * the per-request context, and the helpers that answer (every answer goes
 * through ita_respond, which adds X-Request-Id, writes the audit line and
 * counts the request for /metrics).
 */
#ifndef CU_ITA_HTTP_H
#define CU_ITA_HTTP_H

#include <h2o.h>
#include <jansson.h>
#include <stdatomic.h>

#include "ita/audit.h"
#include "ita/auth.h"
#include "ita/config.h"
#include "ita/guard.h"
#include "ita/jobdir.h"
#include "ita/keys.h"
#include "ita/metrics.h"
#include "ita/pool.h"
#include "ita/sched.h"
#include "ita/trace.h"
#include "safety/safety.h"

typedef struct ita_server ita_server_t;

typedef struct {
    char name[128];
    const char *type;
    char *body;
    size_t len;
} ita_static_file_t;

typedef struct {
    h2o_context_t ctx; /* first: h2o hands handlers &ctx */
    ita_server_t *srv;
    int index;
    pthread_t tid;
    h2o_evloop_t *loop;
    int listen_fd;
    h2o_socket_t *listener;
    h2o_accept_ctx_t accept_ctx;
    ita_jobdir_t *jobs;
    ita_keycache_t keys;
    ita_metrics_t *metrics;
    safety_engine_t *safety; /* this thread's compiled scanner for /v1/hygiene/scan */
    uint64_t id_counter;
    h2o_timeout_t sse_timeout;
    h2o_linklist_t streams; /* open event streams, ended at shutdown */
    int n_streams;
    int n_conns;                  /* open connections (bounded by max_connections) */
    int accept_paused;            /* the listener is not read while at the bound */
    h2o_timeout_t accept_backoff; /* after EMFILE/ENFILE: accept again later */
    h2o_timeout_entry_t accept_retry;
    int disposed;           /* the h2o context and loop were released */
    ita_sched_view_t *view; /* this thread's snapshot of the scheduler view */
    unsigned long view_gen;
    h2o_multithread_queue_t *mq; /* pool results come back through it */
    h2o_multithread_receiver_t pool_back;
    int pool_out;                /* this loop's jobs in the pool (the loop outlives them) */
    h2o_linklist_t conns;        /* guard.c's records, oldest first */
    int n_dying;                 /* shut down, not yet closed by h2o */
    h2o_timeout_t guard_timeout; /* the guard's sweep */
    h2o_timeout_entry_t guard_entry;
    atomic_ulong n_evicted;      /* connections closed to make room */
    atomic_ulong n_rate_closed;  /* HTTP/2 connections past the stream rate */
    atomic_ulong n_rate_refused; /* HTTP/2 streams refused past the rate */
    atomic_ulong n_timed_out;    /* closed by the header or write timeout */
} ita_worker_t;

struct ita_server {
    ita_config_t cfg;
    h2o_globalconf_t globalconf;
    SSL_CTX *ssl;
    ita_audit_t audit;
    ita_ratelimit_t ratelimit;
    ita_static_file_t *www;
    size_t n_www;
    ita_worker_t *workers;
    int n_workers;
    int port;
    atomic_int stop;
    FILE *errlog;
    pthread_mutex_t errlog_mu;
    pthread_mutex_t sandbox_mu; /* one sandboxed test run at a time (it forks) */
    ita_sched_t *sched;         /* the scheduler view's refresh thread */
    pthread_mutex_t submit_mu;  /* one submission at a time (sbatch, run directories) */
    ita_pool_t *pool;           /* blocking work: scans, test runs, sbatch, git, MCP tools */
};

typedef struct {
    h2o_req_t *req;
    ita_worker_t *w;
    ita_route_t route;
    double t0;
    char request_id[ITA_REQUEST_ID_MAX + 1];
    char key_name[ITA_KEY_NAME_MAX + 1]; /* "" when none */
    char key_id[24];                     /* the key's public id, "" when none */
    int key_scope;                       /* its scope, ITA_SCOPE_NONE when none */
    const char *action, *launched;       /* for the audit line of submit/cancel */
    char job[ITA_JOB_ID_MAX + 1];        /* the {id} of job routes */
    char file[64];                       /* the dashboard file asked for */
    const char *query;                   /* after '?', or NULL */
    size_t query_len;
} ita_req_t;

/* Answers with body (copied) and the usual headers; audits and counts. */
void ita_respond(ita_req_t *rq, int status, const char *content_type, const char *body, size_t len);

/* Answers with a problem document. */
void ita_problem(ita_req_t *rq, int status, const char *detail);

/* Answers 200 with a JSON document (stolen reference). */
void ita_respond_json(ita_req_t *rq, json_t *doc);

/* Adds a response header (value copied into the request's pool). */
void ita_add_header(ita_req_t *rq, const char *name, const char *value);

/* Writes the audit line and counts the request (ita_respond does this;
 * streaming answers call it themselves when they start). */
void ita_finish(ita_req_t *rq, int status);

/* Error log line (thread-safe). */
void ita_log(ita_server_t *srv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The query parameter name, percent-decoded into out. Returns 1 when
 * present, 0 when absent, -1 when malformed or longer than cap - 1. */
int ita_query_param(const ita_req_t *rq, const char *name, char *out, size_t cap);

/* The value of request header name (lower case), or NULL. */
const h2o_iovec_t *ita_header(const ita_req_t *rq, const char *name);

/* Hands rq's work to the worker pool (j calloc'd, run/in/free_in set; owned
 * by the pool from here): its answer is sent when it is done, or 503 with
 * Retry-After now when the pool is full. */
void ita_offload(ita_req_t *rq, ita_pool_job_t *j);

/* A pool job and its input for rq: the route's input struct of size bytes,
 * zeroed, whose flexible array at offset body_at receives a copy of body
 * (len bytes and a NUL; len 0: none); j->in is it and j->free_in free().
 * NULL after answering 500 when out of memory. */
ita_pool_job_t *ita_offload_job(ita_req_t *rq, size_t size, size_t body_at, const char *body,
                                size_t len);

/* The same without the answer when the pool is full: 0 when admitted,
 * -1 when refused (j is still the caller's to answer for and free). */
int ita_offload_try(ita_req_t *rq, ita_pool_job_t *j);

/* On a pool thread: a job directory reader of the job's own over the
 * service's runs directory, with the newest scheduler view (the loop's
 * reader is its thread's alone). Allocates; ita_offload_jobs_close. */
int ita_offload_jobs_open(ita_server_t *srv, ita_jobdir_t **jobs, ita_sched_view_t **view,
                          cu_error_t *err);
void ita_offload_jobs_close(ita_jobdir_t *jobs, ita_sched_view_t *view);

/* A connection of w closed (guard.c): resumes accepting if it paused. */
void ita_server_conn_closed(ita_worker_t *w);

/* The loop's receiver of finished pool jobs. */
void ita_offload_done(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages);

/* Routes (routes_*.c, sse.c, static.c). */
void ita_route_healthz(ita_req_t *rq);
void ita_route_jobs(ita_req_t *rq);
void ita_route_job(ita_req_t *rq);
void ita_route_job_metrics(ita_req_t *rq);
void ita_route_job_events(ita_req_t *rq);
void ita_route_job_checkpoints(ita_req_t *rq);
void ita_route_job_config(ita_req_t *rq);
void ita_route_prometheus(ita_req_t *rq);
void ita_route_keys(ita_req_t *rq);
void ita_route_hygiene_scan(ita_req_t *rq);
void ita_route_tests_run(ita_req_t *rq);
void ita_route_job_submit(ita_req_t *rq);
void ita_route_job_cancel(ita_req_t *rq);
void ita_route_static(ita_req_t *rq, const char *name);
void ita_route_openapi(ita_req_t *rq);
void ita_route_mcp(ita_req_t *rq);
void ita_route_kb_search(ita_req_t *rq);
void ita_route_repo_pulls(ita_req_t *rq);

/* Runs an allowlisted test command in the sandbox for a request document
 * {command, files, stdin} (routes_tests.c; POST /v1/tests/run and the MCP
 * tool): *out is the result (new reference). CU_EINVAL for a malformed
 * document, ITA_ENOTALLOWED for a command not in test_commands. */
#define ITA_ENOTALLOWED 102
int ita_tests_run(const ita_config_t *cfg, pthread_mutex_t *sandbox_mu, json_t *doc, json_t **out,
                  cu_error_t *err);

/* The service's sandbox options (routes_tests.c): the config's sandbox.*
 * keys; the service's own files (keys, logs, TLS, tokens, runs) hidden
 * inside; read-only inside: the absolute paths among o->argv's words (the
 * configured command's own scripts) and extra_ro (NULL-terminated or NULL).
 * hide holds ITA_SANDBOX_HIDE entries, ro ITA_SANDBOX_RO. */
#define ITA_SANDBOX_HIDE 10
#define ITA_SANDBOX_RO 40
struct sandbox_opts;
void ita_sandbox_opts(const ita_config_t *cfg, struct sandbox_opts *o, const char **hide,
                      const char **ro, const char *const *extra_ro);

/* obj[key] = the bytes as a string when they are UTF-8, else base64, with
 * obj[key + "_encoding"] = "utf-8" or "base64" (routes_tests.c). */
int ita_put_output(json_t *obj, const char *key, const char *buf, size_t len);

/* A pull request (pulls.c) for POST /v1/repos/{name}/pulls and the MCP
 * tool create_pull_request: who asks (for the audit lines of each step),
 * and the service's parts it uses. */
typedef struct {
    const ita_config_t *cfg;
    const safety_engine_t *safety;
    pthread_mutex_t *sandbox_mu;
    ita_audit_t *audit;
    const char *request_id, *key_name, *key_id;
    const char *method, *path; /* how the audit lines name the request */
} ita_pull_ctx_t;

/* Runs the pull-request flow of req against repository repo_name. Returns
 * the HTTP status; *answer (new reference) has the steps, or is NULL when
 * the request was refused before any step (detail says why). */
int ita_pull_run(const ita_pull_ctx_t *c, const char *repo_name, json_t *req, json_t **answer,
                 char *detail, size_t cap);

/* Event streams (sse.c). */
void ita_sse_start(ita_req_t *rq, int64_t from);
void ita_sse_end_all(ita_worker_t *w);

/* The dashboard files (static.c): loaded once at start. */
int ita_static_load(ita_server_t *srv, cu_error_t *err);
void ita_static_free(ita_server_t *srv);

#endif
