/*
 * The job routes: the list of jobs, one job's state, its metrics, its
 * checkpoints (and the JSON form of its events; the live stream is sse.c).
 * Everything is read through the worker's jobdir cache.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ita/http.h"

#define JOBS_LIMIT_DEFAULT 50
#define JOBS_LIMIT_MAX 500
#define RECORDS_LIMIT_DEFAULT 1000
#define RECORDS_LIMIT_MAX 5000
#define RECORDS_BYTES_MAX (1 << 20)
#define NAMES_MAX 16
#define CHECKPOINTS_MAX 10000

/* An integer parameter in [lo, hi]; 1 found, 0 absent, -1 answered 400. */
static int int_param(ita_req_t *rq, const char *name, long long lo, long long hi, long long *out) {
    char buf[32], *end;
    int r = ita_query_param(rq, name, buf, sizeof buf);
    if (r == 0) return 0;
    errno = 0;
    long long v = r > 0 ? strtoll(buf, &end, 10) : 0;
    if (r < 0 || errno || end == buf || *end || v < lo || v > hi) {
        char d[160];
        snprintf(d, sizeof d, "query parameter '%s' must be an integer in [%lld, %lld]", name, lo,
                 hi);
        ita_problem(rq, 400, d);
        return -1;
    }
    *out = v;
    return 1;
}

/* text as a JSON string into out ("null" when empty or it does not fit). */
static void json_string_or_null(const char *text, char *out, size_t cap) {
    snprintf(out, cap, "null");
    if (!text[0]) return;
    size_t pos = 0;
    if (ita_json_escape(out, cap, &pos, text, strlen(text), 512) == 0)
        out[pos] = 0;
    else
        snprintf(out, cap, "null");
}

static void job_error(ita_req_t *rq, const cu_error_t *err) {
    if (err->code == ITA_ENOENT)
        ita_problem(rq, 404, "no such job");
    else if (err->code == CU_EINVAL)
        ita_problem(rq, 400, err->msg);
    else {
        ita_log(rq->w->srv, "request %s: %s", rq->request_id, err->msg);
        ita_problem(rq, 500, "the job directory could not be read");
    }
}

/* ---- GET /v1/jobs ---- */

static void cursor_encode(const ita_job_summary_t *s, char *out, size_t cap) {
    char raw[ITA_JOB_ID_MAX + 64];
    int n = snprintf(raw, sizeof raw, "%a\t%s", s->started_at, s->id);
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < n && o + 2 < cap; i++) {
        out[o++] = hex[(unsigned char)raw[i] >> 4];
        out[o++] = hex[(unsigned char)raw[i] & 15];
    }
    out[o] = 0;
}

static int cursor_decode(const char *hexs, double *started, char *id, size_t idcap) {
    char raw[ITA_JOB_ID_MAX + 64];
    size_t n = strlen(hexs);
    if (n % 2 || n / 2 >= sizeof raw) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        unsigned v;
        if (sscanf(hexs + 2 * i, "%2x", &v) != 1) return -1;
        raw[i] = (char)v;
    }
    raw[n / 2] = 0;
    char *tab = strchr(raw, '\t'), *end;
    if (!tab) return -1;
    *tab = 0;
    *started = strtod(raw, &end);
    if (*end || !ita_job_id_valid(tab + 1, strlen(tab + 1)) || strlen(tab + 1) >= idcap) return -1;
    snprintf(id, idcap, "%s", tab + 1);
    return 0;
}

/* 1 when job a comes after the cursor position (started, id) in the
 * newest-first order. */
static int after_cursor(const ita_job_summary_t *a, double started, const char *id) {
    if (a->started_at != started) return a->started_at < started;
    return strcmp(a->id, id) > 0;
}

static int status_wanted(const char *list, const char *status) {
    if (!list[0]) return 1;
    size_t n = strlen(status);
    for (const char *p = list; *p;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        if (len == n && !strncasecmp(p, status, n)) return 1;
        p += len + (c ? 1 : 0);
    }
    return 0;
}

