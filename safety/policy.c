/*
 * Loading, validating and hashing the safety policy (see policy.h).
 *
 * The YAML is read with libyaml's document API so that every error can
 * name the line and column of the node at fault. Validation is strict:
 * unknown keys, unknown rule ids, bad actions, stages, severities, booleans
 * and allow regexes that do not compile are all errors.
 */
#include "safety/policy.h"
#include "core/fileio.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fnmatch.h>
#include <openssl/evp.h>
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct {
    unsigned char enabled;
    unsigned char severity;
    unsigned char action[SAFETY_NSTAGES];
} rule_setting_t;

typedef struct {
    char **items;
    size_t n;
} strlist_t;

struct safety_policy {
    char source[512];
    int nrules;
    rule_setting_t *rules;
    unsigned char enabled_mask[256]; /* mirror of rules[].enabled for safety_scan_config_t */
    strlist_t paths, regexes, stopwords;
    int allow_inline;
    int fail_job, refuse_export;
    char sha256[65];
};

static const char *const STAGES[] = {"data", "prompt", "output"};
static const char *const ACTIONS[] = {"allow", "redact", "block"};

const char *safety_stage_name(safety_stage_t s) {
    return (unsigned)s < SAFETY_NSTAGES ? STAGES[s] : "unknown";
}
const char *safety_action_name(safety_action_t a) {
    return (unsigned)a < 3 ? ACTIONS[a] : "unknown";
}
int safety_stage_parse(const char *name) {
    for (int i = 0; i < SAFETY_NSTAGES; i++)
        if (!strcmp(name, STAGES[i])) return i;
    return -1;
}
int safety_action_parse(const char *name) {
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, ACTIONS[i])) return i;
    return -1;
}

