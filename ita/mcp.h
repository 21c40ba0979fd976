/*
 * The Model Context Protocol server: JSON-RPC 2.0 messages in, answers out,
 * the same for both transports (Streamable HTTP at POST /mcp, mcp_http.c;
 * stdio with `codex-ita --mcp-stdio`, mcp_stdio.c). The caller has already
 * authenticated the API key; its scope is in the context, and each tool
 * checks the scope it needs (the same as the REST route it mirrors).
 *
 * Two protocol generations are spoken at once:
 *   2025-11-25 (and 2025-06-18, 2025-03-26): `initialize` negotiates the
 *     version; the server keeps no session, so any request may follow.
 *   2026-07-28: stateless; every request carries its version and the
 *     client's capabilities in params._meta, `server/discover` replaces
 *     initialize, and results carry resultType "complete".
 */
#ifndef CU_ITA_MCP_H
#define CU_ITA_MCP_H

#include <jansson.h>
#include <pthread.h>

#include "ita/audit.h"
#include "ita/config.h"
#include "ita/jobdir.h"
#include "ita/sched.h"
#include "safety/safety.h"

#define ITA_MCP_LATEST "2026-07-28"
#define ITA_MCP_LEGACY "2025-11-25"

typedef struct {
    const ita_config_t *cfg;
    ita_jobdir_t *jobs;
    const ita_sched_view_t *view; /* may be NULL */
    const safety_engine_t *safety;
    pthread_mutex_t *sandbox_mu;
    ita_sched_t *sched;         /* may be NULL; told of submissions and cancels */
    pthread_mutex_t *submit_mu; /* one submission at a time (submit_job) */
    int scope;                  /* the caller's key's scope (ITA_SCOPE_*) */
    ita_audit_t *audit;         /* for the audit lines of a pull request\'s steps */
    const char *request_id, *key_name, *key_id;
    char action[96];              /* out: "mcp tools/call job_status", for the audit */
    char job[ITA_JOB_ID_MAX + 1]; /* out: the job a tool or resource was about */
    char launched[96];            /* out: what submit_job/cancel_job started or stopped */
} ita_mcp_ctx_t;

/* 1 when version is one this server speaks. */
int ita_mcp_version_supported(const char *version);

/* Handles one message. Returns the response (new reference), or NULL when
 * none is due (a notification, or a response from the client). A message
 * that is not a JSON-RPC object gets an Invalid Request error. */
json_t *ita_mcp_handle(ita_mcp_ctx_t *c, json_t *msg);

/* A JSON-RPC error response (new reference). id may be NULL. */
json_t *ita_mcp_error(json_t *id, int code, const char *message);

/* Tools (mcp_tools.c): the list with their schemas, and a call. A call
 * answers a CallToolResult; an unknown tool or bad arguments are
 * JSON-RPC errors (code in *rpc_code, message in err). */
json_t *ita_mcp_tools_list(void);
json_t *ita_mcp_tool_call(ita_mcp_ctx_t *c, const char *name, json_t *args, int *rpc_code,
                          cu_error_t *err);

/* 1 when msg is a tools/call request (not a notification) of a tool whose
 * work blocks (a scan, the sandbox, git, sbatch/scancel, the knowledge
 * index): over HTTP such a call runs in the worker pool (mcp_http.c). */
int ita_mcp_call_blocks(json_t *msg);

/* The JSON-RPC error of a request the server is too busy to take
 * (-32050, data.retryAfter seconds; docs/agents.md). New reference. */
#define ITA_MCP_SERVER_BUSY -32050
json_t *ita_mcp_busy_error(json_t *id, int retry_after_s);

/* Resources and prompts (mcp_resources.c). */
json_t *ita_mcp_resources_list(ita_mcp_ctx_t *c);
json_t *ita_mcp_resource_templates(void);
json_t *ita_mcp_resource_read(ita_mcp_ctx_t *c, const char *uri, cu_error_t *err);
json_t *ita_mcp_prompts_list(void);
json_t *ita_mcp_prompt_get(ita_mcp_ctx_t *c, const char *name, json_t *args, cu_error_t *err);

/* Serves MCP over stdin/stdout until EOF (mcp_stdio.c): newline-delimited
 * JSON-RPC; the API key comes from $CODEX_ITA_KEY; every request is
 * audited. Returns a process exit status. */
int ita_mcp_stdio_run(const ita_config_t *cfg, FILE *in, FILE *out);

#endif
