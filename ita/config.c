/*
 * ita.yaml: a mapping of mappings, flattened here to dotted keys
 * ("listen.port", "log.audit") each matched against one table row that says
 * where the value goes and what type it has. libyaml's event API is enough:
 * scalars at depth one or two, nothing else. Unknown keys are errors, so a
 * typo never silently leaves a default in place. Errors read as
 * codex-train's config errors do: the problem, then "at FILE:LINE:COLUMN"
 * (the key's place for an unknown key, with the nearest valid names, the
 * value's for a bad value).
 */
#include "ita/config.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "io/config.h"

enum { T_STR, T_PATH, T_INT, T_NUM, T_BOOL };

typedef struct {
    const char *key;
    int type;
    size_t offset;
    size_t size; /* of a string field */
    double lo, hi;
} ita_config_key_t;

#define STR(k, f, t)                                                                               \
    { k, t, offsetof(ita_config_t, f), sizeof(((ita_config_t *)0)->f), 0, 0 }
#define NUM(k, f, t, lo, hi)                                                                       \
    { k, t, offsetof(ita_config_t, f), 0, lo, hi }

static const ita_config_key_t KEYS[] = {
    STR("listen.host", host, T_STR),
    NUM("listen.port", port, T_INT, 0, 65535),
    STR("runs_dir", runs_dir, T_PATH),
    STR("keys_file", keys_file, T_PATH),
    STR("tls.cert", tls_cert, T_PATH),
    STR("tls.key", tls_key, T_PATH),
    NUM("threads", threads, T_INT, 1, 64),
    STR("log.audit", audit_log, T_PATH),
    STR("log.error", error_log, T_PATH),
    STR("www_dir", www_dir, T_PATH),
    NUM("rate_limit.per_second", rate_per_s, T_NUM, 0, 1e9),
    NUM("rate_limit.burst", rate_burst, T_NUM, 1, 1e9),
    NUM("lost_after_s", lost_after_s, T_NUM, 1, 1e9),
    NUM("sse.poll_ms", sse_poll_ms, T_INT, 10, 60000),
    NUM("sse.max_streams", sse_max_streams, T_INT, 1, 10000),
    NUM("metrics_public", metrics_public, T_BOOL, 0, 1),
    NUM("max_jobs", max_jobs, T_INT, 1, 100000),
    NUM("max_connections", max_connections, T_INT, 1, 1000000),
    NUM("pool.threads", pool_threads, T_INT, 1, 64),
    NUM("pool.queue", pool_queue, T_INT, 0, 100000),
    NUM("timeouts.header_s", header_timeout_s, T_NUM, 0.1, 3600),
    NUM("timeouts.idle_s", idle_timeout_s, T_NUM, 0.1, 86400),
    NUM("timeouts.write_s", write_timeout_s, T_NUM, 0.1, 3600),
    NUM("http2.max_requests_per_s", h2_max_requests_per_s, T_INT, 1, 1000000),
    NUM("audit.max_mb", audit_max_mb, T_NUM, 0, 1e9),
    NUM("audit.keep", audit_keep, T_INT, 1, 1000),
    NUM("audit.rejected_per_s", audit_rejected_per_s, T_INT, 0, 1000000),
    NUM("tests_timeout_s", tests_timeout_s, T_NUM, 0.1, 300),
    NUM("sandbox.allow_rlimits_only", sandbox_allow_rlimits_only, T_BOOL, 0, 1),
    STR("sandbox.cgroup_parent", sandbox_cgroup_parent, T_STR),
    NUM("sandbox.memory_mb", sandbox_memory_mb, T_INT, 16, 1048576),
    NUM("slurm.refresh_s", slurm_refresh_s, T_NUM, 0, 3600),
    NUM("slurm.timeout_s", slurm_timeout_s, T_NUM, 1, 600),
    STR("submit.workdir", submit_workdir, T_PATH),
    STR("submit.train", submit_train, T_PATH),
    STR("kb.db", kb_db, T_PATH),
    STR("kb.sources", kb_sources, T_STR),
    STR("mcp.allowed_origins", mcp_origins, T_STR),
    STR("mcp.docs_dir", docs_dir, T_PATH),
    STR("forge.api_url", forge_api_url, T_STR),
    STR("forge.token_file", forge_token_file, T_PATH),
    STR("git.name", git_name, T_STR),
    STR("git.email", git_email, T_STR),
};