void ita_route_jobs(ita_req_t *rq) {
    char status[128] = "", cursor[2 * (ITA_JOB_ID_MAX + 64)] = "";
    long long limit = JOBS_LIMIT_DEFAULT;
    if (int_param(rq, "limit", 1, JOBS_LIMIT_MAX, &limit) < 0) return;
    if (ita_query_param(rq, "status", status, sizeof status) < 0) {
        ita_problem(rq, 400, "query parameter 'status' is malformed");
        return;
    }
    int have_cursor = ita_query_param(rq, "cursor", cursor, sizeof cursor);
    double c_started = 0;
    char c_id[ITA_JOB_ID_MAX + 1] = "";
    if (have_cursor < 0 ||
        (have_cursor > 0 && cursor_decode(cursor, &c_started, c_id, sizeof c_id))) {
        ita_problem(rq, 400, "query parameter 'cursor' is not one this service returned");
        return;
    }
    const ita_job_summary_t *const *jobs = NULL;
    size_t n = 0;
    cu_error_t err;
    if (ita_jobdir_index(rq->w->jobs, &jobs, &n, &err)) {
        job_error(rq, &err);
        return;
    }
    json_t *arr = json_array();
    size_t taken = 0, last = 0;
    int more = 0;
    for (size_t i = 0; i < n; i++) {
        if (!status_wanted(status, jobs[i]->status)) continue;
        if (have_cursor > 0 && !after_cursor(jobs[i], c_started, c_id)) continue;
        if (taken == (size_t)limit) {
            more = 1;
            break;
        }
        json_array_append_new(arr, ita_job_summary_json_view(jobs[i], rq->w->view));
        last = i;
        taken++;
    }
    json_t *doc = json_pack("{s:o}", "jobs", arr);
    if (more) {
        char next[2 * (ITA_JOB_ID_MAX + 64)];
        cursor_encode(jobs[last], next, sizeof next);
        json_object_set_new(doc, "next_cursor", json_string(next));
    } else {
        json_object_set_new(doc, "next_cursor", json_null());
    }
    ita_respond_json(rq, doc);
}

/* ---- GET /v1/jobs/{id} ---- */

static void num_text(double v, char *out, size_t cap) {
    if (isnan(v) || isinf(v))
        snprintf(out, cap, "null");
    else
        snprintf(out, cap, "%.6g", v);
}

void ita_route_job(ita_req_t *rq) {
    ita_job_summary_t s;
    cu_error_t err;
    if (ita_jobdir_state(rq->w->jobs, rq->job, &s, NULL, &err)) {
        job_error(rq, &err);
        return;
    }
    const char *state = ita_jobdir_state_text(rq->w->jobs, rq->job);
    char prog[32], eta[32], age[32], sched[2048] = "null", detail[1600] = "null", head[8000];
    num_text(s.progress, prog, sizeof prog);
    num_text(s.eta_s, eta, sizeof eta);
    num_text(s.heartbeat_age_s, age, sizeof age);
    if (s.slurm_job_id[0] &&
        ita_sched_render(rq->w->view, s.slurm_job_id, ita_wall_now(), sched, sizeof sched) < 0)
        snprintf(sched, sizeof sched, "null");
    json_string_or_null(s.detail, detail, sizeof detail);
    char reason[3200] = "null";
    json_string_or_null(s.reason, reason, sizeof reason);
    /* The cached state text is spliced in as is: no re-serialisation per
     * request. Status strings are from a fixed set, ids are plain, the
     * scheduler object was rendered when the view was refreshed. */
    int hn =
        snprintf(head, sizeof head,
                 "{\"id\":\"%s\",\"status\":\"%s\",\"lost\":%s,\"progress\":%s,"
                 "\"eta_s\":%s,\"heartbeat_age_s\":%s,\"detail\":%s,\"reason\":%s,"
                 "\"scheduler\":%s,\"state\":",
                 s.id, s.status, s.lost ? "true" : "false", prog, eta, age, detail, reason, sched);
    if (hn < 0 || (size_t)hn >= sizeof head) {
        ita_problem(rq, 500, "the answer did not fit");
        return;
    }
    size_t sl = strlen(state);
    char *body = h2o_mem_alloc_pool(&rq->req->pool, (size_t)hn + sl + 2);
    memcpy(body, head, (size_t)hn);
    memcpy(body + hn, state, sl);
    body[hn + sl] = '}';
    ita_respond(rq, 200, "application/json", body, (size_t)hn + sl + 1);
}

/* ---- GET /v1/jobs/{id}/metrics and the JSON form of /events ---- */

static int names_param(ita_req_t *rq, char *buf, size_t cap, const char **names, size_t *n) {
    *n = 0;
    int r = ita_query_param(rq, "names", buf, cap);
    if (r == 0 || (r > 0 && !buf[0])) return 0;
    for (char *p = buf; r > 0 && *p;) {
        char *c = strchr(p, ',');
        if (c) *c = 0;
        int ok = *p && *n < NAMES_MAX;
        for (char *q = p; ok && *q; q++)
            ok = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
                 *q == '_';
        if (!ok) {
            r = -1;
            break;
        }
        names[(*n)++] = p;
        p = c ? c + 1 : p + strlen(p);
    }
    if (r < 0) {
        ita_problem(rq, 400,
                    "query parameter 'names' must be up to 16 comma-separated metric "
                    "names of [A-Za-z0-9_]");
        return -1;
    }
    return 1;
}

