/*
 * Prompt and output checks (see output.h): redaction at the stage, a
 * verdict, and the event that records it.
 */
#include "safety/output.h"

#include <stdio.h>
#include <string.h>

const char *safety_verdict_name(safety_verdict_t v) {
    return v == SAFETY_VERDICT_BLOCK ? "block" : v == SAFETY_VERDICT_REDACT ? "redact" : "pass";
}

int safety_check_text(const safety_engine_t *eng, safety_stage_t stage, const char *text,
                      size_t len, safety_output_result_t *out, cu_error_t *err) {
    memset(out, 0, sizeof *out);
    int rc = safety_redact(eng, stage, NULL, text, len, &out->redacted, err);
    if (rc) return rc;
    out->verdict = out->redacted.blocked          ? SAFETY_VERDICT_BLOCK
                   : out->redacted.findings.count ? SAFETY_VERDICT_REDACT
                                                  : SAFETY_VERDICT_PASS;
    return CU_OK;
}

int safety_check_output(const safety_engine_t *eng, const char *sample, size_t len,
                        safety_output_result_t *out, cu_error_t *err) {
    return safety_check_text(eng, SAFETY_STAGE_OUTPUT, sample, len, out, err);
}

void safety_output_result_free(safety_output_result_t *r) {
    if (!r) return;
    safety_redact_result_free(&r->redacted);
    r->verdict = SAFETY_VERDICT_PASS;
}

json_t *safety_output_event_json(const safety_engine_t *eng, const safety_output_result_t *r,
                                 long step, const char *sample) {
    json_t *o = json_object();
    json_object_set_new(o, "step", json_integer(step));
    json_object_set_new(o, "type", json_string("safety"));
    json_object_set_new(o, "stage", json_string("output"));
    json_object_set_new(o, "verdict", json_string(safety_verdict_name(r->verdict)));
    json_object_set_new(o, "policy_sha256",
                        json_string(safety_policy_sha256(safety_engine_policy(eng))));
    json_t *arr = json_array();
    for (size_t i = 0; i < r->redacted.findings.count; i++)
        json_array_append_new(arr,
                              safety_finding_json(eng, SAFETY_STAGE_OUTPUT,
                                                  &r->redacted.findings.items[i], sample, NULL));
    json_object_set_new(o, "findings", arr);
    char msg[256];
    const char *first =
        r->redacted.findings.count ? safety_rules()[r->redacted.findings.items[0].rule].id : "none";
    snprintf(msg, sizeof msg, "sample %s: %zu finding(s), first %s",
             r->verdict == SAFETY_VERDICT_BLOCK ? "blocked" : "redacted",
             r->redacted.findings.count, first);
    json_object_set_new(o, "message", json_string(msg));
    return o;
}
