/*
 * GET /openapi.json: the service's OpenAPI 3.1 description. The document in
 * the repository (ita/openapi.json) is the source of truth; the build embeds
 * its bytes (cmake/embed.cmake), so the served contract is always the one
 * the program was built from, whatever www_dir or install prefix says. The
 * agents tests validate it and check every route's answers against it.
 */
#include "ita/http.h"

extern const unsigned char ita_openapi_json[];
extern const unsigned long ita_openapi_json_len;

void ita_route_openapi(ita_req_t *rq) {
    ita_respond(rq, 200, "application/json", (const char *)ita_openapi_json,
                (size_t)ita_openapi_json_len);
}
