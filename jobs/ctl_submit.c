/*
 * codexctl submit: starts a training job and records it in its run
 * directory, either through Slurm (--slurm, the default: a batch script
 * from the config's slurm section, `sbatch --parsable`, the Slurm job id in
 * state.json) or on this machine (--local N: `mpirun -n N` detached, its
 * process group in launcher.pid). --sweep KEY=V1,V2 makes one Slurm job
 * array, a run directory per task (several --sweep: the grid of their
 * values); --dry-run prints the script (--local: the mpirun command) and
 * submits nothing. docs/slurm.md describes the script and what happens to a job.
 *
 * state.json goes SUBMITTED (written before sbatch runs, so a crash between
 * the two leaves a trace) then PENDING with the job id; codex-train takes
 * over from RUNNING on.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/fileio.h"
#include "rundir/rundir.h"
#include "slurm/slurm.h"

/* in ctl_jobs.c: whether the run directory's job is still queued or running */
int ctl_job_is_active(const char *run_dir, char *what, size_t cap);

#define MAX_OVERRIDES 128

typedef struct {
    const char *config;
    char *overrides[MAX_OVERRIDES];
    int n_overrides;
    const char *exports[SLURM_MAX_EXPORTS];
    int n_exports;
    const char *sweeps[SLURM_MAX_SWEEP_KEYS];
    int n_sweeps;
    const char *train;
    int local_ranks; /* 0: Slurm */
    int dry_run, force;
} submit_args_t;

static void usage(FILE *out) {
    fputs("usage: codexctl submit CONFIG.yaml [section.key=value ...] [--slurm | --local N]\n"
          "                       [--sweep KEY=V1,V2,...] [--dry-run] [--export NAME=VALUE]\n"
          "\n"
          "Starts a training job and records it in runs/<job.name>/ (state.json).\n"
          "\n"
          "  --slurm             submit to Slurm (the default): writes runs/<job>/job.sbatch\n"
          "                      from the config's slurm section and runs sbatch\n"
          "  --local N           run `mpirun -n N codex-train` here, detached\n"
          "  --sweep KEY=V1,...  one Slurm job array, task i runs KEY=Vi in runs/<job>-<i>/;\n"
          "                      several --sweep make the grid of their values, each task's\n"
          "                      values in runs/<job>-<i>/sweep.json\n"
          "  --dry-run           print the batch script (with --local: the mpirun command);\n"
          "                      submit and write nothing\n"
          "  --export NAME=VALUE an extra environment variable for the ranks (repeatable),\n"
          "                      e.g. OMPI_MCA_rmaps_base_oversubscribe=1\n"
          "  --train PATH        the codex-train to run (default: beside codexctl)\n"
          "  --force             submit even if the run directory's job looks active\n"
          "\n"
          "Then: codexctl status JOB, codexctl logs JOB, codexctl cancel JOB.\n"
          "exit status: 0 submitted, 1 the scheduler or launcher failed, 2 bad usage or config.\n",
          out);
}

