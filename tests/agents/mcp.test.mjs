// The MCP server with the official clients: @modelcontextprotocol/sdk 1.x
// (initialize-based revision 2025-11-25) over stdio (`codex-ita --mcp-stdio`)
// and Streamable HTTP (POST /mcp), and @modelcontextprotocol/client 2.x
// pinned to the stateless revision 2026-07-28 (server/discover, _meta on
// each request) over both transports; plus the MCP inspector's CLI once.
// Every tool is listed and called, resources read, a prompt got; a bad key,
// a scope too low, a tool error and malformed messages are each refused the
// way the protocol says, and requests are audited.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Client as ClientV1 } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport as StdioV1 } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport as HttpV1 } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { Client as ClientV2, StreamableHTTPClientTransport as HttpV2 } from "@modelcontextprotocol/client";
import { StdioClientTransport as StdioV2 } from "@modelcontextprotocol/client/stdio";
import { ITA, SRC, makeServiceDir, startServer, auditLines } from "./harness.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TOOLS = ["list_jobs", "job_status", "job_metrics", "kb_search", "hygiene_scan", "run_tests", "create_pull_request",
               "submit_job", "cancel_job"];
const PLANTED = "ghp_Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2";
let svc, srv;

before(async () => {
  svc = makeServiceDir();
  srv = await startServer(svc);
});
after(async () => { if (srv) assert.equal(await srv.stop(), 0); });

const info = { name: "cu-agents-test", version: "1.0.0" };
const stdioParams = (key) => ({ command: ITA, args: ["--config", svc.cfg, "--mcp-stdio"],
                                env: { CODEX_ITA_KEY: key, PATH: process.env.PATH }, stderr: "pipe" });
const httpOpts = (key) => ({ requestInit: { headers: key ? { "X-API-Key": key } : {} } });

const BASE = fs.readFileSync(path.join(SRC, "configs/demo-base.yaml"), "utf8");
const SMALL = ["train.max_steps=10", "train.warmup_steps=2", "train.micro_batch_size=4"];
const sleep = (ms) => new Promise((res) => setTimeout(res, ms));
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(" ")[2] !== "Z";
  } catch { return false; }
};

const structured = (r) => r.structuredContent ?? JSON.parse(r.content[0].text);

