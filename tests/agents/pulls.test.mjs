// POST /v1/repos/{name}/pulls against a real bare repository as the remote
// and a local forge that checks every request against GitHub's published
// OpenAPI description (@octokit/openapi: POST /repos/{owner}/{repo}/pulls
// and the labels call) and answers with the description's own example,
// itself checked against the response schema. Afterwards the branch, the
// commit (author, message) and the diff are read back with git.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import Ajv from "ajv";
import addFormats from "ajv-formats";
import { makeServiceDir, startServer, auditLines } from "./harness.mjs";

const require = createRequire(import.meta.url);
const gh = require("@octokit/openapi/generated/api.github.com.deref.json");
const PLANTED = "ghp_Z9y8X7w6V5u4T3s2R1q0P9o8N7m6L5k4J3i2";
const ajv = new Ajv({ strict: false, allErrors: true, logger: false }); // OpenAPI 3.0.3 schemas
addFormats(ajv);

let svc, srv, forge, forgeUrl, work;
const seen = []; // requests the forge accepted
const git = (...args) => execFileSync("git", args, { encoding: "utf8" }).trim();

function validateOrThrow(schema, value, what) {
  if (!ajv.validate(schema, value)) throw new Error(`${what}: ${ajv.errorsText(ajv.errors)}`);
}

// The fake forge: routes of GitHub's description, requests validated.
function startForge() {
  const pulls = gh.paths["/repos/{owner}/{repo}/pulls"].post;
  const labels = gh.paths["/repos/{owner}/{repo}/issues/{issue_number}/labels"].post;
  const example = structuredClone(pulls.responses["201"].content["application/json"].examples.default.value);
  // the published example's requested_teams lack the schema's required
  // "type": no teams were requested here
  example.requested_teams = [];
  validateOrThrow(pulls.responses["201"].content["application/json"].schema, example, "GitHub's own example");
  forge = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => { body += d; });
    req.on("end", () => {
      const answer = (status, doc) => {
        const text = JSON.stringify(doc);
        res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
        res.end(text);
      };
      try {
        assert.equal(req.headers.authorization, "Bearer forge-token-123");
        assert.match(req.headers.accept, /application\/vnd\.github\+json/);
        const doc = JSON.parse(body);
        let m;
        if (req.method === "POST" && (m = req.url.match(/^\/api\/repos\/([^/]+)\/([^/]+)\/pulls$/))) {
          validateOrThrow(pulls.requestBody.content["application/json"].schema, doc, "pulls request");
          seen.push({ kind: "pull", owner: m[1], repo: m[2], doc });
          const pr = { ...example, number: 42, title: doc.title, body: doc.body,
                       html_url: `https://forge.example/${m[1]}/${m[2]}/pull/42` };
          validateOrThrow(pulls.responses["201"].content["application/json"].schema, pr, "pulls answer");
          return answer(201, pr);
        }
        if (req.method === "POST" && (m = req.url.match(/^\/api\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)\/labels$/))) {
          validateOrThrow(labels.requestBody.content["application/json"].schema, doc, "labels request");
          seen.push({ kind: "labels", number: Number(m[3]), doc });
          const out = labels.responses["200"].content["application/json"].examples.default.value;
          return answer(200, out);
        }
        answer(404, { message: "Not Found" });
      } catch (e) {
        seen.push({ kind: "invalid", error: e.message });
        answer(422, { message: e.message });
      }
    });
  });
  return new Promise((res) => forge.listen(0, "127.0.0.1", () => res(`http://127.0.0.1:${forge.address().port}/api`)));
}