static void jsonl_page(ita_req_t *rq, ita_jsonl_kind_t kind) {
    long long since = 0, cursor = -1, limit = RECORDS_LIMIT_DEFAULT;
    ita_jsonl_query_t q = {INT64_MIN, -1, RECORDS_LIMIT_DEFAULT, RECORDS_BYTES_MAX, NULL, 0};
    int r;
    if ((r = int_param(rq, "since_step", -1, INT64_MAX, &since)) < 0) return;
    if (r > 0) q.since_step = since;
    if ((r = int_param(rq, "cursor", 0, INT64_MAX, &cursor)) < 0) return;
    if (r > 0) q.cursor = cursor;
    if (int_param(rq, "limit", 1, RECORDS_LIMIT_MAX, &limit) < 0) return;
    q.limit = (size_t)limit;
    char nbuf[512];
    const char *names[NAMES_MAX];
    if (kind == ITA_JSONL_METRICS) {
        if ((r = names_param(rq, nbuf, sizeof nbuf, names, &q.n_names)) < 0) return;
        if (r > 0) q.names = names;
    }
    ita_jsonl_page_t page;
    cu_error_t err;
    if (ita_jobdir_jsonl(rq->w->jobs, rq->job, kind, &q, &page, &err)) {
        json_decref(page.records);
        job_error(rq, &err);
        return;
    }
    char next[32];
    snprintf(next, sizeof next, "%lld", (long long)page.next_cursor);
    ita_respond_json(rq, json_pack("{s:s, s:o, s:s, s:b}", "job", rq->job,
                                   kind == ITA_JSONL_METRICS ? "records" : "events", page.records,
                                   "next_cursor", next, "more", page.more));
}

void ita_route_job_metrics(ita_req_t *rq) {
    jsonl_page(rq, ITA_JSONL_METRICS);
}

static int accepts_event_stream(ita_req_t *rq) {
    ssize_t i = h2o_find_header(&rq->req->headers, H2O_TOKEN_ACCEPT, -1);
    if (i < 0) return 0;
    const h2o_iovec_t *v = &rq->req->headers.entries[i].value;
    return memmem(v->base, v->len, "text/event-stream", 17) != NULL;
}

void ita_route_job_events(ita_req_t *rq) {
    if (!accepts_event_stream(rq)) {
        jsonl_page(rq, ITA_JSONL_EVENTS);
        return;
    }
    cu_error_t err;
    if (ita_jobdir_state(rq->w->jobs, rq->job, NULL, NULL, &err)) {
        job_error(rq, &err);
        return;
    }
    /* Resume after the last event the client saw (its id is the byte offset
     * that follows it), or from ?cursor=, or from the start; ?from=end
     * sends only what is appended from now on. */
    long long from = 0;
    const h2o_iovec_t *last = ita_header(rq, "last-event-id");
    char from_s[8];
    if (last && last->len > 0 && last->len < 20) {
        char b[24];
        memcpy(b, last->base, last->len);
        b[last->len] = 0;
        char *end;
        from = strtoll(b, &end, 10);
        if (*end || from < 0) from = 0;
    } else if (ita_query_param(rq, "from", from_s, sizeof from_s) > 0 && !strcmp(from_s, "end")) {
        from = ita_jobdir_jsonl_end(rq->w->jobs, rq->job, ITA_JSONL_EVENTS);
    } else if (int_param(rq, "cursor", 0, INT64_MAX, &from) < 0) {
        return;
    }
    ita_sse_start(rq, from);
}

/* ---- GET /v1/jobs/{id}/checkpoints ---- */

typedef struct {
    int64_t step;
    char file[32];
    long long size;
    struct timespec mtime;
} ckpt_t;

static int ckpt_step(const char *name, int64_t *step) {
    /* step_<8 digits>.h5 (more digits once a job passes 10^8 steps) */
    size_t n = strlen(name);
    if (n < 16 || n > 24 || strncmp(name, "step_", 5) || strcmp(name + n - 3, ".h5")) return 0;
    int64_t v = 0;
    for (size_t i = 5; i < n - 3; i++) {
        if (name[i] < '0' || name[i] > '9') return 0;
        v = v * 10 + (name[i] - '0');
    }
    *step = v;
    return 1;
}

static int cmp_ckpt(const void *a, const void *b) {
    int64_t x = ((const ckpt_t *)a)->step, y = ((const ckpt_t *)b)->step;
    return x < y ? -1 : x > y;
}

static json_t *time_json(struct timespec t) {
    struct tm tm;
    gmtime_r(&t.tv_sec, &tm);
    char s[96];
    snprintf(s, sizeof s, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(t.tv_nsec / 1000000));
    return json_string(s);
}

