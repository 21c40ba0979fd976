/*
 * Request tracing: the X-Request-Id a client sends is kept when it is short
 * and plain (letters, digits and "-_.:"), otherwise a fresh one is made; and
 * the RFC 3339 timestamps every log line and problem document carries.
 */
#ifndef CU_ITA_TRACE_H
#define CU_ITA_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define ITA_REQUEST_ID_MAX 64 /* characters, without the terminator */

/* 1 when s[0..len) may be echoed as a request id. */
int ita_request_id_valid(const char *s, size_t len);

/* Writes 32 hex characters from the CSPRNG (or, should it fail, from the
 * clock and a counter the caller owns) and a terminator into out. */
void ita_request_id_generate(char out[ITA_REQUEST_ID_MAX + 1], uint64_t *counter);

/* "2026-11-24T07:00:00.123Z" for now (wall clock); out needs 32 bytes. */
void ita_time_now_rfc3339(char out[32]);

/* Parses an RFC 3339 UTC time with optional fraction ("...Z" or "+00:00")
 * into seconds since the epoch; returns 0 on success, -1 otherwise. */
int ita_time_parse_rfc3339(const char *s, double *out);

/* Wall-clock seconds since the epoch, and a monotonic clock in seconds. */
double ita_wall_now(void);
double ita_mono_now(void);

#endif