// The same journey for any connected client, whatever its revision.
async function journey(client, { scope }) {
  const { tools } = await client.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), [...TOOLS].sort());
  for (const t of tools) {
    assert.equal(t.inputSchema.type, "object", t.name);
    assert.equal(t.outputSchema.type, "object", t.name);
  }
  let r = await client.callTool({ name: "list_jobs", arguments: {} });
  assert.ok(!r.isError);
  assert.ok(structured(r).jobs.some((j) => j.id === "failed-nan"));
  r = await client.callTool({ name: "list_jobs", arguments: { status: "COMPLETED,FAILED" } });
  assert.deepEqual(structured(r).jobs.map((j) => j.id).sort(), ["demo-completed", "failed-nan"]);
  r = await client.callTool({ name: "job_status", arguments: { job: "failed-nan" } });
  const st = structured(r);
  assert.equal(st.status, "FAILED");
  assert.ok("scheduler" in st && st.state.error);
  r = await client.callTool({ name: "job_metrics", arguments: { job: "demo-completed", names: ["loss"], limit: 5 } });
  assert.equal(structured(r).records.length, 5);
  assert.ok(structured(r).records.every((x) => "loss" in x));
  r = await client.callTool({ name: "kb_search", arguments: { query: "revoked key", top_k: 3 } });
  assert.ok(structured(r).results.length > 0 && structured(r).results[0].snippet.includes("\u00ab"));
  r = await client.callTool({ name: "hygiene_scan", arguments: { text: `token = "${PLANTED}"\n`, path: "x.py" } });
  const scan = JSON.stringify(structured(r));
  assert.ok(!scan.includes(PLANTED), "a scan report never carries the secret");
  assert.ok(/github/i.test(scan), "the planted token is found: " + scan.slice(0, 300));
  r = await client.callTool({ name: "run_tests", arguments: { command: "sh", files: { "run.sh": "echo sandboxed; exit 3" } } });
  if (scope === "submit") {
    assert.ok(!r.isError, JSON.stringify(r));
    assert.equal(structured(r).exit_code, 3);
    assert.match(structured(r).stdout, /sandboxed/);
  } else {
    assert.ok(r.isError, "run_tests needs scope submit");
    assert.match(r.content[0].text, /scope 'submit'/);
  }
  r = await client.callTool({ name: "create_pull_request", arguments: { repo: "demo", title: "t", base: "main", files: { "a.txt": "a\n" } } });
  if (scope === "submit") {
    assert.ok(!r.isError, JSON.stringify(r));
    assert.equal(structured(r).dry_run, true);
    assert.ok(structured(r).steps.every((s) => s.ok));
    r = await client.callTool({ name: "create_pull_request", arguments: { repo: "demo", title: "t", base: "main", files: { "a.txt": "a\n" }, dry_run: false } });
    assert.ok(r.isError);
    assert.match(r.content[0].text, /412.*confirm/);
  } else {
    assert.ok(r.isError);
    assert.match(r.content[0].text, /scope 'submit'/);
  }
  // submit_job is a dry run unless told otherwise: the script, nothing written
  const name = `mcp-dry-${scope}-${process.hrtime.bigint()}`;
  r = await client.callTool({ name: "submit_job", arguments: { config: BASE, overrides: [`job.name=${name}`, ...SMALL] } });
  if (scope === "submit") {
    assert.ok(!r.isError, r.content[0].text);
    const d = structured(r);
    assert.equal(d.dry_run, true);
    assert.equal(d.job, name);
    assert.match(d.script, new RegExp(`#SBATCH --job-name=${name}`));
    assert.ok(d.run_dir.endsWith(`/runs/${name}`), d.run_dir);
    r = await client.callTool({ name: "submit_job", arguments: { config: BASE, overrides: ["train.no_such_key=1"] } });
    assert.ok(r.isError);
    assert.match(r.content[0].text, /refused \(400\).*no_such_key/);
    r = await client.callTool({ name: "cancel_job", arguments: { job: "demo-completed" } });
    assert.ok(r.isError);
    assert.match(r.content[0].text, /refused \(409\).*already ended/);
  } else {
    assert.ok(r.isError, "submit_job needs scope submit");
    assert.match(r.content[0].text, /scope 'submit'/);
    r = await client.callTool({ name: "cancel_job", arguments: { job: "demo-completed" } });
    assert.ok(r.isError, "cancel_job needs scope submit");
    assert.match(r.content[0].text, /scope 'submit'/);
  }
  assert.ok(!fs.existsSync(path.join(svc.dir, "runs", name)), "a dry run writes nothing");
  // a tool error: the tool ran and says why
  r = await client.callTool({ name: "job_status", arguments: { job: "no-such-job" } });
  assert.ok(r.isError);
  assert.match(r.content[0].text, /no such job/);
  // an unknown tool is a protocol error
  await assert.rejects(client.callTool({ name: "no_such_tool", arguments: {} }), /no such tool/);
  // resources
  const { resources } = await client.listResources();
  assert.ok(resources.some((x) => x.uri === "codex://jobs/failed-nan/state"));
  assert.ok(resources.some((x) => x.uri === "codex://docs/ita.md"));
  const { resourceTemplates } = await client.listResourceTemplates();
  assert.ok(resourceTemplates.some((x) => x.uriTemplate === "codex://jobs/{id}/metrics"));
  let rr = await client.readResource({ uri: "codex://jobs/failed-nan/state" });
  assert.equal(JSON.parse(rr.contents[0].text).status, "FAILED");
  rr = await client.readResource({ uri: "codex://jobs/demo-completed/events" });
  assert.ok(rr.contents[0].text.trim().split("\n").every((l) => JSON.parse(l).type));
  rr = await client.readResource({ uri: "codex://docs/ita.md" });
  assert.match(rr.contents[0].text, /Internal Tools API/);
  await assert.rejects(client.readResource({ uri: "codex://docs/../../etc/passwd" }));
  // prompts
  const { prompts } = await client.listPrompts();
  assert.ok(prompts.some((p) => p.name === "diagnose_failed_job"));
  const p = await client.getPrompt({ name: "diagnose_failed_job", arguments: { job: "failed-nan" } });
  assert.ok(p.messages.length >= 2);
  assert.match(JSON.stringify(p.messages), /NaN/);
}

