/*
 * Carriers: places where a secret sits in a form the patterns cannot see
 * directly, turned into plain "derived" text that the scanner scans again
 * (internal to safety/; detect.c is the only caller).
 *
 *  - base64: `b64decode("...")`, `atob("...")`, `Base64.decode("...")`,
 *    `Buffer.from("...", "base64")`, `echo ... | base64 -d`, the `data:`
 *    values of a Kubernetes Secret (as `KEY: value`), a docker config's
 *    `"auth"` and an HTTP `Authorization: Basic` header (their `user:pass`
 *    as a URL with credentials, so the URL rule judges the password);
 *  - URL encoding: a run of URL characters with %XX escapes, decoded;
 *  - split literals: string literals joined by `+`, `.`, `..`, `||`, `&`
 *    or by adjacency, across lines, as one literal after the text that
 *    precedes the first on its line (so `key = "sk_" + "live..."` reads
 *    `key = "sk_live..."`).
 *
 * Each derived text comes with, per byte, the range of the original it
 * stands for, so a finding in it is reported where the carrier is.
 */
#ifndef CU_SAFETY_DECODE_H
#define CU_SAFETY_DECODE_H

#include <stddef.h>

#define SAFETY_DERIVED_MAX 65536 /* bytes of one derived text */

typedef struct {
    char *text;
    size_t len, cap;
    size_t *from, *to; /* per byte of text: the original range [from, to) it comes from */
} safety_derived_t;

typedef enum {
    SAFETY_CARRIER_B64_CALL, /* a decoding call on a literal */
    SAFETY_CARRIER_B64_PIPE, /* echo ... | base64 -d */
    SAFETY_CARRIER_B64_AUTH, /* docker "auth", HTTP Basic */
    SAFETY_CARRIER_K8S,      /* a Kubernetes Secret's data */
    SAFETY_CARRIER_URL,      /* %XX escapes */
    SAFETY_CARRIER_JOIN,     /* literals joined */
} safety_carrier_kind_t;

/* The keywords (lower case; digits stand for any digit) the scanner's
 * keyword automaton reports for carriers, NULL-terminated. */
typedef struct {
    const char *keyword;
    safety_carrier_kind_t kind;
} safety_carrier_trigger_t;

const safety_carrier_trigger_t *safety_carrier_triggers(void);

/* A trigger seen by the automaton: its index and the offset of its last byte. */
typedef struct {
    unsigned trigger;
    size_t end;
} safety_carrier_hit_t;

/* Called once per derived text; a non-zero return stops the walk and is
 * returned by safety_derive. */
typedef int (*safety_derived_fn)(void *ctx, const safety_derived_t *d);

/* Follows every hit (in buffer order) into its carrier in buf[0..len) and
 * calls fn with the derived text. Returns 0, fn's first non-zero return,
 * or -1 for lack of memory. */
int safety_derive(const char *buf, size_t len, const safety_carrier_hit_t *hits, size_t nhits,
                  safety_derived_fn fn, void *ctx);

#endif
