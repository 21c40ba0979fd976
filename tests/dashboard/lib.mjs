// Shared by the dashboard tests: a codex-ita on a runs folder the test
// fills, Chromium (/usr/bin/chromium, or $CU_CHROMIUM) driven by
// playwright-core, a PNG decoder to count drawn pixels in screenshots, and
// waits that poll a condition under a generous hang guard (never a fixed
// sleep that assumes how fast the machine is).
import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { chromium } from "playwright-core";
import { createKey, startServer, CTL, SRC, ITA } from "../agents/harness.mjs";

export { CTL, SRC, ITA };
export const TRAIN = path.join(path.dirname(CTL), "codex-train");
export const SHOTS = process.env.CU_SHOTS || path.join(os.tmpdir(), "cu-dashboard-shots");

// A service folder: runs/ (empty), a read key, ita.yaml with extra lines.
export function serviceDir({ extraYaml = "", env = {} } = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "cu-dash-"));
  if (!process.env.CU_KEEP_TEST_DIRS)
    process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, "runs"));
  const keysFile = path.join(dir, "keys.json");
  const key = createKey(keysFile, "dash", "read");
  const yaml = ["listen:", "  host: 127.0.0.1", "  port: 0", `runs_dir: ${path.join(dir, "runs")}`,
    "keys_file: keys.json", "threads: 2", "log:", "  audit: audit.jsonl", "  error: error.log",
    `www_dir: ${path.join(SRC, "ita/www")}`, extraYaml].join("\n") + "\n";
  fs.writeFileSync(path.join(dir, "ita.yaml"), yaml);
  return { dir, runs: path.join(dir, "runs"), cfg: path.join(dir, "ita.yaml"), key,
           audit: path.join(dir, "audit.jsonl"), env };
}

export async function startService(svc) {
  const saved = { ...process.env };
  Object.assign(process.env, svc.env);
  try {
    return await startServer(svc);
  } finally {
    for (const k of Object.keys(svc.env)) if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k];
  }
}

export function auditLines(svc) {
  if (!fs.existsSync(svc.audit)) return [];
  return fs.readFileSync(svc.audit, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
}

export const iso = (t) => new Date(t).toISOString();

// A job directory as codex-train leaves it (state.json, metrics.jsonl,
// events.jsonl, job.yaml): n steps of a falling loss, an evaluation every
// 50 steps.
export function writeJob(runs, id, { status = "COMPLETED", steps = 200, maxSteps = steps, scale = 1,
                                     yaml = null, slurm = null, updated = Date.now() } = {}) {
  const d = path.join(runs, id);
  fs.mkdirSync(d, { recursive: true });
  const lines = [];
  for (let s = 1; s <= steps; s++) {
    lines.push(JSON.stringify({ time: iso(updated - (steps - s) * 100), step: s,
      loss: scale * (2 + 3.5 * Math.exp(-s / 60)) + 0.05 * Math.sin(s), lr: 3e-3 * Math.min(1, s / 20),
      grad_norm: 1 + 0.5 * Math.cos(s / 7), tokens_per_s: 5000 + 100 * Math.sin(s / 3) }));
    if (s % 50 === 0) lines.push(JSON.stringify({ time: iso(updated), step: s, val_loss: scale * (2.1 + 3.4 * Math.exp(-s / 60)) }));
  }
  fs.writeFileSync(path.join(d, "metrics.jsonl"), lines.join("\n") + "\n");
  fs.writeFileSync(path.join(d, "events.jsonl"), JSON.stringify({ time: iso(updated - steps * 100), step: 0,
    type: "started", message: "2 ranks on node01" }) + "\n");
  fs.writeFileSync(path.join(d, "job.yaml"), yaml || `job:\n  name: ${id}\ntrain:\n  max_steps: ${maxSteps}\n`);
  writeState(runs, id, { status, step: steps, max_steps: maxSteps, slurm_job_id: slurm, updated_at: iso(updated),
                         finished_at: status === "RUNNING" ? null : iso(updated), loss: scale * 2 });
}

export function writeState(runs, id, fields) {
  const d = path.join(runs, id);
  const st = { version: 1, job: id, status: "RUNNING", step: 0, max_steps: 100, epoch: 0, loss: null, lr: null,
    grad_norm: null, tokens_per_s: 5000, eta_s: null, world_size: 2, threads: 1, hosts: ["node01"], pid: 4242,
    slurm_job_id: null, started_at: "2026-11-24T06:00:00.000Z", updated_at: iso(Date.now()), finished_at: null,
    last_checkpoint: null, best_eval: null, error: null, ...fields };
  fs.writeFileSync(path.join(d, "state.json.tmp"), JSON.stringify(st) + "\n");
  fs.renameSync(path.join(d, "state.json.tmp"), path.join(d, "state.json"));
}

export async function launch() {
  return chromium.launch({
    executablePath: process.env.CU_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
           "--disable-component-update", "--disable-sync"],
  });
}

