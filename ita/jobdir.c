/*
 * The runs directory reader. Per job a cache entry holds the parsed
 * state.json with the identity (device, inode, size, mtime) it was read at,
 * and for metrics.jsonl and events.jsonl an index: the offset just past the
 * last complete line seen, and every BLOCK_LINES-th line's offset and step.
 * A request re-stats the file, indexes only what was appended since, and
 * seeks through the index, so no request reads a whole file again. A file
 * that shrank or changed inode is indexed afresh.
 *
 * The cache holds at most CACHE_MAX jobs; when full it is emptied (a
 * refill costs one read per job). Listings use the index further down,
 * which scales to max_jobs directories.
 */
#include "ita/jobdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ita/trace.h"
#include "rundir/rundir.h"
#include "rundir/status.h"
#include "slurm/slurm.h"

#define BUCKETS 256
#define CACHE_MAX 4096
#define BLOCK_LINES 64
#define STATE_MAX (1 << 20)
#define SCRATCH (256 * 1024) /* longest .jsonl line read; longer ones are skipped */

typedef struct {
    dev_t dev;
    ino_t ino;
    int valid;
    int64_t indexed_to; /* end of the last complete line seen */
    int64_t n_lines;
    int64_t last_step;
    struct {
        int64_t offset, step;
    } * blocks;
    size_t n_blocks, cap;
} jsonl_index_t;

typedef struct entry {
    struct entry *next;
    char id[ITA_JOB_ID_MAX + 1];
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    json_t *state;
    char *state_text;
    jsonl_index_t idx[2];
    double launcher_checked_at; /* monotonic; the answer is kept for a second */
    int launcher_alive;
} entry_t;

struct ita_jobdir {
    int runs_fd;
    char runs_real[4096];
    double lost_after_s;
    int max_jobs;
    const ita_sched_view_t *view;
    entry_t *buckets[BUCKETS];
    size_t n_entries;
    char *scratch;
    struct ita_jobindex *ix; /* the listing index, made at the first listing */
};

void ita_jobindex_free(struct ita_jobindex *ix);

static const char *JSONL_NAME[2] = {"metrics.jsonl", "events.jsonl"};

