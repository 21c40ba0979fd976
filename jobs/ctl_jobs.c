/*
 * codexctl list | status | cancel | logs: the jobs under runs/ as their
 * run directories and the scheduler see them together.
 *
 * state.json is what codex-train last wrote; Slurm knows what happened to
 * the job from outside (a time limit, a node failure, a cancel, a requeue).
 * The merge (job_view) trusts the file while the job runs and for a
 * training that completed, and Slurm for how a job ended otherwise: a job
 * Slurm ended for TIMEOUT shows TIMEOUT, never a stale RUNNING, and the
 * ending is written back into state.json so readers without Slurm (the
 * ITA, a later `list`) see it too. A RUNNING job whose heartbeat stopped
 * and that no scheduler or local launcher knows is LOST.
 */
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/json_text.h"
#include "rundir/rundir.h"
#include "rundir/status.h"
#include "slurm/slurm.h"

#define STALE_HEARTBEAT_S 120.0

typedef struct {
    char job[256];
    char dir[4096];
    char status[16];      /* merged */
    char file_status[16]; /* as state.json says */
    char detail[1400];    /* why, when it is not plain */
    char reason[1400];    /* detail, or the first error line of a FAILED job */
    char slurm_id[64];
    long step, max_steps;
    double loss, updated_at;
    double started_at, finished_at, tokens_per_s, eta_s; /* 0 / NAN when unknown */
    long best_step, ckpt_step;                           /* -1 when none */
    double best_val_loss;
    char ckpt_file[512];
    int sched_known;
    slurm_job_info_t sched;
} job_view_t;

static const char *str_or_empty(const char *s) {
    return s ? s : "";
}

static void set(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src);
}

/* The local launcher (codexctl submit --local): 1 alive, 0 gone, -1 no
 * launcher.pid; *pid gets its process group. */
static int launcher_state(const char *dir, long *pid) {
    char path[4200], buf[32] = {0};
    snprintf(path, sizeof path, "%s/launcher.pid", dir);
    *pid = 0;
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    *pid = fgets(buf, sizeof buf, f) ? strtol(buf, NULL, 10) : 0;
    fclose(f);
    return *pid > 1 && (kill((pid_t)*pid, 0) == 0 || errno != ESRCH);
}

static int local_launcher(const char *dir) {
    long pid;
    return launcher_state(dir, &pid);
}

/* Reads state.json and merges it with the scheduler's view. *errmsg gets a
 * note when Slurm could not be asked. Returns CU_EIO when there is no job. */
