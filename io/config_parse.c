/*
 * Reading the job configuration: a YAML file, and `section.key=value`
 * overrides from the command line.
 *
 * The file goes through libyaml's document API, which hands back a tree
 * whose every node knows its line and column; the tree is walked three
 * levels deep (sections, keys, list entries) and each value is handed to
 * config_value.c with its position, so every message can say "at
 * job.yaml:12:7". Keys may also be written dotted at the top level
 * ("train.lr: 3e-4"). A key or section given twice is an error (libyaml
 * itself lets duplicates through).
 *
 * Both entry points work on a copy and write the caller's config only when
 * everything read cleanly: a bad file or override changes nothing.
 *
 * libyaml's scanner slows down quadratically with the nesting depth of flow
 * collections ("[[[[..."), so text nested absurdly deep is refused before
 * parsing, as is a file over 1 MiB.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "io/config.h"
#include "io/config_internal.h"

#define CFG_MAX_FILE (1u << 20)
#define CFG_MAX_FLOW_DEPTH 1000
#define CFG_MAX_ANCHORS 64  /* a config needs few; libyaml's loader is quadratic in them */
#define CFG_MAX_ALIASES 256 /* and each alias is walked again */
#define NAME_MAX_SHOWN 100  /* longest key name repeated in a message */

typedef struct {
    cu_config_t *cfg; /* the working copy */
    yaml_document_t *doc;
    const char *origin; /* NULL: the command line */
    cfg_where_t key_seen[CFG_MAX_KEYS];
    cfg_where_t section_seen[CFG_MAX_SECTIONS];
} parse_t;

static cfg_where_t where_of(const parse_t *p, const yaml_node_t *node) {
    cfg_where_t w = {p->origin, (int)node->start_mark.line + 1, (int)node->start_mark.column + 1};
    return w;
}

static cfg_scalar_t scalar_of(const parse_t *p, const yaml_node_t *node) {
    cfg_scalar_t s = {(const char *)node->data.scalar.value, node->data.scalar.length,
                      node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, where_of(p, node)};
    return s;
}

static const char *kind_of(const yaml_node_t *node) {
    if (node->type == YAML_SEQUENCE_NODE) return "a list";
    if (node->type == YAML_MAPPING_NODE) return "a mapping";
    return "a single value";
}

static int is_null_node(const parse_t *p, const yaml_node_t *node) {
    if (node->type != YAML_SCALAR_NODE) return 0;
    cfg_scalar_t s = scalar_of(p, node);
    return cfg_is_null(&s);
}

/* A key's text made safe to repeat: shortened, no control characters. */
static void key_text(const yaml_node_t *node, char *out, size_t cap) {
    size_t len = node->data.scalar.length, n = len < NAME_MAX_SHOWN ? len : NAME_MAX_SHOWN;
    if (n >= cap) n = cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = node->data.scalar.value[i];
        out[i] = c < 0x20 ? '?' : (char)c;
    }
    out[n] = '\0';
}

/* ---------------------------------------------------------------- values */

static int assign_sequence(parse_t *p, const cfg_key_t *k, yaml_node_t *seq, cu_error_t *err) {
    cfg_list_clear(p->cfg, k);
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++) {
        yaml_node_t *item = yaml_document_get_node(p->doc, *it);
        if (item->type != YAML_SCALAR_NODE) {
            char at[600];
            cfg_where_t w = where_of(p, item);
            cfg_where_text(&w, at, sizeof at);
            return cu_error_set(err, CU_EINVAL, "entries of %s must be single values but got %s%s",
                                k->key, kind_of(item), at);
        }
        cfg_scalar_t s = scalar_of(p, item);
        int rc = cfg_list_append(p->cfg, k, &s, err);
        if (rc) return rc;
    }
    return CU_OK;
}

/* Assigns a value node to k. An empty value reports the key's position,
 * since libyaml places an empty scalar wherever the next token starts. */
