/*
 * POST /v1/repos/{name}/pulls: proposes a change to one of the repositories
 * named in ita.yaml (repos.NAME) as a real branch with a real commit, pushed
 * to its remote, and opens the pull request on the forge when one is
 * configured. Scope submit.
 *
 *   {"title", "body", "base", "head", "patch" | "files": {path: text},
 *    "labels": [...], "dry_run": true, "confirm": false}
 *
 * dry_run is the default: the patch is checked against the base in a
 * temporary index (nothing in the clone changes) and the change scanned;
 * the answer lists the steps a real run would take. A run that writes needs
 * "confirm": true (412 otherwise). Its steps, each in the answer and as an
 * audit line: a private worktree on a new branch from the base, the patch
 * or files applied (422 when it does not apply), the hygiene scan of the
 * staged diff (422 when the policy blocks a finding), the repository's
 * test command in the sandbox (recorded as a check), a commit with the
 * configured identity, a push, and the pull request. Any failure removes
 * the worktree and the branch; nothing outside the configured clone, its
 * remote and the forge is touched. Git is the git program (docs/agents.md
 * says why), run with a time limit, in the worker pool (pool.h; 503 when
 * it is full), never on an event loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/fileio.h"
#include "ita/forge.h"
#include "ita/http.h"
#include "ita/problem.h"
#include "safety/hits.h"
#include "safety/sandbox.h"

extern char **environ;

#define GIT_TIMEOUT "120"
#define OUT_MAX (256 * 1024)

typedef struct {
    const ita_pull_ctx_t *c;
    const ita_repo_t *repo;
    json_t *steps;
    char tmp[64]; /* private folder: patch, message, temporary index, worktree */
    char wt[128]; /* the worktree, "" until made */
    char base_commit[64];
    const char *base, *head, *title;
    int branch_made, pushed;
} pr_t;

/* Runs `timeout 120 git ARGS...` (env: extra "K=V" or NULL); *out gets the
 * combined output (malloc'd, NUL-terminated). Returns the exit status, or
 * -1 when it could not run. */
static int run_git(const char *const *args, const char *env1, char **out) {
    char outp[] = "/tmp/cu-git-out-XXXXXX";
    int ofd = mkstemp(outp);
    *out = NULL;
    if (ofd < 0) return -1;
    unlink(outp);
    const char *argv[48] = {"timeout", GIT_TIMEOUT, "git"};
    int n = 3;
    for (int i = 0; args[i] && n < 47; i++) argv[n++] = args[i];
    argv[n] = NULL;
    size_t total = 0, ne = 0;
    while (environ[total]) total++;
    const char **envp = calloc(total + 3, sizeof *envp);
    if (!envp) return close(ofd), -1;
    for (size_t i = 0; i < total; i++) /* the stdio server's API key stays with it */
        if (strncmp(environ[i], "CODEX_ITA_KEY=", 14)) envp[ne++] = environ[i];
    envp[ne++] = "GIT_TERMINAL_PROMPT=0";
    if (env1) envp[ne++] = env1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, ofd, 1);
    posix_spawn_file_actions_adddup2(&fa, ofd, 2);
    pid_t pid;
    int rc = posix_spawnp(&pid, "timeout", &fa, NULL, (char *const *)argv, (char *const *)envp);
    posix_spawn_file_actions_destroy(&fa);
    free(envp);
    int status = -1;
    if (rc == 0) {
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    off_t len = lseek(ofd, 0, SEEK_END);
    if (len > OUT_MAX) len = OUT_MAX;
    *out = malloc((size_t)(len > 0 ? len : 0) + 1);
    ssize_t got = *out && len > 0 ? pread(ofd, *out, (size_t)len, 0) : 0;
    if (*out) (*out)[got > 0 ? got : 0] = 0;
    close(ofd);
    return rc == 0 ? status : -1;
}

static void step(pr_t *p, const char *name, int ok, const char *detail) {
    json_array_append_new(p->steps, json_pack("{s:s, s:b, s:s}", "step", name, "ok", ok, "detail",
                                              detail ? detail : ""));
    char action[96];
    snprintf(action, sizeof action, "pull %s: %s", name, ok ? "ok" : "failed");
    ita_audit_record_t rec = {
        .request_id = p->c->request_id,
        .key_name = p->c->key_name && p->c->key_name[0] ? p->c->key_name : NULL,
        .key_id = p->c->key_id && p->c->key_id[0] ? p->c->key_id : NULL,
        .method = p->c->method,
        .method_len = strlen(p->c->method),
        .path = p->c->path,
        .path_len = strlen(p->c->path),
        .status = 0,
        .action = action,
        .job = p->repo->name,
    };
    ita_audit_write(p->c->audit, &rec);
}

