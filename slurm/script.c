/*
 * The batch script `codexctl submit --slurm` hands to sbatch.
 *
 * Directives come from the config's slurm section; everything taken from
 * the config or the file system is single-quoted for bash, and the values
 * that become #SBATCH lines (which sbatch reads without a shell) were
 * checked by the config schema to hold no spaces or newlines; we refuse
 * newlines again here because one would start a new line of script.
 *
 * How a pre-emption works (docs/slurm.md): Slurm sends SIGUSR1 to the batch
 * shell `signal_grace_s` before the time limit (--signal=B:USR1@grace), or a
 * user does with `scancel --signal=USR1 --batch`. The shell forwards it to
 * the launcher, which forwards it to every rank; codex-train saves a
 * checkpoint and exits 75, and the shell then asks Slurm to requeue the job
 * (`scontrol requeue`). The restarted job finds checkpoints/latest and
 * resumes (checkpoint.resume: auto). A SIGTERM (time limit without a grace
 * period, scancel, a requeue by the administrator) is forwarded too, but
 * does not requeue: Slurm decides the job's fate then.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slurm/slurm.h"

int slurm_shell_quote(const char *s, char *out, size_t cap, cu_error_t *err) {
    size_t n = 0;
    if (cap < 3) return cu_error_set(err, CU_EINVAL, "no room to quote '%s'", s);
    out[n++] = '\'';
    for (const char *c = s; *c; c++) {
        const char *piece = *c == '\'' ? "'\\''" : NULL;
        size_t k = piece ? 4 : 1;
        if (n + k + 2 > cap)
            return cu_error_set(err, CU_EINVAL, "value too long to quote: '%.60s'", s);
        if (piece)
            memcpy(out + n, piece, k);
        else
            out[n] = *c;
        n += k;
    }
    out[n++] = '\'';
    out[n] = '\0';
    return CU_OK;
}

/* A growing text buffer; the first failure sticks in err. */
typedef struct {
    char *buf;
    size_t len, cap;
    cu_error_t *err;
    int failed;
} text_t;

__attribute__((format(printf, 2, 3))) static void add(text_t *t, const char *fmt, ...) {
    if (t->failed) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->failed = 1;
        cu_error_set(t->err, CU_EINTERNAL, "formatting the batch script failed");
        return;
    }
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = (t->cap ? t->cap * 2 : 4096) + (size_t)n;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->failed = 1;
            cu_error_set(t->err, CU_ENOMEM, "out of memory for the batch script");
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* An #SBATCH value must stay on its line. */
static int directive_ok(const char *key, const char *v, cu_error_t *err) {
    if (strpbrk(v, "\n\r"))
        return cu_error_set(err, CU_EINVAL, "%s holds a line break; sbatch would misread it", key);
    return CU_OK;
}

static void directive(text_t *t, const char *opt, const char *key, const char *v) {
    if (t->failed || !v[0]) return;
    if (directive_ok(key, v, t->err) != CU_OK) {
        t->failed = 1;
        return;
    }
    add(t, "#SBATCH --%s=%s\n", opt, v);
}

/* 'quoted' into a buffer the caller owns; failures mark t. */
static const char *q(text_t *t, const char *s, char *buf, size_t cap) {
    if (t->failed) return "''";
    if (slurm_shell_quote(s, buf, cap, t->err) != CU_OK) {
        t->failed = 1;
        return "''";
    }
    return buf;
}

static void add_directives(text_t *t, const cu_config_t *cfg, const slurm_script_opts_t *o) {
    char out[4400];
    const char *name = cfg->job.name;
    directive(t, "job-name", "job.name", name);
    directive(t, "partition", "slurm.partition", cfg->slurm.partition);
    add(t, "#SBATCH --nodes=%d\n", cfg->slurm.nodes);
    add(t, "#SBATCH --ntasks-per-node=%d\n", cfg->slurm.ntasks_per_node);
    add(t, "#SBATCH --cpus-per-task=%d\n", cfg->slurm.cpus_per_task);
    directive(t, "time", "slurm.time", cfg->slurm.time);
    directive(t, "mem", "slurm.mem", cfg->slurm.mem);
    directive(t, "account", "slurm.account", cfg->slurm.account);
    directive(t, "qos", "slurm.qos", cfg->slurm.qos);
    directive(t, "constraint", "slurm.constraint", cfg->slurm.constraint);
    if (cfg->slurm.signal_grace_s > 0)
        add(t, "#SBATCH --signal=B:USR1@%d\n", cfg->slurm.signal_grace_s);
    add(t, "#SBATCH --requeue\n");
    add(t, "#SBATCH --open-mode=append\n");
    directive(t, "chdir", "the working directory", o->workdir);
    if (o->array_tasks > 0) {
        add(t, "#SBATCH --array=0-%d\n", o->array_tasks - 1);
        snprintf(out, sizeof out, "%s/%s-%%a/slurm-%%A_%%a", o->runs_dir, name);
    } else {
        snprintf(out, sizeof out, "%s/%s/slurm-%%j", o->runs_dir, name);
    }
    /* sbatch takes the path as it is (no shell): no spaces allowed */
    if (strpbrk(out, " \t\n")) {
        cu_error_set(t->err, CU_EINVAL,
                     "the run directory '%s' holds white space, which #SBATCH --output cannot "
                     "carry; use a job.runs_dir without spaces",
                     out);
        t->failed = 1;
    }
    add(t, "#SBATCH --output=%s.out\n", out);
    add(t, "#SBATCH --error=%s.err\n", out);
    for (int i = 0; i < cfg->slurm.extra.n; i++) {
        const char *e = cfg->slurm.extra.items[i];
        if (directive_ok("slurm.extra", e, t->err) != CU_OK) {
            t->failed = 1;
            return;
        }
        add(t, "#SBATCH %s\n", e);
    }
}