static int assign_node(parse_t *p, const cfg_key_t *k, yaml_node_t *key_node, yaml_node_t *value,
                       cu_error_t *err) {
    char at[600];
    cfg_where_t w = where_of(p, value);
    cfg_where_text(&w, at, sizeof at);
    if (value->type == YAML_SCALAR_NODE) {
        cfg_scalar_t s = scalar_of(p, value);
        if (key_node && cfg_is_null(&s)) s.where = where_of(p, key_node);
        return cfg_assign_scalar(p->cfg, k, &s, err);
    }
    if (value->type == YAML_SEQUENCE_NODE) {
        if (k->type == CFG_LIST) return assign_sequence(p, k, value, err);
        return cu_error_set(err, CU_EINVAL, "%s takes a single value but got a list%s", k->key, at);
    }
    return cu_error_set(err, CU_EINVAL,
                        "%s takes %s but got a mapping%s; check the indentation of the lines "
                        "below it",
                        k->key, k->type == CFG_LIST ? "a list" : "a single value", at);
}

/* ------------------------------------------------------------ the walk */

static int set_key(parse_t *p, const cfg_key_t *k, yaml_node_t *key_node, yaml_node_t *value,
                   cu_error_t *err) {
    int n_keys;
    const cfg_key_t *keys = cfg_keys(&n_keys);
    cfg_where_t *seen = &p->key_seen[k - keys];
    cfg_where_t here = where_of(p, key_node);
    if (seen->line) {
        char at[600];
        cfg_where_text(&here, at, sizeof at);
        return cu_error_set(err, CU_EINVAL, "duplicate key '%s'%s; it was already set at %s:%d:%d",
                            k->key, at, seen->origin, seen->line, seen->col);
    }
    *seen = here;
    return assign_node(p, k, key_node, value, err);
}

static int unknown_key(const parse_t *p, const char *dotted, const yaml_node_t *key_node,
                       const char *what, cu_error_t *err) {
    char at[600], hint[300];
    cfg_where_t w = where_of(p, key_node);
    cfg_where_text(&w, at, sizeof at);
    cfg_suggest_key(dotted, hint, sizeof hint);
    return cu_error_set(err, CU_EINVAL, "unknown %s '%s'%s%s", what, dotted, at, hint);
}

static int need_scalar_key(const parse_t *p, const yaml_node_t *key_node, cu_error_t *err) {
    if (key_node->type == YAML_SCALAR_NODE) return CU_OK;
    char at[600];
    cfg_where_t w = where_of(p, key_node);
    cfg_where_text(&w, at, sizeof at);
    return cu_error_set(err, CU_EINVAL, "keys must be plain names but got %s%s", kind_of(key_node),
                        at);
}

static int section_key(parse_t *p, const cfg_section_t *sec, yaml_node_t *key_node,
                       yaml_node_t *value, cu_error_t *err) {
    int rc = need_scalar_key(p, key_node, err);
    if (rc) return rc;
    char name[NAME_MAX_SHOWN + 1], dotted[NAME_MAX_SHOWN + 64];
    key_text(key_node, name, sizeof name);
    snprintf(dotted, sizeof dotted, "%s.%s", sec->name, name);
    const cfg_key_t *k = NULL;
    if (key_node->data.scalar.length == strlen(name)) k = cfg_find_key(dotted);
    if (!k) return unknown_key(p, dotted, key_node, "key", err);
    return set_key(p, k, key_node, value, err);
}

/* The section's first key, for examples in messages. */
static const cfg_key_t *first_key(const cfg_section_t *sec) {
    int n_keys;
    const cfg_key_t *keys = cfg_keys(&n_keys);
    for (int i = 0; i < n_keys; i++) {
        size_t sl = cfg_section_len(&keys[i]);
        if (sl == strlen(sec->name) && !memcmp(keys[i].key, sec->name, sl)) return &keys[i];
    }
    return NULL;
}

