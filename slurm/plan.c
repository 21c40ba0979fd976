/*
 * A job to submit, from a config text: parse it over the defaults, apply
 * the overrides, validate for the number of ranks the slurm section asks
 * for, resolve the paths, and render the batch script. A sweep
 * (`train.lr=1e-4,3e-4`) becomes a job array: task i runs the same config
 * with the i-th value and job.name <name>-<i>, in its own run directory.
 * Several sweeps make the grid of their values (the cartesian product):
 * each task's values are in a comment of the script and in its run
 * directory's sweep.json.
 *
 * Writing puts the resolved config the ranks run into <run dir>/submit.yaml
 * (codex-train itself writes job.yaml when it starts) and the script into
 * <run dir>/job.sbatch.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/tokenizer_files.h"
#include "slurm/slurm.h"

static int mkdirs(const char *path, cu_error_t *err) {
    char buf[4096];
    if (cu_format(buf, sizeof buf, err, "%s", path) != CU_OK) return err->code;
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || !*p) {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return cu_error_set(err, CU_EIO, "cannot create %s: %s", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return CU_OK;
}

static int write_file(const char *path, const char *text, int mode, cu_error_t *err) {
    char tmp[4200];
    if (cu_format(tmp, sizeof tmp, err, "%s.tmp", path) != CU_OK) return err->code;
    FILE *f = fopen(tmp, "w");
    if (!f) return cu_error_set(err, CU_EIO, "cannot write %s: %s", tmp, strerror(errno));
    int ok = fputs(text, f) >= 0;
    ok = (fclose(f) == 0) && ok;
    if (ok) chmod(tmp, (mode_t)mode);
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return cu_error_set(err, CU_EIO, "cannot write %s", path);
    }
    return CU_OK;
}

/* Splits "key=v1,v2" into key and values (pointers into buf). */
static int split_sweep(const char *sweep, char *buf, size_t cap, char **key, char **vals, int *n,
                       cu_error_t *err) {
    if (cu_format(buf, cap, err, "%s", sweep) != CU_OK) return err->code;
    char *eq = strchr(buf, '=');
    if (!eq || eq == buf || !eq[1])
        return cu_error_set(err, CU_EINVAL,
                            "--sweep wants KEY=V1,V2,... (e.g. train.lr=1e-4,3e-4), got '%s'",
                            sweep);
    *eq = '\0';
    *key = buf;
    *n = 0;
    char *save = NULL;
    for (char *v = strtok_r(eq + 1, ",", &save); v; v = strtok_r(NULL, ",", &save)) {
        if (*n == SLURM_MAX_SWEEP)
            return cu_error_set(err, CU_EINVAL, "--sweep: at most %d values", SLURM_MAX_SWEEP);
        vals[(*n)++] = v;
    }
    if (*n == 0) return cu_error_set(err, CU_EINVAL, "--sweep '%s' lists no values", sweep);
    return CU_OK;
}

static int resolve(cu_config_t *cfg, const char *text, size_t len, const char *origin,
                   char *const overrides[], int n_overrides, cu_error_t *err) {
    config_defaults(cfg);
    int rc = config_parse_yaml(cfg, text, len, origin, err);
    for (int i = 0; rc == CU_OK && i < n_overrides; i++)
        rc = config_apply_override(cfg, overrides[i], err);
    return rc;
}

/* Checks cfg as codex-train will on the nodes: with tokenizer.path taken
 * from a model.init folder first (io_tokenizer_resolve_config), on a copy,
 * since the job derives it itself from the submit.yaml written here. */
static int validate(const cu_config_t *cfg, cu_error_t *err) {
    int ranks = cfg->slurm.nodes * cfg->slurm.ntasks_per_node;
    cu_config_t *c = malloc(sizeof *c);
    if (!c) return cu_error_set(err, CU_ENOMEM, "out of memory validating the config");
    *c = *cfg;
    int rc = io_tokenizer_resolve_config(c, err);
    if (rc == CU_OK && (rc = config_validate(c, ranks, err)) != CU_OK)
        cu_error_prefix(err, "for %d rank%s (slurm.nodes x slurm.ntasks_per_node)", ranks,
                        ranks == 1 ? "" : "s");
    free(c);
    return rc;
}