before(async () => {
  forgeUrl = await startForge();
  svc = makeServiceDir({ kb: false, extraYaml: "" });
  work = svc.dir;
  fs.chmodSync(work, 0o755);
  // the remote (bare) and the service's clone of it, with main and release
  git("init", "--quiet", "--bare", "-b", "main", path.join(work, "remote.git"));
  git("clone", "--quiet", path.join(work, "remote.git"), path.join(work, "pseed"));
  const seed = path.join(work, "pseed");
  fs.writeFileSync(path.join(seed, "README.md"), "# demo\n");
  fs.writeFileSync(path.join(seed, "lib.py"), "def add(a, b):\n    return a + b\n");
  git("-C", seed, "add", ".");
  git("-C", seed, "-c", "user.name=seed", "-c", "user.email=seed@example.invalid", "commit", "--quiet", "-m", "pseed");
  git("-C", seed, "push", "--quiet", "origin", "main");
  git("clone", "--quiet", path.join(work, "remote.git"), path.join(work, "pclone"));
  fs.writeFileSync(path.join(work, "token"), "forge-token-123\n");
  // the repository's check: the worktree must hold hello.txt (read-only there)
  fs.writeFileSync(path.join(work, "check.sh"), 'test -f "$CODEX_WORKTREE/hello.txt" && echo "checked $CODEX_WORKTREE"\n');
  fs.chmodSync(path.join(work, "check.sh"), 0o755);
  fs.appendFileSync(svc.cfg, [
    "repos:", `  acme: "path=pclone remote=origin bases=main,release forge=acme/demo test=check"`,
    `  plain: "path=pclone bases=main"`,
    "forge:", `  api_url: ${forgeUrl}`, "  token_file: token",
    "git:", "  name: Codex Bot", "  email: bot@codex.invalid",
  ].join("\n") + "\n");
  // test_commands lives in the harness's yaml: add ours to its section
  const cfg = fs.readFileSync(svc.cfg, "utf8").replace('  sh: "bash run.sh"\n', `  sh: "bash run.sh"\n  check: "bash ${path.join(work, "check.sh")}"\n`);
  fs.writeFileSync(svc.cfg, cfg);
  srv = await startServer(svc);
});
after(async () => {
  if (srv) assert.equal(await srv.stop(), 0);
  forge?.close();
});

const post = (name, doc, key = svc.keys.submitter) => fetch(`${srv.url}/v1/repos/${name}/pulls`, {
  method: "POST", headers: { "X-API-Key": key, "Content-Type": "application/json" }, body: JSON.stringify(doc) });
const remoteBranches = () => git("--git-dir", path.join(work, "remote.git"), "for-each-ref", "--format=%(refname)", "refs/heads");
const cloneBranches = () => git("-C", path.join(work, "pclone"), "for-each-ref", "--format=%(refname)", "refs/heads");
const worktrees = () => git("-C", path.join(work, "pclone"), "worktree", "list", "--porcelain");

const PATCH = [
  "diff --git a/lib.py b/lib.py", "--- a/lib.py", "+++ b/lib.py", "@@ -1,2 +1,5 @@",
  " def add(a, b):", "     return a + b", "+", "+def sub(a, b):", "+    return a - b", "",
].join("\n");

test("a dry run (the default) checks the patch and scans it, and writes nothing", async () => {
  const before = [remoteBranches(), cloneBranches(), worktrees()];
  const r = await post("acme", { title: "Add sub", base: "main", patch: PATCH });
  const d = await r.json();
  assert.equal(r.status, 200, JSON.stringify(d));
  assert.equal(d.dry_run, true);
  assert.match(d.base_commit, /^[0-9a-f]{40}$/);
  assert.deepEqual(d.steps.map((s) => [s.step, s.ok]), [["resolve_base", true], ["read_base", true], ["apply_check", true], ["hygiene_scan", true]]);
  assert.deepEqual(d.would_run, ["worktree", "apply", "tests", "commit", "push", "pull_request"]);
  assert.deepEqual([remoteBranches(), cloneBranches(), worktrees()], before);
  assert.equal(seen.length, 0);
});

