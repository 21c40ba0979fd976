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
#include <unistd.h>

#include "ita/trace.h"

int ita_audit_open(ita_audit_t *a, const char *path, cu_error_t *err) {
    a->fd = -1;
    a->owned = 0;
    if (!strcmp(path, "-")) {
        a->fd = STDOUT_FILENO;
        return CU_OK;
    }
    a->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (a->fd < 0) return cu_error_set(err, CU_EIO, "audit log %s: %s", path, strerror(errno));
    a->owned = 1;
    return CU_OK;
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

int ita_audit_write(ita_audit_t *a, const ita_audit_record_t *r) {
    if (a->fd < 0) return 0;
    char line[8192], now[32];
    ita_time_now_rfc3339(now);
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
    ssize_t w = write(a->fd, line, pos);
    return w == (ssize_t)pos ? 0 : -1;
}

void ita_audit_close(ita_audit_t *a) {
    if (a->owned && a->fd >= 0) close(a->fd);
    a->fd = -1;
}
