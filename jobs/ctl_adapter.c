/*
 * codexctl resize / codexctl merge: re-factorise PEFT LoRA adapters
 * (adapter_config.json + adapter_model.safetensors) to another rank.
 *
 *   resize ADAPTER --rank R            each s B A truncated to rank R
 *   merge A1 A2 ... --weights w,.. --rank R
 *                                      sum_i w_i s_i B_i A_i, rank R
 *
 * Both are one computation: the update of a module is a product
 * [w_1 s_1 B_1 | w_2 s_2 B_2 | ...] [A_1 ; A_2 ; ...] of inner rank sum r_i,
 * whose top-R singular triplets are found without forming it (QR of both
 * factors, SVD of the small core: grid_svd_product) on the ScaLAPACK grid of
 * whatever ranks run the command — all of an `mpirun`, or this one process.
 * The new adapter is A = sqrt(S_R / s) V_R^T, B = U_R sqrt(S_R / s), with the
 * scale s of the first input kept (lora_alpha becomes s R, or s sqrt(R) with
 * rsLoRA), so the kept part of the update is unchanged. The energy kept per
 * module is sum_{i<R} S_i^2 / sum_i S_i^2 of the combined update.
 *
 * Output: a new folder, written under a temporary name and renamed, so it is
 * either complete or absent. Rank 0 writes and prints.
 *
 * Exit codes: 0 written, 1 a read, write or MPI failure, 2 bad usage or input.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fileio.h"
#include "io/safetensors.h"
#include "mpi/grid.h"
#include "mpi/world.h"

static const char RESIZE_USAGE[] =
    "usage: codexctl resize ADAPTER_DIR --rank R -o OUT_DIR\n"
    "\n"
    "Truncates each module's LoRA update s B A of a PEFT adapter to rank R by SVD\n"
    "and prints the energy kept per module (sum of the kept squared singular values\n"
    "over all of them). The scale alpha/r of the input is kept. Runs on the ranks\n"
    "of an mpirun (a ScaLAPACK process grid) or on one process.\n"
    "  ADAPTER_DIR      adapter_config.json + adapter_model.safetensors (PEFT LoRA)\n"
    "  --rank R         the new rank (at most the current one)\n"
    "  -o, --output DIR the new adapter folder (must not exist)\n"
    "\n"
    "Exit status: 0 written, 1 a read, write or MPI failure, 2 bad usage or input.\n";

static const char MERGE_USAGE[] =
    "usage: codexctl merge ADAPTER_DIR... [--weights w1,w2,...] --rank R -o OUT_DIR\n"
    "\n"
    "Combines PEFT LoRA adapters of the same base into one: each module's update\n"
    "is sum_i w_i s_i B_i A_i (s_i each adapter's alpha/r), re-factorised to rank R\n"
    "by SVD; the energy kept per module is printed. The first adapter's scale and\n"
    "config are kept. Runs on the ranks of an mpirun or on one process.\n"
    "  ADAPTER_DIR...   two or more adapter folders with the same modules and shapes\n"
    "  --weights w,...  one weight per adapter (default: 1/n each)\n"
    "  --rank R         the rank of the result\n"
    "  -o, --output DIR the new adapter folder (must not exist)\n"
    "\n"
    "Exit status: 0 written, 1 a read, write or MPI failure, 2 bad usage or input.\n";

typedef struct {
    const char *verb;
    const char **inputs;
    int n_inputs;
    double *weights;
    int rank;
    const char *out;
} adapter_opts_t;

/* One input adapter. */
typedef struct {
    json_t *config;
    st_model_t *st;
    int r;
    double scale;
    char path[4200];
} adapter_t;

static int usage_error(const char *verb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int usage_error(const char *verb, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "codexctl %s: ", verb);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (codexctl %s --help)\n", verb);
    va_end(ap);
    return 2;
}

static int parse_weights(const char *s, adapter_opts_t *o, int *count) {
    int n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    o->weights = calloc((size_t)n, sizeof(double));
    if (!o->weights) return -1;
    const char *p = s;
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        o->weights[i] = strtod(p, &end);
        if (end == p || errno || !isfinite(o->weights[i]) || (*end && *end != ',')) return -1;
        p = end + (*end == ',');
    }
    *count = n;
    return 0;
}

