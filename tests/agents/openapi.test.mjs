// The contract: ita/openapi.json is a valid OpenAPI 3.1 document (checked by
// @apidevtools/swagger-parser), the server serves exactly that document, and
// every operation it describes is driven against the real server with each
// answer (status, required headers, body) validated against the document
// with Ajv (JSON Schema 2020-12, the dialect of OpenAPI 3.1). An operation
// the document lists but no case drives fails the test, as does an answer
// the document does not describe: the two cannot drift apart.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import SwaggerParser from "@apidevtools/swagger-parser";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { spawn } from "node:child_process";
import { SRC, makeServiceDir, startServer } from "./harness.mjs";

const DOC_PATH = path.join(SRC, "ita/openapi.json");
let svc, srv, api, ajv, launcher;

before(async () => {
  svc = makeServiceDir();
  // a live local launcher for run-live, in a process group of its own, so
  // that POST /v1/jobs/{id}/cancel has something to cancel (202)
  launcher = spawn("sleep", ["300"], { detached: true, stdio: "ignore" });
  fs.writeFileSync(path.join(svc.dir, "runs/run-live/launcher.pid"), String(launcher.pid));
  srv = await startServer(svc);
  api = await SwaggerParser.dereference(JSON.parse(fs.readFileSync(DOC_PATH, "utf8")));
  ajv = new Ajv2020({ strict: false, allErrors: true });
  addFormats(ajv);
});
after(async () => {
  if (launcher.exitCode === null && launcher.signalCode === null) launcher.kill("SIGKILL");
  if (srv) assert.equal(await srv.stop(), 0);
});

test("ita/openapi.json is a valid OpenAPI 3.1 document", async () => {
  const doc = await SwaggerParser.validate(DOC_PATH);
  assert.equal(doc.openapi, "3.1.0");
  assert.ok(doc.components.securitySchemes.ApiKey && doc.components.securitySchemes.Bearer);
});

test("an invalid document is refused by the validator (the check can fail)", async () => {
  const bad = JSON.parse(fs.readFileSync(DOC_PATH, "utf8"));
  bad.paths["/healthz"].get.responses = "not an object";
  await assert.rejects(SwaggerParser.validate(bad));
});

test("GET /openapi.json serves the repository's document", async () => {
  const r = await fetch(srv.url + "/openapi.json");
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^application\/json/);
  assert.deepEqual(await r.json(), JSON.parse(fs.readFileSync(DOC_PATH, "utf8")));
});