test("SDK 1.x client over stdio (2025-11-25), key of scope submit", async () => {
  const client = new ClientV1(info);
  await client.connect(new StdioV1(stdioParams(svc.keys.submitter)));
  assert.equal(client.getServerVersion().name, "codex-ita");
  await journey(client, { scope: "submit" });
  await client.close();
  const lines = auditLines(svc).filter((l) => l.path === "stdio");
  assert.ok(lines.some((l) => l.key === "submitter" && l.action === "mcp tools/call run_tests"));
});

test("SDK 1.x client over Streamable HTTP (2025-11-25), key of scope read", async () => {
  const client = new ClientV1(info);
  await client.connect(new HttpV1(new URL(srv.url + "/mcp"), httpOpts(svc.keys.reader)));
  await journey(client, { scope: "read" });
  await client.close();
  const lines = auditLines(svc).filter((l) => l.path === "/mcp");
  assert.ok(lines.some((l) => l.key === "reader" && l.action === "mcp tools/call job_status" && l.job === "failed-nan"));
});

test("client 2.x pinned to 2026-07-28 over Streamable HTTP and stdio", async () => {
  for (const transport of [new HttpV2(new URL(srv.url + "/mcp"), httpOpts(svc.keys.submitter)),
                           new StdioV2(stdioParams(svc.keys.submitter))]) {
    const client = new ClientV2(info, { versionNegotiation: { mode: { pin: "2026-07-28" } } });
    await client.connect(transport);
    await journey(client, { scope: "submit" });
    await client.close();
  }
});

test("submit_job really submits with the local launcher, and cancel_job stops it", async () => {
  const client = new ClientV1(info);
  await client.connect(new HttpV1(new URL(srv.url + "/mcp"), httpOpts(svc.keys.submitter)));
  const args = { config: BASE, launcher: "local", ranks: 1, overrides: ["job.name=mcp-loc", "train.max_steps=100000000"] };
  let r = await client.callTool({ name: "submit_job", arguments: { ...args, dry_run: false } });
  assert.ok(!r.isError, r.content[0].text);
  const d = structured(r);
  assert.equal(d.job, "mcp-loc");
  assert.equal(d.launcher, "local");
  assert.equal(d.status, "SUBMITTED");
  assert.ok(d.pid > 0);
  assert.ok(fs.existsSync(path.join(svc.dir, "runs/mcp-loc/submit.yaml")), "the run directory is written");
  let status = "";
  for (const end = Date.now() + 90000; Date.now() < end && status !== "RUNNING"; await sleep(300)) {
    status = structured(await client.callTool({ name: "job_status", arguments: { job: "mcp-loc" } })).status;
    assert.ok(["SUBMITTED", "PENDING", "RUNNING"].includes(status), status);
  }
  assert.equal(status, "RUNNING");
  // a second submission of the running job is refused, as POST /v1/jobs does
  r = await client.callTool({ name: "submit_job", arguments: { ...args, dry_run: false } });
  assert.ok(r.isError);
  assert.match(r.content[0].text, /refused \(409\)/);
  r = await client.callTool({ name: "cancel_job", arguments: { job: "mcp-loc" } });
  assert.ok(!r.isError, r.content[0].text);
  assert.deepEqual(structured(r), { job: "mcp-loc", status: "CANCELLED", slurm_job_id: null });
  for (const end = Date.now() + 30000; Date.now() < end && alive(d.pid); ) await sleep(300);
  assert.ok(!alive(d.pid), "the local launcher has stopped");
  const events = fs.readFileSync(path.join(svc.dir, "runs/mcp-loc/events.jsonl"), "utf8");
  // one JSON object per line (rundir_event_line writes them; spacing is not part of the contract)
  const evs = events.trim().split("\n").map((l) => JSON.parse(l));
  assert.ok(evs.some((e) => e.type === "submitted" && /key submitter/.test(e.message)), events);
  assert.ok(evs.some((e) => e.type === "cancelled" && /SIGTERM to pid/.test(e.message)), events);
  // a key of scope read may not cancel
  const reader = new ClientV1(info);
  await reader.connect(new HttpV1(new URL(srv.url + "/mcp"), httpOpts(svc.keys.reader)));
  r = await reader.callTool({ name: "cancel_job", arguments: { job: "mcp-loc" } });
  assert.ok(r.isError);
  assert.match(r.content[0].text, /scope 'submit'/);
  await reader.close();
  await client.close();
  const lines = auditLines(svc).filter((l) => l.path === "/mcp" && l.job === "mcp-loc");
  assert.ok(lines.some((l) => l.action === "mcp tools/call submit_job" && l.launched === `local pid ${d.pid}`),
            JSON.stringify(lines));
  assert.ok(lines.some((l) => l.action === "mcp tools/call cancel_job" && l.launched === `local pid ${d.pid}`));
});

