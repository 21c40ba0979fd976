/*
 * Carriers (see decode.h). Every carrier is found from a literal trigger
 * (memmem/memchr over the buffer, so text without one costs a few fast
 * passes), then parsed by hand: a bounded read of the value, a decode,
 * and a derived text whose bytes each remember where they came from.
 */
#include "safety/decode.h"

#include <stdlib.h>
#include <string.h>

/* ---- derived text ---- */

static int d_put(safety_derived_t *d, char c, size_t from, size_t to) {
    if (d->len >= SAFETY_DERIVED_MAX) return 1; /* full: the rest is dropped */
    if (d->len == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 256;
        char *t = realloc(d->text, cap);
        if (!t) return -1;
        d->text = t;
        size_t *f = realloc(d->from, cap * sizeof *f);
        if (!f) return -1;
        d->from = f;
        size_t *o = realloc(d->to, cap * sizeof *o);
        if (!o) return -1;
        d->to = o;
        d->cap = cap;
    }
    d->text[d->len] = c;
    d->from[d->len] = from;
    d->to[d->len] = to;
    d->len++;
    return 0;
}

/* Appends s, every byte standing for the original range [from, to). */
static int d_puts(safety_derived_t *d, const char *s, size_t n, size_t from, size_t to) {
    for (size_t i = 0; i < n; i++)
        if (d_put(d, s[i], from, to) < 0) return -1;
    return 0;
}

/* Appends original bytes buf[a..b) as themselves. */
static int d_copy(safety_derived_t *d, const char *buf, size_t a, size_t b) {
    for (size_t i = a; i < b; i++)
        if (d_put(d, buf[i], i, i + 1) < 0) return -1;
    return 0;
}

/* ---- decoders ---- */

static int b64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

static int is_b64(unsigned char c) {
    return b64_value(c) >= 0 || c == '=';
}

/* Decodes base64 (standard or URL alphabet) of buf[a..b) into out (cap
 * bytes). Returns the length, or -1 when it is not base64 of text: a bad
 * character, padding in the middle, or bytes that are not printable. */
static long b64_decode_text(const char *buf, size_t a, size_t b, char *out, size_t cap) {
    while (b > a && buf[b - 1] == '=') b--;
    if (b - a < 8 || (b - a) % 4 == 1) return -1;
    unsigned acc = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = a; i < b; i++) {
        int v = b64_value((unsigned char)buf[i]);
        if (v < 0) return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            unsigned char c = (unsigned char)(acc >> bits) & 0xff;
            if (n >= cap) return -1;
            if (c < 0x20 && c != '\n' && c != '\r' && c != '\t') return -1;
            if (c == 0x7f) return -1;
            out[n++] = (char)c;
        }
    }
    return (long)n;
}

/* ---- base64 carriers ---- */

typedef struct {
    const char *buf;
    size_t len;
    safety_derived_fn fn;
    void *ctx;
    safety_derived_t d;
} walk_t;

static int emit(walk_t *w) {
    int rc = w->d.len ? w->fn(w->ctx, &w->d) : 0;
    w->d.len = 0;
    return rc;
}

/* Emits prefix + decoded(buf[a..b)) + suffix, all standing for [a, b). */
static int emit_b64(walk_t *w, size_t a, size_t b, const char *prefix, size_t plen,
                    const char *suffix) {
    static const size_t CAP = 4096;
    char out[4096];
    if (b - a > CAP) return 0;
    long n = b64_decode_text(w->buf, a, b, out, CAP);
    if (n <= 0) return 0;
    if (d_puts(&w->d, prefix, plen, a, b) < 0 || d_puts(&w->d, out, (size_t)n, a, b) < 0 ||
        d_puts(&w->d, suffix, strlen(suffix), a, b) < 0)
        return -1;
    return emit(w);
}

/* `user:pass` as `https://user:pass@registry` for the URL rule, with the
 * characters a URL cannot hold there percent-escaped. */