/* A git step: runs it, records it, returns its exit status. */
static int git_step(pr_t *p, const char *name, const char *const *args, const char *env1) {
    char *out = NULL;
    int st = run_git(args, env1, &out);
    char detail[512];
    snprintf(detail, sizeof detail, "%s", out && out[0] ? out : (st == 0 ? "done" : "git failed"));
    size_t dl = strlen(detail);
    while (dl && (detail[dl - 1] == '\n' || detail[dl - 1] == '\r')) detail[--dl] = 0;
    step(p, name, st == 0, detail);
    free(out);
    return st;
}

static int write_file(const char *path, const char *data, size_t len) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0) return -1;
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, data + done, len - done);
        if (w <= 0) return close(fd), -1;
        done += (size_t)w;
    }
    return close(fd);
}

/* A relative path without "..", ".git" or empty components. */
static int rel_path_ok(const char *s) {
    if (!s[0] || s[0] == '/' || strlen(s) > 512) return 0;
    for (const char *c = s; *c;) {
        size_t n = strcspn(c, "/");
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && !strncmp(c, "..", 2)) ||
            (n == 4 && !strncmp(c, ".git", 4)))
            return 0;
        c += n + (c[n] == '/');
    }
    return 1;
}

static int name_in_list(const char *list, const char *name) {
    size_t nl = strlen(name);
    for (const char *p = list; *p;) {
        size_t n = strcspn(p, ",");
        if (n == nl && !strncmp(p, name, n)) return 1;
        p += n + (p[n] == ',');
    }
    return 0;
}

/* A branch name git accepts, of [A-Za-z0-9._/-] and at most 100 bytes. */
static int branch_ok(const char *s) {
    size_t n = strlen(s);
    return n && n <= 100 && s[0] != '-' && s[0] != '/' && s[n - 1] != '/' && !strstr(s, "..") &&
           !strstr(s, "//") &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789._/-") == n &&
           (n < 5 || strcmp(s + n - 5, ".lock"));
}

/* The hygiene scan of the change (the patch's added lines, or each file):
 * any finding the policy does not allow blocks the pull request. 0 clean,
 * 1 blocked, -1 the scan failed. */
static int scan_change(pr_t *p, json_t *req, json_t **report) {
    safety_hits_t hits;
    memset(&hits, 0, sizeof hits);
    cu_error_t err = {0};
    const safety_engine_t *eng = p->c->safety;
    json_t *patch = json_object_get(req, "patch");
    int rc = CU_OK;
    if (patch)
        rc = safety_hits_scan_diff(eng, SAFETY_STAGE_DATA, json_string_value(patch),
                                   json_string_length(patch), &hits, &err);
    const char *path;
    json_t *f;
    json_object_foreach(json_object_get(req, "files"), path, f) {
        if (!rc)
            rc = safety_hits_scan_text(eng, SAFETY_STAGE_DATA, path, json_string_value(f),
                                       json_string_length(f), &hits, &err);
    }
    if (rc) {
        safety_hits_free(&hits);
        step(p, "hygiene_scan", 0, err.msg);
        return -1;
    }
    *report = safety_hits_json(eng, SAFETY_STAGE_DATA, &hits);
    char d[128];
    snprintf(d, sizeof d, "%zu finding(s) in the change", hits.count);
    step(p, "hygiene_scan", hits.count == 0, d);
    size_t n = hits.count;
    safety_hits_free(&hits);
    return n ? 1 : 0;
}

/* The repository's test command in the sandbox, reading the worktree
 * (CODEX_WORKTREE; the root is read-only there). */