static int job_view(const char *dir, const char *name, job_view_t *v, int write_back,
                    cu_error_t *err) {
    memset(v, 0, sizeof *v);
    set(v->dir, sizeof v->dir, dir);
    set(v->job, sizeof v->job, name);
    char path[4200];
    if (cu_format(path, sizeof path, err, "%s/state.json", dir) != CU_OK) return err->code;
    json_error_t jerr;
    json_t *o = json_load_file(path, 0, &jerr);
    if (!o) {
        if (access(path, F_OK) != 0)
            return cu_error_set(err, CU_EIO,
                                "no job '%s' (%s not found); codexctl list shows "
                                "the jobs",
                                name, path);
        return cu_error_set(err, CU_EFORMAT, "%s: %s", path, jerr.text);
    }
    set(v->file_status, sizeof v->file_status,
        str_or_empty(json_string_value(json_object_get(o, "status"))));
    set(v->slurm_id, sizeof v->slurm_id,
        str_or_empty(json_string_value(json_object_get(o, "slurm_job_id"))));
    v->step = (long)json_integer_value(json_object_get(o, "step"));
    v->max_steps = (long)json_integer_value(json_object_get(o, "max_steps"));
    json_t *loss = json_object_get(o, "loss");
    v->loss = json_is_number(loss) ? json_number_value(loss) : NAN;
    v->updated_at = rundir_parse_time(json_string_value(json_object_get(o, "updated_at")));
    v->started_at = rundir_parse_time(json_string_value(json_object_get(o, "started_at")));
    v->finished_at = rundir_parse_time(json_string_value(json_object_get(o, "finished_at")));
    json_t *tps = json_object_get(o, "tokens_per_s"), *eta = json_object_get(o, "eta_s");
    v->tokens_per_s = json_is_number(tps) ? json_number_value(tps) : NAN;
    v->eta_s = json_is_number(eta) ? json_number_value(eta) : NAN;
    json_t *best = json_object_get(o, "best_eval"), *ck = json_object_get(o, "last_checkpoint");
    v->best_step =
        json_is_object(best) ? (long)json_integer_value(json_object_get(best, "step")) : -1;
    v->best_val_loss = json_number_value(json_object_get(best, "val_loss"));
    v->ckpt_step = json_is_object(ck) ? (long)json_integer_value(json_object_get(ck, "step")) : -1;
    set(v->ckpt_file, sizeof v->ckpt_file,
        str_or_empty(json_string_value(json_object_get(ck, "file"))));
    json_t *hosts = json_object_get(o, "hosts");
    char error_msg[1024] = "";
    const char *em = json_string_value(json_object_get(json_object_get(o, "error"), "message"));
    if (em) set(error_msg, sizeof error_msg, em);
    int writer_gone = rundir_pid_gone((long)json_integer_value(json_object_get(o, "pid")),
                                      json_string_value(json_array_get(hosts, 0)));
    json_decref(o);

    rundir_witness_t wit = {.file_status = v->file_status,
                            .heartbeat_age_s =
                                v->updated_at > 0 ? rundir_now() - v->updated_at : NAN,
                            .lost_after_s = STALE_HEARTBEAT_S,
                            .has_slurm_id = v->slurm_id[0] != 0,
                            .launcher = v->slurm_id[0] ? -1 : local_launcher(dir),
                            .writer_gone = writer_gone};
    char note[400] = "";
    if (v->slurm_id[0]) {
        cu_error_t qerr = {0};
        int found = 0;
        if (slurm_query(v->slurm_id, &v->sched, &found, &qerr) != CU_OK) {
            snprintf(note, sizeof note, "Slurm not asked: %.360s", qerr.msg);
        } else {
            wit.sched_asked = 1;
            v->sched_known = found;
            wit.sched = found ? &v->sched : NULL;
        }
    }
    rundir_status_resolve(&wit, v->status, sizeof v->status, v->detail, sizeof v->detail);
    if (note[0] && !v->detail[0]) set(v->detail, sizeof v->detail, note);
    rundir_status_reason(v->status, v->detail, error_msg[0] ? error_msg : NULL, v->reason,
                         sizeof v->reason);
    if (write_back && rundir_status_final(v->status) && strcmp(v->status, v->file_status)) {
        cu_error_t werr = {0};
        if (rundir_record_status(dir, v->status, !strcmp(v->status, "FAILED") ? v->detail : NULL,
                                 &werr) != CU_OK)
            snprintf(v->detail, sizeof v->detail, "could not record it: %s", werr.msg);
    }
    return CU_OK;
}

/* ---- locating jobs ---- */

typedef struct {
    const char *runs_dir;
    int json;
    const char *job;
    long tail;
    int wait_s;
    const char *signal;
    const char *status; /* list: only jobs with this status */
    int watch;          /* status: refresh every 2 s until the job ends */
    int follow;         /* logs -f: follow train.log until the job ends */
} jobs_args_t;

static const char *default_runs(void) {
    const char *e = getenv("CU_RUNS_DIR");
    return e && e[0] ? e : "runs";
}