static int parse_args(int argc, char **argv, submit_args_t *a) {
    memset(a, 0, sizeof *a);
    int slurm = 0;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int has_next = i + 1 < argc;
        if (!strcmp(s, "--slurm")) {
            slurm = 1;
        } else if (!strcmp(s, "--local") && has_next) {
            char *end = NULL;
            long n = strtol(argv[++i], &end, 10);
            if (n < 1 || n > 4096 || !end || *end) {
                fprintf(stderr, "codexctl submit: --local needs a number of ranks, 1 to 4096\n");
                return 2;
            }
            a->local_ranks = (int)n;
        } else if (!strcmp(s, "--sweep") && has_next) {
            if (a->n_sweeps == SLURM_MAX_SWEEP_KEYS) {
                fprintf(stderr, "codexctl submit: at most %d --sweep\n", SLURM_MAX_SWEEP_KEYS);
                return 2;
            }
            a->sweeps[a->n_sweeps++] = argv[++i];
        } else if (!strcmp(s, "--export") && has_next) {
            if (a->n_exports == SLURM_MAX_EXPORTS) {
                fprintf(stderr, "codexctl submit: at most %d --export\n", SLURM_MAX_EXPORTS);
                return 2;
            }
            a->exports[a->n_exports++] = argv[++i];
        } else if (!strcmp(s, "--train") && has_next) {
            a->train = argv[++i];
        } else if (!strcmp(s, "--dry-run")) {
            a->dry_run = 1;
        } else if (!strcmp(s, "--force")) {
            a->force = 1;
        } else if (s[0] == '-') {
            fprintf(stderr, "codexctl submit: unknown or incomplete option '%s' (see --help)\n", s);
            return 2;
        } else if (!a->config) {
            a->config = s;
        } else if (strchr(s, '=') && a->n_overrides < MAX_OVERRIDES) {
            a->overrides[a->n_overrides++] = argv[i];
        } else {
            fprintf(stderr, "codexctl submit: '%s' is not a section.key=value override\n", s);
            return 2;
        }
    }
    if (!a->config) {
        usage(stderr);
        return 2;
    }
    if (slurm && a->local_ranks) {
        fprintf(stderr, "codexctl submit: choose one of --slurm and --local N\n");
        return 2;
    }
    if (a->n_sweeps && a->local_ranks) {
        fprintf(stderr, "codexctl submit: --sweep makes a Slurm job array; drop --local\n");
        return 2;
    }
    return 0;
}

/* codex-train: --train, else $CU_TRAIN, else beside this codexctl. */
static int find_train(const char *given, char *out, size_t cap, cu_error_t *err) {
    const char *env = getenv("CU_TRAIN");
    char buf[PATH_MAX];
    if (!given && env && env[0]) given = env;
    if (!given) {
        ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
        if (n <= 0) return cu_error_set(err, CU_EIO, "cannot find codexctl's own path");
        buf[n] = '\0';
        char *slash = strrchr(buf, '/');
        if (slash) *slash = '\0';
        if (cu_format(out, cap, err, "%s/codex-train", buf) != CU_OK) return err->code;
    } else if (!realpath(given, out)) {
        return cu_error_set(err, CU_EINVAL, "codex-train '%s': %s", given, strerror(errno));
    }
    if (access(out, X_OK) != 0)
        return cu_error_set(err, CU_EINVAL,
                            "%s is not an executable codex-train (use --train PATH)", out);
    return CU_OK;
}

/* state.json of one run directory: status, plus the id when known. */
static int record(const char *run_dir, const cu_config_t *cfg, const char *status,
                  const char *slurm_id, cu_error_t *err) {
    rundir_t d;
    if (rundir_open(&d, run_dir, err) != CU_OK) return err->code;
    rundir_state_t s;
    rundir_state_init(&s, cfg->job.name);
    snprintf(s.status, sizeof s.status, "%s", status);
    s.max_steps = cfg->train.max_steps;
    s.world_size = cfg->slurm.nodes * cfg->slurm.ntasks_per_node;
    s.threads = cfg->train.threads;
    if (slurm_id) snprintf(s.slurm_job_id, sizeof s.slurm_job_id, "%.63s", slurm_id);
    int rc = rundir_write_state(&d, &s, err);
    rundir_close(&d);
    return rc;
}

static int refuse_if_active(const submit_args_t *a, const slurm_plan_t *p) {
    if (a->force) return 0;
    int n = p->n_tasks ? p->n_tasks : 1;
    for (int i = 0; i < n; i++) {
        const cu_config_t *c = p->n_tasks ? &p->task_cfg[i] : &p->cfg;
        char dir[4400], what[256];
        snprintf(dir, sizeof dir, "%s/%s", p->runs_dir, c->job.name);
        if (ctl_job_is_active(dir, what, sizeof what)) {
            fprintf(stderr,
                    "codexctl submit: job %s is %s; cancel it (codexctl cancel %s), pick "
                    "another job.name, or pass --force\n",
                    c->job.name, what, c->job.name);
            return 1;
        }
    }
    return 0;
}

/* The command that follows the job, as it works when typed here: --runs
 * only when the job's runs folder is not the one codexctl looks in by
 * default ($CU_RUNS_DIR or ./runs). */
