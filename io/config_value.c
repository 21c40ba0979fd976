/*
 * Values of the job configuration: from a YAML scalar (a file's or the
 * command line's) to a typed field of cu_config_t, the checks every value
 * passes, and the way back to YAML text that reads in as the same value.
 *
 * Syntax accepted, as docs/config.md states it:
 *  - numbers: decimal, as C and YAML write them (42, -3, 3e-4, .5, 1.0E-3),
 *    with '_' allowed between two digits (1_000_000). Integer keys also take
 *    a float spelling of a whole number (1e4). No hex, octal, inf or nan.
 *    A quoted number ("3e-4") reads like a plain one.
 *  - booleans: true/false, yes/no, on/off, 1/0, in any letter case.
 *  - null (an empty plain value, ~ or null) is "" for strings and [] for
 *    lists; for numbers, booleans and enums it is an error.
 *  - strings: UTF-8 without control characters (eval.prompts may hold line
 *    breaks and tabs), shorter than CU_CFG_STR bytes.
 *
 * Every error names the key, repeats the offending text and says where it
 * came from (" at job.yaml:12:7" or " on the command line").
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/config.h"
#include "io/config_internal.h"

#define SHOWN_MAX 60 /* bytes of an offending value repeated in a message */

static void *field(cu_config_t *cfg, const cfg_key_t *k) {
    return (char *)cfg + k->offset;
}

static const void *cfield(const cu_config_t *cfg, const cfg_key_t *k) {
    return (const char *)cfg + k->offset;
}

void cfg_where_text(const cfg_where_t *w, char *out, size_t cap) {
    if (!w->origin)
        snprintf(out, cap, " on the command line");
    else if (w->line > 0)
        snprintf(out, cap, " at %s:%d:%d", w->origin, w->line, w->col);
    else
        out[0] = '\0';
}

/* The value as a message repeats it: shortened, control characters as '?'. */
static void shown_text(const char *s, size_t len, char *out, size_t cap) {
    size_t n = len < SHOWN_MAX ? len : SHOWN_MAX;
    if (n + 4 > cap) n = cap - 4;
    for (size_t i = 0; i < n; i++) out[i] = (unsigned char)s[i] < 0x20 ? '?' : s[i];
    strcpy(out + n, n < len ? "..." : "");
}

static int word_is(const char *s, size_t len, const char *word) {
    return strlen(word) == len && !strncasecmp(s, word, len);
}

int cfg_is_null(const cfg_scalar_t *s) {
    if (!s->plain) return 0;
    return s->len == 0 || (s->len == 1 && s->text[0] == '~') ||
           (s->len == 4 && (!memcmp(s->text, "null", 4) || !memcmp(s->text, "Null", 4) ||
                            !memcmp(s->text, "NULL", 4)));
}

/* ---------------------------------------------------------------- numbers */

/* Copies a number's text to buf without the '_' that group digits; 0 when
 * the text holds anything but digits, signs, '.', 'e' and such '_'. The C
 * conversions then decide whether the characters form a number. */
static int number_text(const char *s, size_t len, char *buf, size_t cap) {
    if (len == 0 || len >= cap) return 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '_') {
            if (i == 0 || i + 1 == len || !isdigit((unsigned char)s[i - 1]) ||
                !isdigit((unsigned char)s[i + 1]))
                return 0;
            continue;
        }
        if (!isdigit(c) && c != '+' && c != '-' && c != '.' && c != 'e' && c != 'E') return 0;
        buf[n++] = (char)c;
    }
    buf[n] = '\0';
    return 1;
}

/* A whole number, written as an integer or as a float without a fraction.
 * *overflow is set when it does not fit a long. */
static int parse_integer(const char *num, long *out, int *overflow) {
    char *end;
    errno = 0;
    long v = strtol(num, &end, 10);
    if (end != num && *end == '\0') {
        *overflow = errno == ERANGE;
        *out = v;
        return 1;
    }
    double d = strtod(num, &end);
    if (end == num || *end != '\0' || d != floor(d)) return 0;
    *overflow = fabs(d) >= 9.2e18;
    *out = *overflow ? 0 : (long)d;
    return 1;
}