/* JOB is a name under the runs folder, or a path to a run directory. */
static int job_dir(const jobs_args_t *a, char *dir, size_t cap, const char **name) {
    struct stat st;
    char state[4200];
    snprintf(state, sizeof state, "%s/state.json", a->job);
    if (strchr(a->job, '/') && stat(state, &st) == 0) {
        snprintf(dir, cap, "%s", a->job);
        const char *slash = strrchr(a->job, '/');
        *name = slash[1] ? slash + 1 : a->job;
        return 0;
    }
    snprintf(dir, cap, "%s/%s", a->runs_dir, a->job);
    *name = a->job;
    return 0;
}

int ctl_job_is_active(const char *run_dir, char *what, size_t cap) {
    job_view_t v;
    cu_error_t err = {0};
    const char *slash = strrchr(run_dir, '/');
    if (job_view(run_dir, slash ? slash + 1 : run_dir, &v, 0, &err) != CU_OK) return 0;
    if (!rundir_status_active(v.status)) return 0;
    if (v.slurm_id[0])
        snprintf(what, cap, "%s as Slurm job %s", v.status, v.slurm_id);
    else
        snprintf(what, cap, "%s", v.status);
    return 1;
}

static int parse_common(int argc, char **argv, jobs_args_t *a, int need_job, const char *verb) {
    memset(a, 0, sizeof *a);
    a->runs_dir = default_runs();
    a->tail = -1;
    a->wait_s = 30;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int has_next = i + 1 < argc;
        if (!strcmp(s, "--runs") && has_next) {
            a->runs_dir = argv[++i];
        } else if (!strcmp(s, "--json")) {
            a->json = 1;
        } else if (!strcmp(s, "--watch")) {
            a->watch = 1;
        } else if (!strcmp(s, "-f") || !strcmp(s, "--follow")) {
            a->follow = 1;
        } else if (!strcmp(s, "--tail") && has_next) {
            a->tail = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(s, "--wait") && has_next) {
            a->wait_s = (int)strtol(argv[++i], NULL, 10);
        } else if (!strcmp(s, "--status") && has_next) {
            a->status = argv[++i];
            if (!rundir_status_known(a->status)) {
                fprintf(stderr,
                        "codexctl %s: --status %s is not a status (SUBMITTED, PENDING, RUNNING, "
                        "PREEMPTED, COMPLETED, FAILED, CANCELLED, TIMEOUT, LOST)\n",
                        verb, a->status);
                return 2;
            }
        } else if (!strcmp(s, "--signal") && has_next) {
            a->signal = argv[++i];
        } else if (s[0] == '-') {
            fprintf(stderr, "codexctl %s: unknown or incomplete option '%s' (see --help)\n", verb,
                    s);
            return 2;
        } else if (!a->job && need_job) {
            a->job = s;
        } else {
            fprintf(stderr, "codexctl %s: unexpected argument '%s' (see --help)\n", verb, s);
            return 2;
        }
    }
    if (need_job && !a->job) {
        fprintf(stderr, "codexctl %s: which job? (codexctl list shows them)\n", verb);
        return 2;
    }
    return 0;
}

static int wants_help(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
    return 0;
}

static json_t *view_json(const job_view_t *v) {
    json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "job", v->job, "status", v->status,
                          "recorded_status", v->file_status, "dir", v->dir, "step",
                          (json_int_t)v->step, "max_steps", (json_int_t)v->max_steps);
    json_object_set_new(o, "loss", isnan(v->loss) ? json_null() : json_real(v->loss));
    json_object_set_new(o, "slurm_job_id", v->slurm_id[0] ? json_string(v->slurm_id) : json_null());
    json_object_set_new(o, "detail", v->detail[0] ? json_string(v->detail) : json_null());
    json_object_set_new(o, "reason", v->reason[0] ? json_string(v->reason) : json_null());
    double end = v->finished_at > 0 ? v->finished_at : rundir_now();
    json_object_set_new(o, "elapsed_s",
                        v->started_at > 0 ? json_real(end - v->started_at) : json_null());
    int running = !strcmp(v->status, "RUNNING");
    json_object_set_new(o, "eta_s",
                        running && !isnan(v->eta_s) ? json_real(v->eta_s) : json_null());
    json_object_set_new(o, "tokens_per_s",
                        isnan(v->tokens_per_s) ? json_null() : json_real(v->tokens_per_s));
    json_object_set_new(o, "best_eval",
                        v->best_step < 0 ? json_null()
                                         : json_pack("{s:I,s:f}", "step", (json_int_t)v->best_step,
                                                     "val_loss", v->best_val_loss));
    json_object_set_new(o, "last_checkpoint",
                        v->ckpt_step < 0 ? json_null()
                                         : json_pack("{s:I,s:s}", "step", (json_int_t)v->ckpt_step,
                                                     "file", v->ckpt_file));
    if (v->sched_known)
        json_object_set_new(o, "slurm",
                            json_pack("{s:s, s:s, s:s, s:s}", "id", v->sched.id, "state",
                                      v->sched.slurm_state, "reason", v->sched.reason, "nodes",
                                      v->sched.nodes));
    return o;
}

