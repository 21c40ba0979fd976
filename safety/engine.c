/*
 * The safety engine (see safety.h): a policy plus the scanner compiled from
 * it, and the JSON form of findings shared by every report.
 */
#include "safety/safety.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct safety_engine {
    safety_policy_t *policy;
    safety_scanner_t *scanner;
};

int safety_engine_from_policy(safety_policy_t *policy, safety_engine_t **out, cu_error_t *err) {
    *out = NULL;
    safety_engine_t *eng = calloc(1, sizeof *eng);
    if (!eng) {
        safety_policy_free(policy);
        return cu_error_set(err, CU_ENOMEM, "out of memory creating the safety engine");
    }
    eng->policy = policy;
    safety_scan_config_t cfg;
    safety_policy_scan_config(policy, &cfg);
    int rc = safety_scanner_new(&cfg, &eng->scanner, err);
    if (rc) {
        cu_error_prefix(err, "%s", safety_policy_source(policy));
        safety_engine_free(eng);
        return rc;
    }
    *out = eng;
    return CU_OK;
}

int safety_engine_new(const char *policy_path, safety_engine_t **out, cu_error_t *err) {
    *out = NULL;
    safety_policy_t *p = NULL;
    int rc =
        policy_path ? safety_policy_load(policy_path, &p, err) : safety_policy_default(&p, err);
    if (rc) return rc;
    return safety_engine_from_policy(p, out, err);
}

void safety_engine_free(safety_engine_t *eng) {
    if (!eng) return;
    safety_scanner_free(eng->scanner);
    safety_policy_free(eng->policy);
    free(eng);
}

const safety_policy_t *safety_engine_policy(const safety_engine_t *eng) {
    return eng->policy;
}
const safety_scanner_t *safety_engine_scanner(const safety_engine_t *eng) {
    return eng->scanner;
}

int safety_scan_text(const safety_engine_t *eng, const char *path, const char *text, size_t len,
                     safety_findings_t *out, cu_error_t *err) {
    if (path && safety_policy_path_allowed(eng->policy, path)) return CU_OK;
    return safety_scan(eng->scanner, text, len, 0, out, err);
}

void safety_mask_secret(const char *secret, size_t n, char *buf, size_t cap) {
    size_t show = n >= 16 ? 4 : 0; /* short secrets show nothing */
    char head[8] = {0};
    for (size_t i = 0; i < show; i++) {
        unsigned char c = (unsigned char)secret[i];
        head[i] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
    }
    snprintf(buf, cap, "%s***(%zu)", head, n);
}

json_t *safety_finding_json(const safety_engine_t *eng, safety_stage_t stage,
                            const safety_finding_t *f, const char *text, const char *path) {
    const safety_rule_t *rule = &safety_rules()[f->rule];
    json_t *o = json_object();
    if (path) json_object_set_new(o, "path", json_string(path));
    json_object_set_new(o, "rule", json_string(rule->id));
    json_object_set_new(o, "description", json_string(rule->description));
    json_object_set_new(o, "category", json_string(safety_category_name(rule->category)));
    json_object_set_new(
        o, "severity",
        json_string(safety_severity_name(safety_policy_severity(eng->policy, f->rule))));
    json_object_set_new(
        o, "action",
        json_string(safety_action_name(safety_policy_action(eng->policy, f->rule, stage))));
    json_object_set_new(o, "line", json_integer((json_int_t)f->line));
    json_object_set_new(o, "column", json_integer((json_int_t)f->column));
    json_object_set_new(o, "start", json_integer((json_int_t)f->start));
    json_object_set_new(o, "end", json_integer((json_int_t)f->end));
    if (text) {
        char mask[64];
        safety_mask_secret(text + f->secret_start, f->secret_end - f->secret_start, mask,
                           sizeof mask);
        json_object_set_new(o, "preview", json_string(mask));
    }
    json_object_set_new(o, "entropy", json_real((double)(int)(f->entropy * 100 + 0.5) / 100));
    return o;
}