/* 0 parsed, -1 --help shown, 2 bad usage. */
static int parse_args(int argc, char **argv, adapter_opts_t *o) {
    static const struct option longs[] = {{"rank", required_argument, 0, 'r'},
                                          {"weights", required_argument, 0, 'w'},
                                          {"output", required_argument, 0, 'o'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    int merge = !strcmp(o->verb, "merge"), n_weights = 0;
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "o:h", longs, NULL)) != -1) {
        switch (c) {
        case 'h':
            fputs(merge ? MERGE_USAGE : RESIZE_USAGE, stdout);
            return -1;
        case 'r': {
            char *end;
            long r = strtol(optarg, &end, 10);
            if (*end || end == optarg || r < 1 || r > 65536)
                return usage_error(o->verb, "--rank '%s': give a whole number >= 1", optarg);
            o->rank = (int)r;
            break;
        }
        case 'w':
            if (!merge) return usage_error(o->verb, "%s", "--weights is for codexctl merge");
            if (parse_weights(optarg, o, &n_weights) != 0)
                return usage_error(o->verb, "--weights '%s': give comma-separated numbers", optarg);
            break;
        case 'o':
            o->out = optarg;
            break;
        default:
            return usage_error(o->verb, "bad or incomplete option '%s'", argv[optind - 1]);
        }
    }
    o->inputs = (const char **)argv + optind;
    o->n_inputs = argc - optind;
    if (!merge && o->n_inputs != 1)
        return usage_error(o->verb, "%s", "give exactly one ADAPTER_DIR");
    if (merge && o->n_inputs < 2)
        return usage_error(o->verb, "%s", "give two or more ADAPTER_DIRs");
    if (!o->rank) return usage_error(o->verb, "%s", "no --rank R given");
    if (!o->out) return usage_error(o->verb, "%s", "no output: give -o DIR");
    if (!o->weights) {
        o->weights = malloc(sizeof(double) * (size_t)o->n_inputs);
        if (!o->weights) return 1;
        for (int i = 0; i < o->n_inputs; i++) o->weights[i] = merge ? 1.0 / o->n_inputs : 1.0;
    } else if (n_weights != o->n_inputs) {
        return usage_error(o->verb, "--weights has %d value(s) for %d adapters", n_weights,
                           o->n_inputs);
    }
    return 0;
}

static int adapter_open(adapter_t *a, const char *dir, cu_error_t *err) {
    memset(a, 0, sizeof *a);
    if (!cu_is_dir(dir)) return cu_error_set(err, CU_EINVAL, "%s is not a directory", dir);
    int rc = cu_format(a->path, sizeof a->path, err, "%s/adapter_config.json", dir);
    if (rc) return rc;
    json_error_t je;
    a->config = json_load_file(a->path, 0, &je);
    if (!a->config)
        return cu_error_set(err, CU_EINVAL, "%s: %s (line %d)", a->path, je.text, je.line);
    json_t *r = json_object_get(a->config, "r"), *alpha = json_object_get(a->config, "lora_alpha");
    const char *type = json_string_value(json_object_get(a->config, "peft_type"));
    if (type && strcmp(type, "LORA") != 0)
        return cu_error_set(err, CU_EINVAL, "%s: peft_type %s is not LORA", a->path, type);
    if (!json_is_integer(r) || json_integer_value(r) < 1 || !json_is_number(alpha))
        return cu_error_set(err, CU_EINVAL, "%s: needs an integer r >= 1 and a number lora_alpha",
                            a->path);
    json_t *pattern = json_object_get(a->config, "rank_pattern");
    if (json_object_size(pattern) > 0 ||
        json_object_size(json_object_get(a->config, "alpha_pattern")))
        return cu_error_set(err, CU_EINVAL,
                            "%s: per-module rank_pattern/alpha_pattern are not supported", a->path);
    a->r = (int)json_integer_value(r);
    double al = json_number_value(alpha);
    a->scale = json_is_true(json_object_get(a->config, "use_rslora")) ? al / sqrt((double)a->r)
                                                                      : al / a->r;
    if ((rc = cu_format(a->path, sizeof a->path, err, "%s/adapter_model.safetensors", dir)))
        return rc;
    if ((rc = st_open(a->path, &a->st, err))) return rc;
    return CU_OK;
}

static void adapter_close(adapter_t *a) {
    json_decref(a->config);
    st_close(a->st);
}

