/*
 * POST /v1/jobs and POST /v1/jobs/{id}/cancel (scope submit): starting a
 * training job through the service and stopping one.
 *
 * A submission is a JSON object (docs/ita.md):
 *
 *   {"config": "<job YAML or JSON text>", "overrides": ["train.lr=3e-4"],
 *    "launcher": "slurm" | "local", "ranks": 2, "sweep": "train.lr=1e-4,3e-4"}
 *
 * The config is resolved and validated exactly as `codexctl submit` and
 * codex-train do (io/config.c through slurm_plan_build), so a bad key or
 * value is a 400 naming it. Job output stays inside the service's runs
 * directory: job.runs_dir is the service's (a config naming another folder
 * is refused), train.output must lie beneath it, and sbatch options that
 * move the job's output or working directory are refused. ?dry_run=true
 * answers the batch script and writes nothing.
 *
 * Otherwise the run directory is written (submit.yaml, job.sbatch,
 * state.json SUBMITTED, a "submitted" event naming the key), then sbatch
 * runs, bounded by slurm.timeout_s (a local launch spawns mpirun detached
 * instead), and state.json records PENDING with the Slurm id. Submissions
 * are serialised service-wide. All of a request's work (parsing the body,
 * resolving the config, sbatch, scancel) runs in the worker pool (pool.h),
 * never on an event loop: 503 with Retry-After when the pool is full.
 *
 * A cancel scancels a Slurm job (or signals a local launch's process
 * group), records CANCELLED and a "cancelled" event at once, and asks the
 * scheduler thread to record CANCELLED again once the job has stopped (a
 * job on its way out may still write its own state).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/json_text.h"
#include "ita/http.h"
#include "ita/submit.h"
#include "rundir/rundir.h"
#include "rundir/status.h"
#include "slurm/slurm.h"

#define MAX_OVERRIDES 128
#define MAX_LOCAL_RANKS 64

extern char **environ;

typedef struct {
    const char *text; /* the config */
    size_t len;
    char *overrides[MAX_OVERRIDES + 3];
    int n_overrides;
    const char *sweep;
    int local;
    int ranks; /* local only */
} submit_req_t;

/* Sets res to a problem with status and detail; returns -1. */
static int fail(ita_submit_result_t *res, int status, const char *detail) {
    res->status = status;
    snprintf(res->detail, sizeof res->detail, "%s", detail);
    return -1;
}

/* Parses the body into r (pointers into doc). 0, or -1 with res a 400. */
static int parse_submit(json_t *doc, submit_req_t *r, ita_submit_result_t *res) {
    memset(r, 0, sizeof *r);
    const char *bad = NULL;
    json_t *cfg = json_object_get(doc, "config");
    const char *key;
    json_t *v;
    json_object_foreach(doc, key, v) {
        if (strcmp(key, "config") && strcmp(key, "overrides") && strcmp(key, "launcher") &&
            strcmp(key, "ranks") && strcmp(key, "sweep")) {
            char d[200];
            snprintf(d, sizeof d,
                     "unknown field '%.60s' (config, overrides, launcher, ranks, sweep)", key);
            return fail(res, 400, d);
        }
    }
    if (!json_is_string(cfg)) {
        bad = "'config' is the job config as a YAML or JSON string";
    } else {
        r->text = json_string_value(cfg);
        r->len = json_string_length(cfg);
    }
    json_t *ov = json_object_get(doc, "overrides");
    if (!bad && ov && !json_is_array(ov)) bad = "'overrides' is a list of \"section.key=value\"";
    size_t i;
    json_array_foreach(bad ? NULL : ov, i, v) {
        if (r->n_overrides == MAX_OVERRIDES || !json_is_string(v) ||
            !strchr(json_string_value(v), '=')) {
            bad = "'overrides' is a list of at most 128 \"section.key=value\" strings";
            break;
        }
        r->overrides[r->n_overrides++] = (char *)json_string_value(v);
    }
    json_t *l = json_object_get(doc, "launcher");
    const char *ls = json_string_value(l);
    if (!bad && l && (!ls || (strcmp(ls, "slurm") && strcmp(ls, "local"))))
        bad = "'launcher' is \"slurm\" (the default) or \"local\"";
    r->local = ls && !strcmp(ls, "local");
    json_t *rk = json_object_get(doc, "ranks");
    if (!bad && rk) {
        if (!r->local)
            bad = "'ranks' is for the local launcher; Slurm jobs take slurm.nodes and "
                  "slurm.ntasks_per_node from the config";
        else if (!json_is_integer(rk) || json_integer_value(rk) < 1 ||
                 json_integer_value(rk) > MAX_LOCAL_RANKS)
            bad = "'ranks' is an integer from 1 to 64";
        else
            r->ranks = (int)json_integer_value(rk);
    }
    if (!bad && r->local && !rk) bad = "the local launcher needs 'ranks'";
    json_t *sw = json_object_get(doc, "sweep");
    if (!bad && sw && (!json_is_string(sw) || r->local))
        bad = "'sweep' is \"KEY=V1,V2,...\" and makes a Slurm job array (not with launcher local)";
    r->sweep = json_string_value(sw);
    return bad ? fail(res, 400, bad) : 0;
}

