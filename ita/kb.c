/*
 * The knowledge index (kb.h): schema, refresh and search.
 *
 *   files(id, path UNIQUE, kind, size, mtime_ns, sha256, gen)
 *   chunks: FTS5(body, title, source UNINDEXED, kind UNINDEXED,
 *                line_start UNINDEXED, line_end UNINDEXED; tokenize codeid)
 *
 * A file's chunks have rowids id * CHUNK_SPAN + n, so replacing or removing
 * a file is one rowid-range delete. A refresh stamps every file it sees
 * with a new generation; rows left with an older one were deleted from the
 * sources and are removed with their chunks. The whole refresh is one
 * transaction: a reader sees the old index or the new one.
 */
#include "ita/kb.h"

#include <dirent.h>
#include <errno.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fileio.h"
#include "safety/redact.h"

#define CHUNK_LINES 40
#define CHUNK_SPAN 1000000LL
#define FILE_MAX (2 << 20)
#define PATH_CAP 4096

struct ita_kb {
    sqlite3 *db;
    int64_t gen;
};

static const char SCHEMA[] =
    "PRAGMA journal_mode=WAL;"
    "CREATE TABLE IF NOT EXISTS files(id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL,"
    " kind TEXT NOT NULL, size INTEGER, mtime_ns INTEGER, sha256 TEXT, gen INTEGER);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS chunks USING fts5(body, title, source UNINDEXED,"
    " kind UNINDEXED, line_start UNINDEXED, line_end UNINDEXED, tokenize='codeid');"
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT);";

static int db_error(sqlite3 *db, cu_error_t *err, const char *what) {
    return cu_error_set(err, CU_EIO, "knowledge index: %s: %s", what, sqlite3_errmsg(db));
}