static void strlist_free(strlist_t *l) {
    for (size_t i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

void safety_policy_free(safety_policy_t *p) {
    if (!p) return;
    free(p->rules);
    strlist_free(&p->paths);
    strlist_free(&p->regexes);
    strlist_free(&p->stopwords);
    free(p);
}

/* Built-in category defaults. */
static const unsigned char CATEGORY_DEFAULTS[2][SAFETY_NSTAGES] = {
    [SAFETY_CAT_SECRET] = {SAFETY_ACTION_REDACT, SAFETY_ACTION_BLOCK, SAFETY_ACTION_BLOCK},
    [SAFETY_CAT_PII] = {SAFETY_ACTION_REDACT, SAFETY_ACTION_REDACT, SAFETY_ACTION_REDACT},
};

static safety_policy_t *policy_alloc(cu_error_t *err) {
    safety_policy_t *p = calloc(1, sizeof *p);
    if (p) {
        p->nrules = safety_rule_count();
        p->rules = calloc((size_t)p->nrules, sizeof *p->rules);
    }
    if (!p || !p->rules || p->nrules > 256) {
        safety_policy_free(p);
        cu_error_set(err, CU_ENOMEM, "out of memory creating a policy");
        return NULL;
    }
    const safety_rule_t *rules = safety_rules();
    for (int r = 0; r < p->nrules; r++) {
        p->rules[r].enabled = 1;
        p->rules[r].severity = (unsigned char)rules[r].severity;
        memcpy(p->rules[r].action, CATEGORY_DEFAULTS[rules[r].category], SAFETY_NSTAGES);
    }
    p->allow_inline = 1;
    p->refuse_export = 1;
    return p;
}

/* ---- canonical form and hash ---- */

static json_t *strlist_json(const strlist_t *l) {
    json_t *a = json_array();
    for (size_t i = 0; i < l->n; i++) json_array_append_new(a, json_string(l->items[i]));
    return a;
}

json_t *safety_policy_canonical(const safety_policy_t *p) {
    json_t *rules = json_object();
    const safety_rule_t *table = safety_rules();
    for (int r = 0; r < p->nrules; r++) {
        json_t *o = json_object();
        json_object_set_new(o, "enabled", json_boolean(p->rules[r].enabled));
        json_object_set_new(o, "severity", json_string(safety_severity_name(p->rules[r].severity)));
        for (int s = 0; s < SAFETY_NSTAGES; s++)
            json_object_set_new(o, STAGES[s], json_string(ACTIONS[p->rules[r].action[s]]));
        json_object_set_new(rules, table[r].id, o);
    }
    json_t *allow = json_object();
    json_object_set_new(allow, "paths", strlist_json(&p->paths));
    json_object_set_new(allow, "regexes", strlist_json(&p->regexes));
    json_object_set_new(allow, "stopwords", strlist_json(&p->stopwords));
    json_object_set_new(allow, "inline", json_boolean(p->allow_inline));
    json_t *eval = json_object();
    json_object_set_new(eval, "fail_job", json_boolean(p->fail_job));
    json_object_set_new(eval, "refuse_export", json_boolean(p->refuse_export));
    json_t *root = json_object();
    json_object_set_new(root, "version", json_integer(1));
    json_object_set_new(root, "rules", rules);
    json_object_set_new(root, "allowlist", allow);
    json_object_set_new(root, "evaluation", eval);
    return root;
}

static int policy_hash(safety_policy_t *p, cu_error_t *err) {
    json_t *c = safety_policy_canonical(p);
    char *text = c ? json_dumps(c, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    json_decref(c);
    if (!text) return cu_error_set(err, CU_ENOMEM, "out of memory hashing the policy");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    int ok = EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL);
    free(text);
    if (!ok || mdlen != 32) return cu_error_set(err, CU_EINTERNAL, "sha256 failed");
    for (unsigned i = 0; i < 32; i++) snprintf(p->sha256 + 2 * i, 3, "%02x", md[i]);
    return CU_OK;
}

static void finish_masks(safety_policy_t *p) {
    for (int r = 0; r < p->nrules; r++) p->enabled_mask[r] = p->rules[r].enabled;
}

/* configs/safety/policy.yaml as it was at build time (generated by
 * safety/CMakeLists.txt). */
extern const char cu_safety_policy_builtin[];
extern const size_t cu_safety_policy_builtin_len;

int safety_policy_default(safety_policy_t **out, cu_error_t *err) {
    return safety_policy_parse(cu_safety_policy_builtin, cu_safety_policy_builtin_len,
                               SAFETY_POLICY_BUILTIN, out, err);
}

/* ---- YAML ---- */

typedef struct {
    yaml_document_t *doc;
    const char *name;
    cu_error_t *err;
} ctx_t;

static int fail_at(ctx_t *c, const yaml_node_t *n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail_at(ctx_t *c, const yaml_node_t *n, const char *fmt, ...) {
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cu_error_set(c->err, CU_EINVAL, "%s:%zu:%zu: %s", c->name,
                        n ? (size_t)n->start_mark.line + 1 : 1,
                        n ? (size_t)n->start_mark.column + 1 : 1, msg);
}

static const char *scalar(const yaml_node_t *n) {
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int want_scalar(ctx_t *c, const yaml_node_t *n, const char *what, const char **out) {
    *out = scalar(n);
    if (!*out) return fail_at(c, n, "%s must be a single value", what);
    return CU_OK;
}

static int parse_bool(ctx_t *c, const yaml_node_t *n, const char *what, int *out) {
    const char *s;
    int rc = want_scalar(c, n, what, &s);
    if (rc) return rc;
    if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))
        *out = 1;
    else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))
        *out = 0;
    else
        return fail_at(c, n, "%s must be true or false, not '%s'", what, s);
    return CU_OK;
}

static int parse_action(ctx_t *c, const yaml_node_t *n, const char *what, unsigned char *out) {
    const char *s;
    int rc = want_scalar(c, n, what, &s);
    if (rc) return rc;
    int a = safety_action_parse(s);
    if (a < 0) return fail_at(c, n, "%s: unknown action '%s' (block, redact or allow)", what, s);
    *out = (unsigned char)a;
    return CU_OK;
}