static json_t *run_check(pr_t *p) {
    const ita_config_t *cfg = p->c->cfg;
    int idx = -1;
    for (int i = 0; i < cfg->n_test_cmds; i++)
        if (!strcmp(cfg->test_cmds[i].name, p->repo->test)) idx = i;
    if (idx < 0) {
        step(p, "tests", 0, "the repository's test command is not in test_commands");
        return json_pack("{s:s, s:b, s:s}", "name", p->repo->test, "passed", 0, "detail",
                         "not configured");
    }
    char words[256], env[200];
    const char *argv[33];
    snprintf(words, sizeof words, "%s", cfg->test_cmds[idx].command);
    int n = 0;
    char *save = NULL;
    for (char *w = strtok_r(words, " ", &save); w && n < 32; w = strtok_r(NULL, " ", &save))
        argv[n++] = w;
    argv[n] = NULL;
    snprintf(env, sizeof env, "CODEX_WORKTREE=%s", p->wt);
    const char *envv[] = {env, NULL};
    sandbox_opts_t o;
    sandbox_opts_init(&o);
    o.argv = argv;
    o.env = envv;
    o.timeout_s = cfg->tests_timeout_s;
    o.max_output = 64 * 1024;
    const char *hide[ITA_SANDBOX_HIDE], *ro[ITA_SANDBOX_RO];
    const char *wt[] = {p->wt, p->repo->path, NULL}; /* the worktree and its repository */
    ita_sandbox_opts(cfg, &o, hide, ro, wt);
    sandbox_result_t r;
    cu_error_t err = {0};
    pthread_mutex_lock(p->c->sandbox_mu);
    int rc = sandbox_run(&o, &r, &err);
    pthread_mutex_unlock(p->c->sandbox_mu);
    if (rc) {
        step(p, "tests", 0, err.msg);
        return json_pack("{s:s, s:b, s:s}", "name", p->repo->test, "passed", 0, "detail", err.msg);
    }
    int passed = r.exited && r.exit_code == 0 && !r.timed_out;
    char d[96];
    snprintf(d, sizeof d, "%s: exit %d%s", p->repo->test, r.exited ? r.exit_code : -1,
             r.timed_out ? " (timed out)" : "");
    step(p, "tests", passed, d);
    json_t *c =
        json_pack("{s:s, s:b, s:o, s:b}", "name", p->repo->test, "passed", passed, "exit_code",
                  r.exited ? json_integer(r.exit_code) : json_null(), "timed_out", r.timed_out);
    if (c && (ita_put_output(c, "stdout", r.out, r.out_len) ||
              ita_put_output(c, "stderr", r.err, r.err_len))) {
        json_decref(c);
        c = NULL;
    }
    sandbox_result_free(&r);
    return c;
}

/* Removes the worktree and (when this request made it) the branch. */
static void cleanup(pr_t *p, int keep_branch) {
    char *out = NULL;
    if (p->wt[0]) {
        const char *a[] = {"-C", p->repo->path, "worktree", "remove", "--force", p->wt, NULL};
        run_git(a, NULL, &out);
        free(out);
    }
    if (p->branch_made && !keep_branch) {
        const char *a[] = {"-C", p->repo->path, "branch", "-D", p->head, NULL};
        run_git(a, NULL, &out);
        free(out);
    }
    /* the private folder: its files, then itself */
    const char *names[] = {"patch", "message", "index", NULL};
    for (int i = 0; names[i]; i++) {
        char f[96];
        snprintf(f, sizeof f, "%s/%s", p->tmp, names[i]);
        unlink(f);
    }
    rmdir(p->tmp);
}

/* The change's files written into the worktree and staged. */
static int apply_files(pr_t *p, json_t *files) {
    const char *path;
    json_t *v;
    json_object_foreach(files, path, v) {
        char full[ITA_PATH_MAX];
        snprintf(full, sizeof full, "%s/%s", p->wt, path);
        for (char *s = full + strlen(p->wt) + 1; (s = strchr(s, '/')); s++) {
            *s = 0;
            mkdir(full, 0755);
            *s = '/';
        }
        if (write_file(full, json_string_value(v), json_string_length(v))) {
            step(p, "apply", 0, "a file could not be written");
            return -1;
        }
        const char *a[] = {"-C", p->wt, "add", "--", path, NULL};
        char *out = NULL;
        int st = run_git(a, NULL, &out);
        free(out);
        if (st) {
            step(p, "apply", 0, "git add failed");
            return -1;
        }
    }
    step(p, "apply", 1, "files written and staged");
    return 0;
}