static void print_json(json_t *o) {
    char *text = json_dumps(o, JSON_INDENT(2));
    if (text) puts(text);
    free(text);
    json_decref(o);
}

/* ---- status ---- */

static void print_status(const job_view_t *vp) {
    job_view_t v = *vp;
    printf("job:     %s\n", v.job);
    printf("status:  %s%s%s%s\n", v.status, v.reason[0] ? " (" : "", v.reason,
           v.reason[0] ? ")" : "");
    printf("step:    %ld/%ld\n", v.step, v.max_steps);
    if (!isnan(v.loss)) printf("loss:    %.4f\n", v.loss);
    if (v.started_at > 0)
        printf("elapsed: %.0f s\n",
               (v.finished_at > 0 ? v.finished_at : rundir_now()) - v.started_at);
    if (!strcmp(v.status, "RUNNING") && !isnan(v.eta_s)) printf("eta:     %.0f s\n", v.eta_s);
    if (!isnan(v.tokens_per_s)) printf("speed:   %.0f tokens/s\n", v.tokens_per_s);
    if (v.best_step >= 0)
        printf("best:    val loss %.4f at step %ld\n", v.best_val_loss, v.best_step);
    if (v.ckpt_step >= 0) printf("ckpt:    %s (step %ld)\n", v.ckpt_file, v.ckpt_step);
    if (v.slurm_id[0])
        printf("slurm:   job %s%s%s%s%s\n", v.slurm_id, v.sched_known ? ", " : ", unknown to Slurm",
               v.sched_known ? v.sched.slurm_state : "", v.sched.nodes[0] ? " on " : "",
               v.sched.nodes);
    printf("dir:     %s\n", v.dir);
}

int ctl_status(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        puts("usage: codexctl status JOB [--runs DIR] [--json] [--watch]\n"
             "\n"
             "One job's state: its run directory (runs/JOB/state.json) merged with\n"
             "Slurm's view (squeue, then sacct). A job Slurm ended (TIMEOUT, CANCELLED,\n"
             "NODE_FAIL...) shows that, and the ending is recorded in state.json.\n"
             "JOB is a job name under --runs (default: $CU_RUNS_DIR or runs) or a path.\n"
             "Shown: status and reason (a FAILED job's first error line), step/max,\n"
             "loss, elapsed, ETA, tokens/s, best validation loss and step, last\n"
             "checkpoint; --json has all of it; --watch refreshes every 2 s in place\n"
             "until the job ends.\n"
             "\n"
             "exit status: 0 shown, 1 no such job or unreadable state, 2 bad usage.");
        return 0;
    }
    jobs_args_t a;
    int rc = parse_common(argc, argv, &a, 1, "status");
    if (rc) return rc;
    char dir[4096];
    const char *name;
    job_dir(&a, dir, sizeof dir, &name);
    for (;;) {
        job_view_t v;
        cu_error_t err = {0};
        if (job_view(dir, name, &v, 1, &err) != CU_OK) {
            fprintf(stderr, "codexctl status: %s\n", err.msg);
            return 1;
        }
        if (a.json) {
            print_json(view_json(&v));
        } else {
            if (a.watch && isatty(STDOUT_FILENO)) fputs("\033[H\033[J", stdout); /* in place */
            print_status(&v);
        }
        fflush(stdout);
        /* --watch: until the job has ended (or is LOST) */
        if (!a.watch || !rundir_status_active(v.status) || !strcmp(v.status, "PREEMPTED")) return 0;
        sleep(2);
    }
}

