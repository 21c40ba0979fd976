/*
 * MCP resources and prompts.
 *
 *   codex://jobs/{id}/state    the job's summary, scheduler view and state.json
 *   codex://jobs/{id}/metrics  the last records of metrics.jsonl (JSON lines)
 *   codex://jobs/{id}/events   the last records of events.jsonl (JSON lines)
 *   codex://docs/{page}        a page of the manual (the .md files of docs/)
 *
 * The prompt diagnose_failed_job puts a job's state, error and last
 * events in front of the model with the questions to answer.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "core/fileio.h"
#include "ita/mcp.h"

#define LIST_JOBS_MAX 200
#define TAIL_RECORDS 200

static json_t *resource(const char *uri, const char *name, const char *title, const char *mime) {
    return json_pack("{s:s, s:s, s:s, s:s}", "uri", uri, "name", name, "title", title, "mimeType",
                     mime);
}

static int page_name_valid(const char *s) {
    size_t n = strlen(s);
    return n > 3 && n < 64 && !strcmp(s + n - 3, ".md") &&
           strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.") == n &&
           s[0] != '.';
}

json_t *ita_mcp_resources_list(ita_mcp_ctx_t *c) {
    json_t *arr = json_array();
    ita_job_summary_t *all = NULL;
    size_t n = 0;
    cu_error_t e;
    if (!ita_jobdir_list(c->jobs, &all, &n, &e)) {
        for (size_t i = 0; i < n && i < LIST_JOBS_MAX; i++) {
            char uri[ITA_JOB_ID_MAX + 32], title[ITA_JOB_ID_MAX + 48];
            snprintf(uri, sizeof uri, "codex://jobs/%s/state", all[i].id);
            snprintf(title, sizeof title, "job %s (%s)", all[i].id, all[i].status);
            json_array_append_new(arr, resource(uri, all[i].id, title, "application/json"));
        }
        free(all);
    }
    DIR *d = c->cfg->docs_dir[0] ? opendir(c->cfg->docs_dir) : NULL;
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (!page_name_valid(de->d_name)) continue;
        char uri[300]; /* d_name: 255 bytes at most */
        snprintf(uri, sizeof uri, "codex://docs/%s", de->d_name);
        json_array_append_new(arr, resource(uri, de->d_name, de->d_name, "text/markdown"));
    }
    if (d) closedir(d);
    return arr;
}

json_t *ita_mcp_resource_templates(void) {
    static const char *const KINDS[][3] = {
        {"state", "a job's state", "application/json"},
        {"metrics", "a job's metrics (the last 200 records)", "application/x-ndjson"},
        {"events", "a job's events (the last 200)", "application/x-ndjson"},
    };
    json_t *arr = json_array();
    for (size_t i = 0; i < 3; i++) {
        char tpl[64];
        snprintf(tpl, sizeof tpl, "codex://jobs/{id}/%s", KINDS[i][0]);
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "uriTemplate", tpl, "name",
                                             KINDS[i][0], "title", KINDS[i][1], "mimeType",
                                             KINDS[i][2]));
    }
    json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:s}", "uriTemplate",
                                         "codex://docs/{page}", "name", "docs", "title",
                                         "a page of the manual", "mimeType", "text/markdown"));
    return arr;
}

static json_t *contents(const char *uri, const char *mime, const char *text) {
    return json_pack("{s:[{s:s, s:s, s:s}]}", "contents", "uri", uri, "mimeType", mime, "text",
                     text);
}

/* The last TAIL_RECORDS of the first 5000 lines of a job's .jsonl, as
 * JSON lines text (job_metrics pages through longer files). */
static char *tail_jsonl(ita_mcp_ctx_t *c, const char *job, ita_jsonl_kind_t kind, cu_error_t *err) {
    ita_jsonl_query_t q = {.since_step = INT64_MIN,
                           .cursor = 0,
                           .limit = 5000,
                           .max_bytes = 4 << 20,
                           .names = NULL,
                           .n_names = 0};
    ita_jsonl_page_t page;
    if (ita_jobdir_jsonl(c->jobs, job, kind, &q, &page, err)) return NULL;
    size_t n = json_array_size(page.records), from = n > TAIL_RECORDS ? n - TAIL_RECORDS : 0;
    size_t cap = 1024, len = 0;
    char *out = malloc(cap);
    for (size_t i = from; out && i < n; i++) {
        char *line = json_dumps(json_array_get(page.records, i), JSON_COMPACT);
        size_t l = line ? strlen(line) : 0;
        if (len + l + 2 > cap) {
            while (len + l + 2 > cap) cap *= 2;
            char *g = realloc(out, cap);
            if (!g) {
                free(out);
                out = NULL;
            } else
                out = g;
        }
        if (out && line) {
            memcpy(out + len, line, l);
            len += l;
            out[len++] = '\n';
        }
        free(line);
    }
    if (out) out[len] = 0;
    json_decref(page.records);
    return out;
}