/* Opens the pull request (and adds its labels) on the forge. */
static json_t *open_pull(pr_t *p, json_t *req) {
    const ita_config_t *cfg = p->c->cfg;
    if (!cfg->forge_api_url[0] || !p->repo->forge[0]) {
        step(p, "pull_request", 1, "no forge configured: the branch is pushed, open it by hand");
        return json_null();
    }
    uint8_t *tok = NULL;
    size_t tlen = 0;
    cu_error_t err = {0};
    if (!cfg->forge_token_file[0] || cu_read_file(cfg->forge_token_file, 4096, &tok, &tlen, &err)) {
        step(p, "pull_request", 0, "forge.token_file cannot be read");
        free(tok);
        return NULL;
    }
    while (tlen && (tok[tlen - 1] == '\n' || tok[tlen - 1] == '\r' || tok[tlen - 1] == ' ')) tlen--;
    tok[tlen] = 0;
    json_t *body = json_pack("{s:s, s:s, s:s, s:s}", "title", p->title, "head", p->head, "base",
                             p->base, "body",
                             json_string_value(json_object_get(req, "body"))
                                 ? json_string_value(json_object_get(req, "body"))
                                 : "");
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    char path[256];
    snprintf(path, sizeof path, "/repos/%s/pulls", p->repo->forge);
    forge_response_t r;
    int rc = forge_request(cfg->forge_api_url, "POST", path, (const char *)tok, text, 30, &r, &err);
    free(text);
    json_t *pr = rc ? NULL : json_loads(r.body, 0, NULL);
    json_t *num = json_object_get(pr, "number");
    if (rc || r.status != 201 || !json_is_integer(num)) {
        char d[300];
        snprintf(d, sizeof d, "the forge answered %d: %.200s", rc ? 0 : r.status,
                 rc ? err.msg : r.body);
        step(p, "pull_request", 0, d);
        json_decref(pr);
        if (!rc) forge_response_free(&r);
        free(tok);
        return NULL;
    }
    forge_response_free(&r);
    json_t *out = json_pack("{s:O, s:O}", "number", num, "url", json_object_get(pr, "html_url"));
    json_decref(pr);
    step(p, "pull_request", 1, "opened");
    json_t *labels = json_object_get(req, "labels");
    if (json_array_size(labels)) {
        json_t *body = json_pack("{s:O}", "labels", labels);
        text = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        snprintf(path, sizeof path, "/repos/%s/issues/%lld/labels", p->repo->forge,
                 (long long)json_integer_value(num));
        rc = forge_request(cfg->forge_api_url, "POST", path, (const char *)tok, text, 30, &r, &err);
        step(p, "labels", !rc && r.status == 200, rc ? err.msg : "labels added");
        if (!rc) forge_response_free(&r);
        free(text);
    }
    free(tok);
    return out;
}

/* The request's fields, checked: 0, or the HTTP status with *why. */
static int parse_request(pr_t *p, json_t *req, int *dry_run, char *why_buf, size_t cap) {
    const char *key;
    json_t *v;
    json_object_foreach(req, key, v) {
        static const char *const KNOWN[] = {"title", "body",   "base",    "head",   "patch",
                                            "files", "labels", "dry_run", "confirm"};
        int ok = 0;
        for (size_t i = 0; i < sizeof KNOWN / sizeof KNOWN[0]; i++) ok |= !strcmp(key, KNOWN[i]);
        if (!ok) {
            snprintf(why_buf, cap, "unknown field '%.60s'", key);
            return 400;
        }
    }
    p->title = json_string_value(json_object_get(req, "title"));
    p->base = json_string_value(json_object_get(req, "base"));
    json_t *patch = json_object_get(req, "patch"), *files = json_object_get(req, "files");
    json_t *dr = json_object_get(req, "dry_run"), *labels = json_object_get(req, "labels");
    const char *why = NULL;
    if (!p->title || !p->title[0] || strlen(p->title) > 256)
        why = "title: a string of 1-256 bytes";
    else if (!p->base || !name_in_list(p->repo->bases, p->base))
        why = "base: one of the repository's allowed base branches (repos.NAME bases=)";
    else if (!!patch == !!files)
        why = "give either patch (a unified diff) or files ({path: text})";
    else if (patch && (!json_is_string(patch) || !json_string_length(patch)))
        why = "patch: a unified diff as a string";
    else if (dr && !json_is_boolean(dr))
        why = "dry_run: true or false";
    else if (labels && (!json_is_array(labels) || json_array_size(labels) > 20))
        why = "labels: a list of at most 20 strings";
    else if (json_object_get(req, "head") &&
             !branch_ok(json_string_value(json_object_get(req, "head"))
                            ? json_string_value(json_object_get(req, "head"))
                            : ""))
        why = "head: a branch name of [A-Za-z0-9._/-], at most 100 bytes";
    if (!why && files) {
        const char *path;
        json_t *f;
        if (!json_is_object(files) || !json_object_size(files) || json_object_size(files) > 100)
            why = "files: an object of 1-100 relative paths to text";
        json_object_foreach(files, path, f) {
            if (!why && (!rel_path_ok(path) || !json_is_string(f)))
                why = "files: relative paths (no '..', no .git) to strings";
        }
    }
    if (why) {
        snprintf(why_buf, cap, "%s", why);
        return 400;
    }
    *dry_run = dr ? json_is_true(dr) : 1;
    if (!*dry_run && !json_is_true(json_object_get(req, "confirm"))) {
        snprintf(why_buf, cap, "a pull request that writes needs \"confirm\": true");
        return 412;
    }
    return 0;
}

