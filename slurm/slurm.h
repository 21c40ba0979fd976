/*
 * Slurm through its own commands: render a job's batch script from the
 * config's slurm section, submit it with `sbatch --parsable`, ask
 * squeue/sacct what the scheduler thinks of one job, and cancel or signal it
 * with scancel. Every command runs through fork/exec with an argv (never a
 * shell), and everything the script interpolates is shell-quoted.
 *
 * Nothing here writes the job directory's state.json (that is jobs/'s
 * subject): a caller such as `codexctl submit` or codex-ita builds a plan
 * (slurm_plan_*), writes it, submits it, and records the id itself.
 */
#ifndef CU_SLURM_SLURM_H
#define CU_SLURM_SLURM_H

#include <stddef.h>

#include "core/error.h"
#include "io/config.h"

#define SLURM_MAX_EXPORTS 16
#define SLURM_MAX_SWEEP 64     /* array tasks of a sweep (or a grid of sweeps) */
#define SLURM_MAX_SWEEP_KEYS 8 /* --sweep options in one grid */
#define SLURM_SWEEP_TEXT 2048  /* a task's values, as text or JSON */

/* ---- the batch script (script.c) ---- */

typedef struct {
    const char *workdir;   /* absolute: where the job runs (relative config paths) */
    const char *runs_dir;  /* absolute: the folder of run directories */
    const char *train_exe; /* absolute path of codex-train */
    /* 0: one job whose run directory is runs_dir/<job.name>; n > 0: a job
     * array of n tasks, task i in runs_dir/<job.name>-<i>. */
    int array_tasks;
    /* extra `export NAME=VALUE` lines (already validated NAME=VALUE) */
    int n_exports;
    const char *exports[SLURM_MAX_EXPORTS];
} slurm_script_opts_t;

/* Shell-quotes s for bash into out ('...' with embedded quotes escaped).
 * CU_EINVAL if it does not fit. */
int slurm_shell_quote(const char *s, char *out, size_t cap, cu_error_t *err);

/* 1 when a slurm.extra entry sets an option that moves the job's files
 * (--output, --error, --input, --chdir) in any spelling sbatch accepts: an
 * abbreviation (--out=, --chd), a value after a space, bundled short
 * options (-vo/x). opt gets the option's full name. (extra.c) */
int slurm_extra_moves_files(const char *entry, char *opt, size_t cap);

/* The batch script for cfg: #SBATCH directives from cfg->slurm, thread
 * counts from cpus_per_task, the launcher (srun --mpi=pmix or mpirun), and
 * the signal forwarding and requeue on exit 75 (docs/slurm.md). Each task
 * runs `codex-train <run dir>/submit.yaml`. Allocates; free() it. */
char *slurm_script_render(const cu_config_t *cfg, const slurm_script_opts_t *o, cu_error_t *err);

/* ---- running Slurm's commands (run.c) ---- */

/* Runs argv[0] (searched in PATH) with argv, no shell. Allocates *out and
 * *errtext (NUL-terminated, either may be NULL to discard); *status is the
 * exit status, or 128 + signal. CU_EIO when the program cannot be started
 * (e.g. "sbatch: not found; is Slurm installed?"). */
int slurm_run(const char *const argv[], char **out, char **errtext, int *status, cu_error_t *err);

/* The same, killing the command after timeout_s seconds (0: no limit);
 * then CU_EIO "... did not answer within N s". */
int slurm_run_timeout(const char *const argv[], double timeout_s, char **out, char **errtext,
                      int *status, cu_error_t *err);

/* ---- submitting (submit.c) ---- */

/* `sbatch --parsable SCRIPT` from workdir; the job id (e.g. "1234") goes to
 * id. sbatch's stderr becomes the message on failure. */
int slurm_submit(const char *script_path, const char *workdir, char *id, size_t cap,
                 cu_error_t *err);

/* The same with sbatch killed after timeout_s seconds (0: no limit). */
int slurm_submit_timeout(const char *script_path, const char *workdir, double timeout_s, char *id,
                         size_t cap, cu_error_t *err);

/* The id from `sbatch --parsable` output ("1234" or "1234;cluster"). */
int slurm_parse_sbatch_output(const char *text, char *id, size_t cap, cu_error_t *err);

/* ---- the scheduler's view of one job (query.c) ---- */

typedef struct {
    char id[64];          /* as Slurm names it: 1234 or 1234_5 */
    char slurm_state[32]; /* Slurm's word: RUNNING, TIMEOUT, NODE_FAIL, ... */
    const char *status;   /* ours (docs/formats.md): PENDING, RUNNING, ... */
    int terminal;         /* Slurm is done with the job */
    char reason[256];     /* why (Slurm's reason or the state behind FAILED) */
    char nodes[256];
    char exit_code[16]; /* "0:0" from sacct, "" when unknown */
    char source[8];     /* "squeue" or "sacct" */
} slurm_job_info_t;

