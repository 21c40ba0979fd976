/*
 * Located findings, unified-diff scanning, and the JSON and SARIF reports
 * (see hits.h).
 */
#include "safety/hits.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void safety_hits_free(safety_hits_t *h) {
    if (!h) return;
    for (size_t i = 0; i < h->count; i++) free(h->items[i].path);
    free(h->items);
    memset(h, 0, sizeof *h);
}

static void fingerprint(int rule, const char *secret, size_t n, char out[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    const char *id = safety_rules()[rule].id;
    out[0] = '\0';
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) return;
    if (EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, id, strlen(id)) &&
        EVP_DigestUpdate(ctx, ":", 1) && EVP_DigestUpdate(ctx, secret, n) &&
        EVP_DigestFinal_ex(ctx, md, &len))
        for (unsigned i = 0; i < 32 && i < len; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
    EVP_MD_CTX_free(ctx);
}

/* line_map (may be NULL) maps lines of text (index line-1) to file lines. */
static int add_hits(const safety_engine_t *eng, safety_stage_t stage, const char *path,
                    const char *text, const safety_findings_t *fs, const size_t *line_map,
                    size_t map_n, safety_hits_t *out, cu_error_t *err) {
    const safety_policy_t *pol = safety_engine_policy(eng);
    for (size_t i = 0; i < fs->count; i++) {
        const safety_finding_t *f = &fs->items[i];
        if (safety_policy_action(pol, f->rule, stage) == SAFETY_ACTION_ALLOW) continue;
        if (out->count == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 64;
            safety_hit_t *p = realloc(out->items, cap * sizeof *p);
            if (!p) return cu_error_set(err, CU_ENOMEM, "out of memory collecting findings");
            out->items = p;
            out->cap = cap;
        }
        safety_hit_t *h = &out->items[out->count];
        memset(h, 0, sizeof *h);
        h->path = strdup(path ? path : "");
        if (!h->path) return cu_error_set(err, CU_ENOMEM, "out of memory collecting findings");
        out->count++;
        h->f = *f;
        size_t end_line = f->line, col = f->column;
        for (size_t p = f->start; p < f->end; p++) {
            if (text[p] == '\n') {
                end_line++;
                col = 1;
            } else {
                col++;
            }
        }
        h->line = f->line;
        h->column = f->column;
        h->end_line = end_line;
        h->end_column = col;
        if (line_map) {
            h->line = f->line - 1 < map_n ? line_map[f->line - 1] : f->line;
            h->end_line = end_line - 1 < map_n ? line_map[end_line - 1] : end_line;
        }
        const char *sec = text + f->secret_start;
        size_t sn = f->secret_end - f->secret_start;
        safety_mask_secret(sec, sn, h->preview, sizeof h->preview);
        fingerprint(f->rule, sec, sn, h->fingerprint);
    }
    return CU_OK;
}

static int scan_mapped(const safety_engine_t *eng, safety_stage_t stage, const char *path,
                       const char *text, size_t len, const size_t *line_map, size_t map_n,
                       safety_hits_t *out, cu_error_t *err) {
    safety_findings_t fs = {0};
    int rc = safety_scan_text(eng, path, text, len, &fs, err);
    if (!rc) rc = add_hits(eng, stage, path, text, &fs, line_map, map_n, out, err);
    out->limit_hits += fs.limit_hits;
    safety_findings_free(&fs);
    out->files++;
    out->bytes += len;
    return rc;
}

int safety_hits_scan_text(const safety_engine_t *eng, safety_stage_t stage, const char *path,
                          const char *text, size_t len, safety_hits_t *out, cu_error_t *err) {
    return scan_mapped(eng, stage, path, text, len, NULL, 0, out, err);
}

/* ---- unified diffs ---- */

typedef struct {
    char *path;
    char *buf;
    size_t len, cap;
    size_t *map;
    size_t nlines, mapcap;
} diff_file_t;

