/*
 * codex-ita's service configuration (ita.yaml): where to listen, which runs
 * directory to serve, the keys file, TLS, threads, logs, limits. A small
 * dedicated parser: io/'s config parser is for job configs. Every key is
 * optional; relative paths are taken relative to the YAML file's folder.
 */
#ifndef CU_ITA_CONFIG_H
#define CU_ITA_CONFIG_H

#include <limits.h>

#include "core/error.h"

#define ITA_PATH_MAX 1024
#define ITA_MAX_TEST_CMDS 16
#define ITA_MAX_REPOS 16

/* A repository POST /v1/repos/{name}/pulls may touch (config key repos.NAME). */
typedef struct {
    char name[32];
    char path[ITA_PATH_MAX]; /* a local clone */
    char remote[64];         /* the remote pushed to, default origin */
    char bases[256];         /* allowed base branches, comma-separated */
    char forge[128];         /* OWNER/REPO on the forge, "" for none */
    char test[32];           /* a test_commands name, "" for none */
} ita_repo_t;

typedef struct {
    char host[64];                /* numeric IPv4 address to bind, default 127.0.0.1 */
    int port;                     /* 0: any free port (printed at start) */
    char runs_dir[ITA_PATH_MAX];  /* the runs/ folder holding job directories */
    char keys_file[ITA_PATH_MAX]; /* written by `codexctl keys` */
    char tls_cert[ITA_PATH_MAX];  /* PEM; TLS is on when cert and key are set */
    char tls_key[ITA_PATH_MAX];
    int threads;                  /* worker threads, one event loop each */
    char audit_log[ITA_PATH_MAX]; /* JSON lines, one per request; "-" = stdout */
    char error_log[ITA_PATH_MAX]; /* "" = stderr */
    char www_dir[ITA_PATH_MAX];   /* dashboard files; "" = installed or source tree */
    double rate_per_s;            /* per-key token bucket; 0 = unlimited */
    double rate_burst;            /* bucket size */
    double lost_after_s;          /* RUNNING with an older heartbeat reads as LOST */
    int sse_poll_ms;              /* how often an event stream looks for new lines */
    int sse_max_streams;          /* concurrent event streams per worker thread */
    int metrics_public;           /* GET /metrics without a key */
    int max_jobs;                 /* job directories considered in a listing */
    int max_connections;          /* open connections per worker thread */
    int pool_threads;             /* worker pool for blocking work (scans, test runs) */
    int pool_queue;               /* jobs admitted beyond the busy threads; then 503 */
    double header_timeout_s;      /* HTTP/1: a request's headers, and keep-alive idleness */
    double idle_timeout_s;        /* HTTP/2: a connection with no stream */
    double write_timeout_s;       /* a client that reads nothing of an answer this long */
    int h2_max_requests_per_s;    /* HTTP/2 streams per connection per second (rapid reset) */
    double audit_max_mb;          /* rotate the audit log past this size (MiB); 0: never */
    int audit_keep;               /* rotated audit logs kept (.1 newest) */
    int audit_rejected_per_s;     /* 401 lines per second; the rest summed in one line */
    /* POST /v1/tests/run: the only commands it runs, by name (section
     * test_commands: NAME: "argv words"), and their wall-clock limit */
    struct {
        char name[32];
        char command[256]; /* split on spaces into argv */
    } test_cmds[ITA_MAX_TEST_CMDS];
    int n_test_cmds;
    double tests_timeout_s;
    /* the sandbox of tests/run and pulls (safety/sandbox.h): run where no
     * cgroup can be had (rlimits only: weaker), a delegated cgroup v2
     * directory for the runs, memory per run */
    int sandbox_allow_rlimits_only;
    char sandbox_cgroup_parent[ITA_PATH_MAX];
    int sandbox_memory_mb;
    /* the scheduler's view (sched.c): how often squeue/sacct are asked
     * about the jobs with a Slurm id (0: never), and how long any Slurm
     * command may take */
    double slurm_refresh_s;
    double slurm_timeout_s;
    /* POST /v1/jobs: where relative paths in a posted config resolve and
     * the batch script runs, and the codex-train it starts */
    char submit_workdir[ITA_PATH_MAX];
    char submit_train[ITA_PATH_MAX];
    /* coding agents (docs/agents.md): the knowledge index and its sources
     * (paths separated by spaces or commas, relative to config_dir), the
     * Origins POST /mcp accepts besides the service's own, the docs
     * folder MCP serves as resources */
    char kb_db[ITA_PATH_MAX];
    char kb_sources[4096];
    char mcp_origins[1024];
    char docs_dir[ITA_PATH_MAX];
    char config_dir[ITA_PATH_MAX]; /* the YAML file's folder with a '/', "" without one */
    /* POST /v1/repos/{name}/pulls (pulls.c): the repositories it may touch
     * (repos.NAME: "path=CLONE remote=origin bases=main,dev forge=OWNER/REPO
     * test=TEST_COMMAND"), the forge's REST API and its token's file, and the
     * identity commits are made with */
    ita_repo_t repos[ITA_MAX_REPOS];
    int n_repos;
    char forge_api_url[256];
    char forge_token_file[ITA_PATH_MAX];
    char git_name[128];
    char git_email[128];
} ita_config_t;

/* Fills cfg with the defaults. */
void ita_config_defaults(ita_config_t *cfg);

/* Reads path into cfg (over the defaults already there). Errors name the
 * file, line and key. */
int ita_config_load(const char *path, ita_config_t *cfg, cu_error_t *err);

/* Checks values and fills www_dir when unset. */
int ita_config_finish(ita_config_t *cfg, cu_error_t *err);

#endif
