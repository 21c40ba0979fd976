/*
 * codex-ita's server: h2o with its own event loop, one loop and one
 * listening socket (SO_REUSEPORT) per worker thread. ita_server_run blocks
 * until SIGTERM or SIGINT, then stops accepting, ends event streams, lets
 * answers in flight go out and returns.
 */
#ifndef CU_ITA_SERVER_H
#define CU_ITA_SERVER_H

#include <stdio.h>

#include "core/error.h"
#include "ita/config.h"

/* Runs the service with cfg (finished by ita_config_finish). The caller
 * must have blocked SIGTERM and SIGINT in every thread (the server waits
 * for them with sigwait). `ready` (may be NULL) receives one line,
 * "codex-ita: listening on http://HOST:PORT", once requests are accepted. */
int ita_server_run(const ita_config_t *cfg, FILE *ready, cu_error_t *err);

#endif