/* 1 when path (absolute, or relative to workdir) lies beneath dir. Lexical:
 * "." and ".." components are refused outright. */
static int beneath(const char *path, const char *workdir, const char *dir) {
    char abs[PATH_MAX + 2];
    if (snprintf(abs, sizeof abs, "%s%s%s", path[0] == '/' ? "" : workdir,
                 path[0] == '/' ? "" : "/", path) >= (int)sizeof abs)
        return 0;
    for (const char *p = abs; (p = strchr(p, '/')); p++)
        if (!strncmp(p, "/../", 4) || !strcmp(p, "/..") || !strncmp(p, "/./", 3) ||
            !strcmp(p, "/."))
            return 0;
    size_t n = strlen(dir);
    return !strncmp(abs, dir, n) && abs[n] == '/' && abs[n + 1];
}

/* The keys through which a config could write outside the runs directory. */
static int check_confined(const cu_config_t *c, const char *workdir, const char *runs_real,
                          char *why, size_t cap) {
    if (strcmp(c->job.runs_dir, "runs")) {
        char abs[PATH_MAX + 2], real[PATH_MAX];
        snprintf(abs, sizeof abs, "%s%s%s", c->job.runs_dir[0] == '/' ? "" : workdir,
                 c->job.runs_dir[0] == '/' ? "" : "/", c->job.runs_dir);
        if (!realpath(abs, real) || strcmp(real, runs_real)) {
            snprintf(why, cap,
                     "job.runs_dir: '%.200s' is not the service's runs directory; leave it out "
                     "(jobs submitted here run in %.200s)",
                     c->job.runs_dir, runs_real);
            return -1;
        }
    }
    if (c->train.output[0] && !beneath(c->train.output, workdir, runs_real)) {
        snprintf(why, cap, "train.output: '%.200s' is outside the service's runs directory %.200s",
                 c->train.output, runs_real);
        return -1;
    }
    for (int i = 0; i < c->slurm.extra.n; i++) {
        char opt[32];
        if (slurm_extra_moves_files(c->slurm.extra.items[i], opt, sizeof opt)) {
            snprintf(why, cap,
                     "slurm.extra: '%.100s' sets %s, which would move the job's files; "
                     "codex-ita keeps them in the run directory",
                     c->slurm.extra.items[i], opt);
            return -1;
        }
    }
    return 0;
}

/* A job's first state.json: rundir's submit record, as codexctl submit
 * writes it (docs/formats.md). */
static int write_first_state(ita_jobdir_t *jobs, const cu_config_t *c, int world,
                             const char *status, const char *slurm_id, const char *error,
                             cu_error_t *err) {
    rundir_state_t s;
    rundir_state_init(&s, c->job.name);
    snprintf(s.status, sizeof s.status, "%s", status);
    s.max_steps = c->train.max_steps;
    s.world_size = world;
    s.threads = c->train.threads;
    if (slurm_id) snprintf(s.slurm_job_id, sizeof s.slurm_job_id, "%s", slurm_id);
    if (error) {
        snprintf(s.error, sizeof s.error, "%s", error);
        s.error_rank = 0;
        s.finished_at = rundir_now();
    }
    int dfd = ita_jobdir_openat(jobs, c->job.name, "", O_RDONLY | O_DIRECTORY);
    if (dfd < 0) return cu_error_set(err, CU_EIO, "job '%s': %s", c->job.name, strerror(errno));
    int rc = rundir_write_state_at(dfd, &s, err);
    close(dfd);
    return rc;
}