/* The lora_B entry that goes with a lora_A entry, or NULL. */
static const st_entry_t *partner_b(st_model_t *st, const char *a_name) {
    char name[512];
    const char *at = strstr(a_name, ".lora_A.");
    if (!at || strlen(a_name) >= sizeof name) return NULL;
    snprintf(name, sizeof name, "%.*s.lora_B.%s", (int)(at - a_name), a_name, at + 8);
    return st_find(st, name);
}

/* Reads a 2-D entry of the expected shape into a new float buffer. */
static float *read_matrix(adapter_t *a, const st_entry_t *e, int rows, int cols, cu_error_t *err) {
    if (e->ndim != 2 || e->shape[0] != rows || e->shape[1] != cols) {
        cu_error_set(err, CU_EINVAL, "%s: %s is not (%d, %d)", a->path, e->name, rows, cols);
        return NULL;
    }
    float *m = malloc(sizeof(float) * (size_t)rows * cols);
    if (!m) {
        cu_error_set(err, CU_ENOMEM, "out of memory (%s)", e->name);
        return NULL;
    }
    if (st_read_f32(a->st, e, m, err) != CU_OK) {
        free(m);
        return NULL;
    }
    return m;
}

/* The output tensors, accumulated module by module. */
typedef struct {
    st_tensor_t *t;
    char **names;
    float **data;
    int n, cap;
} out_tensors_t;

static int out_add(out_tensors_t *o, const char *name, float *data, int rows, int cols) {
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 32;
        st_tensor_t *t = realloc(o->t, sizeof *t * (size_t)cap);
        if (t) o->t = t;
        char **n = realloc(o->names, sizeof *n * (size_t)cap);
        if (n) o->names = n;
        float **d = realloc(o->data, sizeof *d * (size_t)cap);
        if (d) o->data = d;
        if (!t || !n || !d) return CU_ENOMEM;
        o->cap = cap;
    }
    o->names[o->n] = strdup(name);
    o->data[o->n] = data;
    if (!o->names[o->n]) return CU_ENOMEM;
    o->t[o->n] =
        (st_tensor_t){.name = o->names[o->n], .data = data, .ndim = 2, .shape = {rows, cols}};
    o->n++;
    return CU_OK;
}

static void out_free(out_tensors_t *o) {
    for (int i = 0; i < o->n; i++) {
        free(o->names[i]);
        free(o->data[i]);
    }
    free(o->t);
    free(o->names);
    free(o->data);
}

/* One module: reads every input's A and B, factorises the weighted sum and
 * appends the new A and B. *kept is the energy fraction kept. */
