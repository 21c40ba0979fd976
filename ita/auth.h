/*
 * Authentication and authorisation: which key a request carries
 * (X-API-Key, or Authorization: Bearer), whether it is valid and has the
 * scope the route needs, and the per-key rate limit. Each worker thread
 * keeps its own copy of the keys file, reloaded when the file changes
 * (so `codexctl keys revoke` takes effect within a second, without a
 * restart); the rate limiter is shared and locked.
 */
#ifndef CU_ITA_AUTH_H
#define CU_ITA_AUTH_H

#include <pthread.h>
#include <stddef.h>
#include <sys/stat.h>

#include "core/error.h"
#include "ita/keys.h"

typedef struct {
    const char *path;
    ita_keyset_t set;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    int loaded;
    double checked_at; /* monotonic seconds */
} ita_keycache_t;

void ita_keycache_init(ita_keycache_t *kc, const char *path);
void ita_keycache_free(ita_keycache_t *kc);

/* Reloads the keys file when it changed (looked at no more often than
 * every 0.5 s). A file that fails to load leaves the previous keys in
 * place and returns the error; a missing file means no keys. */
int ita_keycache_refresh(ita_keycache_t *kc, double now, cu_error_t *err);

typedef enum {
    ITA_AUTH_OK = 0,
    ITA_AUTH_MISSING, /* 401 */
    ITA_AUTH_INVALID, /* 401 */
    ITA_AUTH_REVOKED, /* 401 */
    ITA_AUTH_SCOPE,   /* 403 */
} ita_auth_result_t;

/* Checks a presented key (NULL/0 when none) against the scope a route
 * needs. *key is set for OK, SCOPE and REVOKED. */
ita_auth_result_t ita_auth_check(const ita_keycache_t *kc, const char *presented, size_t len,
                                 int need_scope, const ita_key_t **key);

/* The key in an "Authorization: Bearer <key>" value, or NULL. */
const char *ita_auth_bearer(const char *value, size_t len, size_t *key_len);

/* A token bucket per key id: rate tokens a second up to burst. */
typedef struct {
    pthread_mutex_t mu;
    double rate, burst;
    struct bucket {
        char id[17];
        double tokens, at;
    } * b;
    size_t n, cap;
} ita_ratelimit_t;

int ita_ratelimit_init(ita_ratelimit_t *rl, double rate, double burst, cu_error_t *err);
void ita_ratelimit_free(ita_ratelimit_t *rl);

/* Takes one token for key id at monotonic time now. Returns 0 when the
 * request may go ahead, else the seconds until a token is available. */
double ita_ratelimit_take(ita_ratelimit_t *rl, const char *id, double now);

#endif
