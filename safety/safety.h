/*
 * The safety engine: a policy and the scanner compiled from it, the one
 * object every caller of the safety layer holds (codexctl prepare and scan,
 * rank 0 during evaluation, codex-ita). Create it once; it is immutable, so
 * threads may share it.
 *
 * What callers use it for:
 *   prepare     safety_redact(eng, SAFETY_STAGE_DATA, path, ...)   redact.h
 *   evaluation  safety_check_output(eng, sample, ...)               output.h
 *   scanning    safety_scan_text(eng, path, ...) + safety_finding_json
 */
#ifndef CU_SAFETY_SAFETY_H
#define CU_SAFETY_SAFETY_H

#include <jansson.h>

#include "core/error.h"
#include "safety/detect.h"
#include "safety/policy.h"
#include "safety/rules.h"

typedef struct safety_engine safety_engine_t;

/* Loads the policy at policy_path (NULL or SAFETY_POLICY_BUILTIN: the
 * built-in policy, safety_policy_default) and
 * compiles the scanner. Allocates *out (safety_engine_free). A missing or
 * invalid policy file is an error, never a fallback to the default. */
int safety_engine_new(const char *policy_path, safety_engine_t **out, cu_error_t *err);

/* The same for a policy the caller built; takes ownership of policy, also
 * on failure. */
int safety_engine_from_policy(safety_policy_t *policy, safety_engine_t **out, cu_error_t *err);

void safety_engine_free(safety_engine_t *eng);

const safety_policy_t *safety_engine_policy(const safety_engine_t *eng);
const safety_scanner_t *safety_engine_scanner(const safety_engine_t *eng);

/* Scans text as if it were the file at path (NULL for none): nothing when
 * the path is allowlisted, else the findings of enabled rules that are not
 * allowlisted. Appends to *out. */
int safety_scan_text(const safety_engine_t *eng, const char *path, const char *text, size_t len,
                     safety_findings_t *out, cu_error_t *err);

/* One finding as JSON for events, reports and the scan CLI: rule,
 * description, category, severity (the policy's), action at stage, line,
 * column, start, end, and a masked preview (first 4 bytes of the secret and
 * its length; never the secret). path may be NULL. New reference. */
json_t *safety_finding_json(const safety_engine_t *eng, safety_stage_t stage,
                            const safety_finding_t *f, const char *text, const char *path);

/* The masked preview used above into buf: "AKIA…(20)". */
void safety_mask_secret(const char *secret, size_t n, char *buf, size_t cap);

#endif