test("a bad or revoked key is refused on both transports", async () => {
  for (const key of ["cuk_0000000000000000_" + "0".repeat(64), svc.keys.gone, undefined]) {
    const client = new ClientV1(info);
    await assert.rejects(client.connect(new HttpV1(new URL(srv.url + "/mcp"), httpOpts(key))), /401|nauthori/);
  }
  const out = (() => { try { execFileSync(ITA, ["--config", svc.cfg, "--mcp-stdio"], { env: { CODEX_ITA_KEY: svc.keys.gone }, input: "", stdio: "pipe" }); return null; } catch (e) { return e; } })();
  assert.ok(out && out.status === 2 && /revoked/.test(out.stderr.toString()));
});

test("malformed messages, Origin and protocol-version checks over HTTP", async () => {
  const post = (body, headers = {}) => fetch(srv.url + "/mcp", { method: "POST", body,
    headers: { "X-API-Key": svc.keys.reader, "Content-Type": "application/json", Accept: "application/json, text/event-stream", ...headers } });
  let r = await post("{oops");
  assert.equal(r.status, 400);
  assert.equal((await r.json()).error.code, -32700);
  r = await post(JSON.stringify([1, 2]));
  assert.equal((await r.json()).error.code, -32600);
  r = await post(JSON.stringify({ jsonrpc: "2.0", id: 7, method: "no/such" }));
  assert.equal((await r.json()).error.code, -32601);
  r = await post(JSON.stringify({ jsonrpc: "2.0", id: 8, method: "tools/list",
    params: { _meta: { "io.modelcontextprotocol/protocolVersion": "2099-01-01" } } }));
  const e = (await r.json()).error;
  assert.equal(e.code, -32022);
  assert.ok(e.data.supported.includes("2026-07-28"));
  r = await post(JSON.stringify({ jsonrpc: "2.0", id: 9, method: "server/discover",
    params: { _meta: { "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {} } } }),
    { "MCP-Protocol-Version": "2026-07-28" });
  const d = (await r.json()).result;
  assert.equal(d.resultType, "complete");
  assert.deepEqual(d.supportedVersions.slice(0, 2), ["2026-07-28", "2025-11-25"]);
  r = await post("{}", { "MCP-Protocol-Version": "1999-01-01" });
  assert.equal(r.status, 400);
  r = await post(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }), { Origin: "http://evil.example" });
  assert.equal(r.status, 403);
  r = await post(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "ping" }), { Origin: "https://ide.example" });
  assert.equal(r.status, 200);
  r = await post(JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }));
  assert.equal(r.status, 202);
  r = await fetch(srv.url + "/mcp", { headers: { "X-API-Key": svc.keys.reader } });
  assert.equal(r.status, 405);
  assert.equal(r.headers.get("allow"), "POST");
});