static int in_range(const cfg_key_t *k, double v) {
    int lo = (k->flags & CFG_MIN_EXCL) ? v > k->min : v >= k->min;
    int hi = (k->flags & CFG_MAX_EXCL) ? v < k->max : v <= k->max;
    return lo && hi;
}

static void bound_text(const cfg_key_t *k, double b, char *out, size_t cap) {
    if (k->type == CFG_FLOAT)
        snprintf(out, cap, "%g", b);
    else
        snprintf(out, cap, "%.0f", b);
}

void cfg_range_text(const cfg_key_t *k, char *out, size_t cap) {
    out[0] = '\0';
    if (k->type != CFG_INT && k->type != CFG_LONG && k->type != CFG_FLOAT) return;
    int has_lo = k->min > -HUGE_VAL, has_hi = k->max < HUGE_VAL;
    int lo_x = (k->flags & CFG_MIN_EXCL) != 0, hi_x = (k->flags & CFG_MAX_EXCL) != 0;
    char lo[40], hi[40];
    bound_text(k, k->min, lo, sizeof lo);
    bound_text(k, k->max, hi, sizeof hi);
    if (has_lo && has_hi)
        snprintf(out, cap, "in %c%s, %s%c", lo_x ? '(' : '[', lo, hi, hi_x ? ')' : ']');
    else if (has_lo)
        snprintf(out, cap, "%s %s", lo_x ? ">" : ">=", lo);
    else if (has_hi)
        snprintf(out, cap, "%s %s", hi_x ? "<" : "<=", hi);
}

static int check_number(const cfg_key_t *k, double v, const char *shown, const char *at,
                        cu_error_t *err) {
    if (in_range(k, v)) return CU_OK;
    char range[96];
    cfg_range_text(k, range, sizeof range);
    return cu_error_set(err, CU_EINVAL, "%s must be %s, got %s%s", k->key, range, shown, at);
}

static const char *type_phrase(cfg_type_t t) {
    if (t == CFG_FLOAT) return "a number";
    if (t == CFG_BOOL) return "true or false";
    return "an integer";
}

static int type_error(const cfg_key_t *k, const cfg_scalar_t *s, const char *shown, const char *at,
                      cu_error_t *err) {
    if (cfg_is_null(s))
        return cu_error_set(err, CU_EINVAL, "expected %s for %s, got an empty value%s",
                            type_phrase(k->type), k->key, at);
    return cu_error_set(err, CU_EINVAL, "expected %s for %s, got '%s'%s", type_phrase(k->type),
                        k->key, shown, at);
}

static int assign_integer(cu_config_t *cfg, const cfg_key_t *k, const cfg_scalar_t *s,
                          const char *shown, const char *at, cu_error_t *err) {
    char num[128];
    long v;
    int overflow = 0;
    if (!number_text(s->text, s->len, num, sizeof num) || !parse_integer(num, &v, &overflow))
        return type_error(k, s, shown, at, err);
    if (overflow)
        return cu_error_set(err, CU_EINVAL, "%s is out of range: %s does not fit in 64 bits%s",
                            k->key, shown, at);
    int rc = check_number(k, (double)v, shown, at, err);
    if (rc) return rc;
    if (k->type == CFG_INT)
        *(int *)field(cfg, k) = (int)v;
    else
        *(long *)field(cfg, k) = v;
    return CU_OK;
}

static int assign_float(cu_config_t *cfg, const cfg_key_t *k, const cfg_scalar_t *s,
                        const char *shown, const char *at, cu_error_t *err) {
    char num[128], *end;
    if (!number_text(s->text, s->len, num, sizeof num)) return type_error(k, s, shown, at, err);
    errno = 0;
    float f = strtof(num, &end);
    if (end == num || *end != '\0') return type_error(k, s, shown, at, err);
    if (errno == ERANGE && isinf(f))
        return cu_error_set(err, CU_EINVAL, "%s is out of range: %s is too large for a float%s",
                            k->key, shown, at);
    double d = strtod(num, NULL);
    if (in_range(k, d) && !in_range(k, f)) {
        char range[96];
        cfg_range_text(k, range, sizeof range);
        return cu_error_set(err, CU_EINVAL, "%s must be %s; %s rounds to %.9g as a 32-bit float%s",
                            k->key, range, shown, (double)f, at);
    }
    int rc = check_number(k, f, shown, at, err);
    if (rc) return rc;
    *(float *)field(cfg, k) = f;
    return CU_OK;
}