/* ---- list ---- */

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int ctl_list(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        puts("usage: codexctl list [--runs DIR] [--json] [--status S]\n"
             "\n"
             "Every job under the runs folder (default: $CU_RUNS_DIR or runs) with its\n"
             "status merged with Slurm's view, step, loss, Slurm job id and the reason\n"
             "(the first error line of a FAILED job); --status S shows only status S.\n"
             "\n"
             "exit status: 0 listed (also when empty), 1 the folder cannot be read,\n"
             "2 bad usage.");
        return 0;
    }
    jobs_args_t a;
    int rc = parse_common(argc, argv, &a, 0, "list");
    if (rc) return rc;
    DIR *d = opendir(a.runs_dir);
    if (!d) {
        fprintf(stderr, "codexctl list: cannot read %s: %s (pass --runs DIR)\n", a.runs_dir,
                strerror(errno));
        return 1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) break;
            names = nn;
        }
        names[n] = strdup(e->d_name);
        if (names[n]) n++;
    }
    closedir(d);
    qsort(names, n, sizeof *names, name_cmp);
    json_t *arr = a.json ? json_array() : NULL;
    if (!a.json)
        printf("%-24s %-10s %13s %9s %-10s %s\n", "JOB", "STATUS", "STEP", "LOSS", "SLURM",
               "REASON");
    for (size_t i = 0; i < n; i++) {
        char dir[4400];
        snprintf(dir, sizeof dir, "%s/%s", a.runs_dir, names[i]);
        job_view_t v;
        cu_error_t err = {0};
        if (job_view(dir, names[i], &v, 1, &err) == CU_OK &&
            (!a.status || !strcmp(a.status, v.status))) {
            if (arr) {
                json_array_append_new(arr, view_json(&v));
            } else {
                char steps[40], loss[24];
                snprintf(steps, sizeof steps, "%ld/%ld", v.step, v.max_steps);
                if (isnan(v.loss))
                    snprintf(loss, sizeof loss, "-");
                else
                    snprintf(loss, sizeof loss, "%.4f", v.loss);
                printf("%-24s %-10s %13s %9s %-10s %s\n", v.job, v.status, steps, loss,
                       v.slurm_id[0] ? v.slurm_id : "-", v.reason);
            }
        }
        free(names[i]);
    }
    free(names);
    if (arr) print_json(arr);
    return 0;
}

/* ---- cancel ---- */

static int append_cancel_event(const char *dir, long step, const char *msg) {
    rundir_t d;
    cu_error_t err = {0};
    if (rundir_open(&d, dir, &err) != CU_OK) return err.code;
    int rc = rundir_event(&d, step, "cancelled", msg, NULL, &err);
    rundir_close(&d);
    return rc;
}