// [method, path template, concrete path, key, body, content type, extra headers]
function cases() {
  const k = svc.keys;
  const demo = fs.readFileSync(path.join(SRC, "configs/demo-base.yaml"), "utf8");
  const json = "application/json";
  return [
    ["get", "/healthz", "/healthz"],
    ["get", "/openapi.json", "/openapi.json"],
    ["get", "/", "/"],
    ["get", "/{file}", "/app.js"],
    ["get", "/{file}", "/style.css"],
    ["get", "/{file}", "/nothing-here.js"],
    ["post", "/healthz", "/healthz"],
    ["get", "/metrics", "/metrics", k.reader],
    ["get", "/metrics", "/metrics"],
    ["get", "/v1/keys", "/v1/keys", k.boss],
    ["get", "/v1/keys", "/v1/keys", k.reader],
    ["get", "/v1/keys", "/v1/keys", k.gone],
    ["get", "/v1/jobs", "/v1/jobs", k.reader],
    ["get", "/v1/jobs", "/v1/jobs?limit=2", k.reader],
    ["get", "/v1/jobs", "/v1/jobs?limit=0", k.reader],
    ["get", "/v1/jobs", "/v1/jobs", "cuk_0000000000000000_" + "0".repeat(64)],
    ["post", "/v1/jobs", "/v1/jobs?dry_run=true", k.submitter,
     JSON.stringify({ config: demo, overrides: ["job.name=contract", "train.max_steps=10", "train.warmup_steps=2", "train.micro_batch_size=4"] }), json],
    ["post", "/v1/jobs", "/v1/jobs?dry_run=true", k.submitter, JSON.stringify({ config: "train:\n  lrr: 1\n" }), json],
    ["post", "/v1/jobs", "/v1/jobs?dry_run=true", k.reader, JSON.stringify({ config: demo }), json],
    ["get", "/v1/jobs/{id}", "/v1/jobs/failed-nan", k.reader],
    ["get", "/v1/jobs/{id}", "/v1/jobs/run-live", k.reader],
    ["get", "/v1/jobs/{id}", "/v1/jobs/queued", k.reader],
    ["get", "/v1/jobs/{id}", "/v1/jobs/no-such-job", k.reader],
    ["post", "/v1/jobs/{id}/cancel", "/v1/jobs/run-live/cancel", k.submitter],
    ["post", "/v1/jobs/{id}/cancel", "/v1/jobs/demo-completed/cancel", k.submitter],
    ["post", "/v1/jobs/{id}/cancel", "/v1/jobs/no-such-job/cancel", k.submitter],
    ["get", "/v1/jobs/{id}/cancel", "/v1/jobs/demo-completed/cancel", k.submitter],
    ["get", "/v1/jobs/{id}/metrics", "/v1/jobs/demo-completed/metrics?limit=3", k.reader],
    ["get", "/v1/jobs/{id}/metrics", "/v1/jobs/demo-completed/metrics?names=loss,val_loss", k.reader],
    ["get", "/v1/jobs/{id}/metrics", "/v1/jobs/demo-completed/metrics?cursor=3", k.reader],
    ["get", "/v1/jobs/{id}/metrics", "/v1/jobs/demo-completed/metrics?since_step=150&names=loss", k.reader],
    ["get", "/v1/jobs/{id}/events", "/v1/jobs/demo-completed/events", k.reader],
    ["get", "/v1/jobs/{id}/checkpoints", "/v1/jobs/demo-completed/checkpoints", k.reader],
    ["get", "/v1/jobs/{id}/checkpoints", "/v1/jobs/no-such-job/checkpoints", k.reader],
    ["get", "/v1/jobs/{id}/config", "/v1/jobs/demo-completed/config", k.reader],
    ["get", "/v1/jobs/{id}/config", "/v1/jobs/no-such-job/config", k.reader],
    ["post", "/v1/hygiene/scan", "/v1/hygiene/scan?path=a.py", k.reader,
     'token = "ghp_' + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8" + '"\n', "text/plain"],
    ["post", "/v1/hygiene/scan", "/v1/hygiene/scan?format=xml", k.reader, "x", "text/plain"],
    ["get", "/v1/hygiene/scan", "/v1/hygiene/scan", k.reader],
    ["post", "/v1/tests/run", "/v1/tests/run", k.submitter,
     JSON.stringify({ command: "sh", files: { "run.sh": "echo contract" } }), json],
    ["post", "/v1/tests/run", "/v1/tests/run", k.submitter, JSON.stringify({ files: 3 }), json],
    ["post", "/v1/tests/run", "/v1/tests/run", k.reader, JSON.stringify({ command: "sh" }), json],
    ["post", "/v1/kb/search", "/v1/kb/search", k.reader, JSON.stringify({ query: "jobdir open", top_k: 3 }), json],
    ["post", "/v1/kb/search", "/v1/kb/search", k.reader,
     JSON.stringify({ query: "scope", kinds: ["doc"], paths: [path.join(SRC, "docs")] }), json],
    ["post", "/v1/kb/search", "/v1/kb/search", k.reader, JSON.stringify({ query: "" }), json],
    ["post", "/v1/kb/search", "/v1/kb/search", k.reader, "{not json", json],
    ["post", "/v1/repos/{name}/pulls", "/v1/repos/demo/pulls", k.submitter,
     JSON.stringify({ title: "t", base: "main", files: { "a.txt": "a\n" } }), json],
    ["post", "/v1/repos/{name}/pulls", "/v1/repos/demo/pulls", k.submitter,
     JSON.stringify({ title: "t", base: "main", head: "codex/contract", files: { "a.txt": "a\n" }, dry_run: false, confirm: true }), json],
    ["post", "/v1/repos/{name}/pulls", "/v1/repos/demo/pulls", k.submitter,
     JSON.stringify({ title: "t", base: "main", head: "codex/contract", files: { "b.txt": "b\n" }, dry_run: false, confirm: true }), json],
    ["post", "/v1/repos/{name}/pulls", "/v1/repos/demo/pulls", k.submitter,
     JSON.stringify({ title: "t", base: "main", files: { "a.txt": "a\n" }, dry_run: false }), json],
    ["post", "/v1/repos/{name}/pulls", "/v1/repos/demo/pulls", k.submitter,
     JSON.stringify({ title: "t", base: "main", patch: "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n" }), json],
    ["post", "/v1/repos/{name}/pulls", "/v1/repos/demo/pulls", k.submitter, JSON.stringify({ title: "t" }), json],
    ["post", "/v1/repos/{name}/pulls", "/v1/repos/nope/pulls", k.submitter, JSON.stringify({ title: "t" }), json],
    ["post", "/v1/repos/{name}/pulls", "/v1/repos/demo/pulls", k.reader, "{}", json],
    ["post", "/mcp", "/mcp", k.reader, JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize",
      params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "contract", version: "1" } } }), json],
    ["post", "/mcp", "/mcp", k.reader, JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }), json],
    ["post", "/mcp", "/mcp", k.reader, "{oops", json],
    ["post", "/mcp", "/mcp", k.reader, "{}", json, { "MCP-Protocol-Version": "1999-01-01" }],
    ["post", "/mcp", "/mcp", k.reader, "{}", json, { Origin: "http://evil.example" }],
    ["post", "/mcp", "/mcp", undefined, "{}", json],
    ["get", "/mcp", "/mcp", k.reader],
    ["delete", "/mcp", "/mcp", k.reader],
  ];
}