static int parse_bool(const char *s, size_t len, int *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (word_is(s, len, yes[i])) return *out = 1, 1;
        if (word_is(s, len, no[i])) return *out = 0, 1;
    }
    return 0;
}

static int assign_bool(cu_config_t *cfg, const cfg_key_t *k, const cfg_scalar_t *s,
                       const char *shown, const char *at, cu_error_t *err) {
    int v;
    if (!parse_bool(s->text, s->len, &v)) return type_error(k, s, shown, at, err);
    *(int *)field(cfg, k) = v;
    return CU_OK;
}

/* ----------------------------------------------------------------- text */

/* Length of the UTF-8 sequence at s with its code point, or 0 if invalid
 * (truncated, overlong, a surrogate or beyond U+10FFFF). */
static int utf8_decode(const unsigned char *s, size_t n, unsigned *cp) {
    if (s[0] < 0x80) return *cp = s[0], 1;
    int len = s[0] >= 0xF0 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC0 ? 2 : 0;
    if (!len || (size_t)len > n || s[0] > 0xF4) return 0;
    unsigned v = s[0] & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[i] & 0x3F);
    }
    static const unsigned least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < least[len] || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
    *cp = v;
    return len;
}

static int is_utf8(const char *s, size_t len) {
    unsigned cp;
    for (size_t i = 0; i < len;) {
        int n = utf8_decode((const unsigned char *)s + i, len - i, &cp);
        if (!n) return 0;
        i += (size_t)n;
    }
    return 1;
}

/* The first control character in s that k does not allow, or -1. */
static int bad_control(const cfg_key_t *k, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != 0x7F) continue;
        if ((k->flags & CFG_MULTILINE) && (c == '\n' || c == '\t' || c == '\r')) continue;
        return c;
    }
    return -1;
}

static int is_allowed(const char *allowed, const char *s, size_t len) {
    for (const char *p = allowed; *p;) {
        size_t n = strcspn(p, "|");
        if (n == len && !memcmp(p, s, n)) return 1;
        p += n + (p[n] == '|');
    }
    return 0;
}

static int not_allowed(const cfg_key_t *k, const char *label, const char *s, size_t len,
                       const char *at, cu_error_t *err) {
    char choices[256], shown[SHOWN_MAX + 8], hint[128], word[CU_CFG_STR];
    cfg_allowed_text(k->allowed, "", choices, sizeof choices);
    shown_text(s, len, shown, sizeof shown);
    snprintf(word, sizeof word, "%.*s", (int)len, s);
    cfg_suggest_word(word, k->allowed, hint, sizeof hint);
    const char *several = k->type == CFG_LIST && memchr(s, ',', len)
                              ? "; to give several, write a list such as [qkv, mlp_fc]"
                              : "";
    return cu_error_set(err, CU_EINVAL, "%s must be one of %s; got '%s'%s%s%s", label, choices,
                        shown, at, hint, several);
}

/* Checks text about to become (or already held as) a string value or list
 * entry; label names it in messages: "job.name", "entry 2 of slurm.extra". */