test("a full worker pool: both official clients get the busy error at once, then succeed", { timeout: 120000 }, async () => {
  // pool.threads 1, queue 0, its one place taken by a call held by the
  // test-only hold file: nothing here depends on how long anything takes
  const hold = path.join(os.tmpdir(), `cu-agents-hold-${process.pid}`);
  fs.writeFileSync(hold, "");
  const svc2 = makeServiceDir({ kb: false, extraYaml: "pool:\n  threads: 1\n  queue: 0" });
  const srv2 = await startServer(svc2, { ...process.env, CU_ITA_POOL_HOLD: hold });
  try {
    const rpc = (id, name, args, key = svc2.keys.reader) => fetch(srv2.url + "/mcp", { method: "POST",
      body: JSON.stringify({ jsonrpc: "2.0", id, method: "tools/call", params: { name, arguments: args } }),
      headers: { "X-API-Key": key, "Content-Type": "application/json", Accept: "application/json, text/event-stream" } });
    const held = rpc(1, "hygiene_scan", { text: `token = "${PLANTED}"\n` });
    const inPool = async () => {
      const m = await (await fetch(srv2.url + "/metrics", { headers: { "X-API-Key": svc2.keys.reader } })).text();
      return /^codex_ita_pool_jobs 1$/m.test(m);
    };
    for (let i = 0; i < 600 && !(await inPool()); i++) await sleep(50);
    assert.ok(await inPool(), "the held call takes the pool's one place");
    // the raw answer: HTTP 503 + Retry-After, a JSON-RPC error for the id
    const r = await rpc("b2", "submit_job", { config: BASE }, svc2.keys.submitter);
    assert.equal(r.status, 503);
    assert.equal(r.headers.get("retry-after"), "1");
    const body = await r.json();
    assert.equal(body.id, "b2");
    assert.equal(body.error.code, -32050);
    assert.equal(body.error.data.retryAfter, 1);
    // the official clients: an error, not a hang, with the server's words
    const v1 = new ClientV1(info);
    await v1.connect(new HttpV1(new URL(srv2.url + "/mcp"), httpOpts(svc2.keys.reader)));
    await assert.rejects(v1.callTool({ name: "hygiene_scan", arguments: { text: "x" } }),
                        (e) => e.code === 503 && /-32050/.test(e.message));
    const v2 = new ClientV2(info, { versionNegotiation: { mode: { pin: "2026-07-28" } } });
    await v2.connect(new HttpV2(new URL(srv2.url + "/mcp"), httpOpts(svc2.keys.reader)));
    await assert.rejects(v2.callTool({ name: "hygiene_scan", arguments: { text: "x" } }), /-32050/);
    // tools that do not block still answer on the event loop
    const st = await v1.callTool({ name: "job_status", arguments: { job: "failed-nan" } });
    assert.equal(structured(st).status, "FAILED");
    fs.unlinkSync(hold);
    const first = await (await held).json();
    assert.ok(!JSON.stringify(first).includes(PLANTED) && /github/i.test(JSON.stringify(first.result)),
              "released, the held scan answers");
    const again = await v1.callTool({ name: "hygiene_scan", arguments: { text: "x" } });
    assert.ok(!again.isError, "with room in the pool the same call succeeds");
    await v1.close();
    await v2.close();
  } finally {
    fs.rmSync(hold, { force: true });
    assert.equal(await srv2.stop(), 0);
  }
});

test("malformed lines over stdio get JSON-RPC errors and the server carries on", async () => {
  const proc = spawn(ITA, ["--config", svc.cfg, "--mcp-stdio"], { env: { CODEX_ITA_KEY: svc.keys.reader }, stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  proc.stdout.on("data", (d) => { out += d; });
  proc.stdin.write("not json\n");
  proc.stdin.write(JSON.stringify({ jsonrpc: "1.0", id: 1, method: "ping" }) + "\n");
  proc.stdin.write(JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "job_status" } }) + "\n");
  proc.stdin.write(JSON.stringify({ jsonrpc: "2.0", id: 3, method: "ping" }) + "\n");
  proc.stdin.end();
  const code = await new Promise((res) => proc.on("exit", res));
  assert.equal(code, 0);
  const msgs = out.trim().split("\n").map((l) => JSON.parse(l));
  assert.equal(msgs.length, 4);
  assert.equal(msgs[0].error.code, -32700);
  assert.equal(msgs[1].error.code, -32600);
  assert.equal(msgs[2].error.code, -32602);
  assert.deepEqual(msgs[3], { jsonrpc: "2.0", id: 3, result: {} });
});

test("the MCP inspector's CLI lists the tools of the stdio server", () => {
  const bin = path.join(HERE, "node_modules/.bin/mcp-inspector");
  const out = execFileSync(bin, ["--cli", "--method", "tools/list", "-e", `CODEX_ITA_KEY=${svc.keys.reader}`,
                                 "--", ITA, `--config=${svc.cfg}`, "--mcp-stdio"], { encoding: "utf8", timeout: 120000 });
  const doc = JSON.parse(out);
  assert.deepEqual(doc.tools.map((t) => t.name).sort(), [...TOOLS].sort());
});