void ita_config_defaults(ita_config_t *cfg) {
    memset(cfg, 0, sizeof *cfg);
    snprintf(cfg->host, sizeof cfg->host, "127.0.0.1");
    cfg->port = 8470;
    const char *runs = getenv("CU_RUNS_DIR"); /* the same default as codex-train's */
    snprintf(cfg->runs_dir, sizeof cfg->runs_dir, "%s", runs && runs[0] ? runs : "runs");
    snprintf(cfg->keys_file, sizeof cfg->keys_file, "ita-keys.json");
    snprintf(cfg->git_name, sizeof cfg->git_name, "codex-ita");
    snprintf(cfg->git_email, sizeof cfg->git_email, "codex-ita@localhost");
    cfg->threads = 2;
    snprintf(cfg->audit_log, sizeof cfg->audit_log, "ita-audit.jsonl");
    cfg->rate_per_s = 20;
    cfg->rate_burst = 40;
    cfg->lost_after_s = 120;
    cfg->sse_poll_ms = 250;
    cfg->sse_max_streams = 64;
    cfg->max_jobs = 10000;
    cfg->max_connections = 1024;
    cfg->pool_threads = 2;
    cfg->pool_queue = 16;
    cfg->header_timeout_s = 10;
    cfg->idle_timeout_s = 60;
    cfg->write_timeout_s = 30;
    cfg->h2_max_requests_per_s = 200;
    cfg->audit_max_mb = 100;
    cfg->audit_keep = 5;
    cfg->audit_rejected_per_s = 20;
    cfg->tests_timeout_s = 30;
    cfg->sandbox_memory_mb = 2048;
    cfg->slurm_refresh_s = 5;
    cfg->slurm_timeout_s = 20;
}