/* Checks the patch against the base in a temporary index: nothing in the
 * clone changes. 0 when it applies. */
static int check_patch(pr_t *p, json_t *patch) {
    char idx[96], env[128], pf[96];
    snprintf(idx, sizeof idx, "%s/index", p->tmp);
    snprintf(pf, sizeof pf, "%s/patch", p->tmp);
    snprintf(env, sizeof env, "GIT_INDEX_FILE=%s", idx);
    if (write_file(pf, json_string_value(patch), json_string_length(patch))) return -1;
    const char *rt[] = {"-C", p->repo->path, "read-tree", p->base_commit, NULL};
    const char *ap[] = {"-C", p->repo->path, "apply", "--cached", "--check", pf, NULL};
    if (git_step(p, "read_base", rt, env)) return -1;
    return git_step(p, "apply_check", ap, env);
}

/* The base branch's commit on the remote: fetched first in a real run
 * (a dry run reads the remote-tracking branch as it is). */
static int resolve_base(pr_t *p, int dry_run) {
    char ref[160];
    snprintf(ref, sizeof ref, "refs/remotes/%s/%s", p->repo->remote, p->base);
    if (!dry_run) {
        char spec[300];
        snprintf(spec, sizeof spec, "+refs/heads/%s:%s", p->base, ref);
        const char *f[] = {"-C", p->repo->path, "fetch", "--quiet", p->repo->remote, spec, NULL};
        if (git_step(p, "fetch", f, NULL)) return -1;
    }
    char spec[200], *out = NULL;
    snprintf(spec, sizeof spec, "%s^{commit}", ref);
    const char *rp[] = {"-C", p->repo->path, "rev-parse", "--verify", "--quiet", spec, NULL};
    int st = run_git(rp, NULL, &out);
    if (st == 0 && out) snprintf(p->base_commit, sizeof p->base_commit, "%.40s", out);
    step(p, "resolve_base", st == 0, st == 0 ? p->base_commit : "the base branch is not known");
    free(out);
    return st == 0 ? 0 : -1;
}

/* The writing run: worktree, apply, scan, tests, commit, push, pull
 * request. Returns the HTTP status; *doc gets the answer's extra fields. */