static int diff_flush(const safety_engine_t *eng, safety_stage_t stage, diff_file_t *d,
                      safety_hits_t *out, cu_error_t *err) {
    int rc = CU_OK;
    if (d->path && d->len)
        rc = scan_mapped(eng, stage, d->path, d->buf, d->len, d->map, d->nlines, out, err);
    free(d->path);
    d->path = NULL;
    d->len = d->nlines = 0;
    return rc;
}

static int diff_add_line(diff_file_t *d, const char *s, size_t n, size_t line, cu_error_t *err) {
    if (d->len + n + 2 > d->cap) {
        size_t cap = d->cap ? d->cap : 4096;
        while (cap < d->len + n + 2) cap *= 2;
        char *b = realloc(d->buf, cap);
        if (!b) return cu_error_set(err, CU_ENOMEM, "out of memory reading a diff");
        d->buf = b;
        d->cap = cap;
    }
    if (d->nlines == d->mapcap) {
        size_t cap = d->mapcap ? d->mapcap * 2 : 256;
        size_t *m = realloc(d->map, cap * sizeof *m);
        if (!m) return cu_error_set(err, CU_ENOMEM, "out of memory reading a diff");
        d->map = m;
        d->mapcap = cap;
    }
    if (n) memcpy(d->buf + d->len, s, n);
    d->len += n;
    d->buf[d->len++] = '\n';
    d->map[d->nlines++] = line;
    return CU_OK;
}

/* "+++ b/path\t..." -> "path"; NULL for /dev/null (and out of memory) */
static char *diff_target(const char *s, size_t n) {
    s += 4;
    n -= 4;
    if (n >= 9 && !strncmp(s, "/dev/null", 9)) return NULL;
    if (n >= 2 && !strncmp(s, "b/", 2)) {
        s += 2;
        n -= 2;
    }
    size_t k = 0;
    while (k < n && s[k] != '\t' && s[k] != '\r') k++;
    return strndup(s, k);
}

/* "@@ -a[,b] +c[,d] @@": the new side's first line and the two counts. */
static int parse_hunk(const char *line, size_t n, size_t *new_line, long *old_left,
                      long *new_left) {
    char head[128];
    snprintf(head, sizeof head, "%.*s", (int)(n < 127 ? n : 127), line);
    unsigned long a, b = 1, c, d = 1;
    const char *p = head + 3;
    char *e;
    if (*p != '-') return -1;
    a = strtoul(p + 1, &e, 10);
    if (*e == ',') b = strtoul(e + 1, &e, 10);
    if (*e != ' ' || e[1] != '+') return -1;
    c = strtoul(e + 2, &e, 10);
    if (*e == ',') d = strtoul(e + 1, &e, 10);
    (void)a;
    *new_line = c;
    *old_left = (long)b;
    *new_left = (long)d;
    return 0;
}

int safety_hits_scan_diff(const safety_engine_t *eng, safety_stage_t stage, const char *diff,
                          size_t len, safety_hits_t *out, cu_error_t *err) {
    diff_file_t d = {0};
    size_t new_line = 0, pos = 0;
    long old_left = 0, new_left = 0; /* lines left in the current hunk */
    int rc = CU_OK;
    out->from_diff = 1;
    while (!rc && pos < len) {
        const char *line = diff + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - line) : len - pos;
        pos += n + (nl != NULL);
        if (n && line[n - 1] == '\r') n--;
        if (old_left > 0 || new_left > 0) {
            char c = n ? line[0] : ' '; /* some tools strip the space of empty context lines */
            if (c == '+') {
                if (d.path) rc = diff_add_line(&d, line + 1, n - 1, new_line, err);
                new_line++;
                new_left--;
            } else if (c == '-') {
                old_left--;
            } else if (c == ' ') {
                new_line++;
                old_left--;
                new_left--;
            } else if (c != '\\') {
                old_left = new_left = 0; /* malformed: leave the hunk */
            }
            continue;
        }
        if (n >= 4 && !strncmp(line, "+++ ", 4)) {
            rc = diff_flush(eng, stage, &d, out, err);
            d.path = diff_target(line, n);
        } else if (n >= 3 && !strncmp(line, "@@ ", 3)) {
            if (parse_hunk(line, n, &new_line, &old_left, &new_left) != 0) old_left = new_left = 0;
        } else if (n >= 5 && !strncmp(line, "diff ", 5)) {
            rc = diff_flush(eng, stage, &d, out, err);
        }
    }
    if (!rc) rc = diff_flush(eng, stage, &d, out, err);
    free(d.path);
    free(d.buf);
    free(d.map);
    return rc;
}