static int refactor_module(const cu_world_t *wd, cu_grid_t *g, adapter_t *in, int n_in,
                           const double *w, const char *a_name, int rank, double scale,
                           out_tensors_t *out, double *kept, int *rtot_out, cu_error_t *err) {
    const st_entry_t *ea0 = st_find(in[0].st, a_name), *eb0 = partner_b(in[0].st, a_name);
    if (!eb0) return cu_error_set(err, CU_EINVAL, "%s: %s has no lora_B", in[0].path, a_name);
    int rows = (int)eb0->shape[0], cols = (int)ea0->shape[1], rtot = 0;
    for (int i = 0; i < n_in; i++) rtot += in[i].r;
    double *bc = calloc((size_t)rows * rtot, sizeof(double)); /* (rows, rtot) column-major */
    double *ac = calloc((size_t)rtot * cols, sizeof(double)); /* (rtot, cols) column-major */
    int kc = rows < cols ? rows : cols;
    kc = kc < rtot ? kc : rtot;
    double *u = malloc(sizeof(double) * (size_t)rows * rank), *s = malloc(sizeof(double) * rank);
    double *vt = malloc(sizeof(double) * (size_t)rank * cols), *s_all = malloc(sizeof(double) * kc);
    float *na = malloc(sizeof(float) * (size_t)rank * cols),
          *nb = malloc(sizeof(float) * (size_t)rows * rank);
    int rc = bc && ac && u && s && vt && s_all && na && nb
                 ? CU_OK
                 : cu_error_set(err, CU_ENOMEM, "out of memory (%s)", a_name);
    int off = 0;
    for (int i = 0; rc == CU_OK && i < n_in; i++) {
        const st_entry_t *ea = st_find(in[i].st, a_name), *eb = partner_b(in[i].st, a_name);
        if (!ea || !eb) {
            rc = cu_error_set(
                err, CU_EINVAL,
                "%s has no %s (or its lora_B): the adapters must adapt the same modules",
                in[i].path, a_name);
            break;
        }
        float *a = read_matrix(&in[i], ea, in[i].r, cols, err);
        float *b = a ? read_matrix(&in[i], eb, rows, in[i].r, err) : NULL;
        if (!a || !b) rc = err->code;
        double f = w[i] * in[i].scale;
        for (int t = 0; rc == CU_OK && t < in[i].r; t++) {
            for (int j = 0; j < cols; j++)
                ac[(off + t) + (size_t)j * rtot] = a[(size_t)t * cols + j];
            for (int o = 0; o < rows; o++)
                bc[o + (size_t)(off + t) * rows] = f * b[(size_t)o * in[i].r + t];
        }
        off += in[i].r;
        free(a);
        free(b);
    }
    if (rc == CU_OK && rank > kc)
        rc = cu_error_set(err, CU_EINVAL, "--rank %d exceeds the rank of %s's update (at most %d)",
                          rank, a_name, kc);
    /* every rank reaches the collective with the same verdict: inputs are
     * the same files everywhere */
    rc = world_agree(wd, rc);
    if (rc == CU_OK) rc = grid_svd_product(g, bc, ac, rows, rtot, cols, rank, u, s, vt, s_all, err);
    if (rc == CU_OK) {
        double all = 0, top = 0;
        for (int t = 0; t < kc; t++) all += s_all[t] * s_all[t];
        for (int t = 0; t < rank; t++) top += s_all[t] * s_all[t];
        *kept = all > 0 ? top / all : 1.0;
        *rtot_out = rtot;
        for (int t = 0; t < rank; t++) {
            double f = sqrt(s[t] / scale);
            for (int j = 0; j < cols; j++)
                na[(size_t)t * cols + j] = (float)(f * vt[t + (size_t)j * rank]);
            for (int o = 0; o < rows; o++)
                nb[(size_t)o * rank + t] = (float)(f * u[o + (size_t)t * rows]);
        }
        rc = out_add(out, a_name, na, rank, cols);
        if (rc == CU_OK) {
            na = NULL;
            rc = out_add(out, eb0->name, nb, rows, rank);
            if (rc == CU_OK) nb = NULL;
        }
        if (rc) rc = cu_error_set(err, CU_ENOMEM, "out of memory (%s)", a_name);
    }
    free(bc), free(ac), free(u), free(s), free(vt), free(s_all), free(na), free(nb);
    return rc;
}

/* adapter_config.json of the result: the first input's, with the new r and
 * an alpha that keeps its scale. */
static json_t *output_config(const adapter_t *first, int rank) {
    json_t *c = json_deep_copy(first->config);
    if (!c) return NULL;
    int rs = json_is_true(json_object_get(c, "use_rslora"));
    double alpha = rs ? first->scale * sqrt((double)rank) : first->scale * rank;
    json_object_set_new(c, "r", json_integer(rank));
    json_object_set_new(c, "lora_alpha",
                        alpha == floor(alpha) && fabs(alpha) < 1e9 ? json_integer((json_int_t)alpha)
                                                                   : json_real(alpha));
    /* the factors are plain LoRA now, whatever initialised the inputs */
    json_object_set_new(c, "init_lora_weights", json_true());
    return c;
}

static int write_output(const adapter_opts_t *o, const adapter_t *first, out_tensors_t *out,
                        cu_error_t *err) {
    char tmp[4200], path[4300];
    int rc = cu_format(tmp, sizeof tmp, err, "%s.tmp.%d", o->out, (int)getpid());
    if (rc) return rc;
    if (mkdir(tmp, 0777) != 0)
        return cu_error_set(err, CU_EIO, "cannot create %s: %s", tmp, strerror(errno));
    const char *meta[] = {"format", "pt"};
    rc = cu_format(path, sizeof path, err, "%s/adapter_model.safetensors", tmp);
    if (rc == CU_OK) rc = st_write(path, out->t, out->n, ST_F32, meta, 1, err);
    json_t *cfg = rc == CU_OK ? output_config(first, o->rank) : NULL;
    if (rc == CU_OK && !cfg) rc = cu_error_set(err, CU_ENOMEM, "out of memory");
    if (rc == CU_OK) rc = cu_format(path, sizeof path, err, "%s/adapter_config.json", tmp);
    if (rc == CU_OK && json_dump_file(cfg, path, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
        rc = cu_error_set(err, CU_EIO, "cannot write %s", path);
    json_decref(cfg);
    if (rc == CU_OK && rename(tmp, o->out) != 0)
        rc = cu_error_set(err, CU_EIO, "cannot rename %s to %s: %s", tmp, o->out, strerror(errno));
    if (rc) {
        /* leave nothing half-written */
        const char *files[] = {"adapter_model.safetensors", "adapter_config.json"};
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof path, "%s/%s", tmp, files[i]);
            unlink(path);
        }
        rmdir(tmp);
    }
    return rc;
}

