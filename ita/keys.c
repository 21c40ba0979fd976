/*
 * Keys file reading, writing and key checks. See keys.h for the format and
 * the choice of hash.
 */
#include "ita/keys.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ita/trace.h"

static const char HEX[] = "0123456789abcdef";

int ita_scope_parse(const char *s) {
    if (!strcmp(s, "read")) return ITA_SCOPE_READ;
    if (!strcmp(s, "submit")) return ITA_SCOPE_SUBMIT;
    if (!strcmp(s, "admin")) return ITA_SCOPE_ADMIN;
    return ITA_SCOPE_NONE;
}

const char *ita_scope_name(int scope) {
    switch (scope) {
    case ITA_SCOPE_READ:
        return "read";
    case ITA_SCOPE_SUBMIT:
        return "submit";
    case ITA_SCOPE_ADMIN:
        return "admin";
    default:
        return "none";
    }
}

int ita_key_name_valid(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > ITA_KEY_NAME_MAX) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '@' || c == '-'))
            return 0;
    }
    return 1;
}

void ita_keyset_init(ita_keyset_t *set) {
    memset(set, 0, sizeof *set);
}

void ita_keyset_free(ita_keyset_t *set) {
    free(set->keys);
    memset(set, 0, sizeof *set);
}

static void to_hex(const unsigned char *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = HEX[b[i] >> 4];
        out[2 * i + 1] = HEX[b[i] & 15];
    }
    out[2 * n] = 0;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int from_hex(const char *s, unsigned char *out, size_t n) {
    if (!s || strlen(s) != 2 * n) return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static int is_hex(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (hexval(s[i]) < 0) return 0;
    return 1;
}

static void key_hash(const unsigned char salt[16], const char *key, size_t len,
                     unsigned char out[32]) {
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned int olen = 0;
    if (!c || !EVP_DigestInit_ex(c, EVP_sha256(), NULL) || !EVP_DigestUpdate(c, salt, 16) ||
        !EVP_DigestUpdate(c, key, len) || !EVP_DigestFinal_ex(c, out, &olen))
        memset(out, 0, 32); /* matches no stored hash: salts make zero hashes impossible */
    EVP_MD_CTX_free(c);
}

static int grow(ita_keyset_t *set, cu_error_t *err) {
    if (set->n < set->cap) return CU_OK;
    size_t cap = set->cap ? set->cap * 2 : 8;
    if (cap > 100000) return cu_error_set(err, CU_EINVAL, "too many keys (100000)");
    ita_key_t *k = realloc(set->keys, cap * sizeof *k);
    if (!k) return cu_error_set(err, CU_ENOMEM, "out of memory for keys");
    set->keys = k;
    set->cap = cap;
    return CU_OK;
}

static int copy_str(char *dst, size_t cap, json_t *v) {
    const char *s = json_string_value(v);
    if (!s || strlen(s) >= cap) return -1;
    memcpy(dst, s, strlen(s) + 1);
    return 0;
}

static int parse_entry(json_t *e, ita_key_t *k) {
    memset(k, 0, sizeof *k);
    json_t *rev = json_object_get(e, "revoked_at");
    if (copy_str(k->id, sizeof k->id, json_object_get(e, "id")) || strlen(k->id) != 16 ||
        !is_hex(k->id, 16) || copy_str(k->name, sizeof k->name, json_object_get(e, "name")) ||
        !ita_key_name_valid(k->name) ||
        from_hex(json_string_value(json_object_get(e, "salt")), k->salt, 16) ||
        from_hex(json_string_value(json_object_get(e, "sha256")), k->hash, 32) ||
        copy_str(k->created_at, sizeof k->created_at, json_object_get(e, "created_at")))
        return -1;
    const char *scope = json_string_value(json_object_get(e, "scope"));
    if (!scope || !(k->scope = ita_scope_parse(scope))) return -1;
    if (rev && !json_is_null(rev) && copy_str(k->revoked_at, sizeof k->revoked_at, rev)) return -1;
    return 0;
}

int ita_keys_load(const char *path, ita_keyset_t *set, int missing_ok, cu_error_t *err) {
    struct stat st;
    if (stat(path, &st) != 0) {
        if (errno == ENOENT && missing_ok) return CU_OK;
        return cu_error_set(err, CU_EIO, "%s: %s", path, strerror(errno));
    }
    if (st.st_size > 64 * 1024 * 1024)
        return cu_error_set(err, CU_EFORMAT, "%s: larger than 64 MB", path);
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return cu_error_set(err, CU_EFORMAT, "%s: line %d: %s", path, je.line, je.text);
    int rc = CU_OK;
    json_t *arr = json_object_get(root, "keys");
    if (json_integer_value(json_object_get(root, "version")) != 1 || !json_is_array(arr)) {
        rc = cu_error_set(err, CU_EFORMAT, "%s: not a codex-ita keys file (version 1)", path);
        goto out;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        if ((rc = grow(set, err))) goto out;
        if (parse_entry(json_array_get(arr, i), &set->keys[set->n])) {
            rc = cu_error_set(err, CU_EFORMAT, "%s: key entry %zu is malformed", path, i);
            goto out;
        }
        set->n++;
    }
out:
    json_decref(root);
    return rc;
}

static json_t *entry_json(const ita_key_t *k) {
    char salt[33], hash[65];
    to_hex(k->salt, 16, salt);
    to_hex(k->hash, 32, hash);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "id", k->id, "name", k->name, "scope",
                     ita_scope_name(k->scope), "salt", salt, "sha256", hash, "created_at",
                     k->created_at, "revoked_at",
                     k->revoked_at[0] ? json_string(k->revoked_at) : json_null());
}

