/*
 * The knowledge index: a SQLite database with an FTS5 table of text chunks
 * (about 40 lines each) from configured source trees (docs, code) and from
 * the runs directory (job configs, events, evaluation samples), ranked by
 * BM25. Identifiers are tokenised the way code is read: `parseHttpHeader`
 * and `parse_http_header` are indexed whole and as `parse`, `http`,
 * `header` (kb_tok.c), so a search for either finds both.
 *
 * Refreshes are incremental: a file whose size and mtime are unchanged is
 * skipped, one whose SHA-256 is unchanged only gets its mtime updated, and
 * files gone from the sources are removed. Every text passes the safety
 * redactor before it is stored: secrets become <REDACTED:rule> and a file
 * the policy blocks is not indexed at all.
 *
 * One ita_kb_t is one database connection: use it from one thread.
 */
#ifndef CU_ITA_KB_H
#define CU_ITA_KB_H

#include <jansson.h>
#include <stddef.h>

#include "core/error.h"
#include "safety/safety.h"

#define ITA_KB_MAX_SOURCES 32

typedef struct ita_kb ita_kb_t;

/* A source tree: every regular text file beneath path (hidden folders,
 * build*, node_modules skipped; binary and >2 MiB files skipped). kind is
 * "doc" for .md/.txt/.rst files and "code" otherwise, unless forced. */
typedef struct {
    const char *path;
    const char *kind; /* NULL: by file name */
} ita_kb_source_t;

typedef struct {
    size_t files_seen, files_indexed, files_unchanged, files_removed, files_blocked;
    size_t chunks, bytes, redactions;
} ita_kb_stats_t;

typedef struct {
    const char *query;
    int top_k;                /* 1..100 */
    const char *const *kinds; /* NULL: every kind */
    size_t n_kinds;
    const char *const *paths; /* source prefixes to keep; NULL: all */
    size_t n_paths;
} ita_kb_query_t;

/* Opens (creating when create is set) the index at db_path. Allocates;
 * ita_kb_close. A missing index without create is ITA_KB_ENOINDEX. */
#define ITA_KB_ENOINDEX 101
int ita_kb_open(const char *db_path, int create, ita_kb_t **out, cu_error_t *err);
void ita_kb_close(ita_kb_t *kb);

/* Refreshes the index from the sources and (when runs_dir is not NULL) the
 * runs directory; eng redacts every text first. */
int ita_kb_refresh(ita_kb_t *kb, const ita_kb_source_t *src, size_t n_src, const char *runs_dir,
                   const safety_engine_t *eng, ita_kb_stats_t *st, cu_error_t *err);

/* Ranked results as a JSON array of {source, kind, title, line_start,
 * line_end, snippet (matches between « and »), score}. New reference. */
int ita_kb_search(ita_kb_t *kb, const ita_kb_query_t *q, json_t **results, cu_error_t *err);

/* The connection (for kb_search.c). */
typedef struct sqlite3 sqlite3;
sqlite3 *ita_kb_db(ita_kb_t *kb);

/* When the last refresh committed (RFC 3339), "" when never. */
void ita_kb_indexed_at(ita_kb_t *kb, char *out, size_t cap);

/* A search request {query, top_k, kinds, paths} (the body of POST
 * /v1/kb/search and the MCP tool's arguments) against the index at db_path:
 * *answer = {query, results, indexed_at}. CU_EINVAL names the bad field;
 * ITA_KB_ENOINDEX when there is no index yet. */
int ita_kb_search_request(const char *db_path, json_t *req, json_t **answer, cu_error_t *err);

/* Registers the code-aware tokenizer "codeid" on a connection (kb_tok.c). */
int ita_kb_register_tokenizer(sqlite3 *db, cu_error_t *err);

/* The words of the identifier s[start..end) (kb_tok.c): bounds[2k],
 * bounds[2k+1] are the k-th word's offsets. Returns the count (<= max). */
#define ITA_KB_PARTS_MAX 32
int ita_kb_split_ident(const char *s, int start, int end, int *bounds, int max);

/* Splits "a b c" (space or comma separated, relative to base when not
 * absolute) into sources; the strings live in buf. Returns the count or -1
 * when there are too many or buf is too small. */
int ita_kb_parse_sources(const char *list, const char *base, char *buf, size_t cap,
                         ita_kb_source_t *out, size_t max);

#endif
