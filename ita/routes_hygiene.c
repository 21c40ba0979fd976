/*
 * POST /v1/hygiene/scan: the hygiene scanner of `codexctl scan` as a
 * service. The body is a text (scanned as one file, `?path=` names it for
 * path allowlists and reports) or a unified diff (only added lines are
 * scanned, reported at their lines in the new files); a diff is recognised
 * by `?kind=diff` or a Content-Type mentioning diff or patch. The answer is
 * the scanner's JSON report, or a SARIF 2.1.0 log with `?format=sarif`;
 * never a secret, only masked previews and fingerprints. Scope: read. The
 * scan itself runs in the worker pool (pool.h): 503 when it is full.
 */
#include <stdlib.h>
#include <string.h>

#include "ita/http.h"
#include "safety/hits.h"

/* Findings listed per request; the rest are counted. */
#define MAX_FINDINGS 1000

static int wants_diff(const ita_req_t *rq, const char *kind) {
    if (kind[0]) return strcmp(kind, "diff") == 0;
    const h2o_iovec_t *ct = ita_header(rq, "content-type");
    if (!ct) return 0;
    char buf[128];
    size_t n = ct->len < sizeof buf - 1 ? ct->len : sizeof buf - 1;
    memcpy(buf, ct->base, n);
    buf[n] = 0;
    return strstr(buf, "diff") != NULL || strstr(buf, "patch") != NULL;
}

typedef struct {
    int sarif, diff;
    char path[256];
    size_t len;
    char body[]; /* len bytes and a NUL */
} scan_in_t;

/* On a pool thread: scans the copy, builds the bounded report. */
static void scan_run(ita_pool_job_t *j, ita_pool_thread_t *t) {
    const scan_in_t *in = j->in;
    const safety_engine_t *eng = t->safety;
    safety_hits_t hits;
    memset(&hits, 0, sizeof hits);
    cu_error_t err = {0};
    int rc = in->diff
                 ? safety_hits_scan_diff(eng, SAFETY_STAGE_DATA, in->body, in->len, &hits, &err)
                 : safety_hits_scan_text(eng, SAFETY_STAGE_DATA, in->path, in->body, in->len, &hits,
                                         &err);
    if (rc != CU_OK) {
        safety_hits_free(&hits);
        j->status = 400;
        snprintf(j->detail, sizeof j->detail, "%s",
                 err.msg[0] ? err.msg : "the body could not be scanned");
        return;
    }
    /* the answer stays bounded whatever the body holds (1 MiB of e-mail
     * addresses made 46.7 MB of JSON): the first MAX_FINDINGS, flagged */
    size_t total = hits.count;
    for (size_t i = MAX_FINDINGS; i < hits.count; i++) free(hits.items[i].path);
    if (hits.count > MAX_FINDINGS) hits.count = MAX_FINDINGS;
    json_t *doc =
        in->sarif ? safety_hits_sarif(eng, &hits) : safety_hits_json(eng, SAFETY_STAGE_DATA, &hits);
    safety_hits_free(&hits);
    if (doc && !in->sarif) {
        json_object_set_new(doc, "truncated", json_boolean(total > MAX_FINDINGS));
        json_object_set_new(doc, "findings_total", json_integer((json_int_t)total));
    } else if (doc) {
        json_t *props = json_pack("{s:b,s:I}", "truncated", total > MAX_FINDINGS, "findings_total",
                                  (json_int_t)total);
        json_t *run = json_array_get(json_object_get(doc, "runs"), 0);
        if (run && props) json_object_set(run, "properties", props);
        json_decref(props);
    }
    if (!doc) {
        j->status = 500;
        snprintf(j->detail, sizeof j->detail, "out of memory while building the report");
        return;
    }
    j->status = 200;
    j->out = doc;
}

void ita_route_hygiene_scan(ita_req_t *rq) {
    char format[16] = "json", kind[16] = "", path[256] = "request";
    if (ita_query_param(rq, "format", format, sizeof format) < 0 ||
        ita_query_param(rq, "kind", kind, sizeof kind) < 0 ||
        ita_query_param(rq, "path", path, sizeof path) < 0) {
        ita_problem(rq, 400, "malformed query: format, kind and path are short strings");
        return;
    }
    int sarif = strcmp(format, "sarif") == 0;
    if (!sarif && strcmp(format, "json") != 0) {
        ita_problem(rq, 400, "format is json or sarif");
        return;
    }
    if (kind[0] && strcmp(kind, "text") != 0 && strcmp(kind, "diff") != 0) {
        ita_problem(rq, 400, "kind is text or diff");
        return;
    }
    const char *body = rq->req->entity.base ? rq->req->entity.base : "";
    size_t len = rq->req->entity.base ? rq->req->entity.len : 0;
    /* the scan runs in the worker pool on a copy of the body: a
     * pathological one must not hold this loop */
    ita_pool_job_t *j =
        ita_offload_job(rq, sizeof(scan_in_t), offsetof(scan_in_t, body), body, len);
    if (!j) return;
    scan_in_t *in = j->in;
    in->len = len;
    in->sarif = sarif;
    in->diff = wants_diff(rq, kind);
    snprintf(in->path, sizeof in->path, "%s", path);
    j->run = scan_run;
    ita_offload(rq, j);
}