int ita_job_id_valid(const char *s, size_t len) {
    if (len == 0 || len > ITA_JOB_ID_MAX || s[0] == '.') return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int ita_jobdir_open(ita_jobdir_t **out, const char *runs_dir, double lost_after_s, int max_jobs,
                    cu_error_t *err) {
    ita_jobdir_t *jd = calloc(1, sizeof *jd);
    if (!jd) return cu_error_set(err, CU_ENOMEM, "out of memory");
    jd->scratch = malloc(SCRATCH);
    jd->runs_fd = open(runs_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!jd->scratch || jd->runs_fd < 0 || !realpath(runs_dir, jd->runs_real)) {
        int rc = cu_error_set(err, CU_EIO, "runs directory %s: %s", runs_dir,
                              jd->scratch ? strerror(errno) : "out of memory");
        ita_jobdir_free(jd);
        return rc;
    }
    jd->lost_after_s = lost_after_s;
    jd->max_jobs = max_jobs;
    *out = jd;
    return CU_OK;
}

static void entry_free(entry_t *e) {
    json_decref(e->state);
    free(e->state_text);
    for (int k = 0; k < 2; k++) free(e->idx[k].blocks);
    free(e);
}

static void cache_clear(ita_jobdir_t *jd) {
    for (int b = 0; b < BUCKETS; b++) {
        for (entry_t *e = jd->buckets[b], *nx; e; e = nx) {
            nx = e->next;
            entry_free(e);
        }
        jd->buckets[b] = NULL;
    }
    jd->n_entries = 0;
}

void ita_jobdir_free(ita_jobdir_t *jd) {
    if (!jd) return;
    cache_clear(jd);
    ita_jobindex_free(jd->ix);
    if (jd->runs_fd >= 0) close(jd->runs_fd);
    free(jd->scratch);
    free(jd);
}

/* Kernels without openat2 (before 5.6): open, then check where the
 * descriptor really points. */
static int open_checked_fallback(ita_jobdir_t *jd, const char *path, int flags) {
    int fd = openat(jd->runs_fd, path, flags | O_CLOEXEC, 0644);
    if (fd < 0) return -1;
    char link[64], real[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, real, sizeof real - 1);
    size_t rl = strlen(jd->runs_real);
    if (n < 0 || (real[n] = 0, strncmp(real, jd->runs_real, rl)) || real[rl] != '/') {
        close(fd);
        errno = EXDEV;
        return -1;
    }
    return fd;
}

int ita_jobdir_openat(ita_jobdir_t *jd, const char *id, const char *rel, int flags) {
    char path[ITA_JOB_ID_MAX + 256];
    if (!ita_job_id_valid(id, strlen(id)) ||
        snprintf(path, sizeof path, "%s%s%s", id, rel[0] ? "/" : "", rel) >= (int)sizeof path) {
        errno = ENOENT;
        return -1;
    }
    /* a file, not a directory: never follow a final symlink, never block
     * on a FIFO, and refuse anything but a regular file */
    int file = !(flags & O_DIRECTORY);
    if (file) flags |= O_NONBLOCK | O_NOFOLLOW;
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(flags | O_CLOEXEC);
    if (flags & O_CREAT) how.mode = 0644;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    long fd = syscall(SYS_openat2, jd->runs_fd, path, &how, sizeof how);
    if (fd < 0 && errno == ENOSYS) fd = open_checked_fallback(jd, path, flags);
    return file ? rundir_fd_regular((int)fd) : (int)fd;
}

static unsigned hash_id(const char *s) {
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h % BUCKETS;
}

static entry_t *entry_get(ita_jobdir_t *jd, const char *id, int create) {
    unsigned b = hash_id(id);
    for (entry_t *e = jd->buckets[b]; e; e = e->next)
        if (!strcmp(e->id, id)) return e;
    if (!create) return NULL;
    if (jd->n_entries >= CACHE_MAX) cache_clear(jd);
    entry_t *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    snprintf(e->id, sizeof e->id, "%s", id);
    e->next = jd->buckets[b];
    jd->buckets[b] = e;
    jd->n_entries++;
    return e;
}

/* Reads fd (at most STATE_MAX bytes) into a parsed object. */
static json_t *read_json_fd(int fd, off_t size) {
    if (size <= 0 || size > STATE_MAX) return NULL;
    char *buf = malloc((size_t)size);
    if (!buf) return NULL;
    size_t got = 0;
    while (got < (size_t)size) {
        ssize_t r = pread(fd, buf + got, (size_t)size - got, (off_t)got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    json_t *j = got == (size_t)size ? json_loadb(buf, got, 0, NULL) : NULL;
    free(buf);
    if (j && !json_is_object(j)) {
        json_decref(j);
        j = NULL;
    }
    return j;
}

/* Makes e->state current. */
static int refresh_state(ita_jobdir_t *jd, entry_t *e, cu_error_t *err) {
    int fd = ita_jobdir_openat(jd, e->id, "state.json", O_RDONLY);
    if (fd < 0) {
        if (errno == EXDEV || errno == ELOOP || errno == ENOENT || errno == ENOTDIR ||
            errno == EINVAL || errno == ENXIO)
            return cu_error_set(err, ITA_ENOENT, "no job '%s'", e->id);
        return cu_error_set(err, CU_EIO, "job '%s': state.json: %s", e->id, strerror(errno));
    }
    struct stat st;
    int rc = CU_OK;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = cu_error_set(err, ITA_ENOENT, "no job '%s'", e->id);
    } else if (!e->state || st.st_dev != e->dev || st.st_ino != e->ino || st.st_size != e->size ||
               st.st_mtim.tv_sec != e->mtime.tv_sec || st.st_mtim.tv_nsec != e->mtime.tv_nsec) {
        json_t *j = read_json_fd(fd, st.st_size);
        char *text = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
        if (j && text) {
            json_decref(e->state);
            free(e->state_text);
            e->state = j;
            e->state_text = text;
            e->dev = st.st_dev;
            e->ino = st.st_ino;
            e->size = st.st_size;
            e->mtime = st.st_mtim;
        } else {
            json_decref(j);
            free(text);
            /* state.json is replaced atomically, so this is a writer that broke
             * the contract; keep answering with the last good state. */
            if (!e->state)
                rc = cu_error_set(err, CU_EFORMAT, "job '%s': state.json is not a JSON object",
                                  e->id);
        }
    }
    close(fd);
    return rc;
}

static double num_or_nan(json_t *v) {
    return json_is_number(v) ? json_number_value(v) : NAN;
}

/* Whether a local launcher runs, looked at no more than once a second (a
 * stale job is asked about on every request). */
static int launcher_alive_cached(ita_jobdir_t *jd, entry_t *e) {
    double now = ita_mono_now();
    if (e->launcher_checked_at == 0 || now - e->launcher_checked_at > 1.0) {
        e->launcher_alive = ita_jobdir_launcher_alive(jd, e->id);
        e->launcher_checked_at = now;
    }
    return e->launcher_alive;
}

/* The effective status (docs/ita.md): the rules of rundir/status.h, with
 * the scheduler view this worker last synced to. */
static void merge_scheduler(ita_jobdir_t *jd, const entry_t *e, json_t *st, ita_job_summary_t *s) {
    const char *sid = json_string_value(json_object_get(st, "slurm_job_id"));
    if (sid && slurm_id_valid(sid)) snprintf(s->slurm_job_id, sizeof s->slurm_job_id, "%s", sid);
    s->sched = s->slurm_job_id[0] ? ita_sched_find(jd->view, s->slurm_job_id) : NULL;
    rundir_witness_t w = {.file_status = s->state_status,
                          .heartbeat_age_s = s->heartbeat_age_s,
                          .lost_after_s = jd->lost_after_s,
                          .has_slurm_id = s->slurm_job_id[0] != 0,
                          .sched_asked = s->sched != NULL,
                          .sched = s->sched && s->sched->known ? &s->sched->info : NULL,
                          .launcher = s->slurm_job_id[0] || !rundir_status_active(s->state_status)
                                          ? -1
                                          : launcher_alive_cached(jd, (entry_t *)e),
                          .writer_gone = rundir_pid_gone(
                              (long)json_integer_value(json_object_get(st, "pid")),
                              json_string_value(json_array_get(json_object_get(st, "hosts"), 0)))};
    s->lost = rundir_status_resolve(&w, s->status, sizeof s->status, s->detail, sizeof s->detail);
    rundir_status_reason(
        s->status, s->detail,
        json_string_value(json_object_get(json_object_get(st, "error"), "message")), s->reason,
        sizeof s->reason);
}

static void summarise(ita_jobdir_t *jd, const entry_t *e, ita_job_summary_t *s) {
    memset(s, 0, sizeof *s);
    json_t *st = e->state;
    snprintf(s->id, sizeof s->id, "%s", e->id);
    const char *status = json_string_value(json_object_get(st, "status"));
    snprintf(s->state_status, sizeof s->state_status, "%s",
             status && rundir_status_known(status) && strcmp(status, "LOST") ? status : "UNKNOWN");
    s->step = json_integer_value(json_object_get(st, "step"));
    s->max_steps = json_integer_value(json_object_get(st, "max_steps"));
    s->loss = num_or_nan(json_object_get(st, "loss"));
    s->tokens_per_s = num_or_nan(json_object_get(st, "tokens_per_s"));
    s->lr = num_or_nan(json_object_get(st, "lr"));
    s->val_loss = num_or_nan(json_object_get(json_object_get(st, "last_eval"), "val_loss"));
    s->best_val_loss = num_or_nan(json_object_get(json_object_get(st, "best_eval"), "val_loss"));
    s->progress = s->max_steps > 0 ? (double)s->step / (double)s->max_steps : NAN;
    const char *started = json_string_value(json_object_get(st, "started_at"));
    const char *updated = json_string_value(json_object_get(st, "updated_at"));
    snprintf(s->started_at_text, sizeof s->started_at_text, "%s", started ? started : "");
    snprintf(s->updated_at_text, sizeof s->updated_at_text, "%s", updated ? updated : "");
    double t_start = 0, t_upd = 0, now = ita_wall_now();
    if (started && ita_time_parse_rfc3339(started, &t_start) == 0) s->started_at = t_start;
    s->heartbeat_age_s = NAN;
    if (updated && ita_time_parse_rfc3339(updated, &t_upd) == 0) {
        s->heartbeat_age_s = now - t_upd;
        s->updated_at = t_upd;
    }
    merge_scheduler(jd, e, st, s);
    int running = !strcmp(s->status, "RUNNING");
    s->eta_s = NAN;
    if (!strcmp(s->state_status, "COMPLETED")) {
        s->eta_s = 0;
    } else if (running && !s->lost) {
        s->eta_s = num_or_nan(json_object_get(st, "eta_s"));
        if (isnan(s->eta_s) && s->step > 0 && s->max_steps > s->step && s->started_at > 0 &&
            !isnan(s->heartbeat_age_s))
            s->eta_s = (t_upd - t_start) / (double)s->step * (double)(s->max_steps - s->step);
    }
}

int ita_jobdir_state(ita_jobdir_t *jd, const char *id, ita_job_summary_t *sum, const json_t **state,
                     cu_error_t *err) {
    if (!ita_job_id_valid(id, strlen(id))) return cu_error_set(err, ITA_ENOENT, "no such job");
    entry_t *e = entry_get(jd, id, 1);
    if (!e) return cu_error_set(err, CU_ENOMEM, "out of memory");
    int rc = refresh_state(jd, e, err);
    if (rc) return rc;
    if (sum) summarise(jd, e, sum);
    if (state) *state = e->state;
    return CU_OK;
}

const char *ita_jobdir_state_text(ita_jobdir_t *jd, const char *id) {
    entry_t *e = entry_get(jd, id, 0);
    return e ? e->state_text : NULL;
}

/* ---- the listing index ----
 *
 * Listings do not go through the cache above (which holds at most
 * CACHE_MAX parsed states and would be emptied by every listing of more
 * jobs): the index keeps one summary per job directory between requests,
 * in newest-first order, and per listing
 *   - reads the runs directory again only when its mtime (or inode) has
 *     changed, or is within IX_TICK_S of the last reading;
 *   - summarises again the jobs that are active (their heartbeat age,
 *     LOST and the scheduler's word change with time), new, or have a
 *     Slurm id when the scheduler view changed;
 *   - stats the state.json of finished jobs in turn, IX_STAT_MIN a
 *     listing plus IX_STAT_RATE a second since the last one (at most
 *     IX_BUDGET or IX_BUDGET_S a listing), and reads again the ones whose
 *     identity (device, inode, size, mtime) changed: a finished job
 *     rewritten (a resumed run) shows in the listing after at most
 *     N / IX_STAT_RATE seconds of listings, while back-to-back listings
 *     each pay a few dozen stat calls, not thousands; GET /v1/jobs/{id} is
 *     always current.
 * Only the "hot" entries (new, active, without a readable state.json, or
 * with a Slurm id) are visited at every listing, from a list rebuilt when
 * an entry joins, leaves or changes kind, so a listing of 100k mostly
 * finished jobs does not touch every entry.
 * The parsed state is kept only for active jobs and those with a Slurm id;
 * a finished job costs its summary. */

#define IX_BUCKETS 65536
#define IX_BUDGET 2048
#define IX_BUDGET_S 0.004
#define IX_STAT_MIN 64
#define IX_STAT_RATE 20000.0
#define IX_TICK_S 2.0

typedef struct ix_entry {
    struct ix_entry *next; /* in its bucket */
    entry_t e;             /* id, state.json identity, the state while kept */
    ita_job_summary_t sum;
    unsigned gen; /* the directory scan that last saw it */
    int valid;    /* sum holds a summary (state.json was readable) */
    int active;   /* its state.json says it runs (or will) */
    int dirty;    /* summarise again at the next listing */
} ix_entry_t;

struct ita_jobindex {
    ix_entry_t *buckets[IX_BUCKETS];
    ix_entry_t **all; /* every entry, in no order */
    size_t n, cap;
    const ita_job_summary_t **sorted; /* the valid ones, newest first */
    size_t n_sorted, cap_sorted;
    int order_stale;
    unsigned gen;
    struct timespec dir_mtime;
    ino_t dir_ino;
    double scanned_at;     /* wall clock; 0 before the first scan */
    size_t rr;             /* the next finished job to stat */
    double swept_at;       /* monotonic time of the last listing's stat calls */
    struct ix_entry **hot; /* visited at every listing (ix_is_hot) */
    size_t n_hot, cap_hot;
    int hot_stale; /* rebuild hot before the next listing */
    const ita_sched_view_t *view;
};

static int cmp_newest(const void *a, const void *b) {
    const ita_job_summary_t *x = a, *y = b;
    if (x->started_at != y->started_at) return x->started_at > y->started_at ? -1 : 1;
    return strcmp(x->id, y->id);
}

static int cmp_newest_ptr(const void *a, const void *b) {
    return cmp_newest(*(const ita_job_summary_t *const *)a, *(const ita_job_summary_t *const *)b);
}

static void ix_entry_free(ix_entry_t *x) {
    json_decref(x->e.state);
    free(x->e.state_text);
    for (int k = 0; k < 2; k++) free(x->e.idx[k].blocks);
    free(x);
}

void ita_jobindex_free(struct ita_jobindex *ix) {
    if (!ix) return;
    for (size_t i = 0; i < ix->n; i++) ix_entry_free(ix->all[i]);
    free(ix->all);
    free(ix->sorted);
    free(ix->hot);
    free(ix);
}

static unsigned ix_hash(const char *s) {
    unsigned h = 2166136261u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h % IX_BUCKETS;
}

static ix_entry_t *ix_get(struct ita_jobindex *ix, const char *id) {
    unsigned b = ix_hash(id);
    for (ix_entry_t *x = ix->buckets[b]; x; x = x->next)
        if (!strcmp(x->e.id, id)) return x;
    if (ix->n == ix->cap) {
        size_t cap = ix->cap ? 2 * ix->cap : 256;
        ix_entry_t **g = realloc(ix->all, cap * sizeof *g);
        if (!g) return NULL;
        ix->all = g;
        ix->cap = cap;
    }
    ix_entry_t *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    snprintf(x->e.id, sizeof x->e.id, "%s", id);
    x->dirty = 1;
    x->next = ix->buckets[b];
    ix->buckets[b] = x;
    ix->all[ix->n++] = x;
    ix->order_stale = 1;
    ix->hot_stale = 1;
    return x;
}

/* Drops the entries the last scan did not see. */
static void ix_sweep(struct ita_jobindex *ix) {
    size_t k = 0;
    for (size_t i = 0; i < ix->n; i++) {
        ix_entry_t *x = ix->all[i];
        if (x->gen == ix->gen) {
            ix->all[k++] = x;
            continue;
        }
        ix_entry_t **pp = &ix->buckets[ix_hash(x->e.id)];
        while (*pp != x) pp = &(*pp)->next;
        *pp = x->next;
        ix_entry_free(x);
        ix->order_stale = 1;
        ix->hot_stale = 1;
    }
    ix->n = k;
}

/* Reads the runs directory again when it changed. */
static int ix_scan(ita_jobdir_t *jd, struct ita_jobindex *ix, cu_error_t *err) {
    struct stat st;
    if (fstat(jd->runs_fd, &st) != 0)
        return cu_error_set(err, CU_EIO, "runs directory: %s", strerror(errno));
    double now = ita_wall_now();
    /* an mtime close to the last scan may hide a change made in the same
     * clock tick (coarse timestamps): read again until it is older */
    if (ix->scanned_at > 0 && st.st_ino == ix->dir_ino &&
        st.st_mtim.tv_sec == ix->dir_mtime.tv_sec && st.st_mtim.tv_nsec == ix->dir_mtime.tv_nsec &&
        (double)st.st_mtim.tv_sec + 1e-9 * (double)st.st_mtim.tv_nsec < ix->scanned_at - IX_TICK_S)
        return CU_OK;
    int fd = openat(jd->runs_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0) close(fd);
        return cu_error_set(err, CU_EIO, "runs directory: %s", strerror(errno));
    }
    ix->gen++;
    size_t seen = 0;
    struct dirent *de;
    int rc = CU_OK;
    while ((de = readdir(d)) && seen < (size_t)jd->max_jobs) {
        if (!ita_job_id_valid(de->d_name, strlen(de->d_name))) continue;
        if (de->d_type != DT_DIR && de->d_type != DT_LNK && de->d_type != DT_UNKNOWN) continue;
        seen++;
        ix_entry_t *x = ix_get(ix, de->d_name);
        if (!x) {
            rc = cu_error_set(err, CU_ENOMEM, "out of memory");
            break;
        }
        x->gen = ix->gen;
    }
    closedir(d);
    if (rc) return rc;
    ix_sweep(ix);
    ix->dir_ino = st.st_ino;
    ix->dir_mtime = st.st_mtim;
    ix->scanned_at = now;
    return CU_OK;
}

/* Whether state.json's identity differs from the one x was read at. */
static int ix_changed(ita_jobdir_t *jd, const ix_entry_t *x) {
    char rel[ITA_JOB_ID_MAX + 16];
    snprintf(rel, sizeof rel, "%s/state.json", x->e.id);
    struct stat st;
    if (fstatat(jd->runs_fd, rel, &st, 0) != 0) return x->valid; /* gone: only if listed */
    return st.st_dev != x->e.dev || st.st_ino != x->e.ino || st.st_size != x->e.size ||
           st.st_mtim.tv_sec != x->e.mtime.tv_sec || st.st_mtim.tv_nsec != x->e.mtime.tv_nsec;
}

/* Whether x is visited at every listing. */
static int ix_is_hot(const ix_entry_t *x) {
    return x->dirty || !x->valid || x->active || x->sum.slurm_job_id[0];
}

static int ix_rebuild_hot(struct ita_jobindex *ix) {
    if (ix->cap_hot < ix->n) {
        ix_entry_t **g = realloc(ix->hot, ix->n * sizeof *g);
        if (!g) return -1;
        ix->hot = g;
        ix->cap_hot = ix->n;
    }
    ix->n_hot = 0;
    for (size_t i = 0; i < ix->n; i++)
        if (ix_is_hot(ix->all[i])) ix->hot[ix->n_hot++] = ix->all[i];
    ix->hot_stale = 0;
    return 0;
}

/* Reads (when changed) and summarises x; keeps the parsed state only for
 * active jobs and jobs with a Slurm id. */
static void ix_summarise(ita_jobdir_t *jd, struct ita_jobindex *ix, ix_entry_t *x) {
    int was_hot = ix_is_hot(x);
    cu_error_t e2;
    double before = x->valid ? x->sum.started_at : NAN;
    int was_valid = x->valid;
    x->valid = refresh_state(jd, &x->e, &e2) == CU_OK;
    x->dirty = 0;
    if (x->valid) {
        summarise(jd, &x->e, &x->sum);
        x->active = rundir_status_active(x->sum.state_status);
        if (!x->active && !x->sum.slurm_job_id[0]) {
            json_decref(x->e.state);
            x->e.state = NULL;
        }
        free(x->e.state_text); /* the detail route reads its own cache */
        x->e.state_text = NULL;
    }
    if (x->valid != was_valid || (x->valid && x->sum.started_at != before)) ix->order_stale = 1;
    if (ix_is_hot(x) != was_hot) ix->hot_stale = 1;
}

static int ix_refresh(ita_jobdir_t *jd, struct ita_jobindex *ix, cu_error_t *err) {
    int rc = ix_scan(jd, ix, err);
    if (rc) return rc;
    int view_changed = ix->view != jd->view;
    ix->view = jd->view;
    if (ix->hot_stale && ix_rebuild_hot(ix)) return cu_error_set(err, CU_ENOMEM, "out of memory");
    /* (a finished job's heartbeat age is brought up to date when it is
     * rendered, from updated_at: no pass over every summary here). The
     * hot list may go stale below; it is rebuilt at the next listing. */
    for (size_t i = 0, n_hot = ix->n_hot; i < n_hot; i++) {
        ix_entry_t *x = ix->hot[i];
        if (x->dirty || (x->valid && x->active) ||
            (view_changed && x->valid && x->sum.slurm_job_id[0]))
            ix_summarise(jd, ix, x);
        else if (!x->valid && ix_changed(jd, x)) /* a directory whose state.json appeared */
            ix_summarise(jd, ix, x);
    }
    /* finished jobs rewritten (a resumed run): IX_STAT_MIN a listing plus
     * IX_STAT_RATE a second since the last listing, at most IX_BUDGET, and
     * no more than IX_BUDGET_S of stat calls */
    double now = ita_mono_now();
    double due = ix->swept_at > 0 ? (now - ix->swept_at) * IX_STAT_RATE : IX_BUDGET;
    ix->swept_at = now;
    size_t budget = due >= IX_BUDGET - IX_STAT_MIN ? IX_BUDGET : IX_STAT_MIN + (size_t)due;
    if (budget > ix->n) budget = ix->n;
    double until = now + IX_BUDGET_S;
    for (size_t k = 0; k < budget; k++) {
        ix_entry_t *x = ix->all[ix->rr++ % ix->n];
        if (ix_changed(jd, x)) ix_summarise(jd, ix, x);
        if ((k & 31) == 31 && ita_mono_now() > until) break;
    }
    if (ix->n) ix->rr %= ix->n;
    if (!ix->order_stale) return CU_OK;
    if (ix->cap_sorted < ix->n) {
        const ita_job_summary_t **g = realloc(ix->sorted, ix->n * sizeof *g);
        if (!g) return cu_error_set(err, CU_ENOMEM, "out of memory");
        ix->sorted = g;
        ix->cap_sorted = ix->n;
    }
    ix->n_sorted = 0;
    for (size_t i = 0; i < ix->n; i++)
        if (ix->all[i]->valid) ix->sorted[ix->n_sorted++] = &ix->all[i]->sum;
    qsort(ix->sorted, ix->n_sorted, sizeof *ix->sorted, cmp_newest_ptr);
    ix->order_stale = 0;
    return CU_OK;
}

int ita_jobdir_index(ita_jobdir_t *jd, const ita_job_summary_t *const **out, size_t *n,
                     cu_error_t *err) {
    *out = NULL;
    *n = 0;
    if (!jd->ix && !(jd->ix = calloc(1, sizeof *jd->ix)))
        return cu_error_set(err, CU_ENOMEM, "out of memory");
    int rc = ix_refresh(jd, jd->ix, err);
    if (rc) return rc;
    *out = jd->ix->sorted;
    *n = jd->ix->n_sorted;
    return CU_OK;
}

int ita_jobdir_list(ita_jobdir_t *jd, ita_job_summary_t **out, size_t *n, cu_error_t *err) {
    const ita_job_summary_t *const *all;
    size_t count;
    *out = NULL;
    *n = 0;
    int rc = ita_jobdir_index(jd, &all, &count, err);
    if (rc) return rc;
    ita_job_summary_t *arr = malloc((count ? count : 1) * sizeof *arr);
    if (!arr) return cu_error_set(err, CU_ENOMEM, "out of memory");
    double now = ita_wall_now();
    for (size_t i = 0; i < count; i++) {
        arr[i] = *all[i];
        if (arr[i].updated_at > 0) arr[i].heartbeat_age_s = now - arr[i].updated_at;
    }
    *out = arr;
    *n = count;
    return CU_OK;
}

/* ---- .jsonl files ---- */

/* The value of "step" in a line, without parsing the whole line; -1 if
 * absent. Lines are objects written by codex-train, one key each. */
static int64_t line_step(const char *line, size_t len) {
    return (int64_t)rundir_line_step(line, len);
}

/* Callback verdicts. */
enum { LINE_NEXT = 0, LINE_STOP_AFTER = 1, LINE_STOP_BEFORE = 2 };
typedef int (*line_fn)(void *ctx, const char *line, size_t len, int64_t offset);

/* Calls fn for each complete line starting in [from, to); lines longer than
 * the scratch buffer are skipped. Returns the offset just past the last
 * line consumed. */
static int64_t each_line(ita_jobdir_t *jd, int fd, int64_t from, int64_t to, line_fn fn,
                         void *ctx) {
    char *buf = jd->scratch;
    int64_t base = from, pos = from;
    size_t have = 0;
    int skipping = 0;
    while (base + (int64_t)have < to) {
        size_t want = SCRATCH - have;
        if ((int64_t)want > to - base - (int64_t)have) want = (size_t)(to - base - (int64_t)have);
        ssize_t r = pread(fd, buf + have, want, base + (int64_t)have);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        have += (size_t)r;
        size_t start = 0;
        char *nl;
        while ((nl = memchr(buf + start, '\n', have - start))) {
            size_t len = (size_t)(nl - (buf + start));
            int v = skipping ? LINE_NEXT : fn(ctx, buf + start, len, base + (int64_t)start);
            skipping = 0;
            if (v == LINE_STOP_BEFORE) return pos;
            start += len + 1;
            pos = base + (int64_t)start;
            if (v == LINE_STOP_AFTER) return pos;
        }
        if (start == 0 && have == SCRATCH) { /* one line fills the buffer: skip it */
            skipping = 1;
            base += (int64_t)have;
            have = 0;
            continue;
        }
        memmove(buf, buf + start, have - start);
        base += (int64_t)start;
        have -= start;
    }
    return pos;
}

static int index_line(void *ctx, const char *line, size_t len, int64_t offset) {
    jsonl_index_t *ix = ctx;
    int64_t s = line_step(line, len);
    if (s < 0) s = ix->last_step;
    if (ix->n_lines % BLOCK_LINES == 0) {
        if (ix->n_blocks == ix->cap) {
            size_t cap = ix->cap ? ix->cap * 2 : 16;
            void *g = realloc(ix->blocks, cap * sizeof *ix->blocks);
            if (!g) return LINE_STOP_BEFORE; /* index what fits; retried next time */
            ix->blocks = g;
            ix->cap = cap;
        }
        ix->blocks[ix->n_blocks].offset = offset;
        ix->blocks[ix->n_blocks].step = s;
        ix->n_blocks++;
    }
    ix->last_step = s;
    ix->n_lines++;
    return LINE_NEXT;
}

/* Opens the file and brings its index up to date; returns the fd or -1
 * (no file: *missing set). */
static int jsonl_refresh(ita_jobdir_t *jd, entry_t *e, int kind, int *missing) {
    jsonl_index_t *ix = &e->idx[kind];
    *missing = 0;
    int fd = ita_jobdir_openat(jd, e->id, JSONL_NAME[kind], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        *missing = 1;
        return -1;
    }
    if (!ix->valid || ix->dev != st.st_dev || ix->ino != st.st_ino || st.st_size < ix->indexed_to) {
        free(ix->blocks);
        memset(ix, 0, sizeof *ix);
        ix->valid = 1;
        ix->dev = st.st_dev;
        ix->ino = st.st_ino;
        ix->last_step = -1;
    }
    if (st.st_size > ix->indexed_to)
        ix->indexed_to = each_line(jd, fd, ix->indexed_to, st.st_size, index_line, ix);
    return fd;
}

typedef struct {
    const ita_jsonl_query_t *q;
    json_t *records;
    size_t bytes;
    int64_t last_step;
} page_ctx_t;

static json_t *filter_names(json_t *rec, const char *const *names, size_t n) {
    json_t *out = json_object();
    int any = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_object_get(rec, names[i]);
        if (v) {
            json_object_set(out, names[i], v);
            any = 1;
        }
    }
    if (!any) {
        json_decref(out);
        return NULL;
    }
    json_object_set(out, "step", json_object_get(rec, "step"));
    json_t *t = json_object_get(rec, "time");
    if (t) json_object_set(out, "time", t);
    return out;
}