static int walk_section(parse_t *p, const cfg_section_t *sec, yaml_node_t *key_node,
                        yaml_node_t *value, cu_error_t *err) {
    int n_secs;
    const cfg_section_t *secs = cfg_sections(&n_secs);
    cfg_where_t *seen = &p->section_seen[sec - secs];
    cfg_where_t here = where_of(p, key_node);
    char at[600];
    cfg_where_text(&here, at, sizeof at);
    if (seen->line)
        return cu_error_set(err, CU_EINVAL,
                            "duplicate section '%s'%s; it already appeared at %s:%d:%d (merge "
                            "the two)",
                            sec->name, at, seen->origin, seen->line, seen->col);
    *seen = here;
    if (is_null_node(p, value)) return CU_OK; /* "eval:" with nothing under it */
    if (value->type != YAML_MAPPING_NODE) {
        const cfg_key_t *k = first_key(sec);
        cfg_where_t vw = where_of(p, value);
        cfg_where_text(&vw, at, sizeof at);
        return cu_error_set(err, CU_EINVAL,
                            "section '%s' must hold keys, one per indented line such as '  %s: "
                            "%s'; got %s%s",
                            sec->name, k->key + cfg_section_len(k) + 1, k->def, kind_of(value), at);
    }
    for (yaml_node_pair_t *pr = value->data.mapping.pairs.start; pr < value->data.mapping.pairs.top;
         pr++) {
        int rc = section_key(p, sec, yaml_document_get_node(p->doc, pr->key),
                             yaml_document_get_node(p->doc, pr->value), err);
        if (rc) return rc;
    }
    return CU_OK;
}

static int top_entry(parse_t *p, yaml_node_t *key_node, yaml_node_t *value, cu_error_t *err) {
    int rc = need_scalar_key(p, key_node, err);
    if (rc) return rc;
    const char *name = (const char *)key_node->data.scalar.value;
    size_t len = key_node->data.scalar.length;
    const cfg_section_t *sec = cfg_find_section(name, len);
    if (sec) return walk_section(p, sec, key_node, value, err);
    const cfg_key_t *k = cfg_find_key_n(name, len);
    if (k) return set_key(p, k, key_node, value, err);
    char shown[NAME_MAX_SHOWN + 1];
    key_text(key_node, shown, sizeof shown);
    return unknown_key(p, shown, key_node, memchr(name, '.', len) ? "key" : "section", err);
}

static int walk_root(parse_t *p, yaml_node_t *root, cu_error_t *err) {
    if (root->type != YAML_MAPPING_NODE) {
        char at[600];
        cfg_where_t w = where_of(p, root);
        cfg_where_text(&w, at, sizeof at);
        return cu_error_set(err, CU_EINVAL,
                            "the top level must be a mapping of sections (job:, model:, train:, "
                            "...) but got %s%s",
                            kind_of(root), at);
    }
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top;
         pr++) {
        int rc = top_entry(p, yaml_document_get_node(p->doc, pr->key),
                           yaml_document_get_node(p->doc, pr->value), err);
        if (rc) return rc;
    }
    return CU_OK;
}

/* ------------------------------------------------------------ libyaml */

/* Line and column (in characters, as libyaml counts) of a byte offset. */
static void line_col_at(const char *text, size_t len, size_t offset, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < offset && i < len; i++) {
        if (text[i] == '\n')
            (*line)++, *col = 1;
        else if (((unsigned char)text[i] & 0xC0) != 0x80)
            (*col)++;
    }
}

/* libyaml reports a bad continuation byte; the character starts at its
 * lead byte, up to three bytes before. */
static size_t lead_byte(const char *text, size_t at) {
    for (size_t j = at; j > 0 && at - j < 3;) {
        j--;
        if (((unsigned char)text[j] & 0xC0) == 0xC0) return j;
    }
    return at;
}

