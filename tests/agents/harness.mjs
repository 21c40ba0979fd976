// Shared by the agents tests: starts the real codex-ita (built binaries named
// by $CODEX_ITA and $CODEXCTL, the source tree by $CU_SRC) on a free loopback
// port against a copy of tests/fixtures/ita/runs, with keys of each scope, a
// sandboxed test command and a knowledge index built by `codexctl kb index`.
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

export const ITA = process.env.CODEX_ITA;
export const CTL = process.env.CODEXCTL;
export const SRC = process.env.CU_SRC;
if (!ITA || !CTL || !SRC) throw new Error("set CODEX_ITA, CODEXCTL and CU_SRC");

export function createKey(keysFile, name, scope) {
  return execFileSync(CTL, ["keys", "create", "--name", name, "--scope", scope, "--file", keysFile],
                      { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim();
}

// A temporary service folder: runs/, keys, ita.yaml, the knowledge index.
export function makeServiceDir({ kb = true, extraYaml = "" } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cu-agents-"));
  // removed when the test process ends, whatever the outcome (set
  // CU_KEEP_TEST_DIRS=1 to keep it for a look after a failure)
  if (!process.env.CU_KEEP_TEST_DIRS)
    process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  fs.cpSync(path.join(SRC, "tests/fixtures/ita/runs"), path.join(dir, "runs"), { recursive: true });
  const keysFile = path.join(dir, "keys.json");
  const keys = {};
  for (const [name, scope] of [["reader", "read"], ["submitter", "submit"], ["boss", "admin"], ["gone", "read"]])
    keys[name] = createKey(keysFile, name, scope);
  execFileSync(CTL, ["keys", "revoke", "gone", "--file", keysFile], { stdio: "ignore" });
  const yaml = [
    "listen:", "  host: 127.0.0.1", "  port: 0", "runs_dir: runs", "keys_file: keys.json", "threads: 2",
    "log:", "  audit: audit.jsonl", "  error: error.log", "rate_limit:", "  per_second: 1000", "  burst: 1000",
    "slurm:", "  refresh_s: 0", "test_commands:", '  sh: "bash run.sh"', "tests_timeout_s: 10",
    "kb:", "  db: kb.sqlite", `  sources: ${path.join(SRC, "docs")} ${path.join(SRC, "ita")}`,
    `mcp:`, `  docs_dir: ${path.join(SRC, "docs")}`, "  allowed_origins: https://ide.example",
    "submit:", `  workdir: ${SRC}`, `  train: ${path.join(path.dirname(CTL), "codex-train")}`,
    "repos:", '  demo: "path=clone bases=main"',
    extraYaml,
  ].join("\n") + "\n";
  // a repository for POST /v1/repos/{name}/pulls: a bare remote and its clone
  const git = (...a) => execFileSync("git", a, { stdio: "ignore" });
  git("init", "--quiet", "--bare", "-b", "main", path.join(dir, "demo.git"));
  git("clone", "--quiet", path.join(dir, "demo.git"), path.join(dir, "seed"));
  fs.writeFileSync(path.join(dir, "seed/README.md"), "# demo\n");
  git("-C", path.join(dir, "seed"), "add", "README.md");
  git("-C", path.join(dir, "seed"), "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "--quiet", "-m", "seed");
  git("-C", path.join(dir, "seed"), "push", "--quiet", "origin", "main");
  git("clone", "--quiet", path.join(dir, "demo.git"), path.join(dir, "clone"));
  const cfg = path.join(dir, "ita.yaml");
  fs.writeFileSync(cfg, yaml);
  if (kb) execFileSync(CTL, ["kb", "index", "--config", cfg], { stdio: "ignore" });
  return { dir, cfg, keys, keysFile, audit: path.join(dir, "audit.jsonl") };
}

// Starts codex-ita on svc (env: its environment, this process's by default);
// resolves {url, proc, stop()}.
export function startServer(svc, env = process.env) {
  return new Promise((resolve, reject) => {
    const proc = spawn(ITA, ["--config", svc.cfg], { stdio: ["ignore", "pipe", "pipe"], env });
    let out = "", err = "";
    const timer = setTimeout(() => { proc.kill("SIGKILL"); reject(new Error("no listening line: " + err)); }, 60000);
    proc.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        const stop = () => new Promise((res) => {
          if (proc.exitCode !== null) return res(proc.exitCode);
          proc.on("exit", (code) => res(code));
          proc.kill("SIGTERM");
        });
        resolve({ url: m[1], proc, stop });
      }
    });
    proc.stderr.on("data", (d) => { err += d; });
    proc.on("exit", (code) => { clearTimeout(timer); reject(new Error(`codex-ita exited ${code}: ${err}`)); });
  });
}

export function auditLines(svc) {
  if (!fs.existsSync(svc.audit)) return [];
  return fs.readFileSync(svc.audit, "utf8").trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
}
