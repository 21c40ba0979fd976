/*
 * The audit log: one JSON line per request (time, request id, key name,
 * method, path, status, latency), appended with a single write(2) on an
 * O_APPEND descriptor so lines from several threads never interleave.
 * The key itself is never written, only the name it was created with.
 * The log is rotated by size (a kept count of old files), and requests
 * refused for want of a valid key are written up to a budget per second;
 * the rest become one line {"aggregate":"rejected","status":401,"count":N,
 * "since":...} so a flood of anonymous requests cannot fill the disk.
 */
#ifndef CU_ITA_AUDIT_H
#define CU_ITA_AUDIT_H

#include <pthread.h>
#include <stddef.h>

#include "core/error.h"

typedef struct {
    int fd;
    int owned; /* close on ita_audit_close */
    char path[1024];
    pthread_mutex_t mu;        /* writes, rotation, the rejected-line budget */
    long long size, max_bytes; /* max_bytes 0: never rotated */
    int keep;
    /* 401 answers: at most rejected_per_s lines a second, the others
     * counted and written as one aggregate line when the second ends */
    int rejected_per_s;
    double win_start;
    int win_lines;
    unsigned long suppressed;
    char suppressed_since[32];
} ita_audit_t;

typedef struct {
    const char *request_id;
    const char *key_name; /* NULL when no valid key was presented */
    const char *method;
    size_t method_len;
    const char *path; /* as sent, query included */
    size_t path_len;
    int status;
    double latency_ms;
    const char *remote; /* client address text, or NULL */
    const char *key_id; /* the key's public id, NULL when none */
    /* what a submission or cancel did (NULL when nothing): the job, its
     * Slurm id or "local", and "submit" | "dry_run" | "cancel" */
    const char *action, *job, *launched;
} ita_audit_record_t;

/* Opens path for appending (created 0600); "-" is stdout. No rotation and
 * no budget for rejected requests until ita_audit_limits. */
int ita_audit_open(ita_audit_t *a, const char *path, cu_error_t *err);

/* Rotation past max_bytes (path.1 newest ... path.KEEP oldest; 0: never)
 * and the lines per second written for 401 answers (0: all). */
void ita_audit_limits(ita_audit_t *a, long long max_bytes, int keep, int rejected_per_s);

/* Writes one line; failures are counted by the caller, never fatal. Returns
 * 0 or -1. */
int ita_audit_write(ita_audit_t *a, const ita_audit_record_t *r);

void ita_audit_close(ita_audit_t *a);

/* Appends s[0..len) as a JSON string (quotes included) to buf at *pos,
 * escaping control characters, quotes, backslashes and every byte >= 0x80
 * (as \u00XX, so the log stays valid JSON whatever a client sends);
 * truncates to max_len input bytes. Returns 0, or -1 when buf is full. */
int ita_json_escape(char *buf, size_t cap, size_t *pos, const char *s, size_t len, size_t max_len);

#endif