static int real_run(pr_t *p, json_t *req, json_t *doc) {
    snprintf(p->wt, sizeof p->wt, "%s/worktree", p->tmp);
    const char *wa[] = {"-C", p->repo->path, "worktree", "add",          "--quiet",
                        "-b", p->head,       p->wt,      p->base_commit, NULL};
    if (git_step(p, "worktree", wa, NULL)) {
        p->wt[0] = 0;
        return 409; /* the branch exists, most likely */
    }
    p->branch_made = 1;
    json_t *patch = json_object_get(req, "patch");
    if (patch) {
        char pf[96];
        snprintf(pf, sizeof pf, "%s/patch", p->tmp);
        const char *ap[] = {"-C", p->wt, "apply", "--index", pf, NULL};
        if (write_file(pf, json_string_value(patch), json_string_length(patch)) ||
            git_step(p, "apply", ap, NULL))
            return 422;
    } else if (apply_files(p, json_object_get(req, "files")))
        return 422;
    json_t *report = NULL;
    int sc = scan_change(p, req, &report);
    json_object_set_new(doc, "hygiene", report ? report : json_null());
    if (sc) return sc < 0 ? 500 : 422;
    json_object_set_new(doc, "check", p->repo->test[0] ? run_check(p) : json_null());
    const ita_config_t *cfg = p->c->cfg;
    char mf[96], un[160], ue[160];
    snprintf(mf, sizeof mf, "%s/message", p->tmp);
    const char *body = json_string_value(json_object_get(req, "body"));
    char *msg = malloc(strlen(p->title) + (body ? strlen(body) : 0) + 4);
    sprintf(msg, "%s\n%s%s", p->title, body ? "\n" : "", body ? body : "");
    int wf = msg ? write_file(mf, msg, strlen(msg)) : -1;
    free(msg);
    snprintf(un, sizeof un, "user.name=%s", cfg->git_name);
    snprintf(ue, sizeof ue, "user.email=%s", cfg->git_email);
    const char *ca[] = {"-C", p->wt, "-c", un, "-c", ue, "commit", "--quiet", "-F", mf, NULL};
    if (wf || git_step(p, "commit", ca, NULL)) return 500;
    char *out = NULL;
    const char *rp[] = {"-C", p->wt, "rev-parse", "HEAD", NULL};
    if (run_git(rp, NULL, &out) == 0 && out) {
        out[strcspn(out, "\n")] = 0;
        json_object_set_new(doc, "commit", json_string(out));
    }
    free(out);
    char spec[240];
    snprintf(spec, sizeof spec, "refs/heads/%s:refs/heads/%s", p->head, p->head);
    const char *pa[] = {"-C", p->wt, "push", "--quiet", "--porcelain", p->repo->remote, spec, NULL};
    if (git_step(p, "push", pa, NULL)) return 502;
    p->pushed = 1;
    json_t *pr = open_pull(p, req);
    if (!pr) return 502;
    json_object_set_new(doc, "pull_request", pr);
    return 201;
}

/* The dry run's checks: the patch against the base, the scan. */
static int dry_run_checks(pr_t *p, json_t *req, json_t *doc) {
    int status = 200;
    json_t *patch = json_object_get(req, "patch"), *report = NULL;
    if (patch && check_patch(p, patch)) status = 422;
    int sc = status == 200 ? scan_change(p, req, &report) : 0;
    json_object_set_new(doc, "hygiene", report ? report : json_null());
    if (sc) status = sc < 0 ? 500 : 422;
    static const char *const LATER[] = {"worktree", "apply", "tests",
                                        "commit",   "push",  "pull_request"};
    json_t *would = json_array();
    for (size_t i = 0; i < sizeof LATER / sizeof LATER[0]; i++)
        json_array_append_new(would, json_string(LATER[i]));
    json_object_set_new(doc, "would_run", would);
    return status;
}

int ita_pull_run(const ita_pull_ctx_t *c, const char *repo_name, json_t *req, json_t **answer,
                 char *detail, size_t cap) {
    *answer = NULL;
    pr_t p = {.c = c};
    for (int i = 0; i < c->cfg->n_repos; i++)
        if (!strcmp(c->cfg->repos[i].name, repo_name)) p.repo = &c->cfg->repos[i];
    if (!p.repo) {
        snprintf(detail, cap, "no such repository (repos.NAME in ita.yaml)");
        return 404;
    }
    if (!json_is_object(req)) {
        snprintf(detail, cap,
                 "the request is a JSON object {\"title\", \"base\", \"patch\" | \"files\"}");
        return 400;
    }
    int dry_run = 1;
    int st = parse_request(&p, req, &dry_run, detail, cap);
    if (st) return st;
    char head[128];
    const char *h = json_string_value(json_object_get(req, "head"));
    snprintf(head, sizeof head, "%s", h ? h : "");
    if (!h) snprintf(head, sizeof head, "codex/%s", c->request_id);
    p.head = head;
    snprintf(p.tmp, sizeof p.tmp, "/tmp/cu-pull-XXXXXX");
    p.steps = json_array();
    json_t *doc = json_pack("{s:b, s:s, s:s, s:s}", "dry_run", dry_run, "repo", p.repo->name,
                            "base", p.base, "head", p.head);
    int status = 200;
    if (!mkdtemp(p.tmp) || chmod(p.tmp, 0755)) {
        status = 500;
        p.tmp[0] = 0;
    } else if (resolve_base(&p, dry_run))
        status = 422;
    else {
        json_object_set_new(doc, "base_commit", json_string(p.base_commit));
        status = dry_run ? dry_run_checks(&p, req, doc) : real_run(&p, req, doc);
    }
    if (p.tmp[0]) cleanup(&p, p.pushed);
    json_object_set_new(doc, "steps", p.steps);
    snprintf(detail, cap, "%s", status >= 400 ? "a step failed: see steps" : "");
    *answer = doc;
    return status;
}