/* Writes s as a JSON string (quotes included) into out. */
static void json_quote(const char *s, char *out, size_t cap) {
    size_t o = 0;
    if (cap < 3) return;
    out[o++] = '"';
    for (; *s && o + 8 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20) {
            o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
}

/* The grid of several sweeps: task i takes, for each sweep k, the value
 * (i / stride_k) % n_k, the last sweep varying fastest (as nested loops in
 * the order the flags were given). */
static int build_sweep(slurm_plan_t *p, const char *const sweeps[], int n_sweeps, cu_error_t *err) {
    if (n_sweeps > SLURM_MAX_SWEEP_KEYS)
        return cu_error_set(err, CU_EINVAL, "at most %d --sweep options", SLURM_MAX_SWEEP_KEYS);
    char buf[SLURM_MAX_SWEEP_KEYS][4096], *key[SLURM_MAX_SWEEP_KEYS];
    char *vals[SLURM_MAX_SWEEP_KEYS][SLURM_MAX_SWEEP];
    int n[SLURM_MAX_SWEEP_KEYS];
    long total = 1;
    for (int k = 0; k < n_sweeps; k++) {
        if (split_sweep(sweeps[k], buf[k], sizeof buf[k], &key[k], vals[k], &n[k], err) != CU_OK)
            return err->code;
        for (int j = 0; j < k; j++)
            if (!strcmp(key[j], key[k]))
                return cu_error_set(err, CU_EINVAL,
                                    "--sweep %s is given twice: list every value in one --sweep "
                                    "%s=V1,V2,...",
                                    key[k], key[k]);
        total *= n[k];
        if (total > SLURM_MAX_SWEEP)
            return cu_error_set(err, CU_EINVAL,
                                "the --sweep grid has more than %d tasks (one Slurm job array "
                                "of at most %d): sweep fewer values",
                                SLURM_MAX_SWEEP, SLURM_MAX_SWEEP);
    }
    p->task_cfg = calloc((size_t)total, sizeof *p->task_cfg);
    p->task_values = calloc((size_t)total, sizeof *p->task_values);
    p->sweep_json = calloc((size_t)total, sizeof *p->sweep_json);
    if (!p->task_cfg || !p->task_values || !p->sweep_json)
        return cu_error_set(err, CU_ENOMEM, "out of memory for %ld sweep tasks", total);
    p->n_tasks = (int)total;
    for (int i = 0; i < p->n_tasks; i++) {
        char ov[4400], name[300];
        p->task_cfg[i] = p->cfg;
        size_t dl = 0, jl = 0;
        char *desc = p->task_values[i], *js = p->sweep_json[i];
        jl += (size_t)snprintf(js, SLURM_SWEEP_TEXT, "{\"task\": %d, \"values\": {", i);
        for (int k = 0, stride = p->n_tasks; k < n_sweeps; k++) {
            stride /= n[k];
            const char *v = vals[k][(i / stride) % n[k]];
            if (cu_format(ov, sizeof ov, err, "%s=%s", key[k], v) != CU_OK ||
                config_apply_override(&p->task_cfg[i], ov, err) != CU_OK)
                return cu_error_prefix(err, "--sweep task %d", i);
            if (dl < SLURM_SWEEP_TEXT)
                dl += (size_t)snprintf(desc + dl, SLURM_SWEEP_TEXT - dl, "%s%s", k ? " " : "", ov);
            char kj[600], vj[600];
            json_quote(key[k], kj, sizeof kj);
            json_quote(v, vj, sizeof vj);
            if (jl < SLURM_SWEEP_TEXT)
                jl += (size_t)snprintf(js + jl, SLURM_SWEEP_TEXT - jl, "%s%s: %s", k ? ", " : "",
                                       kj, vj);
        }
        if (jl < SLURM_SWEEP_TEXT) snprintf(js + jl, SLURM_SWEEP_TEXT - jl, "}}\n");
        if (jl + 4 > SLURM_SWEEP_TEXT || dl >= SLURM_SWEEP_TEXT)
            return cu_error_set(err, CU_EINVAL, "--sweep task %d: the values are too long", i);
        char note[400];
        config_settle(&p->task_cfg[i], note, sizeof note);
        if (note[0] && !p->adjusted[0])
            snprintf(p->adjusted, sizeof p->adjusted, "--sweep task %d: %s", i, note);
        if (cu_format(name, sizeof name, err, "job.name=%s-%d", p->cfg.job.name, i) != CU_OK ||
            config_apply_override(&p->task_cfg[i], name, err) != CU_OK)
            return cu_error_prefix(err, "--sweep task %d", i);
        if (validate(&p->task_cfg[i], err) != CU_OK)
            return cu_error_prefix(err, "--sweep task %d (%s)", i, desc);
    }
    return CU_OK;
}

/* The script with a comment line per array task after its first line, so
 * the dry run and job.sbatch say which values each task runs. */
static char *annotate_tasks(const slurm_plan_t *p, char *script, cu_error_t *err) {
    size_t len = strlen(script), extra = 64;
    for (int i = 0; i < p->n_tasks; i++) extra += strlen(p->task_values[i]) + 600;
    char *out = malloc(len + extra);
    if (!out) {
        free(script);
        cu_error_set(err, CU_ENOMEM, "out of memory rendering the script");
        return NULL;
    }
    const char *nl = strchr(script, '\n');
    size_t head = nl ? (size_t)(nl - script) + 1 : 0, o = head;
    memcpy(out, script, head);
    o += (size_t)snprintf(out + o, len + extra - o, "# --sweep grid: %d tasks\n", p->n_tasks);
    for (int i = 0; i < p->n_tasks; i++) {
        size_t at = o;
        o += (size_t)snprintf(out + o, len + extra - o, "#   task %d (%s): %s\n", i,
                              p->task_cfg[i].job.name, p->task_values[i]);
        for (size_t j = at; j + 1 < o; j++) /* a value with a newline stays one comment */
            if ((unsigned char)out[j] < 0x20) out[j] = '?';
    }
    memcpy(out + o, script + head, len - head + 1);
    free(script);
    return out;
}

int slurm_plan_build(slurm_plan_t *p, const char *text, size_t len, const char *origin,
                     char *const overrides[], int n_overrides, const char *sweep,
                     const char *workdir, const char *train_exe, const char *const exports[],
                     int n_exports, cu_error_t *err) {
    const char *one[1] = {sweep};
    return slurm_plan_build_grid(p, text, len, origin, overrides, n_overrides, one, sweep ? 1 : 0,
                                 workdir, train_exe, exports, n_exports, err);
}

int slurm_plan_build_grid(slurm_plan_t *p, const char *text, size_t len, const char *origin,
                          char *const overrides[], int n_overrides, const char *const sweeps[],
                          int n_sweeps, const char *workdir, const char *train_exe,
                          const char *const exports[], int n_exports, cu_error_t *err) {
    memset(p, 0, sizeof *p);
    if (resolve(&p->cfg, text, len, origin, overrides, n_overrides, err) != CU_OK) return err->code;
    config_settle(&p->cfg, p->adjusted, sizeof p->adjusted);
    if (validate(&p->cfg, err) != CU_OK) return err->code;
    if (n_sweeps > 0 && build_sweep(p, sweeps, n_sweeps, err) != CU_OK) return err->code;
    if (n_exports > SLURM_MAX_EXPORTS)
        return cu_error_set(err, CU_EINVAL, "at most %d --export options", SLURM_MAX_EXPORTS);
    if (cu_format(p->workdir, sizeof p->workdir, err, "%s", workdir) != CU_OK) return err->code;
    const char *rd = p->cfg.job.runs_dir;
    if (rd[0] == '/') {
        if (cu_format(p->runs_dir, sizeof p->runs_dir, err, "%s", rd) != CU_OK) return err->code;
    } else if (cu_format(p->runs_dir, sizeof p->runs_dir, err, "%s/%s", workdir, rd) != CU_OK) {
        return err->code;
    }
    const char *first = p->n_tasks ? p->task_cfg[0].job.name : p->cfg.job.name;
    if (cu_format(p->run_dir, sizeof p->run_dir, err, "%s/%s", p->runs_dir, first) != CU_OK)
        return err->code;
    slurm_script_opts_t o = {.workdir = p->workdir,
                             .runs_dir = p->runs_dir,
                             .train_exe = train_exe,
                             .array_tasks = p->n_tasks,
                             .n_exports = n_exports};
    for (int i = 0; i < n_exports; i++) o.exports[i] = exports[i];
    p->script = slurm_script_render(&p->cfg, &o, err);
    if (p->script && p->n_tasks) p->script = annotate_tasks(p, p->script, err);
    return p->script ? CU_OK : err->code;
}

void slurm_plan_free(slurm_plan_t *p) {
    free(p->task_cfg);
    free(p->task_values);
    free(p->sweep_json);
    free(p->script);
    p->task_values = NULL;
    p->sweep_json = NULL;
    p->task_cfg = NULL;
    p->script = NULL;
}

static int write_run_dir(const char *runs_dir, const cu_config_t *cfg, const char *script,
                         const char *sweep_json, cu_error_t *err) {
    char dir[4096], path[4200];
    if (cu_format(dir, sizeof dir, err, "%s/%s", runs_dir, cfg->job.name) != CU_OK ||
        mkdirs(dir, err) != CU_OK)
        return err->code;
    char *yaml = config_to_yaml(cfg);
    if (!yaml) return cu_error_set(err, CU_ENOMEM, "out of memory writing the config");
    int rc = cu_format(path, sizeof path, err, "%s/submit.yaml", dir);
    if (rc == CU_OK) rc = write_file(path, yaml, 0644, err);
    free(yaml);
    if (rc == CU_OK) rc = cu_format(path, sizeof path, err, "%s/job.sbatch", dir);
    if (rc == CU_OK) rc = write_file(path, script, 0755, err);
    if (rc == CU_OK && sweep_json &&
        (rc = cu_format(path, sizeof path, err, "%s/sweep.json", dir)) == CU_OK)
        rc = write_file(path, sweep_json, 0644, err);
    return rc;
}

int slurm_plan_write(const slurm_plan_t *p, char *script_path, size_t cap, cu_error_t *err) {
    if (p->n_tasks == 0) {
        if (write_run_dir(p->runs_dir, &p->cfg, p->script, NULL, err) != CU_OK) return err->code;
    } else {
        for (int i = 0; i < p->n_tasks; i++)
            if (write_run_dir(p->runs_dir, &p->task_cfg[i], p->script, p->sweep_json[i], err) !=
                CU_OK)
                return err->code;
    }
    return cu_format(script_path, cap, err, "%s/job.sbatch", p->run_dir);
}