int ita_keys_save(const char *path, const ita_keyset_t *set, cu_error_t *err) {
    json_t *arr = json_array();
    json_t *root = json_pack("{s:i, s:o}", "version", 1, "keys", arr);
    if (!root) return cu_error_set(err, CU_ENOMEM, "out of memory");
    for (size_t i = 0; i < set->n; i++) json_array_append_new(arr, entry_json(&set->keys[i]));
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (!text) return cu_error_set(err, CU_ENOMEM, "out of memory");
    char tmp[4096];
    int rc = cu_format(tmp, sizeof tmp, err, "%s.tmp.%ld", path, (long)getpid());
    if (rc) {
        free(text);
        return rc;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = cu_error_set(err, CU_EIO, "%s: %s", tmp, strerror(errno));
        free(text);
        return rc;
    }
    size_t len = strlen(text), off = 0;
    while (off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    int ok = off == len && write(fd, "\n", 1) == 1 && fchmod(fd, 0600) == 0 && fsync(fd) == 0;
    int saved = errno;
    free(text);
    if (close(fd) != 0) ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        if (ok) saved = errno;
        unlink(tmp);
        return cu_error_set(err, CU_EIO, "%s: %s", path, strerror(saved));
    }
    return CU_OK;
}

int ita_keys_create(ita_keyset_t *set, const char *name, int scope, char key_out[ITA_KEY_LEN + 1],
                    cu_error_t *err) {
    if (!ita_key_name_valid(name))
        return cu_error_set(err, CU_EINVAL,
                            "key name '%s': use 1-64 characters from A-Z a-z 0-9 . _ @ -", name);
    if (scope < ITA_SCOPE_READ || scope > ITA_SCOPE_ADMIN)
        return cu_error_set(err, CU_EINVAL, "scope must be read, submit or admin");
    for (size_t i = 0; i < set->n; i++)
        if (!set->keys[i].revoked_at[0] && !strcmp(set->keys[i].name, name))
            return cu_error_set(err, CU_EINVAL, "a valid key named '%s' exists (revoke it first)",
                                name);
    int rc = grow(set, err);
    if (rc) return rc;
    unsigned char idb[8], secret[32];
    ita_key_t k;
    memset(&k, 0, sizeof k);
    if (RAND_bytes(idb, sizeof idb) != 1 || RAND_bytes(secret, sizeof secret) != 1 ||
        RAND_bytes(k.salt, sizeof k.salt) != 1)
        return cu_error_set(err, CU_EINTERNAL, "the random number generator failed");
    to_hex(idb, 8, k.id);
    char sec_hex[65];
    to_hex(secret, 32, sec_hex);
    snprintf(key_out, ITA_KEY_LEN + 1, "cuk_%s_%s", k.id, sec_hex);
    OPENSSL_cleanse(secret, sizeof secret);
    OPENSSL_cleanse(sec_hex, sizeof sec_hex);
    snprintf(k.name, sizeof k.name, "%s", name);
    k.scope = scope;
    key_hash(k.salt, key_out, ITA_KEY_LEN, k.hash);
    ita_time_now_rfc3339(k.created_at);
    set->keys[set->n++] = k;
    return CU_OK;
}

int ita_keys_revoke(ita_keyset_t *set, const char *name_or_id, cu_error_t *err) {
    int found = 0;
    for (size_t i = 0; i < set->n; i++) {
        ita_key_t *k = &set->keys[i];
        if (k->revoked_at[0]) continue;
        if (!strcmp(k->name, name_or_id) || !strcmp(k->id, name_or_id)) {
            ita_time_now_rfc3339(k->revoked_at);
            found = 1;
        }
    }
    if (!found)
        return cu_error_set(err, CU_EINVAL, "no valid key named '%s' (codexctl keys list)",
                            name_or_id);
    return CU_OK;
}

ita_key_verdict_t ita_keys_verify(const ita_keyset_t *set, const char *key, size_t len,
                                  const ita_key_t **out) {
    static const unsigned char dummy_salt[16] = {0};
    *out = NULL;
    int shaped = len == ITA_KEY_LEN && !memcmp(key, "cuk_", 4) && key[20] == '_' &&
                 is_hex(key + 4, 16) && is_hex(key + 21, 64);
    const ita_key_t *k = NULL;
    if (shaped)
        for (size_t i = 0; i < set->n && !k; i++)
            if (!memcmp(set->keys[i].id, key + 4, 16)) {
                /* Prefer the valid record should an id ever repeat. */
                k = &set->keys[i];
                for (size_t j = i + 1; j < set->n && k->revoked_at[0]; j++)
                    if (!memcmp(set->keys[j].id, key + 4, 16)) k = &set->keys[j];
            }
    unsigned char h[32];
    /* Hash even when nothing matched, so an unknown id costs what a known
     * one does. */
    key_hash(k ? k->salt : dummy_salt, key, len > 256 ? 256 : len, h);
    if (!k || CRYPTO_memcmp(h, k->hash, 32) != 0) return ITA_KEY_UNKNOWN;
    *out = k;
    return k->revoked_at[0] ? ITA_KEY_REVOKED : ITA_KEY_OK;
}
