/*
 * MCP message dispatch (mcp.h): JSON-RPC framing, version handling for both
 * protocol generations, and the method table. Tools, resources and prompts
 * live in mcp_tools.c and mcp_resources.c.
 */
#include "ita/mcp.h"

#include <string.h>

#include "ita/keys.h"

#define RPC_PARSE -32700
#define RPC_INVALID_REQUEST -32600
#define RPC_NO_METHOD -32601
#define RPC_INVALID_PARAMS -32602
#define RPC_INTERNAL -32603
#define RPC_RESOURCE_NOT_FOUND -32002
#define RPC_UNSUPPORTED_VERSION -32022 /* 2026-07-28: data {supported, requested} */

static const char *const VERSIONS[] = {ITA_MCP_LATEST, ITA_MCP_LEGACY, "2025-06-18", "2025-03-26"};
#define N_VERSIONS (sizeof VERSIONS / sizeof VERSIONS[0])

int ita_mcp_version_supported(const char *version) {
    for (size_t i = 0; version && i < N_VERSIONS; i++)
        if (!strcmp(version, VERSIONS[i])) return 1;
    return 0;
}

json_t *ita_mcp_error(json_t *id, int code, const char *message) {
    return json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id ? id : json_null(),
                     "error", "code", code, "message", message);
}

json_t *ita_mcp_busy_error(json_t *id, int retry_after_s) {
    json_t *e = ita_mcp_error(
        id, ITA_MCP_SERVER_BUSY,
        "server busy: the service's worker pool is full; retry after data.retryAfter seconds");
    if (e)
        json_object_set_new(json_object_get(e, "error"), "data",
                            json_pack("{s:i}", "retryAfter", retry_after_s));
    return e;
}

static json_t *versions_json(int legacy_only) {
    json_t *a = json_array();
    for (size_t i = legacy_only ? 1 : 0; i < N_VERSIONS; i++)
        json_array_append_new(a, json_string(VERSIONS[i]));
    return a;
}

static json_t *capabilities(void) {
    return json_pack("{s:{s:b}, s:{s:b, s:b}, s:{s:b}}", "tools", "listChanged", 0, "resources",
                     "subscribe", 0, "listChanged", 0, "prompts", "listChanged", 0);
}

static const char INSTRUCTIONS[] =
    "codex-ita: the Codex-Universal training service. Use list_jobs and job_status to see "
    "fine-tuning jobs (status merged with Slurm's view), job_metrics for their loss curves, "
    "kb_search to find code, docs and past runs, hygiene_scan before proposing a change, and "
    "run_tests to run an allowlisted test command in the sandbox. Resources "
    "codex://jobs/{id}/state|metrics|events hold each job's files; codex://docs/{page} the "
    "manual. The prompt diagnose_failed_job walks through a failed job.";

static json_t *server_info(void) {
    return json_pack("{s:s, s:s, s:s}", "name", "codex-ita", "title", "Codex-Universal ITA",
                     "version", CU_VERSION);
}

static json_t *initialize(json_t *params) {
    const char *asked = json_string_value(json_object_get(params, "protocolVersion"));
    /* initialize belongs to the legacy generation: a client asking for the
     * stateless revision this way is answered with the newest legacy one */
    const char *v = asked && ita_mcp_version_supported(asked) && strcmp(asked, ITA_MCP_LATEST)
                        ? asked
                        : ITA_MCP_LEGACY;
    return json_pack("{s:s, s:o, s:o, s:s}", "protocolVersion", v, "capabilities", capabilities(),
                     "serverInfo", server_info(), "instructions", INSTRUCTIONS);
}

static json_t *discover(void) {
    return json_pack("{s:o, s:o, s:o, s:s, s:s, s:i, s:s}", "supportedVersions", versions_json(0),
                     "capabilities", capabilities(), "serverInfo", server_info(), "instructions",
                     INSTRUCTIONS, "resultType", "complete", "ttlMs", 60000, "cacheScope",
                     "private");
}

/* The stateless revision: params._meta names the version. NULL when the
 * request does not use it; "" when _meta names an unsupported version. */
static const char *meta_version(json_t *params) {
    json_t *meta = json_object_get(params, "_meta");
    json_t *v = json_object_get(meta, "io.modelcontextprotocol/protocolVersion");
    if (!v) return NULL;
    if (!json_is_string(v) || !ita_mcp_version_supported(json_string_value(v))) return "";
    return json_string_value(v);
}

static json_t *result(json_t *id, json_t *res, int stateless) {
    if (!res) return ita_mcp_error(id, RPC_INTERNAL, "out of memory");
    if (stateless && !json_object_get(res, "resultType"))
        json_object_set_new(res, "resultType", json_string("complete"));
    return json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", res);
}

/* A result of a cacheable method (2026-07-28): how long a client may reuse
 * it. Lists that only change with a new program version (tools, prompts,
 * templates) for a minute; anything about jobs not at all, since a job's
 * files change while it runs. Private: answers depend on the caller's key. */
static json_t *cacheable(json_t *res, int stateless, long long ttl_ms) {
    if (res && stateless) {
        json_object_set_new(res, "ttlMs", json_integer(ttl_ms));
        json_object_set_new(res, "cacheScope", json_string("private"));
    }
    return res;
}

