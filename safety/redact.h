/*
 * Redaction: bytes in, bytes out with every finding's secret replaced by a
 * typed placeholder `<REDACTED:rule_id>`, counts per rule, and a verdict.
 * This is what `codexctl prepare` calls on each corpus file before
 * tokenising (stage data), and what the prompt and output checks build on.
 *
 * Per finding, the policy's action at the stage decides: allow leaves the
 * text, redact replaces the secret, block replaces it too and marks the
 * whole input blocked (the caller excludes the file or sample). Where
 * findings overlap, the earlier one's placeholder covers both and only it
 * is counted. An allowlisted path passes through untouched.
 */
#ifndef CU_SAFETY_REDACT_H
#define CU_SAFETY_REDACT_H

#include <jansson.h>
#include <stddef.h>

#include "safety/safety.h"

typedef struct {
    char *text; /* the redacted bytes, NUL-terminated (len excludes it) */
    size_t len;
    size_t *counts;             /* placeholders per rule index, safety_rule_count() long */
    size_t total;               /* placeholders in all */
    int blocked;                /* a rule whose action is block hit */
    int block_rule;             /* the first such rule, -1 if none */
    safety_findings_t findings; /* the findings acted on (action not allow) */
} safety_redact_result_t;

/* Allocates out's members (safety_redact_result_free). */
int safety_redact(const safety_engine_t *eng, safety_stage_t stage, const char *path,
                  const char *in, size_t len, safety_redact_result_t *out, cu_error_t *err);
void safety_redact_result_free(safety_redact_result_t *r);

/* The dataset's safety report, accumulated over files:
 *   safety_report_t rep; safety_report_init(&rep, &err);
 *   for each file: safety_redact(...); safety_report_add(&rep, path, &res);
 *   json_t *j = safety_report_json(&rep, eng);
 */
typedef struct {
    size_t *counts; /* redactions per rule */
    size_t total;
    size_t files, files_redacted, files_blocked;
    char **blocked_paths; /* with the rule that blocked each, "path\trule" */
    size_t n_blocked, cap_blocked;
} safety_report_t;

int safety_report_init(safety_report_t *rep, cu_error_t *err);
int safety_report_add(safety_report_t *rep, const char *path, const safety_redact_result_t *res,
                      cu_error_t *err);
/* {"policy": {source, sha256, ...}, "files", "files_redacted", "files_blocked",
 *  "redactions": {"rule": n, ...} (rules with n > 0), "total",
 *  "blocked": [{"path", "rule"}]}. New reference. */
json_t *safety_report_json(const safety_report_t *rep, const safety_engine_t *eng);
void safety_report_free(safety_report_t *rep);

#endif