static int syntax_error(const yaml_parser_t *ps, const char *text, size_t len, const char *origin,
                        cu_error_t *err) {
    if (ps->error == YAML_MEMORY_ERROR)
        return cu_error_set(err, CU_ENOMEM, "out of memory parsing %s", origin);
    int line = (int)ps->problem_mark.line + 1, col = (int)ps->problem_mark.column + 1;
    size_t at = ps->problem_mark.index;
    if (ps->error == YAML_READER_ERROR) {
        at = ps->problem_offset;
        if (ps->problem && strstr(ps->problem, "trailing")) at = lead_byte(text, at);
        line_col_at(text, len, at, &line, &col);
    }
    char context[300] = "";
    if (ps->context && ps->error != YAML_READER_ERROR)
        snprintf(context, sizeof context, " (%s at line %d)", ps->context,
                 (int)ps->context_mark.line + 1);
    const char *tabs = at < len && text[at] == '\t' ? "; YAML indents with spaces, not tabs" : "";
    const char *problem = ps->problem ? ps->problem : "malformed YAML";
    return cu_error_set(err, CU_EINVAL, "YAML syntax error at %s:%d:%d: %s%s%s", origin, line, col,
                        problem, context, tabs);
}

/* Line of the first flow collection nested deeper than the limit, or 0. */
static int flow_too_deep(const char *text, size_t len) {
    int depth = 0, line = 1;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '\n')
            line++;
        else if (c == '[' || c == '{') {
            if (++depth > CFG_MAX_FLOW_DEPTH) return line;
        } else if ((c == ']' || c == '}') && depth > 0)
            depth--;
    }
    return 0;
}

/* Counts anchors and aliases with the event parser (linear, nothing
 * registered) before the loader sees them; stops at the first over a cap.
 * CU_OK also for a syntax error: the loader reports that one. */
static int anchors_capped(const char *text, size_t len, const char *origin, cu_error_t *err) {
    yaml_parser_t ps;
    if (!yaml_parser_initialize(&ps)) return cu_error_set(err, CU_ENOMEM, "out of memory");
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    size_t anchors = 0, aliases = 0;
    int rc = CU_OK, done = 0;
    while (!done && rc == CU_OK) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&ps, &ev)) break;
        const yaml_char_t *anchor =
            ev.type == YAML_SCALAR_EVENT           ? ev.data.scalar.anchor
            : ev.type == YAML_SEQUENCE_START_EVENT ? ev.data.sequence_start.anchor
            : ev.type == YAML_MAPPING_START_EVENT  ? ev.data.mapping_start.anchor
                                                   : NULL;
        int line = (int)ev.start_mark.line + 1;
        if (anchor && ++anchors > CFG_MAX_ANCHORS)
            rc = cu_error_set(err, CU_EINVAL, "%s defines over %d YAML anchors (&name) by line %d",
                              origin, CFG_MAX_ANCHORS, line);
        else if (ev.type == YAML_ALIAS_EVENT && ++aliases > CFG_MAX_ALIASES)
            rc = cu_error_set(err, CU_EINVAL, "%s uses over %d YAML aliases (*name) by line %d",
                              origin, CFG_MAX_ALIASES, line);
        done = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
    }
    yaml_parser_delete(&ps);
    return rc;
}

/* After the first document: anything but the end of the stream is an error. */
static int expect_end(yaml_parser_t *ps, const char *text, size_t len, const char *origin,
                      cu_error_t *err) {
    yaml_document_t next;
    if (!yaml_parser_load(ps, &next)) return syntax_error(ps, text, len, origin, err);
    yaml_node_t *root = yaml_document_get_root_node(&next);
    int rc = CU_OK;
    if (root)
        rc = cu_error_set(err, CU_EINVAL,
                          "a second YAML document starts at %s:%d:%d; a job config is one "
                          "document (remove the '---' line)",
                          origin, (int)root->start_mark.line + 1, (int)root->start_mark.column + 1);
    yaml_document_delete(&next);
    return rc;
}

static int parse_document(parse_t *p, const char *text, size_t len, cu_error_t *err) {
    yaml_parser_t ps;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&ps)) return cu_error_set(err, CU_ENOMEM, "out of memory");
    yaml_parser_set_input_string(&ps, (const unsigned char *)text, len);
    int rc;
    if (!yaml_parser_load(&ps, &doc)) {
        rc = syntax_error(&ps, text, len, p->origin, err);
    } else {
        p->doc = &doc;
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        if (!root || is_null_node(p, root))
            rc = cu_error_set(err, CU_EINVAL,
                              "%s holds no settings (it is empty or only comments); "
                              "configs/demo.yaml is a complete example",
                              p->origin);
        else
            rc = walk_root(p, root, err);
        yaml_document_delete(&doc);
        p->doc = NULL;
        if (rc == CU_OK) rc = expect_end(&ps, text, len, p->origin, err);
    }
    yaml_parser_delete(&ps);
    return rc;
}