static json_t *read_job(ita_mcp_ctx_t *c, const char *uri, const char *rest, cu_error_t *err) {
    const char *slash = strchr(rest, '/');
    if (!slash || !ita_job_id_valid(rest, (size_t)(slash - rest))) {
        cu_error_set(err, ITA_ENOENT, "no such resource: %s", uri);
        return NULL;
    }
    snprintf(c->job, sizeof c->job, "%.*s", (int)(slash - rest), rest);
    ita_job_summary_t sum;
    const json_t *state;
    if (ita_jobdir_state(c->jobs, c->job, &sum, &state, err)) {
        cu_error_set(err, ITA_ENOENT, "no such job: %s", c->job);
        return NULL;
    }
    const char *what = slash + 1;
    if (!strcmp(what, "state")) {
        json_t *doc = ita_job_summary_json_view(&sum, c->view);
        json_object_set(doc, "state", (json_t *)state);
        char *text = json_dumps(doc, JSON_INDENT(1) | JSON_REAL_PRECISION(15));
        json_decref(doc);
        json_t *r = text ? contents(uri, "application/json", text) : NULL;
        free(text);
        return r;
    }
    ita_jsonl_kind_t kind;
    if (!strcmp(what, "metrics"))
        kind = ITA_JSONL_METRICS;
    else if (!strcmp(what, "events"))
        kind = ITA_JSONL_EVENTS;
    else {
        cu_error_set(err, ITA_ENOENT, "no such resource: %s", uri);
        return NULL;
    }
    char *text = tail_jsonl(c, c->job, kind, err);
    json_t *r = text ? contents(uri, "application/x-ndjson", text) : NULL;
    free(text);
    return r;
}

json_t *ita_mcp_resource_read(ita_mcp_ctx_t *c, const char *uri, cu_error_t *err) {
    if (!strncmp(uri, "codex://jobs/", 13)) return read_job(c, uri, uri + 13, err);
    const char *page = !strncmp(uri, "codex://docs/", 13) ? uri + 13 : NULL;
    if (!page || !page_name_valid(page) || !c->cfg->docs_dir[0]) {
        cu_error_set(err, ITA_ENOENT, "no such resource: %s", uri);
        return NULL;
    }
    char path[ITA_PATH_MAX + 80];
    snprintf(path, sizeof path, "%s/%s", c->cfg->docs_dir, page);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (cu_read_file(path, 1 << 20, &buf, &len, err)) {
        cu_error_set(err, ITA_ENOENT, "no such resource: %s", uri);
        return NULL;
    }
    json_t *r = json_pack("{s:[{s:s, s:s, s:s%}]}", "contents", "uri", uri, "mimeType",
                          "text/markdown", "text", (const char *)buf, len);
    free(buf);
    return r;
}

/* ---- prompts ---- */

json_t *ita_mcp_prompts_list(void) {
    return json_pack("[{s:s, s:s, s:s, s:[{s:s, s:s, s:b}]}]", "name", "diagnose_failed_job",
                     "title", "Diagnose a failed job", "description",
                     "Explains why a training job failed (or was lost) from its state, error and "
                     "last events, and proposes a fix to its config or data.",
                     "arguments", "name", "job", "description", "the job id", "required", 1);
}

json_t *ita_mcp_prompt_get(ita_mcp_ctx_t *c, const char *name, json_t *args, cu_error_t *err) {
    if (strcmp(name, "diagnose_failed_job")) {
        cu_error_set(err, CU_EINVAL, "no such prompt: %s", name);
        return NULL;
    }
    const char *job = json_string_value(json_object_get(args, "job"));
    if (!job || !ita_job_id_valid(job, strlen(job))) {
        cu_error_set(err, CU_EINVAL, "argument job: a job id is required");
        return NULL;
    }
    char uri[ITA_JOB_ID_MAX + 32];
    snprintf(uri, sizeof uri, "codex://jobs/%s/state", job);
    json_t *state = ita_mcp_resource_read(c, uri, err);
    if (!state) return NULL;
    snprintf(uri, sizeof uri, "codex://jobs/%s/events", job);
    cu_error_t e2;
    json_t *events = ita_mcp_resource_read(c, uri, &e2);
    char intro[512];
    snprintf(intro, sizeof intro,
             "Codex-Universal training job '%s' did not finish as it should. From its state "
             "(status, error, step, loss, the scheduler's view) and its events below, say what "
             "went wrong, the evidence for it, and the smallest change to the job config, data "
             "or cluster request that would fix it. Say so when the evidence is not enough.",
             job);
    json_t *msgs = json_array();
    json_array_append_new(msgs, json_pack("{s:s, s:{s:s, s:s}}", "role", "user", "content", "type",
                                          "text", "text", intro));
    json_t *st = json_array_get(json_object_get(state, "contents"), 0);
    json_array_append_new(msgs, json_pack("{s:s, s:{s:s, s:O}}", "role", "user", "content", "type",
                                          "resource", "resource", st));
    json_t *ev = events ? json_array_get(json_object_get(events, "contents"), 0) : NULL;
    if (ev)
        json_array_append_new(msgs, json_pack("{s:s, s:{s:s, s:O}}", "role", "user", "content",
                                              "type", "resource", "resource", ev));
    json_decref(state);
    json_decref(events);
    char desc[200];
    snprintf(desc, sizeof desc, "Diagnose job %s", job);
    return json_pack("{s:s, s:o}", "description", desc, "messages", msgs);
}