static void print_follow_up(const char *name, const char *runs_dir) {
    const char *env = getenv("CU_RUNS_DIR");
    char want[PATH_MAX], dflt[PATH_MAX];
    int same = realpath(runs_dir, want) && realpath(env && env[0] ? env : "runs", dflt) &&
               !strcmp(want, dflt);
    if (same)
        printf("follow it with: codexctl status %s\n", name);
    else
        printf("follow it with: codexctl status %s --runs %s\n", name, runs_dir);
}

static int submit_slurm(const submit_args_t *a, slurm_plan_t *p) {
    cu_error_t err = {0};
    char script[4400], id[32];
    if (slurm_plan_write(p, script, sizeof script, &err) != CU_OK) {
        fprintf(stderr, "codexctl submit: %s\n", err.msg);
        return 1;
    }
    int n = p->n_tasks ? p->n_tasks : 1;
    for (int i = 0; i < n; i++) {
        const cu_config_t *c = p->n_tasks ? &p->task_cfg[i] : &p->cfg;
        char dir[4400];
        snprintf(dir, sizeof dir, "%s/%s", p->runs_dir, c->job.name);
        if (record(dir, c, "SUBMITTED", NULL, &err) != CU_OK) {
            fprintf(stderr, "codexctl submit: %s\n", err.msg);
            return 1;
        }
    }
    if (slurm_submit(script, p->workdir, id, sizeof id, &err) != CU_OK) {
        fprintf(stderr, "codexctl submit: %s\n", err.msg);
        for (int i = 0; i < n; i++) {
            const cu_config_t *c = p->n_tasks ? &p->task_cfg[i] : &p->cfg;
            char dir[4400];
            snprintf(dir, sizeof dir, "%s/%s", p->runs_dir, c->job.name);
            rundir_state_t s;
            rundir_t d;
            cu_error_t e2 = {0};
            if (rundir_open(&d, dir, &e2) != CU_OK) continue;
            rundir_state_init(&s, c->job.name);
            snprintf(s.status, sizeof s.status, "FAILED");
            snprintf(s.error, sizeof s.error, "%s", err.msg);
            s.finished_at = rundir_now();
            rundir_write_state(&d, &s, &e2);
            rundir_close(&d);
        }
        fprintf(stderr, "codexctl submit: the script is in %s; fix the problem and submit again\n",
                script);
        return 1;
    }
    for (int i = 0; i < n; i++) {
        const cu_config_t *c = p->n_tasks ? &p->task_cfg[i] : &p->cfg;
        char dir[4400], tid[64];
        snprintf(dir, sizeof dir, "%s/%s", p->runs_dir, c->job.name);
        if (p->n_tasks)
            snprintf(tid, sizeof tid, "%s_%d", id, i);
        else
            snprintf(tid, sizeof tid, "%s", id);
        if (record(dir, c, "PENDING", tid, &err) != CU_OK) {
            fprintf(stderr, "codexctl submit: submitted as Slurm job %s, but %s\n", id, err.msg);
            return 1;
        }
        printf("submitted %s as Slurm job %s (%s)\n", c->job.name, tid, dir);
    }
    print_follow_up(p->n_tasks ? p->task_cfg[0].job.name : p->cfg.job.name, p->runs_dir);
    return 0;
}

/* The environment the ranks of a local launch get (name, value pairs). */
static int local_env(int threads, const char *names[4], char values[4][16]) {
    int n = 0;
    names[n] = "OPENBLAS_NUM_THREADS";
    snprintf(values[n++], 16, "%d", threads);
    names[n] = "OMP_NUM_THREADS";
    snprintf(values[n++], 16, "%d", threads);
    names[n] = "CU_PROGRESS"; /* local.out is a file: no progress bar */
    snprintf(values[n++], 16, "0");
    return n;
}

/* The detached child: its own session (so cancel can signal the group),
 * output into the run directory, then mpirun. Never returns. */
