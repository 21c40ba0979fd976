/*
 * Keys cache, scope checks and the per-key token bucket. The bucket table
 * is a small array searched linearly: there are as many buckets as keys
 * that made requests, bounded at 4096 (beyond that the oldest is reused).
 */
#include "ita/auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BUCKETS_MAX 4096

void ita_keycache_init(ita_keycache_t *kc, const char *path) {
    memset(kc, 0, sizeof *kc);
    kc->path = path;
    kc->checked_at = -1e9;
    ita_keyset_init(&kc->set);
}

void ita_keycache_free(ita_keycache_t *kc) {
    ita_keyset_free(&kc->set);
}

int ita_keycache_refresh(ita_keycache_t *kc, double now, cu_error_t *err) {
    if (kc->loaded && now - kc->checked_at < 0.5) return CU_OK;
    kc->checked_at = now;
    struct stat st;
    if (stat(kc->path, &st) != 0) {
        ita_keyset_free(&kc->set); /* no file: no keys */
        kc->loaded = 1;
        kc->ino = 0;
        return CU_OK;
    }
    if (kc->loaded && st.st_dev == kc->dev && st.st_ino == kc->ino && st.st_size == kc->size &&
        st.st_mtim.tv_sec == kc->mtime.tv_sec && st.st_mtim.tv_nsec == kc->mtime.tv_nsec)
        return CU_OK;
    ita_keyset_t fresh;
    ita_keyset_init(&fresh);
    int rc = ita_keys_load(kc->path, &fresh, 1, err);
    if (rc) {
        ita_keyset_free(&fresh);
        return rc;
    }
    ita_keyset_free(&kc->set);
    kc->set = fresh;
    kc->dev = st.st_dev;
    kc->ino = st.st_ino;
    kc->size = st.st_size;
    kc->mtime = st.st_mtim;
    kc->loaded = 1;
    return CU_OK;
}

ita_auth_result_t ita_auth_check(const ita_keycache_t *kc, const char *presented, size_t len,
                                 int need_scope, const ita_key_t **key) {
    *key = NULL;
    if (!presented || len == 0) return ITA_AUTH_MISSING;
    const ita_key_t *k = NULL;
    ita_key_verdict_t v = ita_keys_verify(&kc->set, presented, len, &k);
    if (v == ITA_KEY_UNKNOWN) return ITA_AUTH_INVALID;
    *key = k;
    if (v == ITA_KEY_REVOKED) return ITA_AUTH_REVOKED;
    if (k->scope < need_scope) return ITA_AUTH_SCOPE;
    return ITA_AUTH_OK;
}

const char *ita_auth_bearer(const char *value, size_t len, size_t *key_len) {
    static const char prefix[] = "bearer ";
    if (len <= sizeof prefix - 1 || strncasecmp(value, prefix, sizeof prefix - 1)) return NULL;
    const char *k = value + sizeof prefix - 1;
    size_t n = len - (sizeof prefix - 1);
    while (n && *k == ' ') k++, n--;
    while (n && k[n - 1] == ' ') n--;
    *key_len = n;
    return n ? k : NULL;
}

int ita_ratelimit_init(ita_ratelimit_t *rl, double rate, double burst, cu_error_t *err) {
    memset(rl, 0, sizeof *rl);
    rl->rate = rate;
    rl->burst = burst < 1 ? 1 : burst;
    if (pthread_mutex_init(&rl->mu, NULL))
        return cu_error_set(err, CU_EINTERNAL, "mutex initialisation failed");
    return CU_OK;
}

void ita_ratelimit_free(ita_ratelimit_t *rl) {
    pthread_mutex_destroy(&rl->mu);
    free(rl->b);
    rl->b = NULL;
}

static struct bucket *find_bucket(ita_ratelimit_t *rl, const char *id, double now) {
    size_t oldest = 0;
    for (size_t i = 0; i < rl->n; i++) {
        if (!strcmp(rl->b[i].id, id)) return &rl->b[i];
        if (rl->b[i].at < rl->b[oldest].at) oldest = i;
    }
    struct bucket *b;
    if (rl->n < rl->cap) {
        b = &rl->b[rl->n++];
    } else if (rl->cap < BUCKETS_MAX) {
        size_t cap = rl->cap ? rl->cap * 2 : 16;
        struct bucket *g = realloc(rl->b, cap * sizeof *g);
        if (!g) return rl->n ? &rl->b[oldest] : NULL;
        rl->b = g;
        rl->cap = cap;
        b = &rl->b[rl->n++];
    } else {
        b = &rl->b[oldest];
    }
    snprintf(b->id, sizeof b->id, "%s", id);
    b->tokens = rl->burst;
    b->at = now;
    return b;
}

double ita_ratelimit_take(ita_ratelimit_t *rl, const char *id, double now) {
    if (rl->rate <= 0) return 0;
    pthread_mutex_lock(&rl->mu);
    double wait = 0;
    struct bucket *b = find_bucket(rl, id, now);
    if (b) {
        b->tokens += (now - b->at) * rl->rate;
        if (b->tokens > rl->burst) b->tokens = rl->burst;
        b->at = now;
        if (b->tokens >= 1)
            b->tokens -= 1;
        else
            wait = (1 - b->tokens) / rl->rate;
    }
    pthread_mutex_unlock(&rl->mu);
    return wait;
}