int ita_kb_open(const char *db_path, int create, ita_kb_t **out, cu_error_t *err) {
    *out = NULL;
    struct stat st;
    if (!create && stat(db_path, &st) != 0)
        return cu_error_set(err, ITA_KB_ENOINDEX,
                            "no knowledge index at %s (build it with `codexctl kb index`)",
                            db_path);
    ita_kb_t *kb = calloc(1, sizeof *kb);
    if (!kb) return cu_error_set(err, CU_ENOMEM, "out of memory");
    int flags = create ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE : SQLITE_OPEN_READWRITE;
    int rc = CU_OK;
    if (sqlite3_open_v2(db_path, &kb->db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
        rc = cu_error_set(err, CU_EIO, "knowledge index %s: %s", db_path,
                          kb->db ? sqlite3_errmsg(kb->db) : "cannot open");
    if (!rc) sqlite3_busy_timeout(kb->db, 10000);
    if (!rc) rc = ita_kb_register_tokenizer(kb->db, err);
    if (!rc && sqlite3_exec(kb->db, SCHEMA, NULL, NULL, NULL) != SQLITE_OK)
        rc = db_error(kb->db, err, db_path);
    if (rc) {
        ita_kb_close(kb);
        return rc;
    }
    *out = kb;
    return CU_OK;
}

void ita_kb_close(ita_kb_t *kb) {
    if (!kb) return;
    sqlite3_close(kb->db);
    free(kb);
}

sqlite3 *ita_kb_db(ita_kb_t *kb) {
    return kb->db;
}

void ita_kb_indexed_at(ita_kb_t *kb, char *out, size_t cap) {
    sqlite3_stmt *st = NULL;
    out[0] = 0;
    if (sqlite3_prepare_v2(kb->db, "SELECT v FROM meta WHERE k = 'indexed_at'", -1, &st, NULL))
        return;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
}

/* ---- sources ---- */

int ita_kb_parse_sources(const char *list, const char *base, char *buf, size_t cap,
                         ita_kb_source_t *out, size_t max) {
    size_t n = 0, used = 0;
    const char *p = list;
    while (*p) {
        p += strspn(p, " ,\t");
        size_t len = strcspn(p, " ,\t");
        if (!len) break;
        if (n == max) return -1;
        const char *prefix = p[0] == '/' ? "" : base;
        int w = snprintf(buf + used, cap - used, "%s%.*s", prefix, (int)len, p);
        if (w < 0 || (size_t)w >= cap - used) return -1;
        out[n].path = buf + used;
        out[n].kind = NULL;
        used += (size_t)w + 1;
        n++;
        p += len;
    }
    return (int)n;
}

static const char *kind_of(const char *path) {
    const char *dot = strrchr(path, '.');
    if (dot && (!strcmp(dot, ".md") || !strcmp(dot, ".txt") || !strcmp(dot, ".rst"))) return "doc";
    return "code";
}

static void sha256_hex(const char *data, size_t len, char out[65]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* ---- indexing one text ---- */

typedef struct {
    ita_kb_t *kb;
    const safety_engine_t *eng;
    ita_kb_stats_t *st;
    sqlite3_stmt *find, *touch, *insert_file, *update_file, *del_chunks, *add_chunk;
    cu_error_t *err;
} refresh_t;

static int64_t file_row(refresh_t *r, const char *path, int64_t *size, int64_t *mtime,
                        char sha[65]) {
    sqlite3_reset(r->find);
    sqlite3_bind_text(r->find, 1, path, -1, SQLITE_STATIC);
    if (sqlite3_step(r->find) != SQLITE_ROW) return 0;
    *size = sqlite3_column_int64(r->find, 1);
    *mtime = sqlite3_column_int64(r->find, 2);
    const unsigned char *h = sqlite3_column_text(r->find, 3);
    snprintf(sha, 65, "%s", h ? (const char *)h : "");
    return sqlite3_column_int64(r->find, 0);
}

static int step_done(refresh_t *r, sqlite3_stmt *st, const char *what) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? CU_OK : db_error(r->kb->db, r->err, what);
}

/* The title of a chunk: the file's base name, and for a Markdown file the
 * nearest heading at or above the chunk's first line. */
static void chunk_title(const char *path, const char *heading, char *out, size_t cap) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (heading && heading[0])
        snprintf(out, cap, "%s: %s", base, heading);
    else
        snprintf(out, cap, "%s", base);
}

static int add_chunks(refresh_t *r, int64_t id, const char *path, const char *kind,
                      const char *text, size_t len) {
    size_t pos = 0;
    int line = 1;
    int64_t n = 0;
    char heading[160] = "", title[512];
    int md = !strcmp(kind, "doc");
    while (pos < len && n < CHUNK_SPAN) {
        size_t start = pos;
        int first = line;
        chunk_title(path, md ? heading : NULL, title, sizeof title);
        for (int k = 0; k < CHUNK_LINES && pos < len; k++) {
            const char *nl = memchr(text + pos, '\n', len - pos);
            size_t end = nl ? (size_t)(nl - text) + 1 : len;
            if (md && text[pos] == '#') {
                size_t h = pos + strspn(text + pos, "# ");
                size_t hl = end - h - (nl ? 1 : 0);
                snprintf(heading, sizeof heading, "%.*s", (int)(hl < 159 ? hl : 159), text + h);
                if (k == 0) chunk_title(path, heading, title, sizeof title);
            }
            pos = end;
            line++;
        }
        sqlite3_stmt *a = r->add_chunk;
        sqlite3_bind_int64(a, 1, id * CHUNK_SPAN + n);
        sqlite3_bind_text(a, 2, text + start, (int)(pos - start), SQLITE_STATIC);
        sqlite3_bind_text(a, 3, title, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(a, 4, path, -1, SQLITE_STATIC);
        sqlite3_bind_text(a, 5, kind, -1, SQLITE_STATIC);
        sqlite3_bind_int(a, 6, first);
        sqlite3_bind_int(a, 7, line - 1 > first ? line - 1 : first);
        if (step_done(r, a, "adding a chunk")) return CU_EIO;
        n++;
        r->st->chunks++;
    }
    return CU_OK;
}

static int delete_chunks(refresh_t *r, int64_t id) {
    sqlite3_bind_int64(r->del_chunks, 1, id * CHUNK_SPAN);
    sqlite3_bind_int64(r->del_chunks, 2, id * CHUNK_SPAN + CHUNK_SPAN - 1);
    return step_done(r, r->del_chunks, "removing chunks");
}

/* Indexes text (already read) as path unless its row says it is the same
 * file. The text is redacted first; a blocked file is recorded with no
 * chunks, so it is not re-read until it changes. */
static int index_text(refresh_t *r, const char *path, const char *kind, const char *text,
                      size_t len, int64_t size, int64_t mtime) {
    int64_t osize = -1, omtime = -1;
    char osha[65] = "", sha[65];
    int64_t id = file_row(r, path, &osize, &omtime, osha);
    r->st->files_seen++;
    if (id && osize == size && omtime == mtime) {
        r->st->files_unchanged++;
        sqlite3_bind_int64(r->touch, 1, r->kb->gen);
        sqlite3_bind_int64(r->touch, 2, mtime);
        sqlite3_bind_int64(r->touch, 3, id);
        return step_done(r, r->touch, "marking a file seen");
    }
    sha256_hex(text, len, sha);
    if (id && !strcmp(sha, osha)) {
        r->st->files_unchanged++;
        sqlite3_bind_int64(r->touch, 1, r->kb->gen);
        sqlite3_bind_int64(r->touch, 2, mtime);
        sqlite3_bind_int64(r->touch, 3, id);
        return step_done(r, r->touch, "marking a file seen");
    }
    safety_redact_result_t red;
    cu_error_t e2;
    if (safety_redact(r->eng, SAFETY_STAGE_DATA, path, text, len, &red, &e2))
        return cu_error_set(r->err, e2.code, "%s: %s", path, e2.msg);
    sqlite3_stmt *f = id ? r->update_file : r->insert_file;
    sqlite3_bind_text(f, 1, kind, -1, SQLITE_STATIC);
    sqlite3_bind_int64(f, 2, size);
    sqlite3_bind_int64(f, 3, mtime);
    sqlite3_bind_text(f, 4, sha, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(f, 5, r->kb->gen);
    sqlite3_bind_text(f, 6, path, -1, SQLITE_STATIC);
    int rc = step_done(r, f, "recording a file");
    if (!rc && !id) id = sqlite3_last_insert_rowid(r->kb->db);
    if (!rc) rc = delete_chunks(r, id);
    r->st->redactions += red.total;
    if (!rc && red.blocked)
        r->st->files_blocked++;
    else if (!rc) {
        rc = add_chunks(r, id, path, kind, red.text, red.len);
        r->st->files_indexed++;
        r->st->bytes += len;
    }
    safety_redact_result_free(&red);
    return rc;
}

static int is_text(const char *buf, size_t len) {
    return memchr(buf, 0, len < 8192 ? len : 8192) == NULL;
}

static int index_file(refresh_t *r, const char *path, const char *kind, const struct stat *st) {
    if (st->st_size > FILE_MAX || st->st_size == 0) return CU_OK;
    uint8_t *buf = NULL;
    size_t len = 0;
    cu_error_t e2;
    if (cu_read_file(path, FILE_MAX, &buf, &len, &e2)) return CU_OK; /* unreadable: skipped */
    int rc = CU_OK;
    if (is_text((const char *)buf, len))
        rc = index_text(r, path, kind ? kind : kind_of(path), (const char *)buf, len,
                        (int64_t)st->st_size,
                        (int64_t)st->st_mtim.tv_sec * 1000000000LL + st->st_mtim.tv_nsec);
    free(buf);
    return rc;
}

static int skip_dir(const char *name) {
    return name[0] == '.' || !strcmp(name, "node_modules") || !strncmp(name, "build", 5) ||
           !strcmp(name, "__pycache__") || !strcmp(name, "checkpoints");
}

static int walk(refresh_t *r, const char *dir, const char *kind, int depth) {
    DIR *d = opendir(dir);
    if (!d) return CU_OK;
    struct dirent *de;
    int rc = CU_OK;
    while (!rc && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
        char path[PATH_CAP];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, de->d_name) >= sizeof path) continue;
        struct stat st;
        if (lstat(path, &st)) continue;
        if (S_ISDIR(st.st_mode) && depth < 32 && !skip_dir(de->d_name))
            rc = walk(r, path, kind, depth + 1);
        else if (S_ISREG(st.st_mode))
            rc = index_file(r, path, kind, &st);
    }
    closedir(d);
    return rc;
}

/* A run: its configs and its events; sample and eval events also as
 * "eval" texts of their own, so a search can ask for them alone. */
static int index_run(refresh_t *r, const char *runs_dir, const char *job) {
    static const struct {
        const char *file, *kind;
    } FILES[] = {{"job.yaml", "config"}, {"submit.yaml", "config"}, {"events.jsonl", "events"}};
    int rc = CU_OK;
    for (size_t i = 0; !rc && i < sizeof FILES / sizeof FILES[0]; i++) {
        char path[PATH_CAP];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s/%s", runs_dir, job, FILES[i].file);
        if (stat(path, &st) || !S_ISREG(st.st_mode)) continue;
        rc = index_file(r, path, FILES[i].kind, &st);
        if (rc || strcmp(FILES[i].kind, "events")) continue;
        /* the evaluation samples, filtered out of events.jsonl */
        uint8_t *buf = NULL;
        size_t len = 0;
        cu_error_t e2;
        if (st.st_size > FILE_MAX || cu_read_file(path, FILE_MAX, &buf, &len, &e2)) continue;
        char *out = malloc(len + 1);
        size_t o = 0;
        for (size_t p = 0; out && p < len;) {
            const char *nl = memchr(buf + p, '\n', len - p);
            size_t end = nl ? (size_t)((const uint8_t *)nl - buf) + 1 : len;
            char *line = (char *)buf + p;
            if (memmem(line, end - p, "\"type\": \"sample\"", 16) ||
                memmem(line, end - p, "\"type\":\"sample\"", 15) ||
                memmem(line, end - p, "\"type\": \"eval\"", 14) ||
                memmem(line, end - p, "\"type\":\"eval\"", 13)) {
                memcpy(out + o, line, end - p);
                o += end - p;
            }
            p = end;
        }
        char epath[PATH_CAP + 16];
        snprintf(epath, sizeof epath, "%s#eval", path);
        if (out && o)
            rc = index_text(r, epath, "eval", out, o, (int64_t)st.st_size,
                            (int64_t)st.st_mtim.tv_sec * 1000000000LL + st.st_mtim.tv_nsec);
        free(out);
        free(buf);
    }
    return rc;
}

static int walk_runs(refresh_t *r, const char *runs_dir) {
    DIR *d = opendir(runs_dir);
    if (!d) return CU_OK;
    struct dirent *de;
    int rc = CU_OK;
    while (!rc && (de = readdir(d)))
        if (de->d_name[0] != '.') rc = index_run(r, runs_dir, de->d_name);
    closedir(d);
    return rc;
}

static const char *STMTS[] = {
    "SELECT id, size, mtime_ns, sha256 FROM files WHERE path = ?1",
    "UPDATE files SET gen = ?1, mtime_ns = ?2 WHERE id = ?3",
    "INSERT INTO files(kind, size, mtime_ns, sha256, gen, path) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
    "UPDATE files SET kind = ?1, size = ?2, mtime_ns = ?3, sha256 = ?4, gen = ?5 WHERE path = ?6",
    "DELETE FROM chunks WHERE rowid BETWEEN ?1 AND ?2",
    "INSERT INTO chunks(rowid, body, title, source, kind, line_start, line_end)"
    " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
};

/* Removes the files the refresh did not see, with their chunks. */
static int remove_stale(refresh_t *r) {
    sqlite3_stmt *q = NULL;
    if (sqlite3_prepare_v2(r->kb->db, "SELECT id FROM files WHERE gen <> ?1", -1, &q, NULL))
        return db_error(r->kb->db, r->err, "finding removed files");
    sqlite3_bind_int64(q, 1, r->kb->gen);
    int rc = CU_OK;
    while (!rc && sqlite3_step(q) == SQLITE_ROW) {
        rc = delete_chunks(r, sqlite3_column_int64(q, 0));
        r->st->files_removed++;
    }
    sqlite3_finalize(q);
    if (!rc) {
        char sql[96];
        snprintf(sql, sizeof sql, "DELETE FROM files WHERE gen <> %lld", (long long)r->kb->gen);
        if (sqlite3_exec(r->kb->db, sql, NULL, NULL, NULL))
            rc = db_error(r->kb->db, r->err, "removing files");
    }
    return rc;
}

int ita_kb_refresh(ita_kb_t *kb, const ita_kb_source_t *src, size_t n_src, const char *runs_dir,
                   const safety_engine_t *eng, ita_kb_stats_t *st, cu_error_t *err) {
    memset(st, 0, sizeof *st);
    refresh_t r = {.kb = kb, .eng = eng, .st = st, .err = err};
    sqlite3_stmt **slots[] = {&r.find,        &r.touch,      &r.insert_file,
                              &r.update_file, &r.del_chunks, &r.add_chunk};
    if (sqlite3_exec(kb->db, "BEGIN IMMEDIATE", NULL, NULL, NULL))
        return db_error(kb->db, err, "starting a refresh");
    int rc = CU_OK;
    for (size_t i = 0; !rc && i < sizeof STMTS / sizeof STMTS[0]; i++)
        if (sqlite3_prepare_v2(kb->db, STMTS[i], -1, slots[i], NULL))
            rc = db_error(kb->db, err, "preparing");
    sqlite3_stmt *g = NULL;
    if (!rc &&
        !sqlite3_prepare_v2(kb->db, "SELECT coalesce(max(gen), 0) + 1 FROM files", -1, &g, NULL) &&
        sqlite3_step(g) == SQLITE_ROW)
        kb->gen = sqlite3_column_int64(g, 0);
    sqlite3_finalize(g);
    for (size_t i = 0; !rc && i < n_src; i++) {
        struct stat s;
        if (stat(src[i].path, &s))
            rc = cu_error_set(err, CU_EIO, "kb source %s: %s", src[i].path, strerror(errno));
        else if (S_ISDIR(s.st_mode))
            rc = walk(&r, src[i].path, src[i].kind, 0);
        else
            rc = index_file(&r, src[i].path, src[i].kind, &s);
    }
    if (!rc && runs_dir) rc = walk_runs(&r, runs_dir);
    if (!rc) rc = remove_stale(&r);
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) sqlite3_finalize(*slots[i]);
    if (!rc && sqlite3_exec(kb->db,
                            "INSERT OR REPLACE INTO meta VALUES('indexed_at',"
                            " strftime('%Y-%m-%dT%H:%M:%SZ','now')); COMMIT",
                            NULL, NULL, NULL))
        rc = db_error(kb->db, err, "committing");
    if (rc) sqlite3_exec(kb->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}