/* Our status for a Slurm state word (a "CANCELLED by 0" suffix is ignored);
 * *terminal tells whether Slurm is done with the job. Unknown words map to
 * NULL. */
const char *slurm_map_state(const char *slurm_state, int *terminal);

/* Parses one `squeue --noheader -o %i|%T|%r|%N` line; CU_EFORMAT if it is
 * not one. */
int slurm_parse_squeue_line(const char *line, slurm_job_info_t *info, cu_error_t *err);
/* Parses `sacct --noheader --parsable2 --format=JobID,State,ExitCode,NodeList`
 * output and picks the line of job id (not its steps); *found = 0 if none. */
int slurm_parse_sacct(const char *text, const char *id, slurm_job_info_t *info, int *found,
                      cu_error_t *err);

/* Asks squeue (jobs Slurm still holds, any state), then sacct (when
 * accounting is enabled) about job id. *found = 0 when neither knows it;
 * an error only when squeue itself cannot run. */
int slurm_query(const char *id, slurm_job_info_t *info, int *found, cu_error_t *err);

/* The scheduler's view of many jobs at once, for a service that keeps a
 * cache: one `squeue --array --states=all` for every job slurmctld holds,
 * then one sacct for the ids squeue did not know. infos[i] and found[i]
 * answer ids[i] (found 0: no scheduler knows it). A pending array's
 * "1234_[0-3]" line answers its tasks 1234_0 .. 1234_3. An error only when
 * squeue cannot run or fails; each command is killed after timeout_s. */
int slurm_query_many(const char *const ids[], size_t n, slurm_job_info_t *infos, int *found,
                     double timeout_s, cu_error_t *err);

/* 1 when Slurm id `task` ("1234_2") is one of the array line id ("1234_[0-3,7]",
 * "1234_[0-5%2]", or "1234_2" itself). */
int slurm_array_matches(const char *line_id, const char *task);

/* 1 when id is a Slurm job id: digits, or an array task <digits>_<digits>
 * (under 64 characters). Every command this layer runs checks its ids. */
int slurm_id_valid(const char *id);

/* ---- cancelling (cancel.c) ---- */

/* `scancel ID`, or with signal (e.g. "USR1") `scancel --signal=SIG --batch
 * ID`: the batch shell forwards it to the ranks. */
int slurm_cancel(const char *id, const char *signal, cu_error_t *err);
/* The same with scancel killed after timeout_s seconds (0: no limit). */
int slurm_cancel_timeout(const char *id, const char *signal, double timeout_s, cu_error_t *err);

/* ---- a job to submit, from config text (plan.c) ---- */

typedef struct {
    cu_config_t cfg;    /* resolved, validated for nodes x ntasks_per_node ranks */
    char run_dir[4096]; /* absolute; for an array, the first task's */
    char workdir[4096];
    char runs_dir[4096];
    int n_tasks;           /* 0 for a single job, else array tasks */
    cu_config_t *task_cfg; /* n_tasks resolved configs (job.name=<name>-<i>); allocated */
    char (*task_values)[SLURM_SWEEP_TEXT]; /* per task "KEY=V KEY2=W"; allocated */
    char (*sweep_json)[SLURM_SWEEP_TEXT];  /* per task its sweep.json text; allocated */
    char *script;                          /* allocated */
    char adjusted[512]; /* a value config_settle changed, for a warning ("" none) */
} slurm_plan_t;

/* Builds a plan from a config text (origin names it in messages), command
 * line overrides, and an optional sweep ("train.lr=1e-4,3e-4": one array
 * task per value; NULL for none). workdir is where relative paths in the
 * config resolve (absolute). Validation errors are CU_EINVAL with the key.
 * Free with slurm_plan_free. */
int slurm_plan_build(slurm_plan_t *p, const char *text, size_t len, const char *origin,
                     char *const overrides[], int n_overrides, const char *sweep,
                     const char *workdir, const char *train_exe, const char *const exports[],
                     int n_exports, cu_error_t *err);
void slurm_plan_free(slurm_plan_t *p);

/* The same with several sweeps: one array task per combination of their
 * values (the cartesian product, the last sweep varying fastest), at most
 * SLURM_MAX_SWEEP tasks. Each task's run directory gets a sweep.json,
 * {"task": i, "values": {"KEY": "V", ...}}. */
int slurm_plan_build_grid(slurm_plan_t *p, const char *text, size_t len, const char *origin,
                          char *const overrides[], int n_overrides, const char *const sweeps[],
                          int n_sweeps, const char *workdir, const char *train_exe,
                          const char *const exports[], int n_exports, cu_error_t *err);

/* Creates the run directories and writes submit.yaml into each and
 * job.sbatch into the first (runs_dir/<name>.sbatch too for an array).
 * The script path goes to script_path. */
int slurm_plan_write(const slurm_plan_t *p, char *script_path, size_t cap, cu_error_t *err);

#endif