function validate(schema, value, what) {
  const ok = ajv.validate(schema, value);
  assert.ok(ok, `${what}: ${ajv.errorsText(ajv.errors)}\n${JSON.stringify(value).slice(0, 400)}`);
}

test("every operation, driven against the server, answers as documented", async () => {
  const seen = new Set(), ok2xx = new Set();
  for (const [method, tpl, url, key, body, ctype, extra] of cases()) {
    const headers = { ...(extra || {}) };
    if (key) headers["X-API-Key"] = key;
    if (ctype) headers["Content-Type"] = ctype;
    const r = await fetch(srv.url + url, { method: method.toUpperCase(), headers, body });
    const what = `${method.toUpperCase()} ${url} -> ${r.status}`;
    const op = api.paths[tpl]?.[method];
    const text = await r.text();
    let resp;
    if (op) {
      seen.add(`${method} ${tpl}`);
      resp = op.responses[String(r.status)];
      assert.ok(resp, `${what}: status not documented for ${method} ${tpl}`);
      if (r.status < 300) ok2xx.add(`${method} ${tpl}`);
    } else {
      // a method the path does not take: the answer must be a documented 405
      assert.ok(api.paths[tpl], `${what}: path not documented`);
      assert.equal(r.status, 405, what);
      resp = api.components.responses.MethodNotAllowed;
    }
    for (const [name, h] of Object.entries(resp.headers || {}))
      if (h.required) {
        const v = r.headers.get(name);
        assert.ok(v !== null, `${what}: header ${name} missing`);
        validate(h.schema, v, `${what} header ${name}`);
      }
    const content = resp.content;
    if (!content) continue;
    const got = (r.headers.get("content-type") || "").split(";")[0].trim();
    const media = Object.entries(content).find(([m]) => m.split(";")[0].trim() === got);
    assert.ok(media, `${what}: content type ${got} not documented (${Object.keys(content)})`);
    const value = /json$/.test(got) ? JSON.parse(text) : text;
    validate(media[1].schema, value, what);
  }
  const documented = Object.entries(api.paths).flatMap(([p, item]) =>
    Object.keys(item).filter((m) => ["get", "post", "put", "delete", "patch"].includes(m)).map((m) => `${m} ${p}`));
  for (const op of documented) {
    assert.ok(seen.has(op), `documented operation ${op} is driven by no case`);
    if (!["get /mcp", "delete /mcp"].includes(op)) assert.ok(ok2xx.has(op), `${op} never answered 2xx`);
  }
});

test("a response that breaks the document is caught (the check can fail)", async () => {
  const schema = api.paths["/v1/jobs/{id}"].get.responses["200"].content["application/json"].schema;
  const r = await fetch(srv.url + "/v1/jobs/failed-nan", { headers: { "X-API-Key": svc.keys.reader } });
  const doc = await r.json();
  delete doc.status;
  assert.equal(ajv.validate(schema, doc), false);
});