/* ---- reports ---- */

static json_t *hit_json(const safety_engine_t *eng, safety_stage_t stage, const safety_hits_t *hs,
                        const safety_hit_t *h) {
    json_t *o = safety_finding_json(eng, stage, &h->f, NULL, h->path);
    json_object_set_new(o, "line", json_integer((json_int_t)h->line));
    json_object_set_new(o, "end_line", json_integer((json_int_t)h->end_line));
    json_object_set_new(o, "end_column", json_integer((json_int_t)h->end_column));
    json_object_set_new(o, "preview", json_string(h->preview));
    json_object_set_new(o, "fingerprint", json_string(h->fingerprint));
    if (hs->from_diff) {
        json_object_del(o, "start");
        json_object_del(o, "end");
    }
    return o;
}

json_t *safety_hits_json(const safety_engine_t *eng, safety_stage_t stage, const safety_hits_t *h) {
    const safety_policy_t *pol = safety_engine_policy(eng);
    json_t *o = json_object();
    json_object_set_new(o, "version", json_integer(1));
    json_object_set_new(o, "tool", json_string("codexctl scan"));
    json_t *p = json_object();
    json_object_set_new(p, "source", json_string(safety_policy_source(pol)));
    json_object_set_new(p, "sha256", json_string(safety_policy_sha256(pol)));
    json_object_set_new(o, "policy", p);
    json_object_set_new(o, "stage", json_string(safety_stage_name(stage)));
    json_object_set_new(o, "files_scanned", json_integer((json_int_t)h->files));
    json_object_set_new(o, "bytes_scanned", json_integer((json_int_t)h->bytes));
    json_object_set_new(o, "limit_hits", json_integer((json_int_t)h->limit_hits));
    json_t *arr = json_array();
    for (size_t i = 0; i < h->count; i++)
        json_array_append_new(arr, hit_json(eng, stage, h, &h->items[i]));
    json_object_set_new(o, "findings", arr);
    return o;
}

static const char *sarif_level(safety_severity_t s) {
    return s >= SAFETY_SEV_HIGH ? "error" : s == SAFETY_SEV_MEDIUM ? "warning" : "note";
}

static char *uri_escape(const char *path) {
    size_t n = strlen(path);
    char *out = malloc(3 * n + 1), *q = out;
    if (!out) return NULL;
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("/-._~", *p))
            *q++ = (char)*p;
        else
            q += sprintf(q, "%%%02X", *p);
    }
    *q = '\0';
    return out;
}

static json_t *text_obj(const char *s) {
    json_t *o = json_object();
    json_object_set_new(o, "text", json_string(s));
    return o;
}

static json_t *sarif_rule(const safety_policy_t *pol, int r) {
    const safety_rule_t *rule = &safety_rules()[r];
    safety_severity_t sev = safety_policy_severity(pol, r);
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(rule->id));
    json_object_set_new(o, "name", json_string(rule->id));
    json_object_set_new(o, "shortDescription", text_obj(rule->description));
    json_t *dc = json_object();
    json_object_set_new(dc, "level", json_string(sarif_level(sev)));
    json_object_set_new(o, "defaultConfiguration", dc);
    json_t *props = json_object();
    json_object_set_new(props, "category", json_string(safety_category_name(rule->category)));
    json_object_set_new(props, "severity", json_string(safety_severity_name(sev)));
    json_t *tags = json_array();
    json_array_append_new(tags, json_string("security"));
    json_array_append_new(tags, json_string(safety_category_name(rule->category)));
    json_object_set_new(props, "tags", tags);
    json_object_set_new(o, "properties", props);
    return o;
}