static int emit_b64_credentials(walk_t *w, size_t a, size_t b) {
    char out[4096];
    if (b - a > sizeof out) return 0;
    long n = b64_decode_text(w->buf, a, b, out, sizeof out);
    if (n <= 2 || !memchr(out, ':', (size_t)n)) return 0;
    if (d_puts(&w->d, "https://", 8, a, b) < 0) return -1;
    for (long i = 0; i < n; i++) {
        char esc[4];
        unsigned char c = (unsigned char)out[i];
        if (c == '@' || c == '/' || c == ' ' || c == '"' || c == '\'' || c == '<' || c == '>' ||
            c < 0x20) {
            static const char X[] = "0123456789ABCDEF";
            esc[0] = '%', esc[1] = X[c >> 4], esc[2] = X[c & 15];
            if (d_puts(&w->d, esc, 3, a, b) < 0) return -1;
        } else if (d_put(&w->d, (char)c, a, b) < 0) {
            return -1;
        }
    }
    if (d_puts(&w->d, "@registry\n", 10, a, b) < 0) return -1;
    return emit(w);
}

/* The end of a run of base64 characters starting at i. */
static size_t b64_run(const char *buf, size_t len, size_t i) {
    while (i < len && is_b64((unsigned char)buf[i])) i++;
    return i;
}

/* After a trigger ending at i: optional spaces and one opening quote (or
 * a parenthesis then a quote), then the value. */
static int value_after(const char *buf, size_t len, size_t i, size_t *a, size_t *b) {
    size_t lim = i + 8 < len ? i + 8 : len;
    while (i < lim && (buf[i] == ' ' || buf[i] == '(' || buf[i] == '\t')) i++;
    if (i < len && (buf[i] == '"' || buf[i] == '\'' || buf[i] == '`')) i++;
    *a = i;
    *b = b64_run(buf, len, i);
    return *b - *a >= 8;
}

/* `echo VALUE | base64 -d` (or --decode, -D) on one line; at is where
 * "| base64 -" begins. */
static int on_b64_pipe(walk_t *w, size_t at) {
    size_t ls = at;
    while (ls > 0 && w->buf[ls - 1] != '\n' && at - ls < 4096) ls--;
    const char *e = memmem(w->buf + ls, at - ls, "echo ", 5);
    if (!e) return 0;
    size_t i = (size_t)(e - w->buf) + 5, a, b;
    while (i < at && w->buf[i] == '-') { /* echo -n */
        while (i < at && w->buf[i] != ' ') i++;
        while (i < at && w->buf[i] == ' ') i++;
    }
    return value_after(w->buf, at, i, &a, &b) ? emit_b64(w, a, b, "", 0, "\n") : 0;
}

/* In a document with `kind: Secret`, every `  key: value` whose value is
 * base64 of text: `key: decoded`. */
static int walk_k8s_secret(walk_t *w) {
    size_t i = 0;
    while (i < w->len) {
        const char *nl = memchr(w->buf + i, '\n', w->len - i);
        size_t le = nl ? (size_t)(nl - w->buf) : w->len;
        size_t k = i;
        while (k < le && w->buf[k] == ' ') k++;
        size_t ks = k;
        while (k < le && (is_b64((unsigned char)w->buf[k]) || w->buf[k] == '.') && w->buf[k] != '=')
            k++;
        if (k > i && k > ks && k + 1 < le && w->buf[k] == ':' && w->buf[k + 1] == ' ' && ks > i) {
            size_t a, b;
            if (value_after(w->buf, le, k + 1, &a, &b)) {
                char key[80];
                size_t kl = k - ks < 64 ? k - ks : 64;
                memcpy(key, w->buf + ks, kl);
                memcpy(key + kl, ": ", 2);
                int rc = emit_b64(w, a, b, key, kl + 2, "\n");
                if (rc) return rc;
            }
        }
        i = le + 1;
    }
    return 0;
}

/* ---- URL encoding ---- */

static int hexval(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int url_char(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("%._~+=&:/?#@!$*,;-", c));
}

/* A run of URL characters around the %XX escape at `at` whose character
 * matters to a pattern (: / @ = & + and the like), decoded. *done is the
 * end of the last run, so a run is decoded once. */
