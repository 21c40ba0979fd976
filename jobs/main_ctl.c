/*
 * codexctl: the user's everyday tool. Dispatches `codexctl VERB ...` to the
 * subcommand table below; `codexctl help` lists the verbs and
 * `codexctl VERB --help` explains one.
 */
#include <stdio.h>
#include <string.h>

#include "jobs/ctl.h"

/* Subcommands, one file each (jobs/ctl_<name>.c). Add a declaration and a
 * table row for a new one; keep the table in the order `help` shows it. */

int ctl_prepare(int argc, char **argv);
int ctl_submit(int argc, char **argv);
int ctl_list(int argc, char **argv);
int ctl_status(int argc, char **argv);
int ctl_cancel(int argc, char **argv);
int ctl_logs(int argc, char **argv);
int ctl_keys(int argc, char **argv);
int ctl_scan(int argc, char **argv);
int ctl_export(int argc, char **argv);
int ctl_generate(int argc, char **argv);
int ctl_eval(int argc, char **argv);
int ctl_resize(int argc, char **argv);
int ctl_merge(int argc, char **argv);
int ctl_kb(int argc, char **argv);
int ctl_completion(int argc, char **argv);

const ctl_command_t CTL_COMMANDS[] = {
    {"prepare", ctl_prepare, "tokenise a corpus into an HDF5 dataset"},
    {"submit", ctl_submit, "start a training job on Slurm (or --local N here)"},
    {"list", ctl_list, "the jobs under runs/ with their status"},
    {"status", ctl_status, "one job's state, merged with Slurm's view"},
    {"cancel", ctl_cancel, "cancel a job (scancel) and record CANCELLED"},
    {"logs", ctl_logs, "a job's Slurm or launcher output"},
    {"scan", ctl_scan, "scan files or a diff for secrets and personal data"},
    {"export", ctl_export, "write an adapter in PEFT format or a merged model"},
    {"generate", ctl_generate, "continue a prompt with a run's model or a HF folder"},
    {"eval", ctl_eval, "loss, perplexity and accuracy of a model on a dataset"},
    {"resize", ctl_resize, "truncate a PEFT LoRA adapter to a lower rank by SVD"},
    {"merge", ctl_merge, "combine PEFT LoRA adapters (weighted) and re-factorise to a rank"},
    {"keys", ctl_keys, "create, list and revoke codex-ita API keys"},
    {"kb", ctl_kb, "build, refresh and search codex-ita's knowledge index"},
    {"completion", ctl_completion, "shell completion for bash or zsh (codexctl and codex-train)"},
    {NULL, NULL, NULL},
};

static void usage(FILE *out) {
    fputs("usage: codexctl VERB [ARGS...]\n"
          "       codexctl VERB --help\n\n"
          "verbs:\n",
          out);
    for (const ctl_command_t *c = CTL_COMMANDS; c->name; c++)
        fprintf(out, "  %-10s %s\n", c->name, c->summary);
    fputs("  help       this list\n"
          "  version    the code version\n",
          out);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *verb = argv[1];
    if (!strcmp(verb, "help") || !strcmp(verb, "--help") || !strcmp(verb, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(verb, "version") || !strcmp(verb, "--version")) {
        printf("codexctl %s (%s)\n", CU_VERSION, CU_GIT_DESCRIBE);
        return 0;
    }
    for (const ctl_command_t *c = CTL_COMMANDS; c->name; c++)
        if (!strcmp(verb, c->name)) return c->fn(argc - 1, argv + 1);
    fprintf(stderr, "codexctl: unknown verb '%s' (codexctl help lists them)\n", verb);
    return 2;
}
