/*
 * codexctl's subcommands. Each lives in its own jobs/ctl_<name>.c and has the
 * signature of ctl_cmd_fn: argv[0] is the subcommand's name, the return value
 * is the process exit code (0 success, 1 failure or findings, 2 bad usage or
 * input). Every subcommand answers --help.
 */
#ifndef CU_JOBS_CTL_H
#define CU_JOBS_CTL_H

typedef int (*ctl_cmd_fn)(int argc, char **argv);

typedef struct {
    const char *name;
    ctl_cmd_fn fn;
    const char *summary; /* one line for `codexctl help` */
} ctl_command_t;

/* The table in main_ctl.c. */
extern const ctl_command_t CTL_COMMANDS[];

#endif
