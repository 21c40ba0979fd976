/*
 * Values published as examples or for testing, which look exactly like the
 * real thing but leak nothing: providers' documentation keys, payment
 * processors' test cards, phone ranges reserved for fiction, the example
 * domains of RFC 2606/6761, the IBANs printed in the standard, well-known
 * example tokens and emulators' fixed keys. Plus the placeholders
 * (`<your-key>`, `${TOKEN}`, `xxxx`, "changeme", ...) that stand where a
 * secret will go.
 *
 * Each entry names the rules it applies to, a PCRE2 pattern that must match
 * the whole secret (after the entry's normalisation), where the value was
 * published, and the choice made for its category. The scanner drops a
 * finding an entry matches (SAFETY_SCAN_KEEP_EXAMPLES keeps them); the
 * table is the list in docs/safety.md (test_safety_doc keeps the two equal).
 */
#ifndef CU_SAFETY_EXAMPLES_H
#define CU_SAFETY_EXAMPLES_H

#include <stddef.h>

typedef enum {
    SAFETY_NORM_NONE = 0,   /* the secret as found */
    SAFETY_NORM_DIGITS = 1, /* only its digits (cards, phone numbers, SSNs) */
    SAFETY_NORM_ALNUM = 2,  /* only letters and digits, upper-cased (IBANs) */
} safety_norm_t;

typedef struct {
    const char *category; /* e.g. "payment test cards"; entries of one category are adjacent */
    const char *rules;    /* space-separated rule ids, or "*secret" / "*" for every secret / rule */
    safety_norm_t norm;
    const char *pattern; /* PCRE2, anchored at both ends by the scanner */
    const char *source;  /* where the values are published */
    const char *sample;  /* a text its rules find and this entry excuses */
} safety_example_t;

const safety_example_t *safety_examples(void);
int safety_example_count(void);

/* 1 when entry e applies to rule index r. */
int safety_example_applies(const safety_example_t *e, int r);

/* The secret normalised as the entry asks, into buf (cap bytes); returns
 * its length (truncated to cap). */
size_t safety_example_normalise(safety_norm_t norm, const char *s, size_t n, char *buf, size_t cap);

#endif
