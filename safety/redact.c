/*
 * Redaction and the dataset safety report (see redact.h).
 */
#include "safety/redact.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void safety_redact_result_free(safety_redact_result_t *r) {
    if (!r) return;
    free(r->text);
    free(r->counts);
    safety_findings_free(&r->findings);
    memset(r, 0, sizeof *r);
    r->block_rule = -1;
}

typedef struct {
    char *buf;
    size_t len, cap;
} sbuf_t;

static int sbuf_put(sbuf_t *b, const char *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) return -1;
        b->buf = nb;
        b->cap = cap;
    }
    if (n) memcpy(b->buf + b->len, p, n);
    b->len += n;
    b->buf[b->len] = '\0';
    return 0;
}

static int cmp_secret_start(const void *a, const void *b) {
    const safety_finding_t *x = a, *y = b;
    if (x->secret_start != y->secret_start) return x->secret_start < y->secret_start ? -1 : 1;
    return x->rule - y->rule;
}

int safety_redact(const safety_engine_t *eng, safety_stage_t stage, const char *path,
                  const char *in, size_t len, safety_redact_result_t *out, cu_error_t *err) {
    memset(out, 0, sizeof *out);
    out->block_rule = -1;
    out->counts = calloc((size_t)safety_rule_count(), sizeof *out->counts);
    if (!out->counts) return cu_error_set(err, CU_ENOMEM, "out of memory redacting");
    safety_findings_t all = {0};
    int rc = safety_scan_text(eng, path, in, len, &all, err);
    if (rc) goto fail;
    const safety_policy_t *pol = safety_engine_policy(eng);
    for (size_t i = 0; i < all.count; i++) {
        safety_action_t a = safety_policy_action(pol, all.items[i].rule, stage);
        if (a == SAFETY_ACTION_ALLOW) continue;
        if ((rc = safety_findings_push(&out->findings, &all.items[i], err))) goto fail;
        if (a == SAFETY_ACTION_BLOCK && !out->blocked) {
            out->blocked = 1;
            out->block_rule = all.items[i].rule;
        }
    }
    safety_findings_free(&all);
    /* rewrite in secret order; the findings list keeps its scan order */
    size_t nf = out->findings.count;
    safety_finding_t *order = malloc((nf ? nf : 1) * sizeof *order);
    if (!order) {
        rc = cu_error_set(err, CU_ENOMEM, "out of memory redacting");
        goto fail;
    }
    if (nf) memcpy(order, out->findings.items, nf * sizeof *order);
    qsort(order, nf, sizeof *order, cmp_secret_start);
    sbuf_t b = {0};
    size_t pos = 0;
    int oom = sbuf_put(&b, "", 0);
    for (size_t i = 0; i < nf && !oom; i++) {
        const safety_finding_t *f = &order[i];
        if (f->secret_start < pos) { /* overlaps the previous placeholder: absorbed */
            if (f->secret_end > pos) pos = f->secret_end;
            continue;
        }
        char ph[96];
        int m = snprintf(ph, sizeof ph, "<REDACTED:%s>", safety_rules()[f->rule].id);
        oom |= sbuf_put(&b, in + pos, f->secret_start - pos);
        oom |= sbuf_put(&b, ph, (size_t)m);
        pos = f->secret_end;
        out->counts[f->rule]++;
        out->total++;
    }
    if (!oom) oom |= sbuf_put(&b, in + pos, len - pos);
    free(order);
    if (oom) {
        free(b.buf);
        rc = cu_error_set(err, CU_ENOMEM, "out of memory redacting");
        goto fail;
    }
    out->text = b.buf;
    out->len = b.len;
    return CU_OK;
fail:
    safety_findings_free(&all);
    safety_redact_result_free(out);
    return rc;
}

int safety_report_init(safety_report_t *rep, cu_error_t *err) {
    memset(rep, 0, sizeof *rep);
    rep->counts = calloc((size_t)safety_rule_count(), sizeof *rep->counts);
    if (!rep->counts) return cu_error_set(err, CU_ENOMEM, "out of memory for the safety report");
    return CU_OK;
}

int safety_report_add(safety_report_t *rep, const char *path, const safety_redact_result_t *res,
                      cu_error_t *err) {
    rep->files++;
    if (res->total) rep->files_redacted++;
    for (int r = 0; r < safety_rule_count(); r++) rep->counts[r] += res->counts[r];
    rep->total += res->total;
    if (!res->blocked) return CU_OK;
    rep->files_blocked++;
    if (rep->n_blocked == rep->cap_blocked) {
        size_t cap = rep->cap_blocked ? rep->cap_blocked * 2 : 16;
        char **p = realloc(rep->blocked_paths, cap * sizeof *p);
        if (!p) return cu_error_set(err, CU_ENOMEM, "out of memory for the safety report");
        rep->blocked_paths = p;
        rep->cap_blocked = cap;
    }
    const char *rule = res->block_rule >= 0 ? safety_rules()[res->block_rule].id : "?";
    size_t n = strlen(path ? path : "") + strlen(rule) + 2;
    char *s = malloc(n);
    if (!s) return cu_error_set(err, CU_ENOMEM, "out of memory for the safety report");
    snprintf(s, n, "%s\t%s", path ? path : "", rule);
    rep->blocked_paths[rep->n_blocked++] = s;
    return CU_OK;
}

json_t *safety_report_json(const safety_report_t *rep, const safety_engine_t *eng) {
    json_t *o = json_object();
    json_object_set_new(o, "policy", safety_policy_provenance(safety_engine_policy(eng)));
    json_object_set_new(o, "files", json_integer((json_int_t)rep->files));
    json_object_set_new(o, "files_redacted", json_integer((json_int_t)rep->files_redacted));
    json_object_set_new(o, "files_blocked", json_integer((json_int_t)rep->files_blocked));
    json_t *red = json_object();
    for (int r = 0; r < safety_rule_count(); r++)
        if (rep->counts[r])
            json_object_set_new(red, safety_rules()[r].id,
                                json_integer((json_int_t)rep->counts[r]));
    json_object_set_new(o, "redactions", red);
    json_object_set_new(o, "total", json_integer((json_int_t)rep->total));
    json_t *blocked = json_array();
    for (size_t i = 0; i < rep->n_blocked; i++) {
        const char *tab = strrchr(rep->blocked_paths[i], '\t');
        json_t *b = json_object();
        json_object_set_new(
            b, "path", json_stringn(rep->blocked_paths[i], (size_t)(tab - rep->blocked_paths[i])));
        json_object_set_new(b, "rule", json_string(tab + 1));
        json_array_append_new(blocked, b);
    }
    json_object_set_new(o, "blocked", blocked);
    return o;
}

void safety_report_free(safety_report_t *rep) {
    if (!rep) return;
    for (size_t i = 0; i < rep->n_blocked; i++) free(rep->blocked_paths[i]);
    free(rep->blocked_paths);
    free(rep->counts);
    memset(rep, 0, sizeof *rep);
}
