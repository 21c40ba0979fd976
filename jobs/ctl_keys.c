/*
 * codexctl keys: create, list and revoke the API keys codex-ita accepts.
 * The keys file holds only salted hashes (ita/keys.h); a new key is printed
 * once, on stdout, and cannot be shown again. Changes are made under an
 * exclusive lock on "<keys file>.lock" so two codexctl runs never lose each
 * other's keys; the running service notices the new file within a second.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "ita/keys.h"

#define DEFAULT_KEYS_FILE "ita-keys.json"

static void usage(FILE *out) {
    fputs("usage: codexctl keys create --name NAME --scope read|submit|admin [--file F]\n"
          "       codexctl keys list [--file F]\n"
          "       codexctl keys revoke NAME|ID [--file F]\n"
          "\n"
          "Manages codex-ita's API keys. The keys file (default ./" DEFAULT_KEYS_FILE ", or\n"
          "$CODEX_ITA_KEYS) holds salted SHA-256 hashes only, with mode 0600; set\n"
          "codex-ita's keys_file to the same path. `create` prints the new key once:\n"
          "store it, it cannot be shown again. Scopes: read (job routes, /metrics),\n"
          "submit (read and job submission), admin (everything, and GET /v1/keys).\n",
          out);
}

static int lock_keys(const char *path) {
    char lock[4096];
    if (snprintf(lock, sizeof lock, "%s.lock", path) >= (int)sizeof lock) return -1;
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* A change to the keys file, applied to the loaded set under the lock. */
typedef struct {
    const char *who; /* name to create, or name/id to revoke */
    int scope;       /* create only */
    char key[ITA_KEY_LEN + 1];
} key_change_t;

static int apply_create(ita_keyset_t *set, key_change_t *c, cu_error_t *err) {
    return ita_keys_create(set, c->who, c->scope, c->key, err);
}

static int apply_revoke(ita_keyset_t *set, key_change_t *c, cu_error_t *err) {
    return ita_keys_revoke(set, c->who, err);
}

/* Loads the keys file under its exclusive lock (a missing file is an empty
 * set when create_missing), applies the change and saves the file. */
static int edit_keys(const char *file, int create_missing,
                     int (*apply)(ita_keyset_t *, key_change_t *, cu_error_t *), key_change_t *c,
                     cu_error_t *err) {
    int lock = lock_keys(file);
    if (lock < 0)
        return cu_error_set(err, CU_EIO, "cannot lock %s.lock: %s", file, strerror(errno));
    ita_keyset_t set;
    ita_keyset_init(&set);
    int rc = ita_keys_load(file, &set, create_missing, err);
    if (!rc) rc = apply(&set, c, err);
    if (!rc) rc = ita_keys_save(file, &set, err);
    ita_keyset_free(&set);
    close(lock);
    return rc;
}

static int cmd_create(const char *file, const char *name, const char *scope_s) {
    if (!name || !scope_s) {
        fputs("codexctl keys create: --name and --scope are required (codexctl keys --help)\n",
              stderr);
        return 2;
    }
    key_change_t c = {.who = name, .scope = ita_scope_parse(scope_s)};
    if (!c.scope) {
        fprintf(stderr, "codexctl keys create: --scope '%s': use read, submit or admin\n", scope_s);
        return 2;
    }
    cu_error_t err;
    int rc = edit_keys(file, 1, apply_create, &c, &err);
    if (rc) {
        fprintf(stderr, "codexctl keys create: %s\n", err.msg);
        return rc == CU_EINVAL ? 2 : 1;
    }
    printf("%s\n", c.key);
    fprintf(stderr,
            "created key '%s' (scope %s) in %s; this is the only time it is shown.\n"
            "Send it as `X-API-Key: KEY` or `Authorization: Bearer KEY`.\n",
            name, ita_scope_name(c.scope), file);
    return 0;
}

static int cmd_list(const char *file) {
    ita_keyset_t set;
    ita_keyset_init(&set);
    cu_error_t err;
    if (ita_keys_load(file, &set, 1, &err)) {
        fprintf(stderr, "codexctl keys list: %s\n", err.msg);
        return 1;
    }
    printf("%-16s  %-24s  %-6s  %-24s  %s\n", "ID", "NAME", "SCOPE", "CREATED", "REVOKED");
    for (size_t i = 0; i < set.n; i++) {
        const ita_key_t *k = &set.keys[i];
        printf("%-16s  %-24s  %-6s  %-24s  %s\n", k->id, k->name, ita_scope_name(k->scope),
               k->created_at, k->revoked_at[0] ? k->revoked_at : "-");
    }
    ita_keyset_free(&set);
    return 0;
}

static int cmd_revoke(const char *file, const char *who) {
    if (!who) {
        fputs("codexctl keys revoke: name the key (codexctl keys list shows them)\n", stderr);
        return 2;
    }
    key_change_t c = {.who = who};
    cu_error_t err;
    if (edit_keys(file, 0, apply_revoke, &c, &err)) {
        fprintf(stderr, "codexctl keys revoke: %s\n", err.msg);
        return 1;
    }
    fprintf(stderr, "revoked '%s' in %s\n", who, file);
    return 0;
}

int ctl_keys(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *verb = argv[1], *file = getenv("CODEX_ITA_KEYS"), *name = NULL, *scope = NULL,
               *pos = NULL;
    if (!file || !file[0]) file = DEFAULT_KEYS_FILE;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--file") && i + 1 < argc) {
            file = argv[++i];
        } else if (!strcmp(a, "--name") && i + 1 < argc) {
            name = argv[++i];
        } else if (!strcmp(a, "--scope") && i + 1 < argc) {
            scope = argv[++i];
        } else if (a[0] != '-' && !pos) {
            pos = a;
        } else {
            fprintf(stderr, "codexctl keys: unexpected argument '%s' (codexctl keys --help)\n", a);
            return 2;
        }
    }
    if (!strcmp(verb, "create")) return cmd_create(file, name ? name : pos, scope);
    if (!strcmp(verb, "list")) return cmd_list(file);
    if (!strcmp(verb, "revoke")) return cmd_revoke(file, name ? name : pos);
    fprintf(stderr, "codexctl keys: unknown action '%s' (create, list, revoke)\n", verb);
    return 2;
}
