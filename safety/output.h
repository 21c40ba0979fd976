/*
 * Checks of text crossing the model boundary: a sample the model generated
 * (stage output; rank 0 calls this for every evaluation sample) or a prompt
 * sent to it (stage prompt). The verdict is the strongest action any
 * finding earned; the redacted text is what may be shown or logged.
 *
 * Rank 0's use, one call per sample:
 *   safety_output_result_t r;
 *   safety_check_output(eng, sample, len, &r, &err);
 *   if (r.findings.count) append safety_output_event_json(eng, &r, step, sample) to events.jsonl;
 *   state.json safety counts += r.findings.count, blocked += r.verdict == SAFETY_VERDICT_BLOCK;
 *   a BLOCK fails the job if safety_policy_fail_job(), refuses the export if
 *   safety_policy_refuse_export().
 */
#ifndef CU_SAFETY_OUTPUT_H
#define CU_SAFETY_OUTPUT_H

#include <jansson.h>

#include "safety/redact.h"
#include "safety/safety.h"

typedef enum {
    SAFETY_VERDICT_PASS = 0,   /* nothing found (or only allowed findings) */
    SAFETY_VERDICT_REDACT = 1, /* findings replaced; the redacted text may be used */
    SAFETY_VERDICT_BLOCK = 2,  /* a block rule hit: the sample breaks the policy */
} safety_verdict_t;

typedef struct {
    safety_verdict_t verdict;
    safety_redact_result_t redacted; /* text, counts, findings, block_rule */
} safety_output_result_t;

/* stage is SAFETY_STAGE_OUTPUT or SAFETY_STAGE_PROMPT. Allocates out's
 * members (safety_output_result_free). */
int safety_check_text(const safety_engine_t *eng, safety_stage_t stage, const char *text,
                      size_t len, safety_output_result_t *out, cu_error_t *err);

/* safety_check_text at the output stage. */
int safety_check_output(const safety_engine_t *eng, const char *sample, size_t len,
                        safety_output_result_t *out, cu_error_t *err);

void safety_output_result_free(safety_output_result_t *r);

const char *safety_verdict_name(safety_verdict_t v);

/* An events.jsonl object (without "time"): {"type": "safety", "step",
 * "stage": "output", "verdict", "policy_sha256", "findings": [...],
 * "message"}. Never contains a secret. sample may be NULL (no previews). */
json_t *safety_output_event_json(const safety_engine_t *eng, const safety_output_result_t *r,
                                 long step, const char *sample);

#endif