static parse_t *parse_begin(const cu_config_t *cfg, const char *origin, cu_error_t *err) {
    parse_t *p = calloc(1, sizeof *p);
    if (p) p->cfg = malloc(sizeof *p->cfg);
    if (!p || !p->cfg) {
        free(p);
        cu_error_set(err, CU_ENOMEM, "out of memory reading the config");
        return NULL;
    }
    memcpy(p->cfg, cfg, sizeof *cfg);
    p->origin = origin;
    return p;
}

/* Copies the working config out when rc is CU_OK; frees p. */
static int parse_end(parse_t *p, cu_config_t *cfg, int rc) {
    if (rc == CU_OK) memcpy(cfg, p->cfg, sizeof *cfg);
    free(p->cfg);
    free(p);
    return rc;
}

int config_parse_yaml(cu_config_t *cfg, const char *text, size_t len, const char *origin,
                      cu_error_t *err) {
    if (!origin) origin = "<config>";
    if (!text) text = "", len = 0;
    if (len > CFG_MAX_FILE)
        return cu_error_set(err, CU_EINVAL, "%s is %zu bytes; a job config may be at most %u",
                            origin, len, CFG_MAX_FILE);
    int deep = flow_too_deep(text, len);
    if (deep)
        return cu_error_set(err, CU_EINVAL, "%s nests '[' or '{' over %d levels deep by line %d",
                            origin, CFG_MAX_FLOW_DEPTH, deep);
    int rc = anchors_capped(text, len, origin, err);
    if (rc) return rc;
    parse_t *p = parse_begin(cfg, origin, err);
    if (!p) return CU_ENOMEM;
    return parse_end(p, cfg, parse_document(p, text, len, err));
}

/* ---------------------------------------------------------------- files */

/* Reads a whole file of at most CFG_MAX_FILE bytes. Allocates *out. */
static int read_text(const char *path, char **out, size_t *len, cu_error_t *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return cu_error_set(err, CU_EIO, "cannot open %s: %s", path, strerror(errno));
    size_t cap = CFG_MAX_FILE + 1, n = 0, got;
    char *buf = malloc(cap);
    if (!buf) {
        fclose(f);
        return cu_error_set(err, CU_ENOMEM, "out of memory reading %s", path);
    }
    while (n < cap && (got = fread(buf + n, 1, cap - n, f)) > 0) n += got;
    int rc = CU_OK;
    if (ferror(f))
        rc = cu_error_set(err, CU_EIO, "cannot read %s: %s", path, strerror(errno));
    else if (n > CFG_MAX_FILE)
        rc = cu_error_set(err, CU_EINVAL, "%s is over %u bytes: too large for a job config", path,
                          CFG_MAX_FILE);
    fclose(f);
    if (rc) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = n;
    return CU_OK;
}

int config_load_file(cu_config_t *cfg, const char *path, cu_error_t *err) {
    config_defaults(cfg);
    char *text = NULL;
    size_t len = 0;
    int rc = read_text(path, &text, &len, err);
    if (rc) return rc;
    rc = config_parse_yaml(cfg, text, len, path, err);
    free(text);
    return rc;
}

/* ------------------------------------------------------------ overrides */

static size_t trim(const char **s, size_t len) {
    while (len && (**s == ' ' || **s == '\t')) (*s)++, len--;
    while (len && ((*s)[len - 1] == ' ' || (*s)[len - 1] == '\t')) len--;
    return len;
}

/* The value is one line, so a column says where; libyaml places errors
 * at the end of input on a line of its own. */
