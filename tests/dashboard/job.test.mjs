// The job page of a live 2-rank job: `mpirun -n 2 codex-train` on the demo
// base config (a step every few tens of ms, logged every step, evaluated
// with a sample prompt and checkpointed every 10 steps, max_steps too high
// to finish). The page is opened while the job runs and, without a reload,
// must show later steps and more points than it first showed: the job
// keeps running until the test stops it, so this holds however slow the
// machine is. Then every section of the page is checked and screenshots
// of the charts must show drawn curves.
import { test, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { launch, mpirunTrain, openPage, pixelCounts, serviceDir, shot, startService, until } from "./lib.mjs";

let browser, train;
after(async () => {
  if (train) await train.stop();
  if (browser) await browser.close();
});

test("the job page of a live 2-rank job updates without a reload", async () => {
  const svc = serviceDir();
  const srv = await startService(svc);
  srv.key = svc.key;
  try {
    train = mpirunTrain(["configs/demo-base.yaml", `job.runs_dir=${svc.runs}`, "job.name=live2",
      "train.micro_batch_size=4", "train.max_steps=1000000", "train.log_every=1", "train.warmup_steps=5",
      "eval.every_steps=10", "eval.batches=1", "eval.prompts=[int]", "eval.max_new_tokens=8",
      "checkpoint.every_steps=10", "checkpoint.keep_last=2"]);
    const stateFile = path.join(svc.runs, "live2", "state.json");
    // the job has started and evaluated once before the page opens
    await until("the job's first evaluation", () => {
      if (train.proc.exitCode !== null) throw new Error("codex-train ended: " + train.output());
      try { return JSON.parse(fs.readFileSync(stateFile, "utf8")).step >= 11; } catch (e) { return false; }
    }, 120000);
    browser = await launch();
    const elsewhere = [];
    const page = await openPage(browser, srv, "#/job/live2", elsewhere);
    const probe = () => page.evaluate(() => {
      const v = document.getElementById("view-job");
      const c = v.querySelector('canvas[data-chart="loss"]');
      return { loaded: v.dataset.loaded === "1", status: v.dataset.status, step: Number(v.dataset.step || 0),
               points: c ? Number(c.dataset.points || 0) : 0 };
    });
    const first = await until("the first view of the job", async () => {
      const p = await probe();
      return p.loaded && p.status === "RUNNING" && p.points > 0 ? p : null;
    });
    console.log("first view", first);
    const later = await until("a later step on the same page", async () => {
      const p = await probe();
      return p.step >= first.step + 10 && p.points > first.points ? p : null;
    }, 120000);
    console.log("later view", later);
    // every section of the job page
    const text = (sel) => page.locator("#view-job " + sel).textContent();
    assert.match(await text('.job-facts dd[data-fact="ranks"]'), /^2\b/, "2 ranks");
    await until("events, a checkpoint with its eval, a sample", async () => {
      const ev = await text(".job-events");
      const ck = await page.locator("#view-job .job-ckpts tbody tr[data-step]").count();
      const samples = await page.locator("#view-job .job-samples .sample").count();
      return /started/.test(ev) && /checkpoint/.test(ev) && ck > 0 && samples > 0;
    });
    assert.match(await text(".job-ckpts tbody"), /checkpoints\/step_\d{8}\.h5/);
    assert.match(await text(".job-config"), /name: live2/);
    assert.match(await text(".job-sched"), /Not a scheduler job/);
    assert.match(await text(".job-exports"), /codexctl export runs\/live2 --format peft/);
    for (const name of ["loss", "val_loss", "lr", "grad_norm", "tokens_per_s"]) {
      const c = page.locator(`#view-job canvas[data-chart="${name}"]`);
      await until(name + " drawn", async () => (await c.getAttribute("data-drawn")) === "1");
      const px = pixelCounts(await shot(page, c, "job-" + name));
      assert.ok(px.colour > 150, `${name}: drawn curve (${px.colour} coloured pixels)`);
    }
    // hovering the loss chart shows the values of the step under the pointer
    const box = await page.locator('#view-job canvas[data-chart="loss"]').boundingBox();
    await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2);
    const tip = await page.locator(".chart-tip").textContent();
    assert.match(tip, /step \d+.*loss \(raw\): [\d.]+/);
    // log scale off, smoothing changed: redrawn at once
    await page.locator("#logscale").uncheck();
    await page.locator("#smooth").fill("0.9");
    assert.equal(await page.locator("#smooth-val").textContent(), "0.90");
    await shot(page, null, "job-page");
    assert.deepEqual(elsewhere, [], "no request outside codex-ita");
    // the incremental fetches: after the first, metrics continue from a cursor
    // (the job page asks for grad_norm too; the job table's chart did not)
    const metr = fs.readFileSync(svc.audit, "utf8").split("\n")
      .filter((l) => l.includes("/live2/metrics?") && l.includes("grad_norm"));
    assert.ok(metr.length >= 2 && metr.slice(1).every((l) => /cursor=[1-9]/.test(l)), "metrics fetched incrementally");
    // stopping the job: the page shows the final status without a reload
    await train.stop();
    await until("the page shows the job stopped", async () => {
      const p = await probe();
      return p.status !== "RUNNING" ? p : null;
    });
  } finally {
    await srv.stop();
  }
});