static int run_refactor(const adapter_opts_t *o, const cu_world_t *w, cu_error_t *err) {
    struct stat sb;
    if (stat(o->out, &sb) == 0)
        return cu_error_set(err, CU_EINVAL, "%s already exists: give a new -o DIR", o->out);
    adapter_t *in = calloc((size_t)o->n_inputs, sizeof *in);
    if (!in) return cu_error_set(err, CU_ENOMEM, "out of memory");
    int rc = CU_OK;
    for (int i = 0; rc == CU_OK && i < o->n_inputs; i++)
        rc = adapter_open(&in[i], o->inputs[i], err);
    cu_grid_t *g = NULL;
    rc = world_agree(w, rc);
    if (rc == CU_OK) rc = grid_create(&g, w, err);
    out_tensors_t out = {0};
    int modules = 0;
    double worst = 1.0;
    if (rc == CU_OK && w->rank == 0) {
        int p, q;
        grid_shape(g, &p, &q);
        printf("%s to rank %d on a %d x %d process grid\n", o->verb, o->rank, p, q);
        fflush(stdout);
    }
    for (int i = 0; rc == CU_OK && i < st_count(in[0].st); i++) {
        const st_entry_t *e = st_entry(in[0].st, i);
        if (!strstr(e->name, ".lora_A.")) continue;
        double kept = 0;
        int rtot = 0;
        rc = refactor_module(w, g, in, o->n_inputs, o->weights, e->name, o->rank, in[0].scale, &out,
                             &kept, &rtot, err);
        rc = world_agree(w, rc);
        if (rc == CU_OK && w->rank == 0) {
            /* base_model.model.transformer.h.0.attn.c_attn.lora_A.weight ->
             * transformer.h.0.attn.c_attn */
            const char *name = e->name, *end = strstr(name, ".lora_A.");
            if (!strncmp(name, "base_model.model.", 17)) name += 17;
            printf("%-32.*s rank %3d -> %d  energy kept %8.4f%%\n", (int)(end - name), name, rtot,
                   o->rank, 100.0 * kept);
        }
        if (kept < worst) worst = kept;
        modules++;
    }
    if (rc == CU_OK && modules == 0)
        rc = cu_error_set(err, CU_EINVAL, "%s holds no lora_A tensors", in[0].path);
    if (rc == CU_OK && w->rank == 0) rc = write_output(o, &in[0], &out, err);
    rc = world_agree(w, rc);
    if (rc == CU_OK && w->rank == 0)
        printf("wrote %s: %d modules, least energy kept %.4f%%\n", o->out, modules, 100.0 * worst);
    grid_free(g);
    out_free(&out);
    for (int i = 0; i < o->n_inputs; i++) adapter_close(&in[i]);
    free(in);
    return rc;
}

static int ctl_refactor(const char *verb, int argc, char **argv) {
    adapter_opts_t o = {.verb = verb};
    int rc = parse_args(argc, argv, &o);
    if (rc) {
        free(o.weights);
        return rc < 0 ? 0 : rc;
    }
    cu_world_t w;
    cu_error_t err = {0};
    if ((rc = world_init(&w, &argc, &argv, &err)) == CU_OK) {
        rc = run_refactor(&o, &w, &err);
        if (rc && (w.rank == 0 || strstr(err.msg, "another rank") == NULL))
            fprintf(stderr, "codexctl %s: %s\n", verb, err.msg);
        world_finalize(&w);
    } else {
        fprintf(stderr, "codexctl %s: %s\n", verb, err.msg);
    }
    free(o.weights);
    if (rc == CU_OK) return 0;
    return rc == CU_EINVAL || rc == CU_EFORMAT ? 2 : 1;
}

int ctl_resize(int argc, char **argv) {
    return ctl_refactor("resize", argc, argv);
}
int ctl_merge(int argc, char **argv) {
    return ctl_refactor("merge", argc, argv);
}