#define FOR_PAIRS(c, node, pair)                                                                   \
    for (yaml_node_pair_t *pair = (node)->data.mapping.pairs.start;                                \
         pair < (node)->data.mapping.pairs.top; pair++)

static int want_mapping(ctx_t *c, const yaml_node_t *n, const char *what) {
    if (!n || n->type != YAML_MAPPING_NODE) return fail_at(c, n, "%s must be a mapping", what);
    return CU_OK;
}

/* stage: action pairs into actions[] */
static int parse_stage_actions(
    ctx_t *c, yaml_node_t *n, const char *what, unsigned char *actions, int allow_other,
    int (*other)(ctx_t *, const char *, yaml_node_t *, yaml_node_t *, void *), void *arg) {
    int rc = want_mapping(c, n, what);
    if (rc) return rc;
    FOR_PAIRS(c, n, pr) {
        yaml_node_t *k = yaml_document_get_node(c->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, pr->value);
        const char *key = scalar(k);
        if (!key) return fail_at(c, k, "%s: keys must be names", what);
        int st = safety_stage_parse(key);
        if (st >= 0) {
            char w[160];
            snprintf(w, sizeof w, "%.100s.%.20s", what, key);
            rc = parse_action(c, v, w, &actions[st]);
        } else if (allow_other) {
            rc = other(c, key, k, v, arg);
        } else {
            rc = fail_at(c, k, "%s: unknown stage '%s' (data, prompt or output)", what, key);
        }
        if (rc) return rc;
    }
    return CU_OK;
}

typedef struct {
    safety_policy_t *p;
    int rule;
} rule_arg_t;

static int rule_other_key(ctx_t *c, const char *key, yaml_node_t *k, yaml_node_t *v, void *arg) {
    rule_arg_t *ra = arg;
    rule_setting_t *rs = &ra->p->rules[ra->rule];
    const char *id = safety_rules()[ra->rule].id;
    if (!strcmp(key, "severity")) {
        const char *s;
        int rc = want_scalar(c, v, "severity", &s);
        if (rc) return rc;
        int sev = safety_severity_parse(s);
        if (sev < 0)
            return fail_at(c, v,
                           "rules.%s.severity: unknown severity '%s' (low, medium, high, "
                           "critical)",
                           id, s);
        rs->severity = (unsigned char)sev;
        return CU_OK;
    }
    if (!strcmp(key, "enabled")) {
        int b;
        int rc = parse_bool(c, v, "enabled", &b);
        rs->enabled = (unsigned char)b;
        return rc;
    }
    return fail_at(c, k, "rules.%s: unknown key '%s' (data, prompt, output, severity or enabled)",
                   id, key);
}

static int parse_defaults(ctx_t *c, yaml_node_t *n, safety_policy_t *p) {
    int rc = want_mapping(c, n, "defaults");
    if (rc) return rc;
    unsigned char cat[2][SAFETY_NSTAGES];
    memcpy(cat, CATEGORY_DEFAULTS, sizeof cat);
    FOR_PAIRS(c, n, pr) {
        yaml_node_t *k = yaml_document_get_node(c->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, pr->value);
        const char *key = scalar(k);
        int ci = key && !strcmp(key, "secret") ? 0 : key && !strcmp(key, "pii") ? 1 : -1;
        if (ci < 0)
            return fail_at(c, k, "defaults: unknown category '%s' (secret or pii)",
                           key ? key : "?");
        char w[64];
        snprintf(w, sizeof w, "defaults.%s", key);
        rc = parse_stage_actions(c, v, w, cat[ci], 0, NULL, NULL);
        if (rc) return rc;
    }
    for (int r = 0; r < p->nrules; r++)
        memcpy(p->rules[r].action, cat[safety_rules()[r].category], SAFETY_NSTAGES);
    return CU_OK;
}