static json_t *call_tool(ita_mcp_ctx_t *c, json_t *id, json_t *params, int stateless) {
    const char *name = json_string_value(json_object_get(params, "name"));
    json_t *args = json_object_get(params, "arguments");
    if (!name) return ita_mcp_error(id, RPC_INVALID_PARAMS, "tools/call needs a tool name");
    if (args && !json_is_object(args))
        return ita_mcp_error(id, RPC_INVALID_PARAMS, "arguments must be an object");
    snprintf(c->action, sizeof c->action, "mcp tools/call %.60s", name);
    int code = 0;
    cu_error_t err = {0};
    json_t *res = ita_mcp_tool_call(c, name, args, &code, &err);
    if (!res) return ita_mcp_error(id, code ? code : RPC_INTERNAL, err.msg);
    return result(id, res, stateless);
}

static json_t *dispatch(ita_mcp_ctx_t *c, const char *method, json_t *id, json_t *params,
                        int stateless) {
    cu_error_t err = {0};
    if (!strcmp(method, "initialize")) return result(id, initialize(params), 0);
    if (!strcmp(method, "server/discover")) return result(id, discover(), 1);
    if (!strcmp(method, "ping")) return result(id, json_object(), stateless);
    if (!strcmp(method, "tools/list"))
        return result(
            id, cacheable(json_pack("{s:o}", "tools", ita_mcp_tools_list()), stateless, 60000),
            stateless);
    if (!strcmp(method, "tools/call")) return call_tool(c, id, params, stateless);
    if (!strcmp(method, "resources/list"))
        return result(
            id, cacheable(json_pack("{s:o}", "resources", ita_mcp_resources_list(c)), stateless, 0),
            stateless);
    if (!strcmp(method, "resources/templates/list"))
        return result(
            id,
            cacheable(json_pack("{s:o}", "resourceTemplates", ita_mcp_resource_templates()),
                      stateless, 60000),
            stateless);
    if (!strcmp(method, "resources/read")) {
        const char *uri = json_string_value(json_object_get(params, "uri"));
        if (!uri) return ita_mcp_error(id, RPC_INVALID_PARAMS, "resources/read needs a uri");
        json_t *r = ita_mcp_resource_read(c, uri, &err);
        return r ? result(id, cacheable(r, stateless, 0), stateless)
                 : ita_mcp_error(id, RPC_RESOURCE_NOT_FOUND, err.msg);
    }
    if (!strcmp(method, "prompts/list"))
        return result(
            id, cacheable(json_pack("{s:o}", "prompts", ita_mcp_prompts_list()), stateless, 60000),
            stateless);
    if (!strcmp(method, "prompts/get")) {
        const char *name = json_string_value(json_object_get(params, "name"));
        json_t *r =
            name ? ita_mcp_prompt_get(c, name, json_object_get(params, "arguments"), &err) : NULL;
        return r ? result(id, r, stateless)
                 : ita_mcp_error(id, RPC_INVALID_PARAMS,
                                 name ? err.msg : "prompts/get needs a name");
    }
    if (!strcmp(method, "logging/setLevel")) return result(id, json_object(), stateless);
    return ita_mcp_error(id, RPC_NO_METHOD, "no such method");
}

json_t *ita_mcp_handle(ita_mcp_ctx_t *c, json_t *msg) {
    c->action[0] = 0;
    c->job[0] = 0;
    if (!json_is_object(msg))
        return ita_mcp_error(NULL, RPC_INVALID_REQUEST, "a message is one JSON-RPC object");
    json_t *id = json_object_get(msg, "id");
    const char *method = json_string_value(json_object_get(msg, "method"));
    const char *jsonrpc = json_string_value(json_object_get(msg, "jsonrpc"));
    if (!jsonrpc || strcmp(jsonrpc, "2.0"))
        return ita_mcp_error(id, RPC_INVALID_REQUEST, "jsonrpc must be \"2.0\"");
    if (!method) {
        /* a response from the client (this server sends no requests) */
        if (id && (json_object_get(msg, "result") || json_object_get(msg, "error"))) return NULL;
        return ita_mcp_error(id, RPC_INVALID_REQUEST, "a request needs a method");
    }
    snprintf(c->action, sizeof c->action, "mcp %.80s", method);
    if (!id) return NULL; /* notifications: nothing to do, nothing to answer */
    if (!json_is_string(id) && !json_is_integer(id))
        return ita_mcp_error(NULL, RPC_INVALID_REQUEST, "id must be a string or an integer");
    json_t *params = json_object_get(msg, "params");
    if (params && !json_is_object(params))
        return ita_mcp_error(id, RPC_INVALID_PARAMS, "params must be an object");
    const char *mv = meta_version(params);
    if (mv && !mv[0]) {
        json_t *e = ita_mcp_error(id, RPC_UNSUPPORTED_VERSION, "unsupported protocol version");
        json_object_set_new(json_object_get(e, "error"), "data",
                            json_pack("{s:o, s:O}", "supported", versions_json(0), "requested",
                                      json_object_get(json_object_get(params, "_meta"),
                                                      "io.modelcontextprotocol/protocolVersion")));
        return e;
    }
    return dispatch(c, method, id, params, mv && !strcmp(mv, ITA_MCP_LATEST));
}