static int page_line(void *ctx, const char *line, size_t len, int64_t offset) {
    page_ctx_t *p = ctx;
    if (json_array_size(p->records) >= p->q->limit || p->bytes >= p->q->max_bytes)
        return LINE_STOP_BEFORE;
    int64_t s = line_step(line, len);
    if (s < 0) s = p->last_step;
    p->last_step = s;
    if (p->q->since_step != INT64_MIN && s <= p->q->since_step) return LINE_NEXT;
    json_t *rec = json_loadb(line, len, 0, NULL);
    if (!json_is_object(rec)) { /* a malformed complete line: skipped */
        json_decref(rec);
        return LINE_NEXT;
    }
    if (p->q->names) {
        json_t *f = filter_names(rec, p->q->names, p->q->n_names);
        json_decref(rec);
        if (!f) return LINE_NEXT;
        rec = f;
    }
    json_array_append_new(p->records, rec);
    p->bytes += len;
    return LINE_NEXT;
}

/* Where a page for since_step starts: the block before the first one whose
 * first step exceeds since_step. */
static int64_t seek_step(const jsonl_index_t *ix, int64_t since_step) {
    if (since_step == INT64_MIN || ix->n_blocks == 0) return 0;
    size_t lo = 0, hi = ix->n_blocks; /* first block with step > since_step */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ix->blocks[mid].step > since_step)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo == 0 ? 0 : ix->blocks[lo - 1].offset;
}