static int parse_rules(ctx_t *c, yaml_node_t *n, safety_policy_t *p) {
    int rc = want_mapping(c, n, "rules");
    if (rc) return rc;
    unsigned char seen[256] = {0};
    FOR_PAIRS(c, n, pr) {
        yaml_node_t *k = yaml_document_get_node(c->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, pr->value);
        const char *id = scalar(k);
        int r = id ? safety_rule_find(id) : -1;
        if (r < 0)
            return fail_at(c, k, "rules: unknown rule '%s' (docs/safety.md lists the rules)",
                           id ? id : "?");
        if (seen[r]) return fail_at(c, k, "rules: rule '%s' appears twice", id);
        seen[r] = 1;
        char w[160];
        snprintf(w, sizeof w, "rules.%s", id);
        rule_arg_t ra = {p, r};
        rc = parse_stage_actions(c, v, w, p->rules[r].action, 1, rule_other_key, &ra);
        if (rc) return rc;
    }
    return CU_OK;
}

static int parse_strlist(ctx_t *c, yaml_node_t *n, const char *what, strlist_t *out, int regex) {
    if (!n || n->type != YAML_SEQUENCE_NODE)
        return fail_at(c, n, "%s must be a list of strings", what);
    size_t count = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
    strlist_free(out);
    out->items = calloc(count ? count : 1, sizeof *out->items);
    if (!out->items) return cu_error_set(c->err, CU_ENOMEM, "out of memory");
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *v = yaml_document_get_node(c->doc, *it);
        const char *s = scalar(v);
        if (!s || !*s) return fail_at(c, v, "%s: entries must be non-empty strings", what);
        if (regex) {
            int ec;
            PCRE2_SIZE eo;
            pcre2_code *code =
                pcre2_compile((PCRE2_SPTR)s, PCRE2_ZERO_TERMINATED, 0, &ec, &eo, NULL);
            if (!code) {
                PCRE2_UCHAR msg[256];
                pcre2_get_error_message(ec, msg, sizeof msg);
                return fail_at(c, v, "%s: bad regex '%s': %s at offset %zu", what, s, (char *)msg,
                               (size_t)eo);
            }
            pcre2_code_free(code);
        }
        out->items[out->n] = strdup(s);
        if (!out->items[out->n]) return cu_error_set(c->err, CU_ENOMEM, "out of memory");
        out->n++;
    }
    return CU_OK;
}

static int parse_allowlist(ctx_t *c, yaml_node_t *n, safety_policy_t *p) {
    int rc = want_mapping(c, n, "allowlist");
    if (rc) return rc;
    FOR_PAIRS(c, n, pr) {
        yaml_node_t *k = yaml_document_get_node(c->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, pr->value);
        const char *key = scalar(k);
        if (key && !strcmp(key, "paths"))
            rc = parse_strlist(c, v, "allowlist.paths", &p->paths, 0);
        else if (key && !strcmp(key, "regexes"))
            rc = parse_strlist(c, v, "allowlist.regexes", &p->regexes, 1);
        else if (key && !strcmp(key, "stopwords"))
            rc = parse_strlist(c, v, "allowlist.stopwords", &p->stopwords, 0);
        else if (key && !strcmp(key, "inline"))
            rc = parse_bool(c, v, "allowlist.inline", &p->allow_inline);
        else
            rc = fail_at(c, k, "allowlist: unknown key '%s' (paths, regexes, stopwords or inline)",
                         key ? key : "?");
        if (rc) return rc;
    }
    return CU_OK;
}

