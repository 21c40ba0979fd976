/*
 * The run directory writer and reader (see rundir.h). JSON goes through
 * jansson so every string is escaped correctly, whatever a message or host
 * name contains.
 */
#include "rundir/rundir.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "io/json_text.h"

double rundir_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void rundir_time(double t, char *buf, size_t len) {
    time_t secs = (time_t)t;
    int ms = (int)((t - (double)secs) * 1000.0);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", base, ms < 0 ? 0 : (ms > 999 ? 999 : ms));
}

double rundir_parse_time(const char *s) {
    struct tm tm = {0};
    int ms = 0;
    if (!s || sscanf(s, "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                     &tm.tm_min, &tm.tm_sec, &ms) < 6)
        return 0.0;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    return (double)timegm(&tm) + ms / 1000.0;
}

int rundir_mkdirs(const char *path, cu_error_t *err) {
    char buf[4096];
    if (cu_format(buf, sizeof buf, err, "%s", path)) return err->code;
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return cu_error_set(err, CU_EIO, "cannot create directory %s: %s", buf,
                                strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return cu_error_set(err, CU_EIO, "cannot create directory %s: %s", buf, strerror(errno));
    return CU_OK;
}

int rundir_fd_regular(int fd) {
    struct stat st;
    if (fd < 0) return -1;
    int fl = fcntl(fd, F_GETFL);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || fl < 0 ||
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    return fd;
}

int rundir_open_regular(int dirfd, const char *name, int flags, int mode) {
    int fd = openat(dirfd, name, flags | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
    return rundir_fd_regular(fd);
}

/* fopen(path, how) through rundir_open_regular. */
static FILE *fopen_regular(const char *path, int flags, const char *how) {
    int fd = rundir_open_regular(AT_FDCWD, path, flags, 0644);
    FILE *f = fd >= 0 ? fdopen(fd, how) : NULL;
    if (!f && fd >= 0) close(fd);
    return f;
}

static FILE *open_log(const rundir_t *d, const char *name, cu_error_t *err) {
    char path[4200];
    if (cu_format(path, sizeof path, err, "%s/%s", d->dir, name)) return NULL;
    FILE *f = fopen_regular(path, O_WRONLY | O_APPEND | O_CREAT, "a");
    if (!f) cu_error_set(err, CU_EIO, "cannot open %s: %s", path, strerror(errno));
    return f;
}

int rundir_open(rundir_t *d, const char *dir, cu_error_t *err) {
    memset(d, 0, sizeof *d);
    if (cu_format(d->dir, sizeof d->dir, err, "%s", dir)) return err->code;
    int rc = rundir_mkdirs(dir, err);
    if (rc) return rc;
    d->lock_fd = -1;
    d->metrics = open_log(d, "metrics.jsonl", err);
    d->events = d->metrics ? open_log(d, "events.jsonl", err) : NULL;
    if (!d->events) {
        rundir_close(d);
        return err ? err->code : CU_EIO;
    }
    return CU_OK;
}

void rundir_close(rundir_t *d) {
    if (d->metrics) fclose(d->metrics);
    if (d->events) fclose(d->events);
    d->metrics = d->events = NULL;
    if (d->lock_fd >= 0) close(d->lock_fd); /* releases the lock */
    d->lock_fd = -1;
}

void rundir_state_init(rundir_state_t *s, const char *job) {
    memset(s, 0, sizeof *s);
    snprintf(s->job, sizeof s->job, "%s", job);
    snprintf(s->status, sizeof s->status, "RUNNING");
    s->loss = s->lr = s->grad_norm = s->tokens_per_s = s->eta_s = NAN;
    s->ckpt_step = -1;
    s->best_step = -1;
    s->last_eval_step = -1;
    s->error_rank = -1;
}

/* All of text to fd; 0 on success, else errno. */
static int write_all(int fd, const char *text, size_t len) {
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n < 0 ? errno : ENOSPC;
        done += (size_t)n;
    }
    return 0;
}

int rundir_write_atomic_at(int dirfd, const char *name, const char *text, size_t len,
                           cu_error_t *err) {
    char tmp[4200];
    /* per thread: a service's workers may write one job at once */
    int rc = cu_format(tmp, sizeof tmp, err, "%s.tmp.%ld", name, (long)syscall(SYS_gettid));
    if (rc) return rc;
    int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) return cu_error_set(err, CU_EIO, "cannot write %s: %s", tmp, strerror(errno));
    int e = write_all(fd, text, len);
    if (!e && fsync(fd) != 0) e = errno;
    if (close(fd) != 0 && !e) e = errno;
    if (!e && renameat(dirfd, tmp, dirfd, name) != 0) e = errno;
    if (e) {
        unlinkat(dirfd, tmp, 0);
        return cu_error_set(err, CU_EIO, "cannot write %s: %s", name, strerror(e));
    }
    return CU_OK;
}

int rundir_write_atomic(const char *path, const char *text, size_t len, cu_error_t *err) {
    char dir[4200];
    int rc = cu_format(dir, sizeof dir, err, "%s", path);
    if (rc) return rc;
    char *slash = strrchr(dir, '/');
    const char *name = slash ? slash + 1 : path;
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return cu_error_set(err, CU_EIO, "cannot write %s: %s", path, strerror(errno));
    rc = rundir_write_atomic_at(dfd, name, text, len, err);
    close(dfd);
    if (rc && err) cu_error_prefix(err, "%s", slash ? dir : ".");
    return rc;
}

static json_t *num_or_null(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}
static json_t *time_or_null(double t) {
    if (t <= 0.0) return json_null();
    char buf[40];
    rundir_time(t, buf, sizeof buf);
    return json_string(buf);
}

static json_t *hosts_array(const char *hosts) {
    json_t *a = json_array();
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", hosts);
    char *save = NULL;
    for (char *h = strtok_r(buf, ",", &save); h; h = strtok_r(NULL, ",", &save))
        json_array_append_new(a, json_string(h));
    return a;
}

static json_t *state_json(const rundir_state_t *s) {
    json_t *o = json_object();
    json_object_set_new(o, "version", json_integer(1));
    json_object_set_new(o, "job", json_string(s->job));
    json_object_set_new(o, "status", json_string(s->status));
    json_object_set_new(o, "step", json_integer(s->step));
    json_object_set_new(o, "max_steps", json_integer(s->max_steps));
    json_object_set_new(o, "epoch", json_integer(s->epoch));
    json_object_set_new(o, "loss", num_or_null(s->loss));
    json_object_set_new(o, "lr", num_or_null(s->lr));
    json_object_set_new(o, "grad_norm", num_or_null(s->grad_norm));
    json_object_set_new(o, "tokens_per_s", num_or_null(s->tokens_per_s));
    json_object_set_new(o, "eta_s", num_or_null(s->eta_s));
    json_object_set_new(o, "world_size", json_integer(s->world_size));
    json_object_set_new(o, "threads", json_integer(s->threads));
    json_object_set_new(o, "hosts", hosts_array(s->hosts));
    json_object_set_new(o, "pid", s->pid > 0 ? json_integer((json_int_t)s->pid) : json_null());
    json_object_set_new(o, "slurm_job_id",
                        s->slurm_job_id[0] ? json_string(s->slurm_job_id) : json_null());
    json_object_set_new(o, "restarts", json_integer(s->restarts));
    json_object_set_new(o, "started_at", time_or_null(s->started_at));
    json_object_set_new(o, "updated_at", time_or_null(rundir_now()));
    json_object_set_new(o, "finished_at", time_or_null(s->finished_at));
    json_object_set_new(o, "last_checkpoint",
                        s->ckpt_step < 0 ? json_null()
                                         : json_pack("{s:I,s:s}", "step", (json_int_t)s->ckpt_step,
                                                     "file", s->ckpt_file));
    json_object_set_new(o, "best_eval",
                        s->best_step < 0 ? json_null()
                                         : json_pack("{s:I,s:f}", "step", (json_int_t)s->best_step,
                                                     "val_loss", s->best_val_loss));
    json_object_set_new(o, "last_eval",
                        s->last_eval_step < 0
                            ? json_null()
                            : json_pack("{s:I,s:f}", "step", (json_int_t)s->last_eval_step,
                                        "val_loss", s->last_val_loss));
    json_object_set_new(o, "safety",
                        json_pack("{s:I,s:I,s:I}", "redactions", (json_int_t)s->redactions,
                                  "output_findings", (json_int_t)s->output_findings,
                                  "blocked_outputs", (json_int_t)s->blocked_outputs));
    json_object_set_new(o, "error",
                        s->error[0]
                            ? json_pack("{s:s,s:i}", "message", s->error, "rank", s->error_rank)
                            : json_null());
    return o;
}

int rundir_write_state_at(int dirfd, const rundir_state_t *s, cu_error_t *err) {
    json_t *o = state_json(s);
    size_t len;
    char *line = json_text_line(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER, &len);
    json_decref(o);
    if (!line) return cu_error_set(err, CU_ENOMEM, "out of memory (state.json)");
    int rc = rundir_write_atomic_at(dirfd, "state.json", line, len, err);
    free(line);
    return rc;
}

int rundir_write_state(rundir_t *d, const rundir_state_t *s, cu_error_t *err) {
    int dfd = open(d->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return cu_error_set(err, CU_EIO, "%s: %s", d->dir, strerror(errno));
    int rc = rundir_write_state_at(dfd, s, err);
    close(dfd);
    if (rc) cu_error_prefix(err, "%s", d->dir);
    return rc;
}

int rundir_read_state(const char *dir, rundir_state_t *s, cu_error_t *err) {
    char path[4200];
    int rc = cu_format(path, sizeof path, err, "%s/state.json", dir);
    if (rc) return rc;
    if (access(path, F_OK) != 0) return CU_OK;
    int fd = rundir_open_regular(AT_FDCWD, path, O_RDONLY, 0);
    if (fd < 0)
        return cu_error_set(err, CU_EIO, "%s: %s", path,
                            errno == EINVAL ? "not a regular file" : strerror(errno));
    json_error_t jerr;
    json_t *o = json_loadfd(fd, 0, &jerr);
    close(fd);
    if (!o) return cu_error_set(err, CU_EFORMAT, "%s:%d: %s", path, jerr.line, jerr.text);
    const char *status = json_string_value(json_object_get(o, "status"));
    if (status) snprintf(s->status, sizeof s->status, "%s", status);
    s->step = (long)json_integer_value(json_object_get(o, "step"));
    double started = rundir_parse_time(json_string_value(json_object_get(o, "started_at")));
    if (started > 0) s->started_at = started;
    json_t *best = json_object_get(o, "best_eval");
    if (json_is_object(best)) {
        s->best_step = (long)json_integer_value(json_object_get(best, "step"));
        s->best_val_loss = json_number_value(json_object_get(best, "val_loss"));
    }
    json_t *safety = json_object_get(o, "safety");
    if (json_is_object(safety)) {
        s->redactions = (long)json_integer_value(json_object_get(safety, "redactions"));
        s->output_findings = (long)json_integer_value(json_object_get(safety, "output_findings"));
        s->blocked_outputs = (long)json_integer_value(json_object_get(safety, "blocked_outputs"));
    }
    json_decref(o);
    return CU_OK;
}

/* One line, one write: appenders never interleave and a reader never sees
 * half a line. A write the disk cut short (ENOSPC, EDQUOT) is truncated
 * away again, so the file still ends with a whole line. */
static int append_line(FILE *f, const char *line, const char *what, cu_error_t *err) {
    size_t len = strlen(line);
    int fd = fileno(f);
    off_t before = lseek(fd, 0, SEEK_END);
    ssize_t n = write(fd, line, len);
    if (n == (ssize_t)len) return CU_OK;
    int e = n < 0 ? errno : ENOSPC;
    if (before >= 0 && ftruncate(fd, before) != 0) e = errno;
    return cu_error_set(err, CU_EIO, "cannot append to %s: %s", what, strerror(e));
}

int rundir_metric(rundir_t *d, long step, const char *json_fields, cu_error_t *err) {
    char t[40], line[2048];
    rundir_time(rundir_now(), t, sizeof t);
    if (cu_format(line, sizeof line, err, "{\"time\": \"%s\", \"step\": %ld%s%s}\n", t, step,
                  json_fields && *json_fields ? ", " : "", json_fields ? json_fields : ""))
        return err->code;
    return append_line(d->metrics, line, "metrics.jsonl", err);
}

/* A copy of s with every byte that is not part of valid UTF-8 replaced by
 * '?', so generated text always makes a valid JSON string. */
static char *utf8_clean(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    if (!out) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        int len = p[i] < 0x80         ? 1
                  : (p[i] >> 5) == 6  ? 2
                  : (p[i] >> 4) == 14 ? 3
                  : (p[i] >> 3) == 30 ? 4
                                      : 0;
        int ok = len > 0 && i + (size_t)len <= n;
        for (int k = 1; ok && k < len; k++) ok = (p[i + k] & 0xc0) == 0x80;
        if (ok) {
            json_t *probe = json_stringn((const char *)p + i, (size_t)len);
            ok = probe != NULL;
            json_decref(probe);
        }
        if (!ok) len = 1;
        for (int k = 0; k < len; k++) out[i + k] = ok ? (char)p[i + k] : '?';
        i += (size_t)len;
    }
    out[n] = '\0';
    return out;
}

char *rundir_event_line(long step, const char *type, const char *message, const char *extra_json,
                        cu_error_t *err) {
    char t[40];
    rundir_time(rundir_now(), t, sizeof t);
    char *clean = utf8_clean(message ? message : "");
    json_t *msg = clean ? json_string(clean) : NULL;
    free(clean);
    char *m = msg ? json_dumps(msg, JSON_ENCODE_ANY) : NULL;
    json_decref(msg);
    json_t *ty = json_string(type ? type : "");
    char *tq = ty ? json_dumps(ty, JSON_ENCODE_ANY) : NULL;
    json_decref(ty);
    if (!m || !tq) {
        free(m);
        free(tq);
        cu_error_set(err, CU_EINVAL, "event message is not valid UTF-8");
        return NULL;
    }
    size_t cap = strlen(m) + strlen(tq) + (extra_json ? strlen(extra_json) : 0) + 256;
    char *line = malloc(cap);
    int rc =
        line ? cu_format(line, cap, err,
                         "{\"time\": \"%s\", \"step\": %ld, \"type\": %s, \"message\": %s%s%s}\n",
                         t, step, tq, m, extra_json && *extra_json ? ", " : "",
                         extra_json ? extra_json : "")
             : cu_error_set(err, CU_ENOMEM, "out of memory (event)");
    free(m);
    free(tq);
    if (rc != CU_OK) {
        free(line);
        return NULL;
    }
    return line;
}

int rundir_event(rundir_t *d, long step, const char *type, const char *message,
                 const char *extra_json, cu_error_t *err) {
    char *line = rundir_event_line(step, type, message, extra_json, err);
    if (!line) return err ? err->code : CU_EINVAL;
    int rc = append_line(d->events, line, "events.jsonl", err);
    free(line);
    return rc;
}

long long rundir_line_step(const char *line, size_t len) {
    static const char key[] = "\"step\"";
    const char *end = line + len;
    for (const char *p = line; p + sizeof key - 1 < end; p++) {
        p = memchr(p, '"', (size_t)(end - p));
        if (!p || p + sizeof key - 1 >= end) break;
        if (memcmp(p, key, sizeof key - 1)) continue;
        const char *q = p + sizeof key - 1;
        while (q < end && (*q == ' ' || *q == ':')) q++;
        long long v = 0;
        int any = 0;
        while (q < end && *q >= '0' && *q <= '9') v = v * 10 + (*q++ - '0'), any = 1;
        return any ? v : -1;
    }
    return -1;
}

int rundir_truncate_metrics(rundir_t *d, long step, cu_error_t *err) {
    char path[4200];
    if (cu_format(path, sizeof path, err, "%s/metrics.jsonl", d->dir)) return err->code;
    FILE *in = fopen_regular(path, O_RDONLY, "r");
    if (!in) return CU_OK;
    size_t cap = 1 << 16, len = 0;
    char *keep = malloc(cap), line[8192];
    int rc = keep ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory (metrics)");
    while (rc == CU_OK && fgets(line, sizeof line, in)) {
        size_t n = strlen(line);
        if (n == 0 || line[n - 1] != '\n') break; /* a partial last line is dropped */
        const char *p = strstr(line, "\"step\": ");
        if (p && atol(p + 8) > step) continue;
        if (len + n + 1 > cap) {
            char *grown = realloc(keep, cap * 2 + n);
            if (!grown) {
                rc = cu_error_set(err, CU_ENOMEM, "out of memory (metrics)");
                break;
            }
            keep = grown;
            cap = cap * 2 + n;
        }
        memcpy(keep + len, line, n);
        len += n;
    }
    fclose(in);
    if (rc == CU_OK) rc = rundir_write_atomic(path, keep, len, err);
    free(keep);
    if (rc == CU_OK && d->metrics) {
        /* the append handle still points at the old file: reopen */
        fclose(d->metrics);
        d->lock_fd = -1;
        d->metrics = open_log(d, "metrics.jsonl", err);
        if (!d->metrics) rc = err ? err->code : CU_EIO;
    }
    return rc;
}