int ctl_cancel(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        puts("usage: codexctl cancel JOB [--runs DIR] [--wait SECONDS] [--signal SIG]\n"
             "\n"
             "Cancels a job: scancel for a Slurm job, SIGTERM to the process group of a\n"
             "--local one. Waits up to --wait seconds (default 30) for it to end, then\n"
             "records CANCELLED in state.json and a 'cancelled' event.\n"
             "--signal SIG (e.g. USR1) only signals the job instead: USR1 makes it save a\n"
             "checkpoint, exit, and be requeued by its batch script (a manual pre-emption).\n"
             "\n"
             "exit status: 0 cancelled or signalled, 1 no such job, already ended or the\n"
             "scheduler refused, 2 bad usage.");
        return 0;
    }
    jobs_args_t a;
    int rc = parse_common(argc, argv, &a, 1, "cancel");
    if (rc) return rc;
    char dir[4096];
    const char *name;
    job_dir(&a, dir, sizeof dir, &name);
    job_view_t v;
    cu_error_t err = {0};
    if (job_view(dir, name, &v, 1, &err) != CU_OK) {
        fprintf(stderr, "codexctl cancel: %s\n", err.msg);
        return 1;
    }
    if (rundir_status_final(v.status) || !strcmp(v.status, "LOST")) {
        fprintf(stderr, "codexctl cancel: job %s already ended (%s); nothing to cancel\n", name,
                v.status);
        return 1;
    }
    long pid = 0;
    if (!v.slurm_id[0] && launcher_state(dir, &pid) != 1) pid = 0;
    if (v.slurm_id[0]) {
        if (slurm_cancel(v.slurm_id, a.signal, &err) != CU_OK) {
            fprintf(stderr, "codexctl cancel: %s\n", err.msg);
            return 1;
        }
    } else if (pid > 0) {
        int sig = SIGTERM;
        if (a.signal && (!strcmp(a.signal, "USR1") || !strcmp(a.signal, "SIGUSR1"))) sig = SIGUSR1;
        if (kill(-(pid_t)pid, sig) != 0 && kill((pid_t)pid, sig) != 0) {
            fprintf(stderr, "codexctl cancel: cannot signal pid %ld: %s\n", pid, strerror(errno));
            return 1;
        }
    } else {
        fprintf(stderr, "codexctl cancel: job %s has neither a Slurm job id nor a live launcher\n",
                name);
        return 1;
    }
    if (a.signal) {
        printf("signalled job %s with %s\n", name, a.signal);
        return 0;
    }
    /* let codex-train finish its checkpoint and write its own state first,
     * so CANCELLED is the last word */
    for (int t = 0; t < a.wait_s * 2; t++) {
        job_view_t w;
        if (job_view(dir, name, &w, 0, &err) != CU_OK) break;
        int gone = v.slurm_id[0] ? (!w.sched_known || w.sched.terminal) : local_launcher(dir) <= 0;
        if (gone) break;
        struct timespec ts = {0, 500000000L};
        nanosleep(&ts, NULL);
    }
    if (rundir_record_status(dir, "CANCELLED", NULL, &err) != CU_OK) {
        fprintf(stderr, "codexctl cancel: cancelled, but %s\n", err.msg);
        return 1;
    }
    char msg[200];
    snprintf(msg, sizeof msg, "cancelled by codexctl%s%s", v.slurm_id[0] ? " (scancel " : "",
             v.slurm_id[0] ? v.slurm_id : "");
    if (v.slurm_id[0]) strncat(msg, ")", sizeof msg - strlen(msg) - 1);
    append_cancel_event(dir, v.step, msg);
    if (v.slurm_id[0])
        printf("cancelled job %s (Slurm job %s)\n", name, v.slurm_id);
    else
        printf("cancelled job %s\n", name);
    return 0;
}

/* ---- logs ---- */

static void print_file(const char *path, long tail) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char **ring = NULL;
    long n = 0;
    char line[8192];
    if (tail > 0) ring = calloc((size_t)tail, sizeof *ring);
    printf("==> %s <==\n", path);
    while (fgets(line, sizeof line, f)) {
        if (!ring) {
            fputs(line, stdout);
            continue;
        }
        free(ring[n % tail]);
        ring[n % tail] = strdup(line);
        n++;
    }
    if (ring) {
        for (long i = n > tail ? n - tail : 0; i < n; i++)
            fputs(str_or_empty(ring[i % tail]), stdout);
        for (long i = 0; i < tail; i++) free(ring[i]);
        free(ring);
    }
    fclose(f);
}