static int on_url(walk_t *w, size_t at, size_t *done) {
    if (at < *done || at + 2 >= w->len) return 0;
    int h = hexval((unsigned char)w->buf[at + 1]), l = hexval((unsigned char)w->buf[at + 2]);
    if (h < 0 || l < 0) return 0;
    int c = h * 16 + l;
    if (c == 0 || !strchr(":/@=&+?#_-.~", c)) return 0;
    size_t a = at, b = at;
    while (a > 0 && url_char((unsigned char)w->buf[a - 1]) && at - a < 2048) a--;
    while (b < w->len && url_char((unsigned char)w->buf[b]) && b - at < 2048) b++;
    *done = b;
    for (size_t i = a; i < b;) {
        if (w->buf[i] == '%' && i + 2 < b && hexval((unsigned char)w->buf[i + 1]) >= 0 &&
            hexval((unsigned char)w->buf[i + 2]) >= 0) {
            char ch = (char)(hexval((unsigned char)w->buf[i + 1]) * 16 +
                             hexval((unsigned char)w->buf[i + 2]));
            if (d_put(&w->d, ch, i, i + 3) < 0) return -1;
            i += 3;
        } else {
            if (d_put(&w->d, w->buf[i], i, i + 1) < 0) return -1;
            i++;
        }
    }
    if (d_put(&w->d, '\n', b, b) < 0) return -1;
    return emit(w);
}

/* ---- split string literals ---- */

/* The end (after the closing quote) of the literal opening at i, on one
 * line; 0 when it does not close there. */
static size_t literal_end(const char *buf, size_t len, size_t i) {
    char q = buf[i];
    for (size_t k = i + 1; k < len && k - i < 4096; k++) {
        if (buf[k] == '\\') {
            k++;
            continue;
        }
        if (buf[k] == '\n') return 0;
        if (buf[k] == q) return k + 1;
    }
    return 0;
}

/* Spaces, newlines, line continuations and at most one concatenation
 * operator after a literal; the position of the next literal's quote, or 0. */
static size_t next_literal(const char *buf, size_t len, size_t i, char q) {
    int op = 0, lines = 0;
    while (i < len) {
        char c = buf[i];
        if (c == ' ' || c == '\t' || c == '\r' || (c == '\\' && i + 1 < len && buf[i + 1] == '\n'))
            i += c == '\\' ? 2 : 1;
        else if (c == '\n') {
            if (++lines > 2) return 0;
            i++;
        } else if (!op &&
                   (c == '+' || c == '&' || (c == '.' && (i + 1 >= len || buf[i + 1] != '.')))) {
            op = 1;
            i++;
        } else if (!op && i + 1 < len &&
                   ((c == '.' && buf[i + 1] == '.') || (c == '|' && buf[i + 1] == '|'))) {
            op = 1;
            i += 2;
        } else
            break;
    }
    return i < len && buf[i] == q ? i : 0;
}

/* Parses a chain of literals starting with the one opening at i; when it
 * holds two or more, emits the line's text before it plus one joined
 * literal. Returns the end of the chain (or i + 1). */
static int join_chain(walk_t *w, size_t ls, size_t i, size_t *stop) {
    char q = w->buf[i];
    size_t e = literal_end(w->buf, w->len, i);
    *stop = e ? e : i + 1;
    if (!e) return 0;
    size_t nx = next_literal(w->buf, w->len, e, q);
    if (!nx) return 0;
    if (d_copy(&w->d, w->buf, ls, i + 1) < 0) return -1;
    size_t cur = i;
    int pieces = 0;
    for (;;) {
        if (d_copy(&w->d, w->buf, cur + 1, e - 1) < 0) return -1;
        pieces++;
        *stop = e;
        nx = next_literal(w->buf, w->len, e, q);
        if (!nx || pieces >= 64) break;
        size_t ne = literal_end(w->buf, w->len, nx);
        if (!ne) break;
        cur = nx;
        e = ne;
    }
    if (d_put(&w->d, q, e - 1, e) < 0 || d_put(&w->d, '\n', e, e) < 0) return -1;
    return pieces >= 2 ? emit(w) : (w->d.len = 0, 0);
}

/* Parses the line starting at ls for chains of literals. */
static int on_join_line(walk_t *w, size_t ls) {
    const char *nl = memchr(w->buf + ls, '\n', w->len - ls);
    size_t le = nl ? (size_t)(nl - w->buf) : w->len;
    size_t i = ls;
    while (i < le && i - ls < 4096) {
        char c = w->buf[i];
        if (c == '"' || c == '\'') {
            size_t stop;
            int rc = join_chain(w, ls, i, &stop);
            if (rc) return rc;
            i = stop;
        } else {
            i++;
        }
    }
    return 0;
}

