/*
 * Located findings ("hits"): findings tied to a file path and to lines of
 * that file, as the hygiene scanner reports them, whether the text was a
 * whole file or the lines a unified diff adds. Also their JSON and SARIF
 * 2.1.0 forms, so `codexctl scan` and ITA's `POST /v1/hygiene/scan` answer
 * alike:
 *
 *   safety_hits_t h = {0};
 *   safety_hits_scan_diff(eng, SAFETY_STAGE_DATA, body, len, &h, &err);   (or _scan_text)
 *   json_t *j = sarif ? safety_hits_sarif(eng, &h) : safety_hits_json(eng, SAFETY_STAGE_DATA, &h);
 *   safety_hits_free(&h);
 *
 * No hit holds a secret: only a masked preview and a sha256 fingerprint of
 * the rule id and the secret (stable across runs, for deduplication).
 */
#ifndef CU_SAFETY_HITS_H
#define CU_SAFETY_HITS_H

#include <jansson.h>
#include <stddef.h>

#include "safety/safety.h"

typedef struct {
    char *path;         /* owned */
    safety_finding_t f; /* offsets into the scanned text (for a diff: its added lines) */
    size_t line, column, end_line, end_column; /* in the file; 1-based, end column exclusive */
    char preview[64];
    char fingerprint[65];
} safety_hit_t;

typedef struct {
    safety_hit_t *items;
    size_t count, cap;
    size_t files, bytes; /* texts and bytes scanned */
    size_t limit_hits;   /* see safety_findings_t */
    int from_diff;       /* offsets are not file offsets: left out of the JSON */
} safety_hits_t;

void safety_hits_free(safety_hits_t *h);

/* Scans text as the file at path (path allowlists apply) and appends the
 * hits whose action at stage is not allow. */
int safety_hits_scan_text(const safety_engine_t *eng, safety_stage_t stage, const char *path,
                          const char *text, size_t len, safety_hits_t *out, cu_error_t *err);

/* Parses a unified diff (git's or diff -u's) and scans, per file, only the
 * added lines, reporting hits at their lines in the new file. Removed and
 * context lines and deleted files are not scanned. */
int safety_hits_scan_diff(const safety_engine_t *eng, safety_stage_t stage, const char *diff,
                          size_t len, safety_hits_t *out, cu_error_t *err);

/* {"version": 1, "tool", "policy": {"source", "sha256"}, "stage",
 *  "files_scanned", "bytes_scanned", "findings": [...]}. New reference. */
json_t *safety_hits_json(const safety_engine_t *eng, safety_stage_t stage, const safety_hits_t *h);

/* A SARIF 2.1.0 log with one run: the enabled rules and one result per hit.
 * New reference. */
json_t *safety_hits_sarif(const safety_engine_t *eng, const safety_hits_t *h);

#endif
