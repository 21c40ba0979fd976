/*
 * Connection guard: what h2o 2.2 does not bound by itself. Each accepted
 * connection has a record on its worker's list, in accept order. A sweep
 * every 250 ms closes connections that sent no complete request within
 * timeouts.header_s (slowloris, a stalled TLS handshake) and those that
 * read nothing of an answer for timeouts.write_s; at max_connections, or
 * out of descriptors, the oldest connection that has not completed a request
 * yet makes room for a new one, so /healthz still answers during a
 * slowloris; HTTP/2 connections opening more than http2.max_requests_per_s
 * streams in a second (rapid reset) are closed. Closing means shutdown(2)
 * on the descriptor: h2o sees the end on its own read or write path and
 * releases the connection as usual. HTTP/1.x requests whose body framing
 * is ambiguous (request smuggling) are found here too, before any route.
 */
#ifndef CU_ITA_GUARD_H
#define CU_ITA_GUARD_H

#include <h2o.h>

typedef struct ita_conn ita_conn_t;

/* Starts guarding sock (just accepted on the worker's loop); -1 when out
 * of memory (the caller closes it). */
int ita_guard_conn_open(void *worker, h2o_socket_t *sock);

/* At the connection bound or out of descriptors: closes the oldest
 * connection that has not completed a request. Returns 1 when one was. */
int ita_guard_evict(void *worker);

/* A request arrived on conn: counts it; returns -1 past the HTTP/2
 * per-connection rate, having shut the connection down and cut h2o's input
 * after the frame being handled, so the frames it had read but not parsed
 * yet (the rest of a rapid-reset flood) cost nothing. */
int ita_guard_request(void *worker, h2o_conn_t *conn, int http2);

/* Request smuggling: an HTTP/1.x request whose body framing a front end
 * could read differently from h2o (more than one Content-Length, even
 * equal ones; Content-Length with Transfer-Encoding; more than one
 * Transfer-Encoding; a folded header line). Returns why, or NULL when the
 * framing is unambiguous (and for HTTP/2, which frames bodies itself). The
 * caller answers 400 and closes the connection, so nothing pipelined
 * behind it is read. */
const char *ita_guard_http1_framing(h2o_req_t *req);

/* The periodic sweep (armed by ita_guard_start on the worker's loop). */
void ita_guard_start(void *worker);
void ita_guard_stop(void *worker);

#endif
