/*
 * Searching the knowledge index (kb.h), and POST /v1/kb/search.
 *
 * A query is free text: its words (tokenised like the index) become an
 * FTS5 OR of quoted terms, so no FTS5 operator a user types can change the
 * query's meaning or fail to parse, and BM25 ranks chunks that match more
 * (and rarer) terms first. Titles weigh twice the body. Kind and path
 * filters are applied in SQL before the limit. The route's query runs in
 * the worker pool (pool.h): the index may be of any size.
 */
#include <ctype.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "ita/http.h"
#include "ita/kb.h"

#define QUERY_TERMS_MAX 32

static int word_byte(char c) {
    return isalnum((unsigned char)c) || c == '_' || (unsigned char)c >= 0x80;
}

/* One query word as FTS5: "w", or ("w" OR ("p1" AND "p2" ...)) for an
 * identifier of several words. Returns the bytes written, 0 when full. */
static size_t fts_word(const char *w, int len, char *out, size_t cap) {
    int b[2 * ITA_KB_PARTS_MAX];
    int parts = ita_kb_split_ident(w, 0, len, b, ITA_KB_PARTS_MAX);
    size_t o = 0;
    int n = snprintf(out, cap, parts > 1 ? "(\"%.*s\" OR (" : "\"%.*s\"", len, w);
    if (n < 0 || (size_t)n >= cap) return 0;
    o = (size_t)n;
    for (int k = 0; parts > 1 && k < parts; k++) {
        n = snprintf(out + o, cap - o, "%s\"%.*s\"", k ? " AND " : "", b[2 * k + 1] - b[2 * k],
                     w + b[2 * k]);
        if (n < 0 || (size_t)n >= cap - o) return 0;
        o += (size_t)n;
    }
    if (parts > 1) {
        if (o + 3 > cap) return 0;
        memcpy(out + o, "))", 3);
        o += 2;
    }
    return o;
}

/* The words of q as an FTS5 OR of quoted terms in out; the count. */
static int fts_query(const char *q, char *out, size_t cap) {
    size_t o = 0;
    int n = 0;
    out[0] = 0;
    for (const char *p = q; *p && n < QUERY_TERMS_MAX;) {
        while (*p && !word_byte(*p)) p++;
        const char *s = p;
        while (*p && word_byte(*p)) p++;
        if (p == s) break;
        if (n && o + 5 < cap) memcpy(out + o, " OR ", 5), o += 4;
        size_t w = fts_word(s, (int)(p - s), out + o, cap - o);
        if (!w) break;
        o += w;
        n++;
    }
    out[o] = 0;
    return n;
}

static void append_in(char *sql, size_t cap, const char *col, size_t n, int *param) {
    size_t o = strlen(sql);
    o += (size_t)snprintf(sql + o, cap - o, " AND %s IN (", col);
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(sql + o, cap - o, "%s?%d", i ? "," : "", (*param)++);
    snprintf(sql + o, cap - o, ")");
}

static void append_prefixes(char *sql, size_t cap, size_t n, int *param) {
    size_t o = strlen(sql);
    o += (size_t)snprintf(sql + o, cap - o, " AND (");
    for (size_t i = 0; i < n; i++, (*param)++)
        o += (size_t)snprintf(sql + o, cap - o, "%ssubstr(source, 1, length(?%d)) = ?%d",
                              i ? " OR " : "", *param, *param);
    snprintf(sql + o, cap - o, ")");
}

int ita_kb_search(ita_kb_t *kb, const ita_kb_query_t *q, json_t **results, cu_error_t *err) {
    *results = NULL;
    char match[4096];
    if (fts_query(q->query, match, sizeof match) == 0)
        return cu_error_set(err, CU_EINVAL, "query: no word to search for");
    char sql[4096];
    snprintf(sql, sizeof sql,
             "SELECT source, kind, title, line_start, line_end,"
             " snippet(chunks, 0, '\xc2\xab', '\xc2\xbb', '\xe2\x80\xa6', 24),"
             " bm25(chunks, 1.0, 2.0) FROM chunks WHERE chunks MATCH ?1");
    int param = 2;
    if (q->n_kinds) append_in(sql, sizeof sql, "kind", q->n_kinds, &param);
    if (q->n_paths) append_prefixes(sql, sizeof sql, q->n_paths, &param);
    size_t o = strlen(sql);
    snprintf(sql + o, sizeof sql - o, " ORDER BY rank LIMIT %d", q->top_k);
    sqlite3 *db = ita_kb_db(kb);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL))
        return cu_error_set(err, CU_EIO, "knowledge index: %s", sqlite3_errmsg(db));
    sqlite3_bind_text(st, 1, match, -1, SQLITE_STATIC);
    param = 2;
    for (size_t i = 0; i < q->n_kinds; i++)
        sqlite3_bind_text(st, param++, q->kinds[i], -1, SQLITE_STATIC);
    for (size_t i = 0; i < q->n_paths; i++)
        sqlite3_bind_text(st, param++, q->paths[i], -1, SQLITE_STATIC);
    json_t *arr = json_array();
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        json_array_append_new(arr, json_pack("{s:s, s:s, s:s, s:i, s:i, s:s, s:f}", "source",
                                             (const char *)sqlite3_column_text(st, 0), "kind",
                                             (const char *)sqlite3_column_text(st, 1), "title",
                                             (const char *)sqlite3_column_text(st, 2), "line_start",
                                             sqlite3_column_int(st, 3), "line_end",
                                             sqlite3_column_int(st, 4), "snippet",
                                             (const char *)sqlite3_column_text(st, 5), "score",
                                             -sqlite3_column_double(st, 6)));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        json_decref(arr);
        return cu_error_set(err, CU_EIO, "knowledge index: %s", sqlite3_errmsg(db));
    }
    *results = arr;
    return CU_OK;
}

