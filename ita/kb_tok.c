/*
 * The "codeid" FTS5 tokenizer. A token is a run of letters, digits, '_' and
 * bytes >= 0x80 (UTF-8 text stays whole), folded to lower case. When
 * documents are indexed, an identifier made of several words
 * (getHTTPResponse, parse_http_header, Utf8Decoder2) is emitted whole and
 * then each word as a colocated token at the same position, so BM25 counts
 * both `parse_http_header` and `header`. Queries are tokenised without the
 * split (a word matches every identifier containing it); kb_search.c asks
 * for an identifier of a query whole OR as all of its words, so a part of
 * a longer identifier (`jobdir_open` in `ita_jobdir_open`) is found too.
 */
#include <ctype.h>
#include <sqlite3.h>
#include <string.h>

#include "ita/kb.h"

#define TOKEN_MAX 64

typedef int (*token_cb)(void *, int, const char *, int, int, int);

static int is_word_byte(unsigned char c) {
    return isalnum(c) || c == '_' || c >= 0x80;
}

static int emit(void *ctx, token_cb cb, int flags, const char *s, int start, int end) {
    char buf[TOKEN_MAX];
    int n = end - start;
    if (n <= 0) return SQLITE_OK;
    if (n > TOKEN_MAX) n = TOKEN_MAX;
    for (int i = 0; i < n; i++) buf[i] = (char)tolower((unsigned char)s[start + i]);
    return cb(ctx, flags, buf, n, start, end);
}

/* Where a new word starts inside an identifier: after '_', at a lower to
 * upper change, before the last capital of a capital run followed by a
 * lower case letter (HTTPResponse: HTTP|Response), at a letter/digit
 * change. */
static int word_break(const char *s, int i, int start) {
    unsigned char p = (unsigned char)s[i - 1], c = (unsigned char)s[i];
    if (i == start) return 0;
    if (islower(p) && isupper(c)) return 1;
    if (isupper(p) && isupper(c) && islower((unsigned char)s[i + 1])) return 1;
    if (isalpha(p) && isdigit(c)) return 1;
    if (isdigit(p) && isalpha(c)) return 1;
    return 0;
}

int ita_kb_split_ident(const char *s, int start, int end, int *bounds, int max) {
    int parts = 0, ws = -1;
    for (int i = start; i <= end && parts < max; i++) {
        int at_end = i == end, under = !at_end && s[i] == '_';
        if (ws >= 0 && (at_end || under || word_break(s, i, start))) {
            bounds[2 * parts] = ws;
            bounds[2 * parts + 1] = i;
            parts++;
            ws = -1;
        }
        if (!at_end && !under && ws < 0) ws = i;
    }
    return parts;
}

static int emit_parts(void *ctx, token_cb cb, const char *s, int start, int end) {
    int bounds[2 * ITA_KB_PARTS_MAX], rc = SQLITE_OK;
    int parts = ita_kb_split_ident(s, start, end, bounds, ITA_KB_PARTS_MAX);
    if (parts < 2) return SQLITE_OK;
    for (int k = 0; k < parts && rc == SQLITE_OK; k++)
        rc = emit(ctx, cb, FTS5_TOKEN_COLOCATED, s, bounds[2 * k], bounds[2 * k + 1]);
    return rc;
}

static int tok_tokenize(Fts5Tokenizer *t, void *ctx, int flags, const char *text, int len,
                        token_cb cb) {
    (void)t;
    int split = !(flags & FTS5_TOKENIZE_QUERY);
    int i = 0, rc = SQLITE_OK;
    while (i < len && rc == SQLITE_OK) {
        while (i < len && !is_word_byte((unsigned char)text[i])) i++;
        int start = i;
        while (i < len && is_word_byte((unsigned char)text[i])) i++;
        if (i == start) break;
        rc = emit(ctx, cb, 0, text, start, i);
        if (rc == SQLITE_OK && split) rc = emit_parts(ctx, cb, text, start, i);
    }
    return rc;
}

static int tok_create(void *ud, const char **argv, int argc, Fts5Tokenizer **out) {
    (void)argv, (void)argc;
    *out = ud; /* FTS5 needs a non-NULL handle; the tokenizer has no state */
    return SQLITE_OK;
}

static void tok_delete(Fts5Tokenizer *t) {
    (void)t;
}

static fts5_api *fts5_api_of(sqlite3 *db) {
    fts5_api *api = NULL;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT fts5(?1)", -1, &st, NULL) != SQLITE_OK) return NULL;
    sqlite3_bind_pointer(st, 1, (void *)&api, "fts5_api_ptr", NULL);
    sqlite3_step(st);
    sqlite3_finalize(st);
    return api;
}

int ita_kb_register_tokenizer(sqlite3 *db, cu_error_t *err) {
    fts5_api *api = fts5_api_of(db);
    if (!api) return cu_error_set(err, CU_EINTERNAL, "this SQLite has no FTS5");
    fts5_tokenizer tok = {tok_create, tok_delete, tok_tokenize};
    if (api->xCreateTokenizer(api, "codeid", api, &tok, NULL) != SQLITE_OK)
        return cu_error_set(err, CU_EINTERNAL, "cannot register the codeid tokenizer");
    return CU_OK;
}