static int parse_evaluation(ctx_t *c, yaml_node_t *n, safety_policy_t *p) {
    int rc = want_mapping(c, n, "evaluation");
    if (rc) return rc;
    FOR_PAIRS(c, n, pr) {
        yaml_node_t *k = yaml_document_get_node(c->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, pr->value);
        const char *key = scalar(k);
        if (key && !strcmp(key, "fail_job"))
            rc = parse_bool(c, v, "evaluation.fail_job", &p->fail_job);
        else if (key && !strcmp(key, "refuse_export"))
            rc = parse_bool(c, v, "evaluation.refuse_export", &p->refuse_export);
        else
            rc = fail_at(c, k, "evaluation: unknown key '%s' (fail_job or refuse_export)",
                         key ? key : "?");
        if (rc) return rc;
    }
    return CU_OK;
}

static int parse_root(ctx_t *c, yaml_node_t *root, safety_policy_t *p) {
    if (!root) return cu_error_set(c->err, CU_EINVAL, "%s: the policy is empty", c->name);
    int rc = want_mapping(c, root, "the policy");
    if (rc) return rc;
    int have_version = 0;
    yaml_node_t *defaults = NULL, *rules = NULL, *allow = NULL, *eval = NULL;
    FOR_PAIRS(c, root, pr) {
        yaml_node_t *k = yaml_document_get_node(c->doc, pr->key);
        yaml_node_t *v = yaml_document_get_node(c->doc, pr->value);
        const char *key = scalar(k);
        if (key && !strcmp(key, "version")) {
            const char *s = scalar(v);
            if (!s || strcmp(s, "1"))
                return fail_at(c, v, "version must be 1 (the only policy format so far)");
            have_version = 1;
        } else if (key && !strcmp(key, "defaults"))
            defaults = v;
        else if (key && !strcmp(key, "rules"))
            rules = v;
        else if (key && !strcmp(key, "allowlist"))
            allow = v;
        else if (key && !strcmp(key, "evaluation"))
            eval = v;
        else
            return fail_at(c, k,
                           "unknown key '%s' (version, defaults, rules, allowlist or evaluation)",
                           key ? key : "?");
    }
    if (!have_version) return fail_at(c, root, "missing 'version: 1'");
    /* defaults first: rules override them whatever the order in the file */
    if (defaults && (rc = parse_defaults(c, defaults, p))) return rc;
    if (rules && (rc = parse_rules(c, rules, p))) return rc;
    if (allow && (rc = parse_allowlist(c, allow, p))) return rc;
    if (eval && (rc = parse_evaluation(c, eval, p))) return rc;
    return CU_OK;
}

int safety_policy_parse(const char *text, size_t len, const char *name, safety_policy_t **out,
                        cu_error_t *err) {
    *out = NULL;
    safety_policy_t *p = policy_alloc(err);
    if (!p) return CU_ENOMEM;
    snprintf(p->source, sizeof p->source, "%s", name);
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) {
        safety_policy_free(p);
        return cu_error_set(err, CU_ENOMEM, "out of memory starting the YAML parser");
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc;
    if (!yaml_parser_load(&parser, &doc)) {
        rc = cu_error_set(err, CU_EINVAL, "%s:%zu:%zu: YAML syntax error: %s", name,
                          (size_t)parser.problem_mark.line + 1,
                          (size_t)parser.problem_mark.column + 1,
                          parser.problem ? parser.problem : "unreadable");
        yaml_parser_delete(&parser);
        safety_policy_free(p);
        return rc;
    }
    ctx_t c = {&doc, name, err};
    rc = parse_root(&c, yaml_document_get_root_node(&doc), p);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (!rc) {
        finish_masks(p);
        rc = policy_hash(p, err);
    }
    if (rc) {
        safety_policy_free(p);
        return rc;
    }
    *out = p;
    return CU_OK;
}

int safety_policy_load(const char *path, safety_policy_t **out, cu_error_t *err) {
    *out = NULL;
    if (!strcmp(path, SAFETY_POLICY_BUILTIN)) return safety_policy_default(out, err);
    uint8_t *buf;
    size_t n;
    int rc = cu_read_file(path, 16u << 20, &buf, &n, err);
    if (rc) return cu_error_prefix(err, "safety policy");
    rc = safety_policy_parse((const char *)buf, n, path, out, err);
    free(buf);
    return rc;
}