/* ---- the request shape shared by POST /v1/kb/search and the MCP tool ---- */

static int string_list(json_t *v, const char **out, size_t max, size_t *n) {
    *n = 0;
    if (!v) return 0;
    if (!json_is_array(v) || json_array_size(v) > max) return -1;
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_string(e)) return -1;
        out[(*n)++] = json_string_value(e);
    }
    return 0;
}

int ita_kb_search_request(const char *db_path, json_t *req, json_t **answer, cu_error_t *err) {
    *answer = NULL;
    const char *kinds[8], *paths[16];
    ita_kb_query_t q = {.top_k = 10, .kinds = kinds, .paths = paths};
    json_t *query = json_object_get(req, "query"), *top = json_object_get(req, "top_k");
    const char *key;
    json_t *v;
    json_object_foreach(req, key, v) {
        if (strcmp(key, "query") && strcmp(key, "top_k") && strcmp(key, "kinds") &&
            strcmp(key, "paths"))
            return cu_error_set(err, CU_EINVAL, "unknown field '%s' (query, top_k, kinds, paths)",
                                key);
    }
    if (!json_is_string(query) || !json_string_length(query) || json_string_length(query) > 1000)
        return cu_error_set(err, CU_EINVAL, "query: a string of 1-1000 bytes");
    q.query = json_string_value(query);
    if (top &&
        (!json_is_integer(top) || json_integer_value(top) < 1 || json_integer_value(top) > 100))
        return cu_error_set(err, CU_EINVAL, "top_k: an integer in [1, 100]");
    if (top) q.top_k = (int)json_integer_value(top);
    if (string_list(json_object_get(req, "kinds"), kinds, 8, &q.n_kinds))
        return cu_error_set(err, CU_EINVAL,
                            "kinds: a list of at most 8 of doc, code, config, "
                            "events, eval");
    if (string_list(json_object_get(req, "paths"), paths, 16, &q.n_paths))
        return cu_error_set(err, CU_EINVAL, "paths: a list of at most 16 path prefixes");
    ita_kb_t *kb = NULL;
    int rc = ita_kb_open(db_path, 0, &kb, err);
    json_t *results = NULL;
    if (!rc) rc = ita_kb_search(kb, &q, &results, err);
    char at[64] = "";
    if (!rc) ita_kb_indexed_at(kb, at, sizeof at);
    ita_kb_close(kb);
    if (rc) return rc;
    *answer = json_pack("{s:s, s:o, s:o}", "query", q.query, "results", results, "indexed_at",
                        at[0] ? json_string(at) : json_null());
    return *answer ? CU_OK : cu_error_set(err, CU_ENOMEM, "out of memory");
}

typedef struct {
    ita_server_t *srv;
    size_t len;
    char body[]; /* len bytes */
} kb_in_t;

/* On a pool thread: an FTS5 query over an index of any size. */
static void kb_search_run(ita_pool_job_t *j, ita_pool_thread_t *t) {
    (void)t;
    kb_in_t *in = j->in;
    json_error_t je;
    json_t *req = json_loadb(in->body, in->len, 0, &je);
    if (!json_is_object(req)) {
        json_decref(req);
        j->status = 400;
        snprintf(j->detail, sizeof j->detail,
                 "the body is a JSON object {\"query\": TEXT, \"top_k\": N}");
        return;
    }
    cu_error_t err = {0};
    int rc = ita_kb_search_request(in->srv->cfg.kb_db, req, &j->out, &err);
    json_decref(req);
    j->status = rc == CU_OK ? 200 : rc == CU_EINVAL ? 400 : rc == ITA_KB_ENOINDEX ? 503 : 500;
    if (j->status == 500) ita_log(in->srv, "kb search: %s", err.msg);
    snprintf(j->detail, sizeof j->detail, "%s",
             j->status == 500 ? "the knowledge index could not be searched" : err.msg);
}

void ita_route_kb_search(ita_req_t *rq) {
    if (!rq->w->srv->cfg.kb_db[0]) {
        ita_problem(rq, 503, "no knowledge index is configured (kb.db in ita.yaml)");
        return;
    }
    const char *body = rq->req->entity.base;
    size_t len = body ? rq->req->entity.len : 0;
    ita_pool_job_t *j = ita_offload_job(rq, sizeof(kb_in_t), offsetof(kb_in_t, body), body, len);
    if (!j) return;
    kb_in_t *in = j->in;
    in->srv = rq->w->srv;
    in->len = len;
    j->run = kb_search_run;
    ita_offload(rq, j); /* 503 with Retry-After when the pool is full */
}