static int check_text(const cfg_key_t *k, const char *label, const char *s, size_t len,
                      const char *at, cu_error_t *err) {
    if (len >= CU_CFG_STR)
        return cu_error_set(err, CU_EINVAL, "%s is %zu bytes long%s; at most %d fit", label, len,
                            at, CU_CFG_STR - 1);
    if (memchr(s, '\0', len))
        return cu_error_set(err, CU_EINVAL, "%s contains a NUL byte%s", label, at);
    if (!is_utf8(s, len)) return cu_error_set(err, CU_EINVAL, "%s is not valid UTF-8%s", label, at);
    int c = bad_control(k, s, len);
    if (c >= 0)
        return cu_error_set(err, CU_EINVAL,
                            "%s contains a control character (byte 0x%02x)%s; only eval.prompts "
                            "may hold line breaks or tabs",
                            label, (unsigned)c, at);
    if (k->type == CFG_STRING && (k->flags & CFG_NONEMPTY) && len == 0)
        return cu_error_set(err, CU_EINVAL, "%s must not be empty%s", label, at);
    if (k->allowed && !is_allowed(k->allowed, s, len))
        return not_allowed(k, label, s, len, at, err);
    char why[160], copy[CU_CFG_STR];
    memcpy(copy, s, len);
    copy[len] = '\0';
    if (k->format && k->format->check(copy, why, sizeof why)) {
        char shown[SHOWN_MAX + 8];
        shown_text(s, len, shown, sizeof shown);
        return cu_error_set(err, CU_EINVAL, "%s %s; got '%s'%s", label, why, shown, at);
    }
    return CU_OK;
}

static void store_text(char *dst, const char *s, size_t len) {
    memset(dst, 0, CU_CFG_STR);
    memcpy(dst, s, len);
}

static int assign_text(cu_config_t *cfg, const cfg_key_t *k, const cfg_scalar_t *s, const char *at,
                       cu_error_t *err) {
    const char *t = cfg_is_null(s) ? "" : s->text;
    size_t len = cfg_is_null(s) ? 0 : s->len;
    int rc = check_text(k, k->key, t, len, at, err);
    if (rc) return rc;
    store_text(field(cfg, k), t, len);
    return CU_OK;
}

/* ---------------------------------------------------------------- lists */

void cfg_list_clear(cu_config_t *cfg, const cfg_key_t *k) {
    memset(field(cfg, k), 0, sizeof(cu_cfg_list_t));
}

static int find_entry(const cu_cfg_list_t *l, int upto, const char *s, size_t len) {
    for (int i = 0; i < upto; i++) {
        if (strlen(l->items[i]) == len && !memcmp(l->items[i], s, len)) return i;
    }
    return -1;
}

int cfg_list_append(cu_config_t *cfg, const cfg_key_t *k, const cfg_scalar_t *s, cu_error_t *err) {
    cu_cfg_list_t *l = field(cfg, k);
    char at[600], label[96], shown[SHOWN_MAX + 8];
    cfg_where_text(&s->where, at, sizeof at);
    snprintf(label, sizeof label, "entry %d of %s", l->n + 1, k->key);
    if (l->n >= CU_CFG_MAX_LIST)
        return cu_error_set(err, CU_EINVAL, "%s has more than %d entries%s", k->key,
                            CU_CFG_MAX_LIST, at);
    if (cfg_is_null(s))
        return cu_error_set(err, CU_EINVAL, "%s is empty%s; quote it (\"\") if that is meant",
                            label, at);
    int rc = check_text(k, label, s->text, s->len, at, err);
    if (rc) return rc;
    if ((k->flags & CFG_UNIQUE) && find_entry(l, l->n, s->text, s->len) >= 0) {
        shown_text(s->text, s->len, shown, sizeof shown);
        return cu_error_set(err, CU_EINVAL, "%s names '%s' twice%s", k->key, shown, at);
    }
    store_text(l->items[l->n++], s->text, s->len);
    return CU_OK;
}

static size_t trimmed(const char **s, size_t len) {
    while (len && isspace((unsigned char)**s)) (*s)++, len--;
    while (len && isspace((unsigned char)(*s)[len - 1])) len--;
    return len;
}

int cfg_assign_csv(cu_config_t *cfg, const cfg_key_t *k, const cfg_scalar_t *s, cu_error_t *err) {
    cfg_list_clear(cfg, k);
    const char *p = s->text;
    size_t left = s->len;
    if (cfg_is_null(s) || trimmed(&p, left) == 0) return CU_OK;
    for (;;) {
        const char *comma = memchr(p, ',', left);
        size_t n = comma ? (size_t)(comma - p) : left;
        cfg_scalar_t entry = {p, n, 1, s->where};
        entry.len = trimmed(&entry.text, n);
        int rc = cfg_list_append(cfg, k, &entry, err);
        if (rc || !comma) return rc;
        left -= n + 1;
        p = comma + 1;
    }
}

