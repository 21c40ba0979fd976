/*
 * codex-train: one process per MPI rank. Reads the job config, applies
 * command-line overrides, validates everything before any work starts, and
 * runs the training loop.
 *
 * Exit codes (DESIGN.md): 0 finished; 2 bad config or input, with a message
 * naming the key or file; 75 pre-empted (SIGTERM or SIGUSR1: a checkpoint
 * is saved and a restart resumes from it); any other non-zero value for a
 * failure, with the reason in state.json.
 *
 * The one piece of global state is the stop flag a signal handler sets.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "io/tokenizer_files.h"
#include "jobs/train.h"
#include "model/blas.h"
#include "mpi/world.h"

static volatile sig_atomic_t stop_requested = 0;

/* A second Ctrl-C while the checkpoint is being written ends the process
 * at once, as a user pressing it twice expects. */
static void on_stop_signal(int sig) {
    if (sig == SIGINT && stop_requested) {
        signal(SIGINT, SIG_DFL);
        raise(SIGINT);
    }
    stop_requested = 1;
}

static void install_stop_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
    sigaction(SIGINT, &sa, NULL); /* Ctrl-C: the same clean stop */
}

/* The command that resumes a stopped run: this one again, without
 * --stop-after (checkpoint.resume: auto continues from the checkpoint). */
static void print_resume_command(int argc, char **argv, int world_size) {
    fprintf(stderr, "codex-train: resume with: ");
    if (world_size > 1) fprintf(stderr, "mpirun -n %d ", world_size);
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--stop-after")) {
            i++;
            continue;
        }
        int plain =
            strlen(argv[i]) > 0 && strcspn(argv[i], " \t'\"$`\\*?[]{}()<>|&;") == strlen(argv[i]);
        fprintf(stderr, plain ? "%s%s" : "%s'%s'", i ? " " : "", argv[i]);
    }
    fputc('\n', stderr);
}

static void usage(FILE *out) {
    fputs("usage: codex-train CONFIG.yaml [section.key=value ...]\n"
          "       mpirun -n N codex-train CONFIG.yaml [section.key=value ...]\n"
          "\n"
          "Fine-tunes a GPT-2 or Llama style model with LoRA (or fully) on the data the\n"
          "config names, data-parallel over the MPI ranks it is started on.\n"
          "\n"
          "  CONFIG.yaml          the job config (see docs/config.md)\n"
          "  section.key=value    override one key, e.g. train.lr=3e-4 or\n"
          "                       lora.targets=[qkv,mlp_fc]\n"
          "\n"
          "options:\n"
          "  --print-config       print the resolved config as YAML and exit\n"
          "  --check              pre-flight: validate the config (every problem at once)\n"
          "                       and open data.path, model.init, tokenizer.path and\n"
          "                       lora.init_from as the job would; exit 0 or 2, nothing\n"
          "                       written\n"
          "  --overwrite          replace the run the run directory holds (its checkpoints,\n"
          "                       final.h5, logs) instead of resuming it\n"
          "  --stop-after N       after N steps of this run, checkpoint and exit 75 as\n"
          "                       if pre-empted (for time-sliced allocations)\n"
          "  --help               this text\n"
          "  --version            the code version\n"
          "\n"
          "SIGTERM, SIGUSR1 or Ctrl-C (SIGINT) saves a checkpoint after the current step\n"
          "and exits 75 (a second Ctrl-C ends it at once);\n"
          "the next start resumes from it (checkpoint.resume: auto).\n"
          "\n"
          "exit status: 0 finished, 2 bad config or input, 75 pre-empted,\n"
          "other non-zero failure (the reason is in runs/<job>/state.json).\n",
          out);
}

/* Loads, overrides and validates; prints nothing (what config_settle
 * changed goes to note, for rank 0 to warn about). */
static int resolve_config(cu_config_t *cfg, int argc, char **argv, int first, int world_size,
                          const char *config_path, int check, char *note, size_t note_cap,
                          cu_error_t *invalid, cu_error_t *err) {
    int rc = config_load_file(cfg, config_path, err);
    for (int i = first; rc == CU_OK && i < argc; i++) {
        if (strcmp(argv[i], "--print-config") == 0 || strcmp(argv[i], "--overwrite") == 0 ||
            strcmp(argv[i], "--check") == 0)
            continue;
        if (strcmp(argv[i], "--stop-after") == 0) {
            i++;
            continue;
        }
        rc = config_apply_override(cfg, argv[i], err);
    }
    if (rc == CU_OK) config_settle(cfg, note, note_cap);
    /* a model folder's own tokenizer: tokenizer.path from model.init */
    if (rc == CU_OK) rc = io_tokenizer_resolve_config(cfg, err);
    if (rc == CU_OK && check) {
        /* --check goes on to the input files with the config's problems
         * kept aside; the file checks need a batch that splits */
        if (config_validate(cfg, world_size, invalid) != CU_OK) {
            if (cfg->train.micro_batch_size < 1) cfg->train.micro_batch_size = 1;
            cfg->train.global_batch_size = cfg->train.micro_batch_size * world_size;
        }
        return CU_OK;
    }
    if (rc == CU_OK) rc = config_validate(cfg, world_size, err);
    return rc;
}

