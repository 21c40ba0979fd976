/*
 * codex-ita: the Internal Tools API. Reads ita.yaml, then serves the runs
 * directory over HTTP until SIGTERM or SIGINT. The only process-wide state
 * is the signal mask set here, before any thread starts, so that the
 * server's sigwait() receives the signals (see ita/server.h).
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "ita/config.h"
#include "ita/mcp.h"
#include "ita/server.h"
#include "safety/sandbox.h"

static void usage(FILE *out) {
    fputs("usage: codex-ita [--config ita.yaml] [--check | --mcp-stdio]\n"
          "\n"
          "Serves job state, metrics, events and checkpoints of a runs directory over\n"
          "HTTP(S) to API-key holders, with a live dashboard at / and Prometheus\n"
          "metrics at /metrics; submits and cancels jobs (Slurm or local) for keys\n"
          "of scope submit. Keys are made with `codexctl keys create`.\n"
          "\n"
          "  --config FILE   the service config (default: the built-in defaults;\n"
          "                  see configs/ita.yaml and docs/ita.md)\n"
          "  --check         read and check the config, print it, and exit\n"
          "  --mcp-stdio     serve the Model Context Protocol on stdin/stdout instead\n"
          "                  of HTTP (the API key in $CODEX_ITA_KEY; docs/agents.md)\n"
          "  --help          this text\n"
          "  --version       the code version\n"
          "\n"
          "Stops cleanly on SIGTERM or SIGINT. Exit status: 0 after a clean stop,\n"
          "2 for a bad config or command line, 1 when the service cannot start.\n",
          out);
}

int main(int argc, char **argv) {
    const char *config = NULL;
    int check = 0, mcp_stdio = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("codex-ita %s (%s)\n", CU_VERSION, CU_GIT_DESCRIBE);
            return 0;
        } else if (!strcmp(argv[i], "--config") && i + 1 < argc) {
            config = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            config = argv[i] + 9;
        } else if (!strcmp(argv[i], "--check")) {
            check = 1;
        } else if (!strcmp(argv[i], "--mcp-stdio")) {
            mcp_stdio = 1;
        } else {
            fprintf(stderr, "codex-ita: unknown argument '%s' (codex-ita --help)\n", argv[i]);
            return 2;
        }
    }
    ita_config_t cfg;
    cu_error_t err;
    ita_config_defaults(&cfg);
    if ((config && ita_config_load(config, &cfg, &err)) || ita_config_finish(&cfg, &err)) {
        fprintf(stderr, "codex-ita: %s\n", err.msg);
        return 2;
    }
    if (cfg.n_test_cmds > 0) { /* tests/run and pulls run commands in the sandbox */
        char why[1200];
        if (!sandbox_cgroups_available(
                cfg.sandbox_cgroup_parent[0] ? cfg.sandbox_cgroup_parent : NULL, why, sizeof why))
            fprintf(stderr,
                    cfg.sandbox_allow_rlimits_only
                        ? "codex-ita: warning: no cgroup for sandboxed runs here (%s); "
                          "sandbox.allow_rlimits_only is set, so they are held by rlimits only: "
                          "memory in memfd/shmem and the process count escape them\n"
                        : "codex-ita: warning: no cgroup for sandboxed runs here (%s); "
                          "POST /v1/tests/run and pull-request tests will be refused. Delegate a "
                          "cgroup subtree (sandbox.cgroup_parent) or accept rlimits only "
                          "(sandbox.allow_rlimits_only: true)\n",
                    why);
    }
    if (check) {
        printf("listen %s:%d, %d threads\nruns_dir %s\nkeys_file %s\nwww_dir %s\naudit %s\n"
               "tls %s\n",
               cfg.host, cfg.port, cfg.threads, cfg.runs_dir, cfg.keys_file, cfg.www_dir,
               cfg.audit_log, cfg.tls_cert[0] ? "on" : "off");
        printf("slurm refresh %gs, commands time out after %gs\nsubmit workdir %s, train %s\n",
               cfg.slurm_refresh_s, cfg.slurm_timeout_s, cfg.submit_workdir, cfg.submit_train);
        return 0;
    }
    if (mcp_stdio) {
        signal(SIGPIPE, SIG_IGN);
        return ita_mcp_stdio_run(&cfg, stdin, stdout);
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (ita_server_run(&cfg, stdout, &err)) {
        fprintf(stderr, "codex-ita: %s\n", err.msg);
        return err.code == CU_EINVAL ? 2 : 1;
    }
    return 0;
}