static void exec_local(const char *run_dir, const char *train, int ranks, int threads) {
    setsid();
    char path[4400], cfg[4400], nb[16], values[4][16];
    const char *names[4];
    snprintf(path, sizeof path, "%s/local.out", run_dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int in = open("/dev/null", O_RDONLY);
    if (in >= 0) dup2(in, 0);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    snprintf(cfg, sizeof cfg, "%s/submit.yaml", run_dir);
    snprintf(nb, sizeof nb, "%d", ranks);
    for (int i = 0, n = local_env(threads, names, values); i < n; i++)
        setenv(names[i], values[i], 1);
    if (geteuid() == 0) {
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    }
    char *argv[] = {"mpirun", "-n", nb, "--oversubscribe", (char *)train, cfg, NULL};
    execvp("mpirun", argv);
    fprintf(stderr, "codexctl submit --local: cannot start mpirun: %s\n", strerror(errno));
    _exit(127);
}

/* --local N --dry-run: the command exec_local would run, as a shell line. */
static void print_local_command(const submit_args_t *a, const slurm_plan_t *p, const char *train) {
    char values[4][16];
    const char *names[4];
    printf("# codexctl submit --local %d would write %s/submit.yaml (the resolved config) and\n"
           "# run, detached, in its own session (launcher.pid holds the process group):\n",
           a->local_ranks, p->run_dir);
    printf("cd '%s' &&", p->workdir);
    for (int i = 0; i < a->n_exports; i++) printf(" '%s'", a->exports[i]);
    for (int i = 0, n = local_env(p->cfg.train.threads, names, values); i < n; i++)
        printf(" %s=%s", names[i], values[i]);
    printf(" mpirun -n %d --oversubscribe '%s' '%s/submit.yaml' >>'%s/local.out' 2>&1 "
           "</dev/null &\n",
           a->local_ranks, train, p->run_dir, p->run_dir);
}

static int submit_local(const submit_args_t *a, slurm_plan_t *p, const char *train) {
    cu_error_t err = {0};
    char script[4400], path[4400];
    if (slurm_plan_write(p, script, sizeof script, &err) != CU_OK ||
        record(p->run_dir, &p->cfg, "SUBMITTED", NULL, &err) != CU_OK) {
        fprintf(stderr, "codexctl submit: %s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < a->n_exports; i++) {
        char name[128];
        const char *eq = strchr(a->exports[i], '=');
        size_t nl = eq ? (size_t)(eq - a->exports[i]) : 0;
        if (!eq || nl == 0 || nl >= sizeof name) {
            fprintf(stderr, "codexctl submit: --export wants NAME=VALUE\n");
            return 2;
        }
        memcpy(name, a->exports[i], nl);
        name[nl] = '\0';
        setenv(name, eq + 1, 1);
    }
    if (chdir(p->workdir) != 0) {
        fprintf(stderr, "codexctl submit: cannot enter %s: %s\n", p->workdir, strerror(errno));
        return 1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "codexctl submit: fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) exec_local(p->run_dir, train, a->local_ranks, p->cfg.train.threads);
    char text[32];
    snprintf(text, sizeof text, "%ld\n", (long)pid);
    snprintf(path, sizeof path, "%s/launcher.pid", p->run_dir);
    if (rundir_write_atomic(path, text, strlen(text), &err) != CU_OK) {
        fprintf(stderr, "codexctl submit: started (pid %ld) but %s\n", (long)pid, err.msg);
        return 1;
    }
    printf("started %s here: mpirun -n %d, pid %ld (%s, output in local.out)\n", p->cfg.job.name,
           a->local_ranks, (long)pid, p->run_dir);
    print_follow_up(p->cfg.job.name, p->runs_dir);
    return 0;
}

/* The job's own pre-flight before anything is written or submitted:
 * `codex-train --check` opens data.path, model.init, tokenizer.path and
 * lora.init_from as the job will and reports every problem on stderr.
 * Returns 0 when the inputs are ready, 2 when not, 1 when it cannot run. */
static int check_inputs(const submit_args_t *a, const char *train) {
    char *argv[MAX_OVERRIDES + 4];
    int n = 0;
    argv[n++] = (char *)train;
    argv[n++] = (char *)a->config;
    argv[n++] = "--check";
    for (int i = 0; i < a->n_overrides; i++) argv[n++] = a->overrides[i];
    argv[n] = NULL;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "codexctl submit: cannot start %s --check: %s\n", train, strerror(errno));
        return 1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, STDOUT_FILENO); /* "ready to run" is ours to say */
        execv(train, argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
        fprintf(stderr, "codexctl submit: the job's inputs are not ready (above); nothing was "
                        "written or submitted\n");
        return 2;
    }
    fprintf(stderr, "codexctl submit: %s --check failed (status %d); nothing was submitted\n",
            train, status);
    return 1;
}

/* With --local N the rank count is N, not the slurm section's: say so in
 * the validation message plan.c prefixes with the slurm keys. */
static void name_local_ranks(cu_error_t *err, int n) {
    char from[128], rest[sizeof err->msg];
    snprintf(from, sizeof from, "for %d rank%s (slurm.nodes x slurm.ntasks_per_node)", n,
             n == 1 ? "" : "s");
    size_t fl = strlen(from);
    if (strncmp(err->msg, from, fl) != 0) return;
    snprintf(rest, sizeof rest, "%s", err->msg + fl);
    int head =
        snprintf(err->msg, sizeof err->msg, "for --local %d (%d rank%s)", n, n, n == 1 ? "" : "s");
    if (head > 0 && (size_t)head < sizeof err->msg)
        memcpy(err->msg + head, rest, strnlen(rest, sizeof err->msg - (size_t)head - 1) + 1);
    err->msg[sizeof err->msg - 1] = '\0';
}

/* What the plan changed in the config rather than refuse it (e.g. warm-up
 * longer than the run), once per distinct message. */
static void print_adjustments(const slurm_plan_t *p) {
    if (p->adjusted[0]) fprintf(stderr, "codexctl submit: warning: %s\n", p->adjusted);
}

int ctl_submit(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        }
    submit_args_t a;
    char local_ov[2][64];
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    if (a.local_ranks) {
        /* validate for the local rank count, not the slurm section's */
        snprintf(local_ov[0], sizeof local_ov[0], "slurm.nodes=1");
        snprintf(local_ov[1], sizeof local_ov[1], "slurm.ntasks_per_node=%d", a.local_ranks);
        if (a.n_overrides + 2 > MAX_OVERRIDES) return 2;
        a.overrides[a.n_overrides++] = local_ov[0];
        a.overrides[a.n_overrides++] = local_ov[1];
    }
    cu_error_t err = {0};
    char train[PATH_MAX], cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        fprintf(stderr, "codexctl submit: cannot read the working directory\n");
        return 1;
    }
    if (find_train(a.train, train, sizeof train, &err) != CU_OK) {
        fprintf(stderr, "codexctl submit: %s\n", err.msg);
        return 2;
    }
    uint8_t *text = NULL;
    size_t len = 0;
    if (cu_read_file(a.config, 1 << 20, &text, &len, &err) != CU_OK) {
        fprintf(stderr, "codexctl submit: %s\n", err.msg);
        return 2;
    }
    slurm_plan_t *p = calloc(1, sizeof *p);
    if (!p) {
        free(text);
        return 1;
    }
    rc = slurm_plan_build_grid(p, (const char *)text, len, a.config, a.overrides, a.n_overrides,
                               a.sweeps, a.n_sweeps, cwd, train, a.exports, a.n_exports, &err);
    free(text);
    if (rc != CU_OK) {
        if (a.local_ranks) name_local_ranks(&err, a.local_ranks);
        fprintf(stderr, "codexctl submit: error: %s\n", err.msg);
        slurm_plan_free(p);
        free(p);
        return 2;
    }
    print_adjustments(p);
    if (a.dry_run && a.local_ranks) {
        print_local_command(&a, p, train);
        fprintf(stderr, "codexctl submit: dry run; nothing was written or started\n");
        rc = 0;
    } else if (a.dry_run) {
        fputs(p->script, stdout); /* a sweep's tasks and values are in its comments */
        fprintf(stderr, "codexctl submit: dry run; nothing was written or submitted\n");
        rc = 0;
    } else if ((rc = refuse_if_active(&a, p)) != 0) {
    } else if ((rc = check_inputs(&a, train)) != 0) {
    } else if (a.local_ranks) {
        rc = submit_local(&a, p, train);
    } else {
        rc = submit_slurm(&a, p);
    }
    slurm_plan_free(p);
    free(p);
    return rc;
}