/* ---- queries ---- */

safety_action_t safety_policy_action(const safety_policy_t *p, int rule, safety_stage_t stage) {
    if (rule < 0 || rule >= p->nrules || (unsigned)stage >= SAFETY_NSTAGES)
        return SAFETY_ACTION_BLOCK;
    if (!p->rules[rule].enabled) return SAFETY_ACTION_ALLOW;
    return (safety_action_t)p->rules[rule].action[stage];
}

safety_severity_t safety_policy_severity(const safety_policy_t *p, int rule) {
    return (safety_severity_t)p->rules[rule].severity;
}

int safety_policy_rule_enabled(const safety_policy_t *p, int rule) {
    return rule >= 0 && rule < p->nrules && p->rules[rule].enabled;
}

int safety_policy_path_allowed(const safety_policy_t *p, const char *path) {
    if (!path) return 0;
    while (path[0] == '.' && path[1] == '/') path += 2;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    for (size_t i = 0; i < p->paths.n; i++) {
        const char *g = p->paths.items[i];
        if (fnmatch(g, path, 0) == 0) return 1;
        if (!strchr(g, '/') && fnmatch(g, base, 0) == 0) return 1;
    }
    return 0;
}

void safety_policy_scan_config(const safety_policy_t *p, safety_scan_config_t *cfg) {
    safety_scan_config_init(cfg);
    cfg->enabled = p->enabled_mask;
    cfg->allow_regexes = (const char *const *)p->regexes.items;
    cfg->n_allow_regexes = p->regexes.n;
    cfg->stopwords = (const char *const *)p->stopwords.items;
    cfg->n_stopwords = p->stopwords.n;
    cfg->allow_inline = p->allow_inline;
}

int safety_policy_fail_job(const safety_policy_t *p) {
    return p->fail_job;
}
int safety_policy_refuse_export(const safety_policy_t *p) {
    return p->refuse_export;
}
const char *safety_policy_sha256(const safety_policy_t *p) {
    return p->sha256;
}
const char *safety_policy_source(const safety_policy_t *p) {
    return p->source;
}

json_t *safety_policy_provenance(const safety_policy_t *p) {
    json_t *o = json_object();
    json_t *relax = json_array();
    const safety_rule_t *table = safety_rules();
    int enabled = 0;
    char line[256];
    for (int r = 0; r < p->nrules; r++) {
        if (!p->rules[r].enabled) {
            snprintf(line, sizeof line, "rule %s: disabled", table[r].id);
            json_array_append_new(relax, json_string(line));
            continue;
        }
        enabled++;
        for (int s = 0; s < SAFETY_NSTAGES; s++)
            if (p->rules[r].action[s] == SAFETY_ACTION_ALLOW) {
                snprintf(line, sizeof line, "rule %s: %s allow", table[r].id, STAGES[s]);
                json_array_append_new(relax, json_string(line));
            }
    }
    const strlist_t *lists[] = {&p->paths, &p->regexes, &p->stopwords};
    const char *names[] = {"paths", "regexes", "stopwords"};
    for (int i = 0; i < 3; i++)
        for (size_t k = 0; k < lists[i]->n; k++) {
            snprintf(line, sizeof line, "allowlist.%s: %.200s", names[i], lists[i]->items[k]);
            json_array_append_new(relax, json_string(line));
        }
    if (p->allow_inline) json_array_append_new(relax, json_string("allowlist.inline: codex:allow"));
    if (!p->refuse_export && !p->fail_job)
        json_array_append_new(relax, json_string("evaluation: blocked outputs only recorded"));
    json_object_set_new(o, "source", json_string(p->source));
    json_object_set_new(o, "sha256", json_string(p->sha256));
    json_object_set_new(o, "rules", json_integer(enabled));
    json_object_set_new(o, "relaxations", relax);
    return o;
}