/* test_commands.NAME: "command words" adds one allowlisted test command. */
static int add_test_command(ita_config_t *cfg, const char *name, const char *cmd, cu_error_t *err) {
    if (cfg->n_test_cmds == ITA_MAX_TEST_CMDS)
        return cu_error_set(err, CU_EINVAL, "test_commands: at most %d commands",
                            ITA_MAX_TEST_CMDS);
    size_t nl = strlen(name);
    if (nl == 0 || nl >= sizeof cfg->test_cmds[0].name ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789_-.") != nl)
        return cu_error_set(
            err, CU_EINVAL,
            "test_commands: '%s' is not a name (letters, digits, _ - ., at most 31)", name);
    if (strspn(cmd, " ") == strlen(cmd) || strlen(cmd) >= sizeof cfg->test_cmds[0].command)
        return cu_error_set(err, CU_EINVAL, "test_commands.%s: a command line of 1-255 bytes",
                            name);
    for (int i = 0; i < cfg->n_test_cmds; i++)
        if (!strcmp(cfg->test_cmds[i].name, name))
            return cu_error_set(err, CU_EINVAL, "test_commands.%s is given twice", name);
    snprintf(cfg->test_cmds[cfg->n_test_cmds].name, sizeof cfg->test_cmds[0].name, "%s", name);
    snprintf(cfg->test_cmds[cfg->n_test_cmds].command, sizeof cfg->test_cmds[0].command, "%s", cmd);
    cfg->n_test_cmds++;
    return CU_OK;
}

/* One "key=value" word of a repos.NAME line into out (cap bytes). */
static int repo_field(const char *word, size_t len, const char *key, char *out, size_t cap) {
    size_t kl = strlen(key);
    if (len <= kl || strncmp(word, key, kl) || word[kl] != '=') return 0;
    snprintf(out, cap, "%.*s", (int)(len - kl - 1), word + kl + 1);
    return 1;
}

/* repos.NAME: "path=... remote=... bases=a,b forge=o/r test=NAME" */
static int add_repo(ita_config_t *cfg, const char *name, const char *val, const char *base,
                    cu_error_t *err) {
    if (cfg->n_repos == ITA_MAX_REPOS)
        return cu_error_set(err, CU_EINVAL, "repos: at most %d repositories", ITA_MAX_REPOS);
    size_t nl = strlen(name);
    if (nl == 0 || nl >= sizeof cfg->repos[0].name ||
        strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") != nl ||
        name[0] == '.')
        return cu_error_set(err, CU_EINVAL, "repos: '%s' is not a name (letters, digits, _ - .)",
                            name);
    for (int i = 0; i < cfg->n_repos; i++)
        if (!strcmp(cfg->repos[i].name, name))
            return cu_error_set(err, CU_EINVAL, "repos.%s is given twice", name);
    ita_repo_t *r = &cfg->repos[cfg->n_repos];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", name);
    snprintf(r->remote, sizeof r->remote, "origin");
    char path[ITA_PATH_MAX] = "";
    for (const char *p = val; *p;) {
        p += strspn(p, " ");
        size_t len = strcspn(p, " ");
        if (!len) break;
        if (!repo_field(p, len, "path", path, sizeof path) &&
            !repo_field(p, len, "remote", r->remote, sizeof r->remote) &&
            !repo_field(p, len, "bases", r->bases, sizeof r->bases) &&
            !repo_field(p, len, "forge", r->forge, sizeof r->forge) &&
            !repo_field(p, len, "test", r->test, sizeof r->test))
            return cu_error_set(err, CU_EINVAL,
                                "repos.%s: '%.*s' is not path=, remote=, bases=, forge= or test=",
                                name, (int)len, p);
        p += len;
    }
    if (!path[0] || !r->bases[0])
        return cu_error_set(err, CU_EINVAL, "repos.%s: path= and bases= are required", name);
    if (cu_format(r->path, sizeof r->path, err, "%s%s", path[0] == '/' ? "" : base, path))
        return cu_error_prefix(err, "repos.%s", name);
    cfg->n_repos++;
    return CU_OK;
}

/* base is the YAML file's folder (with a trailing '/'), or "". */
static int set_value(ita_config_t *cfg, const char *key, const char *val, const char *base,
                     cu_error_t *err) {
    if (!strncmp(key, "test_commands.", 14)) return add_test_command(cfg, key + 14, val, err);
    if (!strncmp(key, "repos.", 6)) return add_repo(cfg, key + 6, val, base, err);
    const ita_config_key_t *k = NULL;
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        if (!strcmp(KEYS[i].key, key)) k = &KEYS[i];
    if (!k) return cu_error_set(err, CU_EINVAL, "unknown key '%s'", key); /* key_known said */
    char *field = (char *)cfg + k->offset;
    if (k->type == T_STR || k->type == T_PATH) {
        const char *prefix =
            (k->type == T_PATH && val[0] && val[0] != '/' && strcmp(val, "-")) ? base : "";
        if (cu_format(field, k->size, err, "%s%s", prefix, val))
            return cu_error_prefix(err, "%s", key);
        return CU_OK;
    }
    if (k->type == T_BOOL) {
        if (!strcmp(val, "true") || !strcmp(val, "yes"))
            *(int *)field = 1;
        else if (!strcmp(val, "false") || !strcmp(val, "no"))
            *(int *)field = 0;
        else
            return cu_error_set(err, CU_EINVAL, "%s must be true or false, got '%s'", key, val);
        return CU_OK;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(val, &end);
    if (errno || end == val || *end || v < k->lo || v > k->hi ||
        (k->type == T_INT && v != (double)(long)v))
        return cu_error_set(err, CU_EINVAL, "%s must be %s in [%g, %g], got '%s'", key,
                            k->type == T_INT ? "an integer" : "a number", k->lo, k->hi, val);
    if (k->type == T_INT)
        *(int *)field = (int)v;
    else
        *(double *)field = v;
    return CU_OK;
}

static int key_known(const char *key) {
    if (!strncmp(key, "test_commands.", 14) || !strncmp(key, "repos.", 6)) return 1;
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++)
        if (!strcmp(KEYS[i].key, key)) return 1;
    return 0;
}

/* "unknown key 'listen.prot' at ita.yaml:2:3; did you mean 'listen.port'?" */
static int unknown_key(const char *key, const char *origin, yaml_mark_t at, cu_error_t *err) {
    const char *names[sizeof KEYS / sizeof KEYS[0] + 2];
    size_t n = 0;
    for (size_t i = 0; i < sizeof KEYS / sizeof KEYS[0]; i++) names[n++] = KEYS[i].key;
    char hint[256];
    config_suggest_name(key, names, n, hint, sizeof hint);
    return cu_error_set(err, CU_EINVAL, "unknown key '%s' at %s:%zu:%zu%s", key, origin,
                        at.line + 1, at.column + 1, hint);
}

/* Appends " at FILE:LINE:COLUMN" to err's message. */
static int located(cu_error_t *err, const char *origin, yaml_mark_t at) {
    size_t used = strnlen(err->msg, sizeof err->msg);
    if (used < sizeof err->msg)
        snprintf(err->msg + used, sizeof err->msg - used, " at %s:%zu:%zu", origin, at.line + 1,
                 at.column + 1);
    return err->code;
}

static int parse_events(yaml_parser_t *p, ita_config_t *cfg, const char *base, const char *origin,
                        cu_error_t *err) {
    char section[64] = "", key[64] = "";
    int depth = 0, have_key = 0;
    yaml_mark_t key_at = {0};
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(p, &ev))
            return cu_error_set(err, CU_EINVAL, "YAML syntax error at %s:%zu:%zu: %s", origin,
                                p->problem_mark.line + 1, p->problem_mark.column + 1,
                                p->problem ? p->problem : "not YAML");
        int rc = CU_OK;
        yaml_mark_t at = ev.start_mark;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            yaml_event_delete(&ev);
            return CU_OK;
        case YAML_MAPPING_START_EVENT:
            if (depth == 1 && have_key) {
                snprintf(section, sizeof section, "%s", key);
                have_key = 0;
            } else if (depth >= 2 || (depth == 1 && !have_key)) {
                rc = cu_error_set(err, CU_EINVAL, "mappings nest two deep at most in ita.yaml");
                located(err, origin, at);
            }
            depth++;
            break;
        case YAML_MAPPING_END_EVENT:
            depth--;
            if (depth == 1) section[0] = 0;
            break;
        case YAML_SEQUENCE_START_EVENT:
            rc = have_key ? cu_error_set(err, CU_EINVAL, "%s%s%s: lists are not used in ita.yaml",
                                         section, section[0] ? "." : "", key)
                          : cu_error_set(err, CU_EINVAL, "lists are not used in ita.yaml");
            located(err, origin, at);
            break;
        case YAML_SCALAR_EVENT: {
            const char *s = (const char *)ev.data.scalar.value;
            if (depth == 0) {
                if (ev.data.scalar.length) {
                    rc = cu_error_set(err, CU_EINVAL, "expected a mapping of keys");
                    located(err, origin, at);
                }
            } else if (!have_key) {
                if (strlen(s) >= sizeof key) {
                    rc = cu_error_set(err, CU_EINVAL, "key too long");
                    located(err, origin, at);
                } else {
                    snprintf(key, sizeof key, "%s", s), have_key = 1;
                    key_at = at;
                }
            } else {
                char full[160];
                snprintf(full, sizeof full, "%s%s%s", section, section[0] ? "." : "", key);
                if (!key_known(full))
                    rc = unknown_key(full, origin, key_at, err);
                else if ((rc = set_value(cfg, full, s, base, err)) != CU_OK)
                    located(err, origin, at);
                have_key = 0;
            }
            break;
        }
        case YAML_ALIAS_EVENT:
            rc = cu_error_set(err, CU_EINVAL, "aliases are not used in ita.yaml");
            located(err, origin, at);
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
        if (rc) return rc;
    }
}

