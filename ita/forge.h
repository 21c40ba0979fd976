/*
 * The forge's REST API (GitHub's shape, shared by Gitea and Forgejo), for
 * opening the pull requests of POST /v1/repos/{name}/pulls: one JSON
 * request with a bearer token, one answer.
 */
#ifndef CU_ITA_FORGE_H
#define CU_ITA_FORGE_H

#include <stddef.h>

#include "core/error.h"

typedef struct {
    int status;
    char *body; /* NUL-terminated; forge_response_free */
    size_t body_len;
} forge_response_t;

/* Sends METHOD api_url+path with the JSON body (may be NULL) and token as
 * "Authorization: Bearer". Fills r (status and body) when an answer came,
 * whatever its status. */
int forge_request(const char *api_url, const char *method, const char *path, const char *token,
                  const char *json, double timeout_s, forge_response_t *r, cu_error_t *err);
void forge_response_free(forge_response_t *r);

#endif