// A page that may talk to this server only: any other request fails the
// test (the dashboard loads nothing from elsewhere).
export async function openPage(browser, srv, hash, elsewhere) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 1000 } });
  const page = await ctx.newPage();
  await page.route("**/*", (r) => {
    if (!r.request().url().startsWith(srv.url + "/")) { elsewhere.push(r.request().url()); return r.abort(); }
    return r.continue();
  });
  await page.goto(srv.url + "/#key=" + srv.key);
  if (hash) await page.evaluate((h) => { location.hash = h; }, hash);
  return page;
}

// Polls fn (in the test) until it returns a truthy value; the timeout is
// only a hang guard.
export async function until(what, fn, timeoutMs = 60000) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 200));
  }
}

// ---- screenshots: a PNG decoder (8-bit RGB/RGBA, non-interlaced) ----

export function decodePng(buf) {
  let off = 8, w = 0, h = 0, ctype = 0;
  const idat = [];
  while (off < buf.length) {
    const len = buf.readUInt32BE(off), type = buf.toString("latin1", off + 4, off + 8);
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === "IHDR") {
      w = data.readUInt32BE(0); h = data.readUInt32BE(4); ctype = data[9];
      if (data[8] !== 8 || (ctype !== 2 && ctype !== 6) || data[12] !== 0) throw new Error("unexpected PNG format");
    } else if (type === "IDAT") idat.push(data);
    off += 12 + len;
  }
  const bpp = ctype === 6 ? 4 : 3, stride = w * bpp;
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const px = Buffer.alloc(h * stride);
  for (let y = 0; y < h; y++) {
    const f = raw[y * (stride + 1)], src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? px[y * stride + x - bpp] : 0, b = y ? px[(y - 1) * stride + x] : 0;
      const c = x >= bpp && y ? px[(y - 1) * stride + x - bpp] : 0;
      let v = src[x];
      if (f === 1) v += a;
      else if (f === 2) v += b;
      else if (f === 3) v += (a + b) >> 1;
      else if (f === 4) { const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
                          v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c; }
      px[y * stride + x] = v & 255;
    }
  }
  return { w, h, bpp, px };
}

// Pixels of a screenshot by colour class: "blue" (b well above r), "orange"
// (r well above b), "colour" (any saturated pixel: the curves; the
// background, grid lines and tick labels are white or grey).
export function pixelCounts(png) {
  const { w, h, bpp, px } = decodePng(png);
  const n = { blue: 0, orange: 0, colour: 0, total: w * h };
  for (let i = 0; i < w * h; i++) {
    const r = px[i * bpp], g = px[i * bpp + 1], b = px[i * bpp + 2];
    const sat = Math.max(r, g, b) - Math.min(r, g, b);
    if (sat < 60) continue;
    n.colour++;
    if (b > r + 60) n.blue++;
    if (r > b + 60) n.orange++;
  }
  return n;
}

export async function shot(page, locator, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  const file = path.join(SHOTS, name + ".png");
  // a locator, "viewport" (what a user sees first) or null (the whole page)
  const png = await (locator === "viewport" ? page.screenshot({ path: file })
    : locator ? locator.screenshot({ path: file }) : page.screenshot({ path: file, fullPage: true }));
  return png;
}

// Starts `mpirun -n 2 codex-train ...` in its own process group.
export function mpirunTrain(args) {
  const env = { ...process.env, OMPI_ALLOW_RUN_AS_ROOT: "1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: "1",
                OPENBLAS_NUM_THREADS: "1", OMPI_MCA_rmaps_base_oversubscribe: "1" };
  const proc = spawn("mpirun", ["-n", "2", "--oversubscribe", TRAIN, ...args],
                     { cwd: SRC, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  proc.stdout.on("data", (d) => { out += d; });
  proc.stderr.on("data", (d) => { out += d; });
  const exited = new Promise((res) => proc.on("exit", (code, sig) => res({ code, sig })));
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return exited;
    try { process.kill(-proc.pid, "SIGTERM"); } catch (e) { /* gone */ }
    const t = setTimeout(() => { try { process.kill(-proc.pid, "SIGKILL"); } catch (e) { /* gone */ } }, 60000);
    const r = await exited;
    clearTimeout(t);
    return r;
  };
  process.on("exit", () => { try { process.kill(-proc.pid, "SIGKILL"); } catch (e) { /* gone */ } });
  return { proc, stop, output: () => out, exited };
}

export function printConfig(overrides) {
  return execFileSync(TRAIN, [path.join(SRC, "configs/demo-base.yaml"), ...overrides, "--print-config"],
                      { encoding: "utf8", cwd: SRC });
}