int ita_jobdir_jsonl(ita_jobdir_t *jd, const char *id, ita_jsonl_kind_t kind,
                     const ita_jsonl_query_t *q, ita_jsonl_page_t *page, cu_error_t *err) {
    page->records = json_array();
    page->next_cursor = 0;
    page->more = 0;
    int rc = ita_jobdir_state(jd, id, NULL, NULL, err);
    if (rc) return rc;
    entry_t *e = entry_get(jd, id, 0);
    int missing = 0;
    int fd = jsonl_refresh(jd, e, kind, &missing);
    if (fd < 0) {
        page->next_cursor = q->cursor > 0 ? q->cursor : 0;
        return CU_OK;
    }
    jsonl_index_t *ix = &e->idx[kind];
    int64_t start;
    if (q->cursor >= 0) {
        start = q->cursor;
        char prev = '\n';
        if (start > ix->indexed_to || (start > 0 && pread(fd, &prev, 1, start - 1) != 1) ||
            prev != '\n') {
            close(fd);
            return cu_error_set(err, CU_EINVAL, "cursor %lld is not the start of a line",
                                (long long)q->cursor);
        }
    } else {
        start = seek_step(ix, q->since_step);
    }
    page_ctx_t ctx = {q, page->records, 0, -1};
    page->next_cursor = each_line(jd, fd, start, ix->indexed_to, page_line, &ctx);
    page->more = page->next_cursor < ix->indexed_to;
    close(fd);
    return CU_OK;
}