static int logname_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Copies what was appended to path since *offset to stdout; a file that
 * shrank (a run started over with --overwrite) is read again from the
 * start. */
static void copy_new(const char *path, long *offset) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && st.st_size < *offset) *offset = 0;
    if (fseek(f, *offset, SEEK_SET) == 0) {
        char buf[8192];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
            fwrite(buf, 1, n, stdout);
            *offset += (long)n;
        }
        fflush(stdout);
    }
    fclose(f);
}

/* Has the job's process ended? COMPLETED, FAILED, CANCELLED, TIMEOUT,
 * LOST, or PREEMPTED (a requeued job starts a new follow). */
static int job_ended(const char *dir, const char *name) {
    job_view_t v;
    cu_error_t err = {0};
    if (job_view(dir, name, &v, 0, &err) != CU_OK) return 0;
    return !rundir_status_active(v.status) || !strcmp(v.status, "PREEMPTED");
}

/* logs -f: train.log as tail -f shows it, until the job has ended. */
static int follow_log(const char *dir, const char *name, long tail) {
    char path[4400];
    snprintf(path, sizeof path, "%s/train.log", dir);
    long offset = 0;
    if (tail >= 0 && access(path, R_OK) == 0) {
        if (tail > 0) print_file(path, tail);
        struct stat st;
        if (stat(path, &st) == 0) offset = (long)st.st_size;
    }
    for (;;) {
        int ended = job_ended(dir, name); /* before the read: its last lines are shown */
        copy_new(path, &offset);
        if (ended) return 0;
        struct timespec ts = {0, 250 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

int ctl_logs(int argc, char **argv) {
    if (wants_help(argc, argv)) {
        puts("usage: codexctl logs JOB [--runs DIR] [--tail N] [-f]\n"
             "\n"
             "Prints the job's output: train.log (codex-train's own log, whatever launched\n"
             "it), slurm-<id>.out and .err of every Slurm run in the run directory (a\n"
             "requeued job appends to the same files), or local.out of a --local one;\n"
             "--tail N keeps the last N lines of each. events.jsonl and\n"
             "metrics.jsonl hold the structured record.\n"
             "\n"
             "-f, --follow  print train.log and what is appended to it, as tail -f does,\n"
             "              until the job has ended (COMPLETED, FAILED, CANCELLED, TIMEOUT,\n"
             "              LOST or PREEMPTED); with --tail N it starts from the last N\n"
             "              lines; a job not started yet is waited for.\n"
             "\n"
             "exit status: 0 printed, 1 no such job or no output yet, 2 bad usage.");
        return 0;
    }
    jobs_args_t a;
    int rc = parse_common(argc, argv, &a, 1, "logs");
    if (rc) return rc;
    char dir[4096];
    const char *name;
    job_dir(&a, dir, sizeof dir, &name);
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "codexctl logs: no job '%s' (%s: %s); codexctl list shows the jobs\n", name,
                dir, strerror(errno));
        return 1;
    }
    if (a.follow) {
        closedir(d);
        return follow_log(dir, name, a.tail);
    }
    char *files[256];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 256;) {
        size_t l = strlen(e->d_name);
        int slurm_log = !strncmp(e->d_name, "slurm-", 6) && l > 4 &&
                        (!strcmp(e->d_name + l - 4, ".out") || !strcmp(e->d_name + l - 4, ".err"));
        if (slurm_log || !strcmp(e->d_name, "local.out") || !strcmp(e->d_name, "train.log")) {
            char path[4400];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            files[n] = strdup(path);
            if (files[n]) n++;
        }
    }
    closedir(d);
    if (n == 0) {
        fprintf(stderr, "codexctl logs: job %s has no output yet (see codexctl status %s)\n", name,
                name);
        return 1;
    }
    qsort(files, (size_t)n, sizeof *files, logname_cmp);
    for (int i = 0; i < n; i++) {
        print_file(files[i], a.tail);
        free(files[i]);
    }
    return 0;
}