/* Appends an event to the job's events.jsonl, the line as rundir/ makes
 * it for codex-train, through the service's own descriptor of the job. */
static void append_event(ita_jobdir_t *jd, const char *job, long step, const char *type,
                         const char *message) {
    cu_error_t err;
    char *line = rundir_event_line(step, type, message, NULL, &err);
    if (!line) return;
    line[strcspn(line, "\n")] = '\0'; /* ita_jobdir_append_line ends it */
    ita_jobdir_append_line(jd, job, "events.jsonl", line, &err);
    free(line);
}

/* mpirun -n ranks codex-train <run dir>/submit.yaml, detached in its own
 * session, output into local.out; posix_spawn, so nothing runs between
 * fork and exec in this multi-threaded process. */
static int spawn_local(const ita_config_t *cfg, const slurm_plan_t *p, int ranks, pid_t *pid,
                       cu_error_t *err) {
    char out[4200], conf[4200], nb[16], th[64], omp[64];
    snprintf(out, sizeof out, "%s/local.out", p->run_dir);
    snprintf(conf, sizeof conf, "%s/submit.yaml", p->run_dir);
    snprintf(nb, sizeof nb, "%d", ranks);
    snprintf(th, sizeof th, "OPENBLAS_NUM_THREADS=%d", p->cfg.train.threads);
    snprintf(omp, sizeof omp, "OMP_NUM_THREADS=%d", p->cfg.train.threads);
    size_t n_env = 0;
    while (environ[n_env]) n_env++;
    /* opened here, not by the spawn: a FIFO named local.out must not block */
    int out_fd = rundir_open_regular(AT_FDCWD, out, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out_fd < 0)
        return cu_error_set(err, CU_EIO, "%s: %s", out,
                            errno == EINVAL ? "not a regular file" : strerror(errno));
    char **envp = calloc(n_env + 6, sizeof *envp);
    if (!envp) {
        close(out_fd);
        return cu_error_set(err, CU_ENOMEM, "out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
        if (strncmp(environ[i], "OPENBLAS_NUM_THREADS=", 21) &&
            strncmp(environ[i], "OMP_NUM_THREADS=", 16) && strncmp(environ[i], "CU_PROGRESS=", 12))
            envp[k++] = environ[i];
    envp[k++] = th;
    envp[k++] = omp;
    envp[k++] = "CU_PROGRESS=0"; /* local.out is a file: no progress bar */
    if (geteuid() == 0) {
        envp[k++] = "OMPI_ALLOW_RUN_AS_ROOT=1";
        envp[k++] = "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1";
    }
    char *argv[] = {"mpirun", "-n", nb, "--oversubscribe", (char *)cfg->submit_train, conf, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
    posix_spawn_file_actions_addchdir_np(&fa, p->workdir);
    /* codex-ita blocks SIGTERM/SIGINT (it sigwaits for them) and ignores
     * SIGPIPE; the job must not inherit either, or a cancel cannot stop it */
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGINT);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setflags(&at,
                             POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int e = posix_spawnp(pid, "mpirun", &fa, &at, argv, envp);
    close(out_fd);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    free(envp);
    if (e != 0) return cu_error_set(err, CU_EIO, "cannot start mpirun: %s", strerror(e));
    return CU_OK;
}

static json_t *task_names(const slurm_plan_t *p) {
    json_t *a = json_array();
    int n = p->n_tasks ? p->n_tasks : 1;
    for (int i = 0; i < n; i++)
        json_array_append_new(a,
                              json_string(p->n_tasks ? p->task_cfg[i].job.name : p->cfg.job.name));
    return a;
}

/* Writes, launches and records the plan; fills res. */
static void launch(const ita_submit_ctx_t *sc, const submit_req_t *r, slurm_plan_t *p,
                   ita_submit_result_t *res) {
    cu_error_t err = {0};
    int n = p->n_tasks ? p->n_tasks : 1;
    int world = p->cfg.slurm.nodes * p->cfg.slurm.ntasks_per_node;
    for (int i = 0; i < n; i++) {
        const cu_config_t *c = p->n_tasks ? &p->task_cfg[i] : &p->cfg;
        ita_job_summary_t s;
        if (ita_jobdir_state(sc->jobs, c->job.name, &s, NULL, &err) == CU_OK &&
            rundir_status_active(s.status)) {
            char d[1000];
            snprintf(d, sizeof d,
                     "job %s is %s%s%s; cancel it (POST /v1/jobs/%s/cancel) or pick another "
                     "job.name",
                     c->job.name, s.status, s.slurm_job_id[0] ? " as Slurm job " : "",
                     s.slurm_job_id, c->job.name);
            fail(res, 409, d);
            return;
        }
    }
    char script[4400], who[200];
    snprintf(who, sizeof who, "key %s (%s)", sc->key_name ? sc->key_name : "",
             sc->key_id ? sc->key_id : "");
    if (slurm_plan_write(p, script, sizeof script, &err) != CU_OK) {
        snprintf(res->log, sizeof res->log, "%s", err.msg);
        fail(res, 500, "the run directory could not be written");
        return;
    }
    for (int i = 0; i < n; i++) {
        const cu_config_t *c = p->n_tasks ? &p->task_cfg[i] : &p->cfg;
        if (write_first_state(sc->jobs, c, world, "SUBMITTED", NULL, NULL, &err) != CU_OK) {
            snprintf(res->log, sizeof res->log, "%s", err.msg);
            fail(res, 500, "the run directory could not be written");
            return;
        }
    }
    char id[64] = "";
    pid_t pid = 0;
    int rc = r->local ? spawn_local(sc->cfg, p, r->ranks, &pid, &err)
                      : slurm_submit_timeout(script, p->workdir, sc->cfg->slurm_timeout_s, id,
                                             sizeof id, &err);
    if (rc != CU_OK) {
        for (int i = 0; i < n; i++) {
            const cu_config_t *c = p->n_tasks ? &p->task_cfg[i] : &p->cfg;
            cu_error_t e2;
            write_first_state(sc->jobs, c, world, "FAILED", NULL, err.msg, &e2);
        }
        snprintf(res->log, sizeof res->log, "%s", err.msg);
        fail(res, 502, err.msg);
        return;
    }
    json_t *jobs = json_array();
    for (int i = 0; i < n; i++) {
        const cu_config_t *c = p->n_tasks ? &p->task_cfg[i] : &p->cfg;
        char tid[80], msg[800];
        if (p->n_tasks)
            snprintf(tid, sizeof tid, "%s_%d", id, i);
        else
            snprintf(tid, sizeof tid, "%s", id);
        if (r->local) {
            char text[32];
            snprintf(text, sizeof text, "%ld\n", (long)pid);
            ita_jobdir_write_file(sc->jobs, c->job.name, "launcher.pid", text, strlen(text), &err);
            snprintf(msg, sizeof msg, "submitted through codex-ita by %s: mpirun -n %d, pid %ld",
                     who, r->ranks, (long)pid);
        } else {
            write_first_state(sc->jobs, c, world, "PENDING", tid, NULL, &err);
            snprintf(msg, sizeof msg, "submitted through codex-ita by %s as Slurm job %s", who,
                     tid);
        }
        append_event(sc->jobs, c->job.name, 0, "submitted", msg);
        json_array_append_new(jobs, json_pack("{s:s, s:o}", "id", c->job.name, "slurm_job_id",
                                              r->local ? json_null() : json_string(tid)));
    }
    if (sc->sched && r->local) ita_sched_track_pid(sc->sched, pid);
    if (sc->sched) ita_sched_kick(sc->sched);
    const char *first = n > 1 ? p->task_cfg[0].job.name : p->cfg.job.name;
    snprintf(res->location, sizeof res->location, "/v1/jobs/%s", first);
    if (r->local)
        snprintf(res->launched, sizeof res->launched, "local pid %ld", (long)pid);
    else
        snprintf(res->launched, sizeof res->launched, "slurm %s", id);
    res->doc = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o}", "job", first, "launcher",
                         r->local ? "local" : "slurm", "status", r->local ? "SUBMITTED" : "PENDING",
                         "slurm_job_id", r->local ? json_null() : json_string(id), "pid",
                         r->local ? json_integer(pid) : json_null(), "jobs", jobs);
    if (!res->doc)
        fail(res, 500, "out of memory while formatting the answer");
    else
        res->status = 201;
}

/* Resolves the submission into p: the config as written must stay in the
 * runs directory, then the plan is built with the service's runs_dir (the
 * overrides added here live only as long as this call, which is all the
 * plan needs). 0, or -1 with res a problem. */
static int plan_submission(const ita_submit_ctx_t *sc, submit_req_t *r, slurm_plan_t *p,
                           ita_submit_result_t *res) {
    const ita_config_t *cfg = sc->cfg;
    char runs_real[PATH_MAX], why[600], ov_runs[PATH_MAX + 16], ov_nodes[32], ov_tasks[48];
    cu_error_t err = {0};
    if (!realpath(cfg->runs_dir, runs_real)) return fail(res, 500, "the runs directory is gone");
    if (r->local) {
        snprintf(ov_nodes, sizeof ov_nodes, "slurm.nodes=1");
        snprintf(ov_tasks, sizeof ov_tasks, "slurm.ntasks_per_node=%d", r->ranks);
        r->overrides[r->n_overrides++] = ov_nodes;
        r->overrides[r->n_overrides++] = ov_tasks;
    }
    /* The config as its author wrote it: where would it write? */
    cu_config_t *pre = malloc(sizeof *pre);
    if (!pre) return fail(res, 500, "out of memory");
    config_defaults(pre);
    int bad = config_parse_yaml(pre, r->text, r->len, "config", &err) != CU_OK;
    for (int i = 0; !bad && i < r->n_overrides; i++)
        bad = config_apply_override(pre, r->overrides[i], &err) != CU_OK;
    int confined = !bad && !check_confined(pre, cfg->submit_workdir, runs_real, why, sizeof why);
    free(pre);
    if (bad) return fail(res, 400, err.msg);
    if (!confined) return fail(res, 400, why);
    snprintf(ov_runs, sizeof ov_runs, "job.runs_dir=%s", runs_real);
    r->overrides[r->n_overrides++] = ov_runs;
    if (slurm_plan_build(p, r->text, r->len, "config", r->overrides, r->n_overrides, r->sweep,
                         cfg->submit_workdir, cfg->submit_train, NULL, 0, &err) != CU_OK)
        return fail(res, 400, err.msg);
    const char *name = p->cfg.job.name;
    if (!ita_job_id_valid(name, strlen(name)) || strlen(name) + 4 > ITA_JOB_ID_MAX)
        return fail(res, 400, "job.name: must be 1-124 of [A-Za-z0-9._-], not starting with '.'");
    snprintf(res->job, sizeof res->job, "%s", name);
    return 0;
}

void ita_submit_run(const ita_submit_ctx_t *sc, json_t *body, int dry_run,
                    ita_submit_result_t *res) {
    memset(res, 0, sizeof *res);
    submit_req_t r;
    if (parse_submit(body, &r, res)) return;
    slurm_plan_t *p = calloc(1, sizeof *p);
    if (!p) {
        fail(res, 500, "out of memory");
        return;
    }
    if (plan_submission(sc, &r, p, res)) goto done;
    if (dry_run) {
        res->action = "dry_run";
        res->doc = json_pack("{s:b, s:s, s:s, s:s, s:o, s:s}", "dry_run", 1, "job", p->cfg.job.name,
                             "launcher", r.local ? "local" : "slurm", "run_dir", p->run_dir, "jobs",
                             task_names(p), "script", p->script);
        if (!res->doc)
            fail(res, 500, "out of memory while formatting the answer");
        else
            res->status = 200;
        goto done;
    }
    res->action = "submit";
    pthread_mutex_lock(sc->submit_mu);
    launch(sc, &r, p, res);
    pthread_mutex_unlock(sc->submit_mu);
done:
    slurm_plan_free(p);
    free(p);
}

/* A submission or cancel handed to the worker pool: what the request
 * brings, copied (the request may be gone when the job runs), and the
 * result the loop answers with. */
typedef struct {
    ita_server_t *srv;
    int cancel, dry_run;
    char job[ITA_JOB_ID_MAX + 1];
    char key_name[ITA_KEY_NAME_MAX + 1], key_id[24];
    ita_submit_result_t res;
    size_t len;
    char body[]; /* len bytes (submissions) */
} submit_in_t;

static void submit_in_free(void *p) {
    submit_in_t *in = p;
    if (in) json_decref(in->res.doc);
    free(in);
}

/* On a pool thread: sbatch/scancel/mpirun and the run directory's writes,
 * through a job directory reader of the job's own. */
static void submit_job_run(ita_pool_job_t *j, ita_pool_thread_t *t) {
    (void)t;
    submit_in_t *in = j->in;
    ita_jobdir_t *jobs = NULL;
    ita_sched_view_t *view = NULL;
    cu_error_t err = {0};
    if (ita_offload_jobs_open(in->srv, &jobs, &view, &err) != CU_OK) {
        snprintf(in->res.log, sizeof in->res.log, "%s", err.msg);
        fail(&in->res, 500, "the runs directory could not be read");
        return;
    }
    ita_submit_ctx_t sc = {.cfg = &in->srv->cfg,
                           .jobs = jobs,
                           .sched = in->srv->sched,
                           .submit_mu = &in->srv->submit_mu,
                           .key_name = in->key_name,
                           .key_id = in->key_id};
    if (in->cancel) {
        ita_submit_cancel(&sc, in->job, &in->res);
    } else {
        json_error_t je;
        json_t *doc = json_loadb(in->body, in->len, 0, &je);
        if (json_is_object(doc))
            ita_submit_run(&sc, doc, in->dry_run, &in->res);
        else
            fail(&in->res, 400,
                 "the body is a JSON object {\"config\": \"<job YAML or JSON>\", "
                 "\"overrides\": [...], \"launcher\": \"slurm\" | \"local\"}");
        json_decref(doc);
    }
    ita_offload_jobs_close(jobs, view);
}

/* Answers res (201/202 with a JSON body and Location, or a problem) and
 * hands its audit fields to the request. */
static void route_answer(ita_req_t *rq, ita_submit_result_t *res) {
    if (res->action) rq->action = res->action;
    if (res->job[0]) snprintf(rq->job, sizeof rq->job, "%s", res->job);
    if (res->launched[0]) {
        size_t n = strlen(res->launched) + 1;
        char *l = h2o_mem_alloc_pool(&rq->req->pool, n);
        memcpy(l, res->launched, n);
        rq->launched = l;
    }
    if (res->log[0]) ita_log(rq->w->srv, "request %s: %s", rq->request_id, res->log);
    if (res->status >= 400) {
        ita_problem(rq, res->status, res->detail);
        return;
    }
    if (res->location[0]) ita_add_header(rq, "location", res->location);
    char *text = json_dumps(res->doc, JSON_COMPACT);
    json_decref(res->doc);
    res->doc = NULL;
    if (!text) {
        ita_problem(rq, 500, "out of memory while formatting the answer");
        return;
    }
    ita_respond(rq, res->status, "application/json", text, strlen(text));
    free(text);
}

/* On the loop, the request still there: answers the job's result. */
static void submit_job_done(ita_pool_job_t *j, void *owner) {
    submit_in_t *in = j->in;
    route_answer(owner, &in->res);
}

/* Hands a submission or cancel of rq to the worker pool (503 when full). */
static void submit_offload(ita_req_t *rq, int cancel, int dry_run, const char *body, size_t len) {
    ita_pool_job_t *j =
        ita_offload_job(rq, sizeof(submit_in_t), offsetof(submit_in_t, body), body, len);
    if (!j) return;
    submit_in_t *in = j->in;
    in->srv = rq->w->srv;
    in->cancel = cancel;
    in->dry_run = dry_run;
    snprintf(in->job, sizeof in->job, "%s", rq->job);
    snprintf(in->key_name, sizeof in->key_name, "%s", rq->key_name);
    snprintf(in->key_id, sizeof in->key_id, "%s", rq->key_id);
    in->len = len;
    j->free_in = submit_in_free;
    j->run = submit_job_run;
    j->done = submit_job_done;
    ita_offload(rq, j);
}

void ita_route_job_submit(ita_req_t *rq) {
    char dr[8];
    int q = ita_query_param(rq, "dry_run", dr, sizeof dr);
    if (q < 0 || (q > 0 && strcmp(dr, "true") && strcmp(dr, "false") && strcmp(dr, "1") &&
                  strcmp(dr, "0"))) {
        ita_problem(rq, 400, "query parameter 'dry_run' is true or false");
        return;
    }
    /* the body is parsed, the config resolved (YAML) and sbatch run in the
     * worker pool: none of it may hold this loop */
    const char *body = rq->req->entity.base;
    submit_offload(rq, 0, q > 0 && (!strcmp(dr, "true") || !strcmp(dr, "1")), body,
                   body ? rq->req->entity.len : 0);
}

/* ---- POST /v1/jobs/{id}/cancel ---- */

/* Stops the job's launcher: scancel, or SIGTERM to a local launch's
 * process group. 0 with launched and msg set, or -1 with res a problem. */
static int stop_job(const ita_submit_ctx_t *sc, const char *job, const ita_job_summary_t *s,
                    char *msg, size_t cap, ita_submit_result_t *res) {
    cu_error_t err = {0};
    const char *kn = sc->key_name ? sc->key_name : "", *ki = sc->key_id ? sc->key_id : "";
    if (s->slurm_job_id[0]) {
        if (slurm_cancel_timeout(s->slurm_job_id, NULL, sc->cfg->slurm_timeout_s, &err) != CU_OK) {
            snprintf(res->log, sizeof res->log, "%s", err.msg);
            return fail(res, 502, err.msg);
        }
        snprintf(res->launched, sizeof res->launched, "slurm %s", s->slurm_job_id);
        snprintf(msg, cap, "cancelled through codex-ita by key %s (%s): scancel %s", kn, ki,
                 s->slurm_job_id);
        return 0;
    }
    int fd = ita_jobdir_openat(sc->jobs, job, "launcher.pid", O_RDONLY);
    char buf[32] = "";
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0) close(fd);
    long pid = n > 0 ? (buf[n] = 0, strtol(buf, NULL, 10)) : 0;
    if (pid <= 1 || ita_jobdir_launcher_alive(sc->jobs, job) <= 0 ||
        (kill(-(pid_t)pid, SIGTERM) != 0 && kill((pid_t)pid, SIGTERM) != 0))
        return fail(res, 409, "the job has neither a Slurm job id nor a live local launcher");
    snprintf(res->launched, sizeof res->launched, "local pid %ld", pid);
    snprintf(msg, cap, "cancelled through codex-ita by key %s (%s): SIGTERM to pid %ld", kn, ki,
             pid);
    return 0;
}