int64_t ita_jobdir_jsonl_end(ita_jobdir_t *jd, const char *id, ita_jsonl_kind_t kind) {
    cu_error_t err;
    if (ita_jobdir_state(jd, id, NULL, NULL, &err)) return 0;
    entry_t *e = entry_get(jd, id, 0);
    int missing;
    int fd = jsonl_refresh(jd, e, kind, &missing);
    if (fd < 0) return 0;
    close(fd);
    return e->idx[kind].indexed_to;
}

typedef struct {
    int64_t step;
    json_t *found;
    int64_t last_step;
} eval_ctx_t;

static int eval_line(void *ctx, const char *line, size_t len, int64_t offset) {
    eval_ctx_t *c = ctx;
    int64_t s = line_step(line, len);
    if (s < 0) s = c->last_step;
    c->last_step = s;
    if (s > c->step) return LINE_STOP_BEFORE;
    if (s < c->step || !memmem(line, len, "\"val_loss\"", 10)) return LINE_NEXT;
    json_t *rec = json_loadb(line, len, 0, NULL);
    if (json_is_object(rec)) {
        json_decref(c->found);
        c->found = rec; /* the last evaluation at that step wins */
    } else {
        json_decref(rec);
    }
    return LINE_NEXT;
}

json_t *ita_jobdir_eval_at(ita_jobdir_t *jd, const char *id, int64_t step) {
    entry_t *e = entry_get(jd, id, 0);
    if (!e) return NULL;
    int missing;
    int fd = jsonl_refresh(jd, e, ITA_JSONL_METRICS, &missing);
    if (fd < 0) return NULL;
    eval_ctx_t c = {step, NULL, -1};
    jsonl_index_t *ix = &e->idx[ITA_JSONL_METRICS];
    each_line(jd, fd, seek_step(ix, step - 1), ix->indexed_to, eval_line, &c);
    close(fd);
    return c.found;
}

