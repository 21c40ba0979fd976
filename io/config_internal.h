/*
 * Private to io/config*.c: the schema table's row type and the helpers the
 * config files share. The table itself lives in config.c; config_value.c turns
 * YAML scalars into typed fields and checks them, config_parse.c walks the
 * YAML document and the command-line overrides, config_validate.c holds the
 * cross-field checks and config_emit.c writes YAML and Markdown.
 */
#ifndef CU_IO_CONFIG_INTERNAL_H
#define CU_IO_CONFIG_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include "core/error.h"
#include "io/config.h"

typedef enum {
    CFG_INT,    /* int field */
    CFG_LONG,   /* long field */
    CFG_FLOAT,  /* float field */
    CFG_BOOL,   /* int field holding 0 or 1 */
    CFG_STRING, /* char[CU_CFG_STR] */
    CFG_ENUM,   /* char[CU_CFG_STR] holding one of `allowed` */
    CFG_LIST,   /* cu_cfg_list_t of strings, each one of `allowed` if set */
} cfg_type_t;

enum {
    CFG_MIN_EXCL = 1u << 0,  /* the value must be > min (not >=) */
    CFG_MAX_EXCL = 1u << 1,  /* the value must be < max (not <=) */
    CFG_NONEMPTY = 1u << 2,  /* a string must not be "" */
    CFG_UNIQUE = 1u << 3,    /* a list must not name an entry twice */
    CFG_MULTILINE = 1u << 4, /* strings may hold newlines and tabs */
};

/* An extra check on a string value or list entry: returns 0 when s is fine,
 * else 1 with a short reason in why ("must look like HH:MM:SS"). */
typedef int (*cfg_check_fn)(const char *s, char *why, size_t cap);

typedef struct {
    cfg_check_fn check;
    const char *doc; /* what the check demands, for docs/config.md */
} cfg_format_t;

typedef struct {
    const char *key; /* dotted path: "train.lr" */
    cfg_type_t type;
    size_t offset, size; /* where the field lies in cu_config_t */
    const char *def;     /* default in override syntax; lists comma-separated */
    double min, max;     /* numbers: range; -HUGE_VAL/HUGE_VAL when open */
    unsigned flags;
    const char *allowed;        /* enums and lists: "a|b|c"; NULL = anything */
    const cfg_format_t *format; /* strings and list entries; NULL = any text */
    const char *meaning;        /* one line for the docs */
} cfg_key_t;

typedef struct {
    const char *name;
    const char *meaning;
} cfg_section_t;

/* Where a value came from. origin NULL means the command line; line 0 means
 * no position is known (a struct filled in code). */
typedef struct {
    const char *origin;
    int line, col; /* 1-based */
} cfg_where_t;

/* A scalar as the YAML reader saw it. `plain` scalars may be null ("", "~",
 * "null"); quoted ones are always text. */
typedef struct {
    const char *text;
    size_t len;
    int plain;
    cfg_where_t where;
} cfg_scalar_t;

/* ---- config.c: the schema ---- */
#define CFG_MAX_KEYS 256 /* the parser keeps one "seen at" per key */
#define CFG_MAX_SECTIONS 32
const cfg_key_t *cfg_keys(int *n);
const cfg_section_t *cfg_sections(int *n);
const cfg_key_t *cfg_find_key(const char *dotted);
const cfg_key_t *cfg_find_key_n(const char *dotted, size_t len);
const cfg_section_t *cfg_find_section(const char *name, size_t len);
/* Length of the section part of k->key ("train" in "train.lr"). */
size_t cfg_section_len(const cfg_key_t *k);
/* Fills hint with "; did you mean 'train.lr'?" (or "" when nothing is close)
 * for an unknown dotted key or top-level name. */
void cfg_suggest_key(const char *dotted, char *hint, size_t cap);
/* The same for a value that should have been one of "a|b|c". */
void cfg_suggest_word(const char *word, const char *allowed, char *hint, size_t cap);
/* "cosine, linear, constant" from "cosine|linear|constant". */
void cfg_allowed_text(const char *allowed, const char *quote, char *out, size_t cap);
int cfg_edit_distance(const char *a, size_t la, const char *b, size_t lb);

/* ---- config_value.c: scalars in, checks, text out ---- */
/* " at job.yaml:3:7", " on the command line" or "" (no position). */
void cfg_where_text(const cfg_where_t *w, char *out, size_t cap);
int cfg_is_null(const cfg_scalar_t *s);
/* Assigns a scalar to a non-list key, or a one-entry list to a list key. */
int cfg_assign_scalar(cu_config_t *cfg, const cfg_key_t *k, const cfg_scalar_t *s, cu_error_t *err);
/* For list keys: empties the list, then appends entries one by one. */
void cfg_list_clear(cu_config_t *cfg, const cfg_key_t *k);
int cfg_list_append(cu_config_t *cfg, const cfg_key_t *k, const cfg_scalar_t *s, cu_error_t *err);
/* Assigns "a, b, c" (entries split at commas and trimmed) to a list key. */
int cfg_assign_csv(cu_config_t *cfg, const cfg_key_t *k, const cfg_scalar_t *s, cu_error_t *err);
/* Checks the value k holds in cfg against k's type, range and format. */
int cfg_check_value(const cu_config_t *cfg, const cfg_key_t *k, cu_error_t *err);
/* "> 0", ">= 1", "in [0, 1)" or "" for a key's numeric range. */
void cfg_range_text(const cfg_key_t *k, char *out, size_t cap);

/* ---- config_emit.c: a growable string ---- */
typedef struct {
    char *buf;
    size_t len, cap;
    int failed; /* an allocation failed; buf is unusable */
} cfg_sb_t;

void cfg_sb_printf(cfg_sb_t *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cfg_sb_append(cfg_sb_t *sb, const char *s, size_t n);
/* Returns buf (the caller frees it) or NULL after a failed allocation. */
char *cfg_sb_take(cfg_sb_t *sb);
/* Appends k's value in cfg as YAML text, quoted where it has to be: what
 * config_to_yaml writes and the YAML reader turns back into the same value. */
void cfg_sb_value(cfg_sb_t *sb, const cu_config_t *cfg, const cfg_key_t *k);

#endif
