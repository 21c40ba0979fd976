/*
 * What the configuration writes out: the resolved YAML (every key, so a run
 * directory's job.yaml says exactly what ran), the Markdown reference that
 * docs/config.md embeds between its marker comments, one key's value, and
 * the difference between two configs. All of it walks the schema table in
 * config.c, so none of it can fall behind a new key.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "io/config_internal.h"

/* ------------------------------------------------------ growable string */

static void sb_reserve(cfg_sb_t *sb, size_t extra) {
    if (sb->failed || sb->len + extra + 1 <= sb->cap) return;
    size_t cap = sb->cap ? sb->cap : 1024;
    while (cap < sb->len + extra + 1) cap *= 2;
    char *p = realloc(sb->buf, cap);
    if (!p) {
        sb->failed = 1;
        return;
    }
    sb->buf = p;
    sb->cap = cap;
}

void cfg_sb_append(cfg_sb_t *sb, const char *s, size_t n) {
    sb_reserve(sb, n);
    if (sb->failed) return;
    memcpy(sb->buf + sb->len, s, n);
    sb->len += n;
    sb->buf[sb->len] = '\0';
}

void cfg_sb_printf(cfg_sb_t *sb, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        sb->failed = 1;
        return;
    }
    sb_reserve(sb, (size_t)n);
    if (sb->failed) return;
    va_start(ap, fmt);
    vsnprintf(sb->buf + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

char *cfg_sb_take(cfg_sb_t *sb) {
    if (sb->failed) {
        free(sb->buf);
        return NULL;
    }
    if (!sb->buf) return calloc(1, 1);
    return sb->buf;
}

/* ---------------------------------------------------------- iteration */

static int in_section(const cfg_key_t *k, const cfg_section_t *sec) {
    size_t n = strlen(sec->name);
    return cfg_section_len(k) == n && !memcmp(k->key, sec->name, n);
}

/* ---------------------------------------------------------------- YAML */

char *config_to_yaml(const cu_config_t *cfg) {
    int n_keys, n_secs;
    const cfg_key_t *keys = cfg_keys(&n_keys);
    const cfg_section_t *secs = cfg_sections(&n_secs);
    cfg_sb_t sb = {0};
    cfg_sb_printf(&sb, "# Codex-Universal job configuration, resolved: every key, defaults "
                       "included.\n");
    for (int s = 0; s < n_secs; s++) {
        cfg_sb_printf(&sb, "\n%s:\n", secs[s].name);
        for (int i = 0; i < n_keys; i++) {
            if (!in_section(&keys[i], &secs[s])) continue;
            cfg_sb_printf(&sb, "  %s: ", keys[i].key + cfg_section_len(&keys[i]) + 1);
            cfg_sb_value(&sb, cfg, &keys[i]);
            cfg_sb_append(&sb, "\n", 1);
        }
    }
    return cfg_sb_take(&sb);
}

int config_format_value(const cu_config_t *cfg, const char *key, char *out, size_t cap,
                        cu_error_t *err) {
    const cfg_key_t *k = cfg_find_key(key);
    if (!k) {
        char hint[256];
        cfg_suggest_key(key, hint, sizeof hint);
        return cu_error_set(err, CU_EINVAL, "unknown key '%s'%s", key, hint);
    }
    cfg_sb_t sb = {0};
    cfg_sb_value(&sb, cfg, k);
    char *text = cfg_sb_take(&sb);
    if (!text) return cu_error_set(err, CU_ENOMEM, "out of memory formatting %s", key);
    if (cap) snprintf(out, cap, "%s", text);
    free(text);
    return CU_OK;
}

static char *value_text(const cu_config_t *cfg, const cfg_key_t *k) {
    cfg_sb_t sb = {0};
    cfg_sb_value(&sb, cfg, k);
    return cfg_sb_take(&sb);
}

int config_diff(const cu_config_t *a, const cu_config_t *b, char *out, size_t cap) {
    int n_keys, differ = 0;
    const cfg_key_t *keys = cfg_keys(&n_keys);
    size_t used = 0;
    if (out && cap) out[0] = '\0';
    for (int i = 0; i < n_keys; i++) {
        char *va = value_text(a, &keys[i]), *vb = value_text(b, &keys[i]);
        int same = va && vb && !strcmp(va, vb);
        if (!same) {
            if (out && used < cap)
                snprintf(out + used, cap - used, "%s%s: %s -> %s", differ ? "; " : "", keys[i].key,
                         va ? va : "?", vb ? vb : "?");
            if (out) used = strlen(out);
            differ++;
        }
        free(va);
        free(vb);
    }
    return differ;
}

/* ------------------------------------------------------------ Markdown */

static const char *type_name(const cfg_key_t *k) {
    switch (k->type) {
    case CFG_INT:
    case CFG_LONG:
        return "integer";
    case CFG_FLOAT:
        return "number";
    case CFG_BOOL:
        return "bool";
    case CFG_STRING:
        return "string";
    case CFG_ENUM:
        return "enum";
    case CFG_LIST:
        return "list";
    }
    return "?";
}

static void md_default(cfg_sb_t *sb, const cfg_key_t *k) {
    if (k->type == CFG_LIST)
        cfg_sb_printf(sb, "`[%s]`", k->def);
    else if (k->type == CFG_STRING && !k->def[0])
        cfg_sb_printf(sb, "`\"\"`");
    else
        cfg_sb_printf(sb, "`%s`", k->def);
}

static void md_allowed(cfg_sb_t *sb, const cfg_key_t *k) {
    char text[512];
    const char *sep = "";
    if (k->type == CFG_BOOL) cfg_sb_printf(sb, "`true`, `false`");
    cfg_range_text(k, text, sizeof text);
    if (text[0]) cfg_sb_printf(sb, "%s", text);
    if (k->allowed) {
        cfg_allowed_text(k->allowed, "`", text, sizeof text);
        cfg_sb_printf(sb, "%s%s", k->type == CFG_LIST ? "entries: " : "", text);
        sep = "; ";
    }
    if (k->format) cfg_sb_printf(sb, "%s%s", sep, k->format->doc), sep = "; ";
    if (k->flags & CFG_NONEMPTY) cfg_sb_printf(sb, "%snot empty", sep), sep = "; ";
    if (k->flags & CFG_UNIQUE) cfg_sb_printf(sb, "%seach once", sep), sep = "; ";
    if (k->type == CFG_LIST)
        cfg_sb_printf(sb, "%sat most %d entries", sep, CU_CFG_MAX_LIST);
    else if (k->type == CFG_STRING && !k->format && !(k->flags & CFG_NONEMPTY))
        cfg_sb_printf(sb, "any text");
}

static void md_section(cfg_sb_t *sb, const cfg_section_t *sec, const cfg_key_t *keys, int n) {
    cfg_sb_printf(sb, "\n### `%s`: %s\n\n", sec->name, sec->meaning);
    cfg_sb_printf(sb, "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        if (!in_section(&keys[i], sec)) continue;
        cfg_sb_printf(sb, "| `%s` | %s | ", keys[i].key, type_name(&keys[i]));
        md_default(sb, &keys[i]);
        cfg_sb_printf(sb, " | ");
        md_allowed(sb, &keys[i]);
        cfg_sb_printf(sb, " | %s |\n", keys[i].meaning);
    }
}

char *config_reference_markdown(void) {
    int n_keys, n_secs;
    const cfg_key_t *keys = cfg_keys(&n_keys);
    const cfg_section_t *secs = cfg_sections(&n_secs);
    cfg_sb_t sb = {0};
    cfg_sb_printf(&sb, "<!-- Generated from the schema in io/config.c by gen-config-doc; edit "
                       "the schema, not this table. -->\n");
    for (int s = 0; s < n_secs; s++) md_section(&sb, &secs[s], keys, n_keys);
    return cfg_sb_take(&sb);
}

/* Where `marker` starts a line of doc, or NULL; *count says how many do. */
static const char *find_marker_line(const char *doc, size_t len, const char *marker, int *count) {
    size_t ml = strlen(marker);
    const char *found = NULL;
    *count = 0;
    for (size_t i = 0; i + ml <= len; i++) {
        if ((i == 0 || doc[i - 1] == '\n') && !memcmp(doc + i, marker, ml)) {
            if (!found) found = doc + i;
            (*count)++;
        }
    }
    return found;
}

int config_doc_update(const char *doc, size_t len, char **out, int *changed, cu_error_t *err) {
    int n_begin, n_end;
    const char *begin = find_marker_line(doc, len, CU_CONFIG_DOC_BEGIN, &n_begin);
    const char *end = find_marker_line(doc, len, CU_CONFIG_DOC_END, &n_end);
    if (n_begin != 1 || n_end != 1 || end < begin)
        return cu_error_set(err, CU_EFORMAT,
                            "expected one line '%s' and, after it, one line '%s' around the "
                            "generated reference (found %d and %d)",
                            CU_CONFIG_DOC_BEGIN, CU_CONFIG_DOC_END, n_begin, n_end);
    char *gen = config_reference_markdown();
    if (!gen) return cu_error_set(err, CU_ENOMEM, "out of memory generating the reference");
    size_t head = (size_t)(begin - doc) + strlen(CU_CONFIG_DOC_BEGIN);
    cfg_sb_t sb = {0};
    cfg_sb_append(&sb, doc, head);
    cfg_sb_printf(&sb, "\n%s", gen);
    cfg_sb_append(&sb, end, len - (size_t)(end - doc));
    free(gen);
    *out = cfg_sb_take(&sb);
    if (!*out) return cu_error_set(err, CU_ENOMEM, "out of memory updating the reference");
    *changed = strlen(*out) != len || memcmp(*out, doc, len) != 0;
    return CU_OK;
}