static json_t *num_json(double v) {
    return isnan(v) ? json_null() : json_real(v);
}

json_t *ita_job_summary_json(const ita_job_summary_t *s) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(s->id));
    json_object_set_new(o, "status", json_string(s->status));
    json_object_set_new(o, "lost", json_boolean(s->lost));
    json_object_set_new(o, "step", json_integer(s->step));
    json_object_set_new(o, "max_steps", json_integer(s->max_steps));
    json_object_set_new(o, "progress", num_json(s->progress));
    json_object_set_new(o, "loss", num_json(s->loss));
    json_object_set_new(o, "tokens_per_s", num_json(s->tokens_per_s));
    json_object_set_new(o, "eta_s", num_json(s->eta_s));
    json_object_set_new(
        o, "heartbeat_age_s",
        num_json(s->updated_at > 0 ? ita_wall_now() - s->updated_at : s->heartbeat_age_s));
    json_object_set_new(o, "started_at",
                        s->started_at_text[0] ? json_string(s->started_at_text) : json_null());
    json_object_set_new(o, "updated_at",
                        s->updated_at_text[0] ? json_string(s->updated_at_text) : json_null());
    json_object_set_new(o, "detail", s->detail[0] ? json_string(s->detail) : json_null());
    json_object_set_new(o, "reason", s->reason[0] ? json_string(s->reason) : json_null());
    json_object_set_new(o, "scheduler", json_null());
    return o;
}

json_t *ita_job_summary_json_view(const ita_job_summary_t *s, const ita_sched_view_t *view) {
    json_t *o = ita_job_summary_json(s);
    char buf[2048];
    if (o && s->slurm_job_id[0] &&
        ita_sched_render(view, s->slurm_job_id, ita_wall_now(), buf, sizeof buf) > 0) {
        json_t *v = json_loads(buf, 0, NULL);
        if (v) json_object_set_new(o, "scheduler", v);
    }
    return o;
}

void ita_jobdir_set_view(ita_jobdir_t *jd, const ita_sched_view_t *view) {
    jd->view = view;
}