/* --check's verdict: the config's problems, then the input files'; rank
 * 0 speaks for every rank (each opened the same inputs). Returns the exit
 * code. */
static int report_check(const char *config_path, const cu_error_t *invalid,
                        const train_result_t *res, int rc, const cu_error_t *err, int rank) {
    if (rc == CU_OK && !invalid->code) {
        if (rank == 0) printf("codex-train --check: %s is ready to run\n", config_path);
        return 0;
    }
    if (rank != 0) return 2;
    if (invalid->code) fprintf(stderr, "codex-train --check: error: %s\n", invalid->msg);
    if (res->n_problems > 0)
        fprintf(stderr, "codex-train --check: error: %d problem%s with the input files:%s\n",
                res->n_problems, res->n_problems == 1 ? "" : "s", res->problems);
    else if (rc != CU_OK)
        fprintf(stderr, "codex-train --check: error: %s\n", err->msg);
    return 2;
}

int main(int argc, char **argv) {
    blas_prefer_avx512(argv);
    const char *config_path = NULL;
    int print_config = 0, first_override = 0, overwrite = 0, check = 0;
    long stop_after = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("codex-train %s (%s)\n", CU_VERSION, CU_GIT_DESCRIBE);
            return 0;
        }
        if (strcmp(argv[i], "--print-config") == 0) {
            print_config = 1;
        } else if (strcmp(argv[i], "--overwrite") == 0) {
            overwrite = 1;
        } else if (strcmp(argv[i], "--check") == 0) {
            check = 1;
        } else if (strcmp(argv[i], "--stop-after") == 0) {
            char *end = NULL;
            stop_after = i + 1 < argc ? strtol(argv[i + 1], &end, 10) : 0;
            if (stop_after <= 0 || !end || *end) {
                fprintf(stderr, "codex-train: --stop-after needs a positive number of steps\n");
                return 2;
            }
            i++;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "codex-train: unknown option '%s' (see codex-train --help)\n", argv[i]);
            return 2;
        } else if (!config_path) {
            config_path = argv[i];
            first_override = i + 1;
        }
    }
    if (!config_path) {
        usage(stderr);
        return 2;
    }

    cu_world_t w;
    cu_error_t err = {0};
    if (world_init(&w, &argc, &argv, &err) != CU_OK) {
        fprintf(stderr, "codex-train: %s\n", err.msg);
        return 1;
    }
    cu_config_t cfg;
    cu_error_t invalid = {0};
    char note[512];
    int rc = resolve_config(&cfg, argc, argv, first_override, w.size, config_path, check, note,
                            sizeof note, &invalid, &err);
    if (rc == CU_OK && note[0] && w.rank == 0) fprintf(stderr, "codex-train: warning: %s\n", note);
    if (rc != CU_OK) {
        /* every rank read the same input, so every rank fails the same way */
        if (w.rank == 0) fprintf(stderr, "codex-train: error: %s\n", err.msg);
        world_finalize(&w);
        return 2;
    }
    if (print_config) {
        if (w.rank == 0) {
            char *yaml = config_to_yaml(&cfg);
            fputs(yaml ? yaml : "", stdout);
            free(yaml);
        }
        world_finalize(&w);
        return 0;
    }

    install_stop_handlers();
    train_options_t opts = {.stop = &stop_requested,
                            .stop_after = stop_after,
                            .overwrite = overwrite,
                            .check_only = check};
    train_result_t res;
    rc = train_run(&cfg, &w, &opts, &res, &err);
    if (check) {
        rc = report_check(config_path, &invalid, &res, rc, &err, w.rank);
        world_finalize(&w);
        return rc;
    }
    if (rc == CU_PREEMPTED) {
        if (w.rank == 0) {
            fprintf(stderr, "codex-train: %s; checkpoint saved, exiting 75\n", err.msg);
            print_resume_command(argc, argv, w.size);
        }
        world_finalize(&w);
        return 75;
    }
    if (rc != CU_OK) {
        if (err.code != CU_OK)
            fprintf(stderr, "codex-train: rank %d: error: %s\n", w.rank, err.msg);
        int code = rc == CU_EINVAL ? 2 : 1;
        /* a failure on some ranks would leave the others waiting in a
         * collective: end the whole job with the message out */
        if (w.size > 1 && err.code != CU_OK) world_abort(&w, code);
        world_finalize(&w);
        return code;
    }
    world_finalize(&w);
    return 0;
}