/* --------------------------------------------------------------- assign */

int cfg_assign_scalar(cu_config_t *cfg, const cfg_key_t *k, const cfg_scalar_t *s,
                      cu_error_t *err) {
    char at[600], shown[SHOWN_MAX + 8];
    cfg_where_text(&s->where, at, sizeof at);
    shown_text(s->text, s->len, shown, sizeof shown);
    switch (k->type) {
    case CFG_INT:
    case CFG_LONG:
        return assign_integer(cfg, k, s, shown, at, err);
    case CFG_FLOAT:
        return assign_float(cfg, k, s, shown, at, err);
    case CFG_BOOL:
        return assign_bool(cfg, k, s, shown, at, err);
    case CFG_STRING:
    case CFG_ENUM:
        return assign_text(cfg, k, s, at, err);
    case CFG_LIST:
        cfg_list_clear(cfg, k);
        return cfg_is_null(s) ? CU_OK : cfg_list_append(cfg, k, s, err);
    }
    return cu_error_set(err, CU_EINTERNAL, "%s has no type", k->key);
}

/* ---------------------------------------------------------------- check */

static int check_list(const cfg_key_t *k, const cu_cfg_list_t *l, cu_error_t *err) {
    if (l->n < 0 || l->n > CU_CFG_MAX_LIST)
        return cu_error_set(err, CU_EINVAL, "%s has %d entries; it holds 0 to %d", k->key, l->n,
                            CU_CFG_MAX_LIST);
    for (int i = 0; i < l->n; i++) {
        char label[96];
        snprintf(label, sizeof label, "entry %d of %s", i + 1, k->key);
        const char *s = l->items[i];
        if (!memchr(s, '\0', CU_CFG_STR))
            return cu_error_set(err, CU_EINVAL, "%s is not NUL-terminated", label);
        int rc = check_text(k, label, s, strlen(s), "", err);
        if (rc) return rc;
        if ((k->flags & CFG_UNIQUE) && find_entry(l, i, s, strlen(s)) >= 0)
            return cu_error_set(err, CU_EINVAL, "%s names '%s' twice", k->key, s);
    }
    return CU_OK;
}

int cfg_check_value(const cu_config_t *cfg, const cfg_key_t *k, cu_error_t *err) {
    const void *f = cfield(cfg, k);
    char shown[64];
    switch (k->type) {
    case CFG_INT:
        snprintf(shown, sizeof shown, "%d", *(const int *)f);
        return check_number(k, *(const int *)f, shown, "", err);
    case CFG_LONG:
        snprintf(shown, sizeof shown, "%ld", *(const long *)f);
        return check_number(k, (double)*(const long *)f, shown, "", err);
    case CFG_FLOAT:
        snprintf(shown, sizeof shown, "%.9g", (double)*(const float *)f);
        if (!isfinite(*(const float *)f))
            return cu_error_set(err, CU_EINVAL, "%s must be a finite number, got %s", k->key,
                                shown);
        return check_number(k, *(const float *)f, shown, "", err);
    case CFG_BOOL:
        if (*(const int *)f == 0 || *(const int *)f == 1) return CU_OK;
        return cu_error_set(err, CU_EINVAL, "%s must be 0 or 1 (false or true), got %d", k->key,
                            *(const int *)f);
    case CFG_STRING:
    case CFG_ENUM:
        if (!memchr(f, '\0', CU_CFG_STR))
            return cu_error_set(err, CU_EINVAL, "%s is not NUL-terminated", k->key);
        return check_text(k, k->key, f, strlen(f), "", err);
    case CFG_LIST:
        return check_list(k, f, err);
    }
    return cu_error_set(err, CU_EINTERNAL, "%s has no type", k->key);
}

/* --------------------------------------------------------------- format */

/* Would a YAML reader take s for something other than a string? */
static int looks_special(const char *s) {
    static const char *const words[] = {"~",  "null", "true", "false", "yes",  "no",
                                        "on", "off",  "y",    "n",     ".inf", ".nan"};
    size_t len = strlen(s);
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (word_is(s, len, words[i])) return 1;
    }
    char num[128], *end;
    if (!number_text(s, len, num, sizeof num)) return 0;
    strtod(num, &end);
    return end != num && *end == '\0';
}