/* A pull request handed to the worker pool: the body and who asks,
 * copied; the status, answer and detail the loop sends. */
typedef struct {
    ita_server_t *srv;
    char repo[64];
    char request_id[ITA_REQUEST_ID_MAX + 1];
    char key_name[ITA_KEY_NAME_MAX + 1], key_id[24];
    int status;
    json_t *doc;
    char detail[256];
    size_t len;
    char body[]; /* len bytes */
} pull_in_t;

static void pull_in_free(void *p) {
    pull_in_t *in = p;
    if (in) json_decref(in->doc);
    free(in);
}

/* On a pool thread: git, the scan, the sandboxed tests, the push. */
static void pull_job_run(ita_pool_job_t *j, ita_pool_thread_t *t) {
    pull_in_t *in = j->in;
    ita_pull_ctx_t c = {.cfg = &in->srv->cfg,
                        .safety = t->safety,
                        .sandbox_mu = &in->srv->sandbox_mu,
                        .audit = &in->srv->audit,
                        .request_id = in->request_id,
                        .key_name = in->key_name,
                        .key_id = in->key_id,
                        .method = "POST",
                        .path = "/v1/repos/{name}/pulls"};
    json_error_t je;
    json_t *req = in->len ? json_loadb(in->body, in->len, 0, &je) : NULL;
    in->status = ita_pull_run(&c, in->repo, req, &in->doc, in->detail, sizeof in->detail);
    json_decref(req);
}

/* On the loop: the answer, a problem carrying the steps taken when the
 * flow failed. */
static void pull_job_done(ita_pool_job_t *j, void *owner) {
    ita_req_t *rq = owner;
    pull_in_t *in = j->in;
    int status = in->status;
    json_t *doc = in->doc;
    in->doc = NULL;
    if (doc) {
        rq->action = json_is_true(json_object_get(doc, "dry_run")) ? "pull dry_run" : "pull";
        snprintf(rq->job, sizeof rq->job, "%s", rq->file);
    }
    if (!doc) {
        ita_problem(rq, status, in->detail);
        return;
    }
    if (status >= 400) {
        /* a problem document carrying the steps that were taken */
        char *pj = ita_problem_json(status, in->detail, rq->req->input.path.base,
                                    rq->req->input.path.len, rq->request_id);
        json_t *prob = pj ? json_loads(pj, 0, NULL) : NULL;
        free(pj);
        if (prob) json_object_update(prob, doc);
        json_decref(doc);
        doc = prob;
    }
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    if (!text) {
        ita_problem(rq, 500, "out of memory while formatting the answer");
        return;
    }
    ita_respond(rq, status, status >= 400 ? "application/problem+json" : "application/json", text,
                strlen(text));
    free(text);
}

void ita_route_repo_pulls(ita_req_t *rq) {
    /* git and the sandbox run in the worker pool (503 when it is full) */
    const char *body = rq->req->entity.base;
    size_t len = body ? rq->req->entity.len : 0;
    ita_pool_job_t *j =
        ita_offload_job(rq, sizeof(pull_in_t), offsetof(pull_in_t, body), body, len);
    if (!j) return;
    pull_in_t *in = j->in;
    in->srv = rq->w->srv;
    snprintf(in->repo, sizeof in->repo, "%s", rq->file);
    snprintf(in->request_id, sizeof in->request_id, "%s", rq->request_id);
    snprintf(in->key_name, sizeof in->key_name, "%s", rq->key_name);
    snprintf(in->key_id, sizeof in->key_id, "%s", rq->key_id);
    in->len = len;
    j->free_in = pull_in_free;
    j->run = pull_job_run;
    j->done = pull_job_done;
    ita_offload(rq, j);
}
