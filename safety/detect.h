/*
 * The detector: rules compiled once (PCRE2 with JIT) into a scanner object
 * the caller owns, and a scan of a buffer into findings with byte offsets,
 * line and column.
 *
 * A scan first runs one pass of a keyword automaton (Aho-Corasick over the
 * rules' keywords, case-folded, with all digits folded into one symbol so
 * that "four digits in a row" is a keyword too). A rule's regex only ever
 * runs on the lines where one of its keywords occurs, so most bytes never
 * reach a regex; because every match contains a keyword (rules.h), the
 * result equals a plain regex scan of the whole buffer
 * (SAFETY_SCAN_NO_PREFILTER, which the tests compare against).
 *
 * After matching, a candidate is kept only if its secret has the rule's
 * entropy and passes its validator, and is not allowlisted: by a stopword
 * in the secret, an allow regex matching the whole match, or a
 * `codex:allow` comment on the line where the match starts, and is not a
 * published example value or a placeholder (examples.h). Where a
 * generic rule's finding overlaps a specific rule's, the generic one is
 * dropped. Findings come out sorted by offset, then rule.
 *
 * The automaton also reports carriers (decode.h): base64 and URL-encoded
 * values and string literals split across an expression. Each is turned
 * into derived text, scanned again (two levels deep at most), and its
 * findings are reported at the carrier's place in the original (a finding
 * already made there by the same rule is not repeated).
 *
 * A scanner is immutable after safety_scanner_new: one may be shared by
 * threads, each scan allocates its own match state.
 */
#ifndef CU_SAFETY_DETECT_H
#define CU_SAFETY_DETECT_H

#include <stddef.h>

#include "core/error.h"
#include "safety/rules.h"

typedef struct safety_scanner safety_scanner_t;

/* What a scanner compiles. Every pointer may be NULL. */
typedef struct {
    const unsigned char *enabled;     /* per rule index, safety_rule_count() long; NULL = all */
    const char *const *allow_regexes; /* PCRE2 patterns; a match of any drops the finding */
    size_t n_allow_regexes;
    const char *const *stopwords; /* case-insensitive substrings of the secret */
    size_t n_stopwords;
    int allow_inline; /* honour `codex:allow` comments */
} safety_scan_config_t;

/* Default config: every rule, no allow regexes or stopwords, inline allowed. */
void safety_scan_config_init(safety_scan_config_t *cfg);

typedef struct {
    int rule;                        /* index into safety_rules() */
    size_t start, end;               /* the match, byte offsets [start, end) */
    size_t secret_start, secret_end; /* the part that is redacted */
    size_t line, column;             /* 1-based position of start (column in bytes) */
    double entropy;                  /* of the secret, bits per byte */
} safety_finding_t;

typedef struct {
    safety_finding_t *items;
    size_t count, cap;
    size_t limit_hits; /* regex runs stopped by PCRE2's match or JIT stack limit: text
                          there was not fully searched (callers should warn) */
} safety_findings_t;

void safety_findings_free(safety_findings_t *f);

/* Compiles the rules the config enables and its allow regexes. Allocates
 * *out (free with safety_scanner_free). A bad allow regex is CU_EINVAL with
 * the pattern and the offset of the error. */
int safety_scanner_new(const safety_scan_config_t *cfg, safety_scanner_t **out, cu_error_t *err);
void safety_scanner_free(safety_scanner_t *sc);

/* 1 when JIT compilation succeeded for every rule. */
int safety_scanner_jit(const safety_scanner_t *sc);

enum {
    SAFETY_SCAN_NO_PREFILTER = 1,  /* run every regex over the whole buffer */
    SAFETY_SCAN_NO_ALLOWLIST = 2,  /* keep allowlisted findings (stopwords, regexes, inline) */
    SAFETY_SCAN_KEEP_EXAMPLES = 4, /* keep published example values and placeholders */
    SAFETY_SCAN_NO_DECODE = 8,     /* do not decode or join carriers (decode.h) */
};

/* Scans buf[0..len) and appends the findings to *out (sorted among
 * themselves). Grows out->items (the caller frees it with
 * safety_findings_free). Fails only for lack of memory. */
int safety_scan(const safety_scanner_t *sc, const char *buf, size_t len, unsigned flags,
                safety_findings_t *out, cu_error_t *err);

/* Appends one finding (used by callers that merge scans). */
int safety_findings_push(safety_findings_t *f, const safety_finding_t *item, cu_error_t *err);

#endif
