/*
 * The safety policy (configs/safety/policy.yaml): for every rule an action
 * at each stage where text passes the safety layer, a severity, whether it
 * is enabled; allowlists; and what evaluation does when a model's output
 * breaks the policy. See docs/safety.md for the file format.
 *
 * Stages: data (corpus files in `codexctl prepare`), prompt (text sent to a
 * model), output (samples a model generates). Actions: allow (report
 * nothing), redact (replace with a typed placeholder), block (refuse the
 * whole file or sample). An allowlist match overrides any action, block
 * included. A policy file that does not validate is an error naming the
 * file, line and column, never a silent default.
 *
 * The policy's sha256 is taken over a canonical JSON form of the resolved
 * policy (every rule with its effective settings, sorted keys), so comments
 * and layout do not change it and every effective change does.
 */
#ifndef CU_SAFETY_POLICY_H
#define CU_SAFETY_POLICY_H

#include <jansson.h>
#include <stddef.h>

#include "core/error.h"
#include "safety/detect.h"
#include "safety/rules.h"

typedef enum {
    SAFETY_STAGE_DATA = 0,
    SAFETY_STAGE_PROMPT = 1,
    SAFETY_STAGE_OUTPUT = 2,
} safety_stage_t;
#define SAFETY_NSTAGES 3

typedef enum {
    SAFETY_ACTION_ALLOW = 0,
    SAFETY_ACTION_REDACT = 1,
    SAFETY_ACTION_BLOCK = 2,
} safety_action_t;

typedef struct safety_policy safety_policy_t;

/* Reads and validates a policy file (SAFETY_POLICY_BUILTIN: the built-in
 * policy). Allocates *out (safety_policy_free). */
int safety_policy_load(const char *path, safety_policy_t **out, cu_error_t *err);

/* The same from memory; name is what error messages call the text. */
int safety_policy_parse(const char *text, size_t len, const char *name, safety_policy_t **out,
                        cu_error_t *err);

/* The name that means the built-in policy where a policy file could be
 * named (`safety.policy: built-in`, `--policy built-in`), and its source. */
#define SAFETY_POLICY_BUILTIN "built-in"

/* The built-in policy: configs/safety/policy.yaml as it was when the
 * programs were built (compiled in, so it does not depend on the working
 * directory). Allocates *out. */
int safety_policy_default(safety_policy_t **out, cu_error_t *err);

void safety_policy_free(safety_policy_t *p);

safety_action_t safety_policy_action(const safety_policy_t *p, int rule, safety_stage_t stage);
safety_severity_t safety_policy_severity(const safety_policy_t *p, int rule);
int safety_policy_rule_enabled(const safety_policy_t *p, int rule);

/* 1 when path matches an allowlisted glob (`*` also matches `/`; a glob
 * without `/` is also tried against the file's base name). */
int safety_policy_path_allowed(const safety_policy_t *p, const char *path);

/* Fills cfg with the policy's enabled rules and allowlists; the pointers
 * stay valid while p lives. */
void safety_policy_scan_config(const safety_policy_t *p, safety_scan_config_t *cfg);

int safety_policy_fail_job(const safety_policy_t *p);      /* a blocked output fails the job */
int safety_policy_refuse_export(const safety_policy_t *p); /* ... or refuses the export */

const char *safety_policy_sha256(const safety_policy_t *p); /* 64 hex digits */
const char *safety_policy_source(const safety_policy_t *p); /* file name or "built-in" */

/* For provenance.json and the job's "started" event: {"source", "sha256",
 * "rules", "relaxations": ["rule email: output allow", ...]} listing every
 * part that is switched off or allowed. New reference (json_decref). */
json_t *safety_policy_provenance(const safety_policy_t *p);

/* The canonical JSON the hash is taken over. New reference. */
json_t *safety_policy_canonical(const safety_policy_t *p);

const char *safety_stage_name(safety_stage_t s);
const char *safety_action_name(safety_action_t a);
int safety_stage_parse(const char *name);  /* -1 if unknown */
int safety_action_parse(const char *name); /* -1 if unknown */

#endif
