// The job table and the compare view. Two runs of a sweep (real resolved
// configs from `codex-train --print-config`, differing in train.lr and
// train.warmup_steps) among other jobs, two of them Slurm jobs whose squeue
// fails: the table filters by name and status, sorts by a column, shows
// the scheduler's error once as a banner (not in each row); picking the
// sweep's runs and pressing Compare overlays their curves (both colours
// drawn in the screenshot) and lists exactly the config keys that differ.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { launch, openPage, pixelCounts, printConfig, serviceDir, shot, startService, until,
         writeJob } from "./lib.mjs";

let browser;
after(async () => { if (browser) await browser.close(); });

test("job table: filter, sort, scheduler banner; compare overlays two runs", async () => {
  const bin = fs.mkdtempSync("/tmp/cu-dash-slurm-");
  process.on("exit", () => fs.rmSync(bin, { recursive: true, force: true }));
  for (const cmd of ["squeue", "sacct"]) {
    fs.writeFileSync(path.join(bin, cmd), "#!/bin/sh\necho \"slurm_load_jobs error: Unable to contact slurm controller\" >&2\nexit 1\n");
    fs.chmodSync(path.join(bin, cmd), 0o755);
  }
  const svc = serviceDir({ extraYaml: "slurm:\n  refresh_s: 0.2\n  timeout_s: 10",
                           env: { PATH: bin + ":" + process.env.PATH } });
  const yaml = (name, lr, warm) => printConfig([`job.name=${name}`, `train.lr=${lr}`, `train.warmup_steps=${warm}`]);
  writeJob(svc.runs, "lrsweep-0", { steps: 200, scale: 1, yaml: yaml("lrsweep-0", "3e-3", 20) });
  writeJob(svc.runs, "lrsweep-1", { steps: 200, scale: 1.3, yaml: yaml("lrsweep-1", "1e-3", 40) });
  writeJob(svc.runs, "other-a", { steps: 50, status: "FAILED", scale: 0.5 });
  writeJob(svc.runs, "slurm-a", { steps: 20, status: "RUNNING", slurm: "7001" });
  writeJob(svc.runs, "slurm-b", { steps: 30, status: "RUNNING", slurm: "7002" });
  const srv = await startService(svc);
  srv.key = svc.key;
  try {
    browser = await launch();
    const elsewhere = [];
    const page = await openPage(browser, srv, null, elsewhere);
    const rows = () => page.evaluate(() => [...document.querySelectorAll("#jobs tbody tr")].map((r) => r.dataset.job));
    await until("5 rows", async () => (await rows()).length === 5);
    // the scheduler's error: one banner, not in the rows
    await until("the scheduler banner", () => page.locator("#schedbanner").isVisible());
    const banner = await page.locator("#schedbanner").textContent();
    assert.match(banner, /Unable to contact slurm controller/);
    assert.match(banner, /2 jobs/);
    const sched = await page.locator("#jobs td.sched").allTextContents();
    assert.ok(sched.every((t) => !/Unable/.test(t)), "rows do not repeat the error: " + sched);
    // sort by loss (ascending, then descending)
    const lossCol = await page.evaluate(() => [...document.querySelectorAll("#jobs thead th")].findIndex((th) => th.textContent === "loss"));
    await page.locator("#jobs thead th").nth(lossCol).click();
    const losses = async () => (await page.locator(`#jobs tbody tr td:nth-child(${lossCol + 1})`).allTextContents()).map(Number);
    let l = await losses();
    assert.deepEqual(l, [...l].sort((a, b) => a - b), "ascending by loss: " + l);
    assert.equal(await rows().then((r) => r[0]), "other-a");
    await page.locator("#jobs thead th").nth(lossCol).click();
    l = await losses();
    assert.deepEqual(l, [...l].sort((a, b) => b - a), "descending by loss: " + l);
    // filter by status, then by name
    await page.locator("#f-status").selectOption("FAILED");
    assert.deepEqual(await rows(), ["other-a"]);
    await page.locator("#f-status").selectOption("");
    await page.locator("#f-name").fill("lrsweep");
    assert.deepEqual((await rows()).sort(), ["lrsweep-0", "lrsweep-1"]);
    await shot(page, null, "jobs-table");
    // pick the shown runs and compare
    await page.locator("#pick-all").check();
    assert.equal(await page.locator("#compare-btn").textContent(), "Compare selected (2)");
    await page.locator("#compare-btn").click();
    await until("the compare view", () => page.evaluate(() =>
      document.body.dataset.view === "compare" && document.getElementById("view-compare").dataset.loaded === "1"));
    assert.match(page.url(), /#\/compare\/lrsweep-[01],lrsweep-[01]$/);
    const loss = page.locator('#view-compare canvas[data-chart="loss"]');
    await until("both curves drawn", async () => Number(await loss.getAttribute("data-points")) === 400);
    assert.equal(await page.locator('#view-compare canvas[data-chart="val_loss"]').getAttribute("data-points"), "8");
    const keys = await page.locator("#view-compare .cmp-diff tbody tr").evaluateAll((t) => t.map((r) => r.dataset.key));
    assert.deepEqual(keys.sort(), ["train.lr", "train.warmup_steps"], "the differing keys: " + keys);
    const lr = await page.locator('#view-compare .cmp-diff tr[data-key="train.lr"]').textContent();
    assert.match(lr, /0\.003/);
    assert.match(lr, /0\.001/);
    const px = pixelCounts(await shot(page, loss, "compare-loss"));
    assert.ok(px.blue > 150 && px.orange > 150, `both runs drawn (blue ${px.blue}, orange ${px.orange})`);
    const pv = pixelCounts(await shot(page, page.locator('#view-compare canvas[data-chart="val_loss"]'), "compare-val"));
    assert.ok(pv.blue > 50 && pv.orange > 50, `both validation curves drawn (blue ${pv.blue}, orange ${pv.orange})`);
    await shot(page, null, "compare");
    assert.deepEqual(elsewhere, [], "no request outside codex-ita");
  } finally {
    await srv.stop();
  }
});
