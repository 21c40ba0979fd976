/*
 * API keys and the keys file. A key is "cuk_<16 hex id>_<64 hex secret>":
 * 256 random bits from the CSPRNG plus a public id that finds its record
 * without trying every entry. The file stores, per key, its id, name,
 * scope, a 128-bit random salt and SHA-256(salt || key), never the key.
 * Because the key itself is 256 random bits, a fast salted hash is enough:
 * there is no password to guess, so PBKDF2's slowness would only cost the
 * server time on every request. Comparison is constant-time.
 *
 * The file is JSON, written to a temporary name with mode 0600, fsynced and
 * renamed over the old one.
 */
#ifndef CU_ITA_KEYS_H
#define CU_ITA_KEYS_H

#include <stddef.h>

#include "core/error.h"

enum { ITA_SCOPE_NONE = 0, ITA_SCOPE_READ = 1, ITA_SCOPE_SUBMIT = 2, ITA_SCOPE_ADMIN = 3 };

#define ITA_KEY_LEN (4 + 16 + 1 + 64)
#define ITA_KEY_NAME_MAX 64

typedef struct {
    char id[17];
    char name[ITA_KEY_NAME_MAX + 1];
    int scope; /* ITA_SCOPE_*; each scope includes the ones below it */
    unsigned char salt[16];
    unsigned char hash[32];
    char created_at[32];
    char revoked_at[32]; /* "" while the key is valid */
} ita_key_t;

typedef struct {
    ita_key_t *keys; /* owned */
    size_t n, cap;
} ita_keyset_t;

typedef enum { ITA_KEY_OK = 0, ITA_KEY_UNKNOWN, ITA_KEY_REVOKED } ita_key_verdict_t;

/* "read" | "submit" | "admin" -> ITA_SCOPE_*, or ITA_SCOPE_NONE. */
int ita_scope_parse(const char *s);
const char *ita_scope_name(int scope);

/* 1 when name is 1..64 characters of [A-Za-z0-9._@-]. */
int ita_key_name_valid(const char *name);

void ita_keyset_init(ita_keyset_t *set);
void ita_keyset_free(ita_keyset_t *set);

/* Loads path into an empty set. A missing file is an empty set when
 * missing_ok, otherwise CU_EIO. */
int ita_keys_load(const char *path, ita_keyset_t *set, int missing_ok, cu_error_t *err);

/* Writes set to path atomically with mode 0600. */
int ita_keys_save(const char *path, const ita_keyset_t *set, cu_error_t *err);

/* Adds a key named name with scope; writes the key (the only time it is
 * ever visible) into key_out. Names must be unique among valid keys. */
int ita_keys_create(ita_keyset_t *set, const char *name, int scope, char key_out[ITA_KEY_LEN + 1],
                    cu_error_t *err);

/* Marks the valid key with this name or id as revoked (records stay, so
 * `keys list` shows them). CU_EINVAL when there is none. */
int ita_keys_revoke(ita_keyset_t *set, const char *name_or_id, cu_error_t *err);

/* Checks a presented key; on ITA_KEY_OK and ITA_KEY_REVOKED *out points at
 * its record. Runs in time independent of where the key differs. */
ita_key_verdict_t ita_keys_verify(const ita_keyset_t *set, const char *key, size_t len,
                                  const ita_key_t **out);

#endif