test("writing needs confirm (412); bad requests are 400/403/404; a patch that does not apply is 422", async () => {
  let r = await post("acme", { title: "x", base: "main", files: { "hello.txt": "hi\n" }, dry_run: false });
  assert.equal(r.status, 412);
  assert.match(r.headers.get("content-type"), /problem\+json/);
  assert.equal((await post("acme", { title: "x", base: "dev", files: { "a": "b" } })).status, 400);
  assert.equal((await post("acme", { title: "x", base: "main", files: { "../a": "b" } })).status, 400);
  assert.equal((await post("acme", { title: "x", base: "main", files: { ".git/config": "b" } })).status, 400);
  assert.equal((await post("acme", { title: "x", base: "main", patch: PATCH, files: { a: "b" } })).status, 400);
  assert.equal((await post("nope", { title: "x", base: "main", files: { a: "b" } })).status, 404);
  assert.equal((await post("acme", { title: "x", base: "main", files: { a: "b" } }, svc.keys.reader)).status, 403);
  const bad = PATCH.replace("     return a + b", "     return a * b");
  r = await post("acme", { title: "x", base: "main", patch: bad, dry_run: false, confirm: true });
  const d = await r.json();
  assert.equal(r.status, 422, JSON.stringify(d));
  assert.deepEqual(d.steps.at(-1).step, "apply");
  assert.equal(d.steps.at(-1).ok, false);
  assert.equal(worktrees().split("\n\n").length, 1, "the worktree is removed");
  assert.doesNotMatch(cloneBranches(), /codex\//, "the branch is removed");
  assert.doesNotMatch(remoteBranches(), /codex\//);
});

test("a planted secret blocks the pull request before anything is committed", async () => {
  const r = await post("acme", { title: "creds", base: "main", head: "codex/creds", dry_run: false, confirm: true,
                                 files: { "settings.py": `TOKEN = "${PLANTED}"\n` } });
  const d = await r.json();
  assert.equal(r.status, 422);
  assert.equal(d.steps.at(-1).step, "hygiene_scan");
  assert.ok(!JSON.stringify(d).includes(PLANTED));
  assert.doesNotMatch(cloneBranches() + remoteBranches(), /codex\/creds/);
});

test("a confirmed pull request with files: branch, commit, test check, push and the forge's PR", async () => {
  const r = await post("acme", { title: "Say hello", body: "Adds hello.txt.", base: "main", head: "codex/hello",
                                 files: { "hello.txt": "hello\n", "pkg/deep/mod.py": "X = 1\n" },
                                 labels: ["agents", "codex"], dry_run: false, confirm: true });
  const d = await r.json();
  assert.equal(r.status, 201, JSON.stringify(d));
  assert.deepEqual(d.steps.map((s) => s.step), ["fetch", "resolve_base", "worktree", "apply", "hygiene_scan", "tests", "commit", "push", "pull_request", "labels"]);
  assert.ok(d.steps.every((s) => s.ok), JSON.stringify(d.steps));
  assert.equal(d.check.passed, true);
  assert.match(d.check.stdout, /checked /);
  assert.deepEqual(d.pull_request, { number: 42, url: "https://forge.example/acme/demo/pull/42" });
  // the remote has the branch with the commit, by the configured identity
  assert.match(remoteBranches(), /refs\/heads\/codex\/hello/);
  const bare = path.join(work, "remote.git");
  assert.equal(git("--git-dir", bare, "rev-parse", "codex/hello"), d.commit);
  assert.equal(git("--git-dir", bare, "log", "-1", "--format=%an <%ae>|%s|%b", "codex/hello").trim(), "Codex Bot <bot@codex.invalid>|Say hello|Adds hello.txt.");
  assert.equal(git("--git-dir", bare, "diff", "--name-only", "main", "codex/hello"), "hello.txt\npkg/deep/mod.py");
  assert.equal(git("--git-dir", bare, "rev-parse", "codex/hello^"), git("--git-dir", bare, "rev-parse", "main"));
  // the forge got a valid pulls request and a labels request
  assert.deepEqual(seen.filter((s) => s.kind === "invalid"), []);
  const pull = seen.find((s) => s.kind === "pull");
  assert.deepEqual([pull.owner, pull.repo, pull.doc.head, pull.doc.base, pull.doc.title], ["acme", "demo", "codex/hello", "main", "Say hello"]);
  assert.deepEqual(seen.find((s) => s.kind === "labels").doc, { labels: ["agents", "codex"] });
  // each step is in the audit log, and no worktree is left behind
  const steps = auditLines(svc).filter((l) => l.action && l.action.startsWith("pull ") && l.job === "acme");
  assert.ok(["worktree", "commit", "push", "pull_request"].every((s) => steps.some((l) => l.action === `pull ${s}: ok`)));
  assert.equal(worktrees().split("\n\n").length, 1);
  // the same head again: the branch exists, 409, nothing changes
  const again = await post("acme", { title: "again", base: "main", head: "codex/hello", files: { "x": "y\n" }, dry_run: false, confirm: true });
  assert.equal(again.status, 409);
});

test("a patch on a repository without a forge: pushed, no pull request opened", async () => {
  const r = await post("plain", { title: "Add sub", base: "main", head: "codex/sub", patch: PATCH, dry_run: false, confirm: true });
  const d = await r.json();
  assert.equal(r.status, 201, JSON.stringify(d));
  assert.equal(d.pull_request, null);
  assert.match(git("--git-dir", path.join(work, "remote.git"), "show", "codex/sub:lib.py"), /def sub/);
});