static int override_syntax_error(const yaml_parser_t *ps, const cfg_key_t *k, cu_error_t *err) {
    if (ps->error == YAML_MEMORY_ERROR) return cu_error_set(err, CU_ENOMEM, "out of memory");
    char where[48];
    if (ps->error == YAML_READER_ERROR || ps->problem_mark.line > 0)
        snprintf(where, sizeof where, "at its end");
    else
        snprintf(where, sizeof where, "at column %d", (int)ps->problem_mark.column + 1);
    return cu_error_set(err, CU_EINVAL,
                        "YAML syntax error in the value of %s on the command line, %s: %s", k->key,
                        where, ps->problem ? ps->problem : "malformed YAML");
}

static int expect_override_end(yaml_parser_t *ps, const cfg_key_t *k, cu_error_t *err) {
    yaml_document_t next;
    if (!yaml_parser_load(ps, &next)) return override_syntax_error(ps, k, err);
    int more = yaml_document_get_root_node(&next) != NULL;
    yaml_document_delete(&next);
    if (more)
        return cu_error_set(err, CU_EINVAL,
                            "the value of %s on the command line holds two YAML "
                            "documents",
                            k->key);
    return CU_OK;
}

/* A value in YAML flow syntax: "[qkv, mlp_fc]", "'a, b'", "\"x\"". */
static int override_yaml(parse_t *p, const cfg_key_t *k, const char *value, size_t len,
                         cu_error_t *err) {
    yaml_parser_t ps;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&ps)) return cu_error_set(err, CU_ENOMEM, "out of memory");
    yaml_parser_set_input_string(&ps, (const unsigned char *)value, len);
    int rc;
    if (!yaml_parser_load(&ps, &doc)) {
        rc = override_syntax_error(&ps, k, err);
    } else {
        p->doc = &doc;
        yaml_node_t *root = yaml_document_get_root_node(&doc);
        cfg_scalar_t none = {"", 0, 1, {NULL, 0, 0}};
        rc = root ? assign_node(p, k, NULL, root, err) : cfg_assign_scalar(p->cfg, k, &none, err);
        yaml_document_delete(&doc);
        if (rc == CU_OK) rc = expect_override_end(&ps, k, err);
    }
    yaml_parser_delete(&ps);
    return rc;
}

static int override_unknown(const char *key, size_t len, cu_error_t *err) {
    char name[NAME_MAX_SHOWN + 1], hint[300];
    snprintf(name, sizeof name, "%.*s", (int)(len < NAME_MAX_SHOWN ? len : NAME_MAX_SHOWN), key);
    const cfg_section_t *sec = cfg_find_section(key, len);
    if (sec) {
        const cfg_key_t *k = first_key(sec);
        return cu_error_set(err, CU_EINVAL,
                            "'%s' is a section; on the command line set one of its keys, e.g. "
                            "%s=%s",
                            name, k->key, k->def);
    }
    cfg_suggest_key(name, hint, sizeof hint);
    return cu_error_set(err, CU_EINVAL, "unknown key '%s' on the command line%s", name, hint);
}

int config_apply_override(cu_config_t *cfg, const char *assignment, cu_error_t *err) {
    const char *eq = assignment ? strchr(assignment, '=') : NULL;
    const char *key = assignment;
    size_t key_len = eq ? trim(&key, (size_t)(eq - assignment)) : 0;
    if (!eq || key_len == 0)
        return cu_error_set(err, CU_EINVAL,
                            "expected section.key=value on the command line, got '%s' (e.g. "
                            "train.lr=3e-4)",
                            assignment ? assignment : "");
    const cfg_key_t *k = cfg_find_key_n(key, key_len);
    if (!k) return override_unknown(key, key_len, err);
    const char *value = eq + 1;
    size_t len = trim(&value, strlen(value));
    parse_t *p = parse_begin(cfg, NULL, err);
    if (!p) return CU_ENOMEM;
    cfg_scalar_t s = {value, len, 1, {NULL, 0, 0}};
    int rc;
    if (len && strchr("[{\"'", value[0]))
        rc = override_yaml(p, k, value, len, err);
    else if (k->type == CFG_LIST)
        rc = cfg_assign_csv(p->cfg, k, &s, err);
    else
        rc = cfg_assign_scalar(p->cfg, k, &s, err);
    return parse_end(p, cfg, rc);
}