static int needs_quotes(const char *s) {
    if (!*s || looks_special(s)) return 1;
    if (s[0] == '-' && !isalnum((unsigned char)s[1]) && s[1] != '-') return 1;
    for (const char *p = s; *p; p++) {
        if (!isalnum((unsigned char)*p) && !strchr("_./+-", *p)) return 1;
    }
    return 0;
}

/* YAML may carry a code point raw inside double quotes if it is printable
 * and no line break (U+0085, U+2028, U+2029 would be folded to spaces). */
static int yaml_raw_ok(unsigned cp) {
    if (cp >= 0x20 && cp < 0x7F) return cp != '"' && cp != '\\';
    if (cp == 0x85 || cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF) return 0;
    return (cp >= 0xA0 && cp <= 0xD7FF) || (cp >= 0xE000 && cp <= 0xFFFD) ||
           (cp >= 0x10000 && cp <= 0x10FFFF);
}

static void sb_escape(cfg_sb_t *sb, unsigned cp) {
    static const char from[] = "\"\\\n\t\r";
    static const char *const to[] = {"\\\"", "\\\\", "\\n", "\\t", "\\r"};
    for (int i = 0; i < 5; i++) {
        if (cp == (unsigned char)from[i]) return cfg_sb_printf(sb, "%s", to[i]);
    }
    if (cp < 0x100)
        cfg_sb_printf(sb, "\\x%02X", cp);
    else if (cp < 0x10000)
        cfg_sb_printf(sb, "\\u%04X", cp);
    else
        cfg_sb_printf(sb, "\\U%08X", cp);
}

static void sb_quoted(cfg_sb_t *sb, const char *s) {
    size_t len = strlen(s);
    cfg_sb_append(sb, "\"", 1);
    for (size_t i = 0; i < len;) {
        unsigned cp;
        int n = utf8_decode((const unsigned char *)s + i, len - i, &cp);
        int valid = n > 0;
        if (!valid) cp = (unsigned char)s[i], n = 1; /* not UTF-8: validation reports it */
        if (valid && yaml_raw_ok(cp))
            cfg_sb_append(sb, s + i, (size_t)n);
        else
            sb_escape(sb, cp);
        i += (size_t)n;
    }
    cfg_sb_append(sb, "\"", 1);
}

static void sb_string(cfg_sb_t *sb, const char *s) {
    if (needs_quotes(s))
        sb_quoted(sb, s);
    else
        cfg_sb_append(sb, s, strlen(s));
}

/* The shortest "%.Ng" that reads back as the same float: 0.001, not
 * 0.00100000005. */
static void sb_float(cfg_sb_t *sb, float f) {
    char buf[48];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f || prec == 9) break;
    }
    cfg_sb_printf(sb, "%s", buf);
}

void cfg_sb_value(cfg_sb_t *sb, const cu_config_t *cfg, const cfg_key_t *k) {
    const void *f = cfield(cfg, k);
    switch (k->type) {
    case CFG_INT:
        cfg_sb_printf(sb, "%d", *(const int *)f);
        break;
    case CFG_LONG:
        cfg_sb_printf(sb, "%ld", *(const long *)f);
        break;
    case CFG_FLOAT:
        sb_float(sb, *(const float *)f);
        break;
    case CFG_BOOL:
        cfg_sb_printf(sb, "%s", *(const int *)f ? "true" : "false");
        break;
    case CFG_STRING:
    case CFG_ENUM:
        sb_string(sb, f);
        break;
    case CFG_LIST: {
        const cu_cfg_list_t *l = f;
        cfg_sb_append(sb, "[", 1);
        for (int i = 0; i < l->n && i < CU_CFG_MAX_LIST; i++) {
            if (i) cfg_sb_append(sb, ", ", 2);
            sb_string(sb, l->items[i]);
        }
        cfg_sb_append(sb, "]", 1);
        break;
    }
    }
}