/* ita.yaml is a few hundred bytes; anything over this is refused unread. */
#define ITA_CONFIG_MAX_BYTES (64u << 10)

int ita_config_load(const char *path, ita_config_t *cfg, cu_error_t *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0) return cu_error_set(err, CU_EIO, "%s: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > ITA_CONFIG_MAX_BYTES) {
        close(fd);
        return cu_error_set(err, CU_EINVAL, "%s: not a regular file of at most %u bytes", path,
                            ITA_CONFIG_MAX_BYTES);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return cu_error_set(err, CU_ENOMEM, "out of memory");
    }
    char base[ITA_PATH_MAX] = "";
    const char *slash = strrchr(path, '/');
    if (slash && (size_t)(slash - path + 1) < sizeof base) {
        memcpy(base, path, (size_t)(slash - path + 1));
        base[slash - path + 1] = 0;
    }
    snprintf(cfg->config_dir, sizeof cfg->config_dir, "%s", base);
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    int rc = parse_events(&p, cfg, base, path, err); /* messages name path:line:column */
    yaml_parser_delete(&p);
    fclose(f);
    return rc;
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The dashboard's files: the source tree's ita/www when this program runs
 * from the build tree; otherwise the copy installed beside it
 * (<bin>/../share/codex-universal/www, whatever prefix it was installed
 * to), or the configured install prefix's. */
