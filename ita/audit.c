/*
 * Audit lines are formatted by hand into a stack buffer: jansson would
 * reject a path that is not UTF-8, and an audit log must record exactly
 * such requests. Paths longer than 1 KiB are cut (the line says so).
 */
#include "ita/audit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ita/trace.h"

int ita_audit_open(ita_audit_t *a, const char *path, cu_error_t *err) {
    memset(a, 0, sizeof *a);
    a->fd = -1;
    pthread_mutex_init(&a->mu, NULL);
    if (!strcmp(path, "-")) {
        a->fd = STDOUT_FILENO;
        return CU_OK;
    }
    if (cu_format(a->path, sizeof a->path, err, "%s", path))
        return cu_error_prefix(err, "audit log: ");
    a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (a->fd < 0) return cu_error_set(err, CU_EIO, "audit log %s: %s", path, strerror(errno));
    a->owned = 1;
    struct stat st;
    if (fstat(a->fd, &st) == 0) a->size = (long long)st.st_size;
    return CU_OK;
}

void ita_audit_limits(ita_audit_t *a, long long max_bytes, int keep, int rejected_per_s) {
    a->max_bytes = a->owned ? max_bytes : 0; /* stdout is not rotated */
    a->keep = keep < 1 ? 1 : keep;
    a->rejected_per_s = rejected_per_s;
}

/* path.K-1 -> path.K ... path -> path.1, then a new path. Under a->mu. A
 * failure keeps the current file (a line lost is counted by the caller,
 * a log stopped would lose them all). */
static void rotate(ita_audit_t *a) {
    char from[1100], to[1100];
    for (int k = a->keep; k >= 1; k--) {
        if (k == 1)
            snprintf(from, sizeof from, "%s", a->path);
        else
            snprintf(from, sizeof from, "%s.%d", a->path, k - 1);
        snprintf(to, sizeof to, "%s.%d", a->path, k);
        if (rename(from, to) != 0 && errno != ENOENT) return;
    }
    int fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return;
    close(a->fd);
    a->fd = fd;
    a->size = 0;
}

/* Appends a line under a->mu, rotating first when it would pass the size. */
static int append(ita_audit_t *a, const char *line, size_t len) {
    if (a->max_bytes > 0 && a->size > 0 && a->size + (long long)len > a->max_bytes) rotate(a);
    ssize_t w = write(a->fd, line, len);
    if (w > 0) a->size += w;
    return w == (ssize_t)len ? 0 : -1;
}

/* The aggregate line of the 401 answers not written one by one. */
static int flush_suppressed(ita_audit_t *a, const char *now) {
    if (!a->suppressed) return 0;
    char line[256];
    int n = snprintf(line, sizeof line,
                     "{\"time\":\"%s\",\"aggregate\":\"rejected\",\"status\":401,"
                     "\"count\":%lu,\"since\":\"%s\"}\n",
                     now, a->suppressed, a->suppressed_since);
    a->suppressed = 0;
    return append(a, line, (size_t)n);
}

int ita_json_escape(char *buf, size_t cap, size_t *pos, const char *s, size_t len, size_t max_len) {
    static const char hex[] = "0123456789abcdef";
    size_t p = *pos;
    if (len > max_len) len = max_len;
    if (p + 2 >= cap) return -1;
    buf[p++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (p + 7 >= cap) return -1;
        if (c == '"' || c == '\\') {
            buf[p++] = '\\';
            buf[p++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            memcpy(buf + p, "\\u00", 4);
            buf[p + 4] = hex[c >> 4];
            buf[p + 5] = hex[c & 15];
            p += 6;
        } else {
            buf[p++] = (char)c;
        }
    }
    buf[p++] = '"';
    *pos = p;
    return 0;
}

/* Under a->mu: 1 when this 401 line is over the second's budget (counted
 * for the aggregate line instead). Ends the previous second first. */
static int over_budget(ita_audit_t *a, const ita_audit_record_t *r, const char *now, int *rc) {
    double t = ita_mono_now();
    if (t - a->win_start >= 1.0) {
        a->win_start = t;
        a->win_lines = 0;
        if (flush_suppressed(a, now)) *rc = -1;
    }
    if (r->status != 401 || a->rejected_per_s <= 0) return 0;
    if (a->win_lines < a->rejected_per_s) {
        a->win_lines++;
        return 0;
    }
    if (!a->suppressed) snprintf(a->suppressed_since, sizeof a->suppressed_since, "%s", now);
    a->suppressed++;
    return 1;
}

int ita_audit_write(ita_audit_t *a, const ita_audit_record_t *r) {
    if (a->fd < 0) return 0;
    char line[8192], now[32];
    ita_time_now_rfc3339(now);
    pthread_mutex_lock(&a->mu);
    int rc = 0;
    int skip = over_budget(a, r, now, &rc);
    pthread_mutex_unlock(&a->mu);
    if (skip) return rc;
    size_t pos = 0;
    int n = snprintf(line, sizeof line, "{\"time\":\"%s\",\"request_id\":", now);
    pos = (size_t)n;
    if (ita_json_escape(line, sizeof line, &pos, r->request_id, strlen(r->request_id), 64))
        return -1;
    pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"key\":");
    if (r->key_name) {
        if (ita_json_escape(line, sizeof line, &pos, r->key_name, strlen(r->key_name), 128))
            return -1;
    } else {
        pos += (size_t)snprintf(line + pos, sizeof line - pos, "null");
    }
    if (r->key_id) {
        pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"key_id\":");
        if (ita_json_escape(line, sizeof line, &pos, r->key_id, strlen(r->key_id), 32)) return -1;
    }
    const char *extra[3][2] = {{"action", r->action}, {"job", r->job}, {"launched", r->launched}};
    for (int i = 0; i < 3; i++) {
        if (!extra[i][1]) continue;
        pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"%s\":", extra[i][0]);
        if (ita_json_escape(line, sizeof line, &pos, extra[i][1], strlen(extra[i][1]), 256))
            return -1;
    }
    pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"method\":");
    if (ita_json_escape(line, sizeof line, &pos, r->method, r->method_len, 16)) return -1;
    pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"path\":");
    if (ita_json_escape(line, sizeof line, &pos, r->path, r->path_len, 1024)) return -1;
    if (r->remote) {
        pos += (size_t)snprintf(line + pos, sizeof line - pos, ",\"remote\":");
        if (ita_json_escape(line, sizeof line, &pos, r->remote, strlen(r->remote), 64)) return -1;
    }
    n = snprintf(line + pos, sizeof line - pos, ",\"status\":%d,\"latency_ms\":%.3f%s}\n",
                 r->status, r->latency_ms, r->path_len > 1024 ? ",\"path_truncated\":true" : "");
    if (n < 0 || (size_t)n >= sizeof line - pos) return -1;
    pos += (size_t)n;
    pthread_mutex_lock(&a->mu);
    if (append(a, line, pos)) rc = -1;
    pthread_mutex_unlock(&a->mu);
    return rc;
}

void ita_audit_close(ita_audit_t *a) {
    if (a->fd >= 0) {
        char now[32];
        ita_time_now_rfc3339(now);
        pthread_mutex_lock(&a->mu);
        flush_suppressed(a, now);
        pthread_mutex_unlock(&a->mu);
    }
    if (a->owned && a->fd >= 0) close(a->fd);
    a->fd = -1;
    pthread_mutex_destroy(&a->mu);
}