static const safety_carrier_trigger_t TRIGGERS[] = {
    {"b64decode(", SAFETY_CARRIER_B64_CALL},
    {"atob(", SAFETY_CARRIER_B64_CALL},
    {"base64.decode(", SAFETY_CARRIER_B64_CALL},
    {"decodebase64(", SAFETY_CARRIER_B64_CALL},
    {"buffer.from(", SAFETY_CARRIER_B64_CALL},
    {"base64_decode(", SAFETY_CARRIER_B64_CALL},
    {"decodestring(", SAFETY_CARRIER_B64_CALL},
    {"frombase64string(", SAFETY_CARRIER_B64_CALL},
    {"decode64(", SAFETY_CARRIER_B64_CALL},
    {"| base64 -", SAFETY_CARRIER_B64_PIPE},
    {"\"auth\":", SAFETY_CARRIER_B64_AUTH},
    {"\"auth\" :", SAFETY_CARRIER_B64_AUTH},
    {"basic ", SAFETY_CARRIER_B64_AUTH}, /* any case: the automaton folds it */
    {"kind: secret", SAFETY_CARRIER_K8S},
    {"%0a", SAFETY_CARRIER_URL}, /* digits fold to 0 in the automaton: %3A, %2F, %40, ... */
    {"%0b", SAFETY_CARRIER_URL},
    {"%0c", SAFETY_CARRIER_URL},
    {"%0d", SAFETY_CARRIER_URL},
    {"%0e", SAFETY_CARRIER_URL},
    {"%0f", SAFETY_CARRIER_URL},
    {"%00", SAFETY_CARRIER_URL},
    {"\" +", SAFETY_CARRIER_JOIN},
    {"\"+", SAFETY_CARRIER_JOIN},
    {"' +", SAFETY_CARRIER_JOIN},
    {"'+", SAFETY_CARRIER_JOIN},
    {"\" .", SAFETY_CARRIER_JOIN},
    {"\".", SAFETY_CARRIER_JOIN},
    {"' .", SAFETY_CARRIER_JOIN},
    {"\" \"", SAFETY_CARRIER_JOIN},
    {"' '", SAFETY_CARRIER_JOIN},
    {"\"\n", SAFETY_CARRIER_JOIN},
    {"\" \\", SAFETY_CARRIER_JOIN},
    {"\" ||", SAFETY_CARRIER_JOIN},
    {"\" &", SAFETY_CARRIER_JOIN},
    {NULL, 0},
};

const safety_carrier_trigger_t *safety_carrier_triggers(void) {
    return TRIGGERS;
}

int safety_derive(const char *buf, size_t len, const safety_carrier_hit_t *hits, size_t nhits,
                  safety_derived_fn fn, void *ctx) {
    walk_t w = {.buf = buf, .len = len, .fn = fn, .ctx = ctx};
    size_t url_done = 0, join_done = 0;
    int rc = 0, k8s = 0;
    for (size_t h = 0; h < nhits && !rc; h++) {
        const safety_carrier_trigger_t *t = &TRIGGERS[hits[h].trigger];
        size_t m = strlen(t->keyword), at = hits[h].end + 1 - m, a, b;
        switch (t->kind) {
        case SAFETY_CARRIER_B64_CALL:
            if (value_after(buf, len, at + m, &a, &b)) rc = emit_b64(&w, a, b, "", 0, "\n");
            break;
        case SAFETY_CARRIER_B64_PIPE:
            rc = on_b64_pipe(&w, at);
            break;
        case SAFETY_CARRIER_B64_AUTH:
            if (value_after(buf, len, at + m, &a, &b)) rc = emit_b64_credentials(&w, a, b);
            break;
        case SAFETY_CARRIER_K8S:
            if (!k8s) rc = walk_k8s_secret(&w);
            k8s = 1;
            break;
        case SAFETY_CARRIER_URL:
            rc = on_url(&w, at, &url_done);
            break;
        case SAFETY_CARRIER_JOIN: {
            size_t ls = at;
            while (ls > 0 && buf[ls - 1] != '\n') ls--;
            if (ls < join_done) break; /* hits come in order: this line is parsed */
            const char *nl = memchr(buf + ls, '\n', len - ls);
            join_done = nl ? (size_t)(nl - buf) + 1 : len;
            rc = on_join_line(&w, ls);
            break;
        }
        }
    }
    free(w.d.text);
    free(w.d.from);
    free(w.d.to);
    return rc;
}