static json_t *sarif_result(const safety_policy_t *pol, const safety_hit_t *h, int rule_index) {
    const safety_rule_t *rule = &safety_rules()[h->f.rule];
    json_t *res = json_object();
    json_object_set_new(res, "ruleId", json_string(rule->id));
    if (rule_index >= 0) json_object_set_new(res, "ruleIndex", json_integer(rule_index));
    json_object_set_new(res, "level",
                        json_string(sarif_level(safety_policy_severity(pol, h->f.rule))));
    char msg[384];
    snprintf(msg, sizeof msg, "%s found (%s)", rule->description, h->preview);
    json_object_set_new(res, "message", text_obj(msg));
    json_t *region = json_object();
    json_object_set_new(region, "startLine", json_integer((json_int_t)h->line));
    json_object_set_new(region, "startColumn", json_integer((json_int_t)h->column));
    json_object_set_new(region, "endLine", json_integer((json_int_t)h->end_line));
    json_object_set_new(region, "endColumn", json_integer((json_int_t)h->end_column));
    json_t *art = json_object();
    char *uri = uri_escape(h->path);
    json_object_set_new(art, "uri", json_string(uri ? uri : h->path));
    free(uri);
    json_t *phys = json_object();
    json_object_set_new(phys, "artifactLocation", art);
    json_object_set_new(phys, "region", region);
    json_t *loc = json_object();
    json_object_set_new(loc, "physicalLocation", phys);
    json_t *locs = json_array();
    json_array_append_new(locs, loc);
    json_object_set_new(res, "locations", locs);
    json_t *fp = json_object();
    json_object_set_new(fp, "codexSecretHash/v1", json_string(h->fingerprint));
    json_object_set_new(res, "partialFingerprints", fp);
    return res;
}

json_t *safety_hits_sarif(const safety_engine_t *eng, const safety_hits_t *h) {
    const safety_policy_t *pol = safety_engine_policy(eng);
    json_t *rules = json_array();
    int *index = calloc((size_t)safety_rule_count(), sizeof *index);
    int k = 0;
    for (int r = 0; r < safety_rule_count(); r++) {
        if (!safety_policy_rule_enabled(pol, r)) continue;
        if (index) index[r] = k;
        k++;
        json_array_append_new(rules, sarif_rule(pol, r));
    }
    json_t *results = json_array();
    for (size_t i = 0; i < h->count; i++)
        json_array_append_new(
            results, sarif_result(pol, &h->items[i], index ? index[h->items[i].f.rule] : -1));
    free(index);
    json_t *driver = json_object();
    json_object_set_new(driver, "name", json_string("codexctl scan"));
    json_object_set_new(driver, "version", json_string(CU_VERSION));
    json_object_set_new(driver, "semanticVersion", json_string(CU_VERSION));
    json_object_set_new(driver, "rules", rules);
    json_t *tool = json_object();
    json_object_set_new(tool, "driver", driver);
    json_t *run = json_object();
    json_object_set_new(run, "tool", tool);
    json_object_set_new(run, "results", results);
    json_t *props = json_object();
    json_object_set_new(props, "policySha256", json_string(safety_policy_sha256(pol)));
    json_object_set_new(run, "properties", props);
    json_t *runs = json_array();
    json_array_append_new(runs, run);
    json_t *root = json_object();
    json_object_set_new(root, "$schema",
                        json_string("https://json.schemastore.org/sarif-2.1.0.json"));
    json_object_set_new(root, "version", json_string("2.1.0"));
    json_object_set_new(root, "runs", runs);
    return root;
}
