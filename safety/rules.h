/*
 * The detector rule table: every kind of credential and personal datum the
 * safety layer knows, as immutable data. A rule names what it finds, how bad
 * a leak is, the keywords the prefilter looks for, a PCRE2 pattern, the
 * least Shannon entropy (bits per byte) its secret must have, an optional
 * validator (Luhn, mod-97, ...), and samples that must and must not match.
 *
 * Conventions the detector and its tests rely on:
 *  - If the pattern has a capturing group, group 1 is the secret (what gets
 *    redacted and measured); otherwise the whole match is. Later groups
 *    only serve back-references (one separator used throughout a number).
 *  - Every match contains one of the rule's keywords (compared without case)
 *    or, for SAFETY_TRIGGER_DIGITS rules, a run of four digits. That is what
 *    lets the prefilter skip lines without them and still find everything.
 *  - Single-line rules never match a newline; multi-line rules (private key
 *    blocks) match at most SAFETY_MAX_SPAN bytes.
 */
#ifndef CU_SAFETY_RULES_H
#define CU_SAFETY_RULES_H

#include <stddef.h>

typedef enum { SAFETY_CAT_SECRET = 0, SAFETY_CAT_PII = 1 } safety_category_t;

typedef enum {
    SAFETY_SEV_LOW = 0,
    SAFETY_SEV_MEDIUM = 1,
    SAFETY_SEV_HIGH = 2,
    SAFETY_SEV_CRITICAL = 3,
} safety_severity_t;

typedef enum {
    SAFETY_TRIGGER_KEYWORDS = 0, /* a keyword must occur on the line */
    SAFETY_TRIGGER_DIGITS = 1,   /* a run of four digits must occur on the line */
} safety_trigger_t;

/* Validators judge a candidate secret beyond its pattern. */
typedef enum {
    SAFETY_VALID_NONE = 0,
    SAFETY_VALID_LUHN,     /* card numbers: Luhn checksum and a known issuer prefix */
    SAFETY_VALID_IBAN,     /* ISO 13616 mod-97 check */
    SAFETY_VALID_MIXED,    /* at least one letter and one digit (generic assignments) */
    SAFETY_VALID_PHONE,    /* 8 to 15 digits in all (E.164) */
    SAFETY_VALID_EMAIL,    /* a plausible domain: not a file name or a version */
    SAFETY_VALID_NATIONAL, /* 9 to 11 digits (a national number with its trunk 0) */
} safety_validator_t;

#define SAFETY_MAX_KEYWORDS 18
#define SAFETY_MAX_SAMPLES 8
#define SAFETY_MAX_SPAN 32768 /* longest match of a multi-line rule */

typedef struct {
    const char *id;          /* stable identifier, e.g. "aws_access_key" */
    const char *description; /* one line for reports */
    safety_category_t category;
    safety_severity_t severity;
    safety_trigger_t trigger;
    const char *keywords[SAFETY_MAX_KEYWORDS]; /* lower case, NULL-terminated */
    const char *pattern;                       /* PCRE2 */
    double min_entropy;                        /* bits per byte of the secret; 0 = no check */
    safety_validator_t validator;
    int multiline; /* the pattern may span lines */
    int generic;   /* a finding is dropped where a specific rule's finding overlaps it */
    const char *tp[SAFETY_MAX_SAMPLES]; /* must be found (NULL-terminated) */
    const char *fp[SAFETY_MAX_SAMPLES]; /* must not be found (NULL-terminated) */
} safety_rule_t;

/* The table, in a fixed order (indices are stable within one build). */
const safety_rule_t *safety_rules(void);
int safety_rule_count(void);

/* The index of the rule called id, or -1. */
int safety_rule_find(const char *id);

const char *safety_category_name(safety_category_t c);
const char *safety_severity_name(safety_severity_t s);
/* -1 when name is not a severity */
int safety_severity_parse(const char *name);

/* Shannon entropy of s[0..n) in bits per byte (0 for n == 0). */
double safety_entropy(const char *s, size_t n);

/* Luhn checksum over the digits of s[0..n) (other bytes are skipped);
 * 1 when valid and there are at least 12 digits. */
int safety_luhn_valid(const char *s, size_t n);

/* Runs validator v on a candidate secret; 1 = keep. */
int safety_validate(safety_validator_t v, const char *s, size_t n);

#endif