static void default_www_dir(char *out, size_t cap) {
    char exe[ITA_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    size_t blen = strlen(CU_ITA_BUILD_DIR);
    if (n <= 0) {
        snprintf(out, cap, "%s", CU_ITA_WWW_INSTALLED);
        return;
    }
    exe[n] = 0;
    if (!strncmp(exe, CU_ITA_BUILD_DIR, blen) && exe[blen] == '/' && is_dir(CU_ITA_WWW_SOURCE)) {
        snprintf(out, cap, "%s", CU_ITA_WWW_SOURCE);
        return;
    }
    char *slash = strrchr(exe, '/');
    if (slash) {
        *slash = 0;
        char beside[ITA_PATH_MAX + 64];
        snprintf(beside, sizeof beside, "%s/../share/codex-universal/www", exe);
        char real[ITA_PATH_MAX];
        if (is_dir(beside) && realpath(beside, real)) {
            snprintf(out, cap, "%s", real);
            return;
        }
    }
    snprintf(out, cap, "%s", CU_ITA_WWW_INSTALLED);
}

/* codex-train for POST /v1/jobs: beside this program (an installed tree),
 * or the build tree's jobs/codex-train; else "codex-train" from PATH. */
static void default_train(char *out, size_t cap) {
    char exe[ITA_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    snprintf(out, cap, "codex-train");
    if (n <= 0) return;
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return;
    *slash = 0;
    char cand[ITA_PATH_MAX + 32];
    snprintf(cand, sizeof cand, "%s/codex-train", exe);
    char real[PATH_MAX];
    if (access(cand, X_OK) == 0 && realpath(cand, real) && strlen(real) < cap) {
        memcpy(out, real, strlen(real) + 1);
        return;
    }
    snprintf(cand, sizeof cand, "%s/../jobs/codex-train", exe);
    if (access(cand, X_OK) == 0 && realpath(cand, real) && strlen(real) < cap)
        memcpy(out, real, strlen(real) + 1);
}

int ita_config_finish(ita_config_t *cfg, cu_error_t *err) {
    unsigned a, b, c, d;
    char tail;
    if (sscanf(cfg->host, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail) != 4 || a > 255 || b > 255 ||
        c > 255 || d > 255)
        return cu_error_set(err, CU_EINVAL, "listen.host: '%s' is not a numeric IPv4 address",
                            cfg->host);
    if (!!cfg->tls_cert[0] != !!cfg->tls_key[0])
        return cu_error_set(err, CU_EINVAL, "tls: set both tls.cert and tls.key, or neither");
    if (!cfg->runs_dir[0]) return cu_error_set(err, CU_EINVAL, "runs_dir: must be set");
    if (!cfg->keys_file[0]) return cu_error_set(err, CU_EINVAL, "keys_file: must be set");
    if (!cfg->www_dir[0]) default_www_dir(cfg->www_dir, sizeof cfg->www_dir);
    if (!cfg->submit_workdir[0] && !getcwd(cfg->submit_workdir, sizeof cfg->submit_workdir))
        return cu_error_set(err, CU_EIO, "submit.workdir: cannot read the working directory");
    /* batch scripts and sbatch --chdir need an absolute working directory */
    char real[PATH_MAX];
    if (!realpath(cfg->submit_workdir, real) || !is_dir(real))
        return cu_error_set(err, CU_EINVAL, "submit.workdir: %s is not a folder",
                            cfg->submit_workdir);
    if (cu_format(cfg->submit_workdir, sizeof cfg->submit_workdir, err, "%s", real))
        return cu_error_prefix(err, "submit.workdir");
    if (!cfg->docs_dir[0] && is_dir(CU_ITA_DOCS_SOURCE))
        snprintf(cfg->docs_dir, sizeof cfg->docs_dir, "%s", CU_ITA_DOCS_SOURCE);
    if (!cfg->submit_train[0]) default_train(cfg->submit_train, sizeof cfg->submit_train);
    if (strchr(cfg->submit_train, '/') && realpath(cfg->submit_train, real) &&
        cu_format(cfg->submit_train, sizeof cfg->submit_train, err, "%s", real))
        return cu_error_prefix(err, "submit.train");
    return CU_OK;
}