void ita_submit_cancel(const ita_submit_ctx_t *sc, const char *job, ita_submit_result_t *res) {
    memset(res, 0, sizeof *res);
    snprintf(res->job, sizeof res->job, "%s", job);
    ita_job_summary_t s;
    cu_error_t err = {0};
    if (ita_jobdir_state(sc->jobs, job, &s, NULL, &err)) {
        fail(res, err.code == ITA_ENOENT ? 404 : 500,
             err.code == ITA_ENOENT ? "no such job" : "the job could not be read");
        return;
    }
    res->action = "cancel";
    if (!rundir_status_active(s.status)) {
        char d[200];
        snprintf(d, sizeof d, "job %s already ended (%s); nothing to cancel", job, s.status);
        fail(res, 409, d);
        return;
    }
    char msg[400];
    if (stop_job(sc, job, &s, msg, sizeof msg, res)) return;
    if (ita_jobdir_record_status(sc->jobs, job, "CANCELLED", NULL, &err) != CU_OK)
        snprintf(res->log, sizeof res->log, "cancelled, but %s", err.msg);
    append_event(sc->jobs, job, (long)s.step, "cancelled", msg);
    if (sc->sched) ita_sched_watch_cancel(sc->sched, job);
    res->doc = json_pack("{s:s, s:s, s:o}", "job", job, "status", "CANCELLED", "slurm_job_id",
                         s.slurm_job_id[0] ? json_string(s.slurm_job_id) : json_null());
    if (!res->doc)
        fail(res, 500, "out of memory while formatting the answer");
    else
        res->status = 202;
}

void ita_route_job_cancel(ita_req_t *rq) {
    submit_offload(rq, 1, 0, NULL, 0); /* scancel: in the worker pool */
}