static void add_environment(text_t *t, const cu_config_t *cfg, const slurm_script_opts_t *o) {
    int threads = cfg->slurm.cpus_per_task;
    add(t, "\n# one BLAS/OpenMP thread per CPU Slurm gives each rank\n");
    add(t, "export OMP_NUM_THREADS=%d OPENBLAS_NUM_THREADS=%d\n", threads, threads);
    add(t, "# the output goes to files: no progress bar (mpirun hands ranks a terminal)\n"
           "export CU_PROGRESS=0\n");
    if (!strcmp(cfg->slurm.launcher, "mpirun") && geteuid() == 0)
        add(t, "# submitted as root: Open MPI refuses root unless told\n"
               "export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1\n");
    for (int i = 0; i < o->n_exports; i++) {
        const char *eq = strchr(o->exports[i], '=');
        char name[128], v[1100];
        size_t nl = eq ? (size_t)(eq - o->exports[i]) : 0;
        if (!eq || nl == 0 || nl >= sizeof name) {
            cu_error_set(t->err, CU_EINVAL, "--export wants NAME=VALUE, got '%s'", o->exports[i]);
            t->failed = 1;
            return;
        }
        memcpy(name, o->exports[i], nl);
        name[nl] = '\0';
        for (size_t k = 0; k < nl; k++) {
            char c = name[k];
            int ok = c == '_' || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                     (k > 0 && c >= '0' && c <= '9');
            if (!ok) {
                cu_error_set(t->err, CU_EINVAL, "--export: '%s' is not a variable name", name);
                t->failed = 1;
                return;
            }
        }
        add(t, "export %s=%s\n", name, q(t, eq + 1, v, sizeof v));
    }
}

char *slurm_script_render(const cu_config_t *cfg, const slurm_script_opts_t *o, cu_error_t *err) {
    text_t t = {.err = err};
    char qw[8300], qr[8300], qn[600], qe[8300];
    add(&t, "#!/bin/bash\n");
    add(&t, "# Generated by codexctl submit for job %s; see docs/slurm.md.\n", cfg->job.name);
    add_directives(&t, cfg, o);
    add_environment(&t, cfg, o);
    add(&t, "\ncd %s || exit 1\n", q(&t, o->workdir, qw, sizeof qw));
    if (o->array_tasks > 0)
        add(&t, "run_dir=%s/%s-\"$SLURM_ARRAY_TASK_ID\"\n", q(&t, o->runs_dir, qr, sizeof qr),
            q(&t, cfg->job.name, qn, sizeof qn));
    else
        add(&t, "run_dir=%s/%s\n", q(&t, o->runs_dir, qr, sizeof qr),
            q(&t, cfg->job.name, qn, sizeof qn));
    add(&t, "train=%s\n", q(&t, o->train_exe, qe, sizeof qe));
    add(&t, "echo \"codex: job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on "
            "$(hostname) at $(date -u +%%FT%%TZ)\"\n");
    add(&t, "\n# Forward a pre-emption warning (USR1) or a stop (TERM) to the ranks:\n"
            "# codex-train checkpoints and exits 75.\n"
            "step_pid=\n"
            "preempted=0\n"
            "trap 'preempted=1; [ -n \"$step_pid\" ] && kill -USR1 \"$step_pid\" 2>/dev/null' "
            "USR1\n"
            "trap '[ -n \"$step_pid\" ] && kill -TERM \"$step_pid\" 2>/dev/null' TERM\n");
    if (!strcmp(cfg->slurm.launcher, "mpirun"))
        add(&t, "mpirun -n \"$SLURM_NTASKS\" \"$train\" \"$run_dir/submit.yaml\" &\n");
    else
        add(&t, "srun --mpi=pmix --kill-on-bad-exit=1 \"$train\" \"$run_dir/submit.yaml\" &\n");
    add(&t, "step_pid=$!\n"
            "while :; do\n"
            "  wait \"$step_pid\"; rc=$?\n"
            "  # a trapped signal interrupts wait; the step may still be running\n"
            "  if [ \"$rc\" -gt 128 ] && kill -0 \"$step_pid\" 2>/dev/null; then continue; fi\n"
            "  break\n"
            "done\n"
            "[ \"$rc\" -gt 128 ] && { wait \"$step_pid\"; rc=$?; }\n"
            "echo \"codex: codex-train exited $rc\"\n"
            "if [ \"$rc\" -eq 75 ] && [ \"$preempted\" -eq 1 ]; then\n"
            "  echo \"codex: checkpoint saved after a pre-emption warning; requeueing\"\n"
            "  scontrol requeue \"$SLURM_JOB_ID\" && exit 0\n"
            "  echo \"codex: scontrol requeue failed; resubmit to resume\" >&2\n"
            "fi\n"
            "exit \"$rc\"\n");
    if (t.failed) {
        free(t.buf);
        return NULL;
    }
    return t.buf;
}
