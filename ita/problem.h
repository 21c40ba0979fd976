/*
 * RFC 9457 problem details: every error codex-ita answers is an
 * application/problem+json document with type, title, status, detail,
 * instance (the request path) and request_id.
 */
#ifndef CU_ITA_PROBLEM_H
#define CU_ITA_PROBLEM_H

#include <stddef.h>

/* The reason phrase for an HTTP status ("Not Found"). */
const char *ita_status_reason(int status);

/* Returns a malloc'd JSON text (caller frees) or NULL when out of memory.
 * detail and instance may be NULL. */
char *ita_problem_json(int status, const char *detail, const char *instance, size_t instance_len,
                       const char *request_id);

#endif