static void read_latest(ita_req_t *rq, char *out, size_t cap) {
    out[0] = 0;
    int fd = ita_jobdir_openat(rq->w->jobs, rq->job, "checkpoints/latest", O_RDONLY);
    if (fd < 0) return;
    ssize_t n = read(fd, out, cap - 1);
    close(fd);
    if (n <= 0) {
        out[0] = 0;
        return;
    }
    out[n] = 0;
    out[strcspn(out, "\r\n")] = 0;
    /* formats.md says "the newest checkpoint's file name"; accept a path
     * ("checkpoints/step_....h5") too and keep its last component. */
    const char *base = strrchr(out, '/');
    if (base) memmove(out, base + 1, strlen(base + 1) + 1);
}

static json_t *list_checkpoints(ita_req_t *rq, const char *latest) {
    json_t *arr = json_array();
    int fd = ita_jobdir_openat(rq->w->jobs, rq->job, "checkpoints", O_RDONLY | O_DIRECTORY);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0) close(fd);
        return arr;
    }
    size_t n = 0, cap = 16;
    ckpt_t *c = malloc(cap * sizeof *c);
    struct dirent *de;
    while (c && (de = readdir(d)) && n < CHECKPOINTS_MAX) {
        int64_t step;
        struct stat st;
        if (!ckpt_step(de->d_name, &step) ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            ckpt_t *g = realloc(c, 2 * cap * sizeof *c);
            if (!g) break;
            c = g;
            cap *= 2;
        }
        c[n].step = step;
        snprintf(c[n].file, sizeof c[n].file, "%.31s", de->d_name); /* ckpt_step: <= 24 */
        c[n].size = (long long)st.st_size;
        c[n].mtime = st.st_mtim;
        n++;
    }
    closedir(d);
    if (c) qsort(c, n, sizeof *c, cmp_ckpt);
    for (size_t i = 0; c && i < n; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "checkpoints/%.31s", c[i].file);
        json_t *ev = ita_jobdir_eval_at(rq->w->jobs, rq->job, c[i].step);
        json_array_append_new(
            arr, json_pack("{s:I, s:s, s:I, s:o, s:b, s:o}", "step", (json_int_t)c[i].step, "file",
                           rel, "size_bytes", (json_int_t)c[i].size, "time", time_json(c[i].mtime),
                           "latest", !strcmp(latest, c[i].file), "eval", ev ? ev : json_null()));
    }
    free(c);
    return arr;
}

void ita_route_job_checkpoints(ita_req_t *rq) {
    const json_t *state;
    cu_error_t err;
    if (ita_jobdir_state(rq->w->jobs, rq->job, NULL, &state, &err)) {
        job_error(rq, &err);
        return;
    }
    json_t *best = json_object_get(state, "best_eval");
    char latest[128];
    read_latest(rq, latest, sizeof latest);
    json_t *doc = json_pack("{s:s, s:o, s:o, s:O}", "job", rq->job, "checkpoints",
                            list_checkpoints(rq, latest), "latest",
                            latest[0] ? json_string(latest) : json_null(), "best_eval",
                            best ? best : json_null());
    ita_respond_json(rq, doc);
}

/* ---- GET /v1/jobs/{id}/config ---- */

#define CONFIG_BYTES_MAX (256 << 10)

/* The run's resolved config as codex-train wrote it (job.yaml), or, for a
 * job submitted but not started yet, the config it was submitted with
 * (submit.yaml); the text as stored, for the dashboard's config view and
 * its comparison of runs. */
void ita_route_job_config(ita_req_t *rq) {
    cu_error_t err;
    if (ita_jobdir_state(rq->w->jobs, rq->job, NULL, NULL, &err)) {
        job_error(rq, &err);
        return;
    }
    static const char *const FILES[] = {"job.yaml", "submit.yaml"};
    for (size_t i = 0; i < 2; i++) {
        int fd = ita_jobdir_openat(rq->w->jobs, rq->job, FILES[i], O_RDONLY);
        if (fd < 0) continue;
        char *text = malloc(CONFIG_BYTES_MAX + 1);
        size_t n = 0;
        ssize_t r = 1;
        while (text && n < CONFIG_BYTES_MAX && (r = read(fd, text + n, CONFIG_BYTES_MAX - n)) > 0)
            n += (size_t)r;
        close(fd);
        if (!text || r < 0) {
            free(text);
            ita_problem(rq, 500, "the job's config could not be read");
            return;
        }
        text[n] = 0;
        json_t *doc = json_pack("{s:s, s:s, s:s%, s:b}", "job", rq->job, "file", FILES[i], "yaml",
                                text, n, "truncated", n == CONFIG_BYTES_MAX);
        free(text);
        if (!doc) {
            ita_problem(rq, 500, "the job's config is not valid UTF-8");
            return;
        }
        ita_respond_json(rq, doc);
        return;
    }
    ita_respond_json(
        rq, json_pack("{s:s, s:n, s:n, s:b}", "job", rq->job, "file", "yaml", "truncated", 0));
}
