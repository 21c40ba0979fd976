// codex-ita dashboard: three views behind the URL fragment.
//
//   #/                  the job table (filter, sort, pick runs to compare)
//                       and a loss chart per job
//   #/job/ID            one job: state, charts, events, samples,
//                       checkpoints, scheduler, config, exports
//   #/compare/ID,ID,..  the runs' curves overlaid and the config keys that
//                       differ between them
//
// The key comes from #key=... (then kept in localStorage and removed from
// the address bar) or the form. Every API request goes through one
// client-side token bucket (REQ_PER_S, REQ_BURST): far below the service's
// default limit per key (rate_limit.per_second 20, burst 40), so the page
// stays inside its key's limit whatever the number of jobs. Curves are
// fetched only for charts on screen and only when the job list says the
// job moved on, from the cursor of the last fetch (only new lines). A 429
// pauses every request for the Retry-After the service gave and shows a
// notice; nothing is dropped silently.
"use strict";

const POLL_MS = 2000;
const REQ_PER_S = 4;
const REQ_BURST = 4;
const MAX_POINTS = 20000; // per series: older points are thinned beyond it
const PALETTE = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2",
                 "#ca8a04", "#db2777", "#4b5563", "#65a30d"];
const STATUSES = ["RUNNING", "PENDING", "SUBMITTED", "COMPLETED", "FAILED", "LOST",
                  "PREEMPTED", "CANCELLED", "TIMEOUT"];

const state = {
  key: "",
  jobs: [],           // the last job list
  cards: new Map(),   // overview charts by job id
  sort: { col: null, dir: 1 },
  selected: new Set(),
  view: null,         // the current view's controller
  busy: false,
  limiter: { tokens: REQ_BURST, at: 0, pausedUntil: 0, chain: Promise.resolve() },
  throttled: 0,       // 429 answers received
  requests: 0,
};

// ---- the API, through the rate limiter ----

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

// Waits for a token of the client's bucket (and for any pause a 429
// asked for). Callers queue in order.
function takeToken() {
  const l = state.limiter;
  const turn = l.chain.then(async () => {
    for (;;) {
      const now = performance.now();
      if (now < l.pausedUntil) { await sleep(l.pausedUntil - now); continue; }
      l.tokens = Math.min(REQ_BURST, l.tokens + (now - l.at) / 1000 * REQ_PER_S);
      l.at = now;
      if (l.tokens >= 1) { l.tokens -= 1; return; }
      await sleep((1 - l.tokens) / REQ_PER_S * 1000 + 5);
    }
  });
  l.chain = turn.catch(() => {});
  return turn;
}

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path) {
  await takeToken();
  state.requests++;
  document.body.dataset.requests = String(state.requests);
  const r = await fetch(path, { headers: { "X-API-Key": state.key }, cache: "no-store" });
  if (r.status === 429) {
    const ra = Math.max(1, Number(r.headers.get("Retry-After")) || 2);
    state.limiter.pausedUntil = performance.now() + ra * 1000;
    state.throttled++;
    showThrottle(ra);
  }
  if (!r.ok) {
    let detail = r.status + " " + r.statusText;
    try { const p = await r.json(); if (p.detail) detail = p.detail; } catch (e) { /* not JSON */ }
    throw new ApiError(r.status, detail);
  }
  return r.json();
}

function showThrottle(seconds) {
  const n = document.getElementById("ratelimit");
  n.hidden = false;
  n.textContent = "codex-ita answered 429 (over this key's rate limit, " + state.throttled +
    " time" + (state.throttled > 1 ? "s" : "") + "): requests paused for " + seconds +
    " s, then the page carries on where it stopped.";
  document.body.dataset.throttled = String(state.throttled);
  clearTimeout(showThrottle.timer);
  showThrottle.timer = setTimeout(() => { n.hidden = true; }, seconds * 1000 + 10000);
}

// Pages of metrics after e.cursor into e.series (names → [[step, v]]).
async function pullMetrics(id, e, names) {
  for (let page = 0; page < 50; page++) {
    // the cursor is the byte offset after the last line read ("0": the start)
    const q = "/v1/jobs/" + encodeURIComponent(id) + "/metrics?names=" + names.join(",") +
      "&limit=5000&cursor=" + (e.cursor === null ? "0" : e.cursor);
    const d = await api(q);
    for (const r of d.records)
      for (const n of names)
        if (typeof r[n] === "number") (e.series[n] = e.series[n] || []).push([r.step, r[n]]);
    e.cursor = d.next_cursor;
    if (!d.more) break;
  }
  for (const n of names) {
    const s = e.series[n];
    if (s && s.length > MAX_POINTS) e.series[n] = s.filter((_, i) => i % 2 === 0);
  }
}

// ---- small helpers ----

function readKey() {
  const m = /(?:^|[#&])key=([^&]+)/.exec(location.hash);
  if (m) {
    const k = decodeURIComponent(m[1]);
    try { localStorage.setItem("codex-ita-key", k); } catch (e) { /* private mode */ }
    const rest = location.hash.replace(/(^#|&)key=[^&]*/, "").replace(/^&/, "");
    history.replaceState(null, "", location.pathname + (rest && rest !== "#" ? "#" + rest.replace(/^#/, "") : ""));
    return k;
  }
  try { return localStorage.getItem("codex-ita-key") || ""; } catch (e) { return ""; }
}

function setStatus(text) { document.getElementById("status").textContent = text; }

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("data-")) e.dataset[k.slice(5).replace(/-([a-z])/g, (_, c) => c.toUpperCase())] = v;
    else e.setAttribute(k, v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) e.append(kid);
  return e;
}

function fmt(v, digits) {
  return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
}

function fmtDuration(s) {
  if (s === null || s === undefined) return "–";
  s = Math.round(s);
  if (s < 120) return s + " s";
  if (s < 7200) return Math.round(s / 60) + " min";
  if (s < 172800) return (s / 3600).toFixed(1) + " h";
  return Math.round(s / 86400) + " d";
}

function fmtTime(t) { return t ? t.replace("T", " ").slice(0, 19) : "–"; }

function badge(status, title) {
  return el("span", { class: "badge " + status, title, text: status });
}

// What the scheduler says of a job: "Slurm 1234 RUNNING on node1",
// "Slurm 1235 PENDING (Priority)", "Slurm 1236 · not known to Slurm". A
// failed refresh is shown once, in the banner, not in every row.
function schedText(sc) {
  if (!sc || !sc.slurm_job_id) return "–";
  let t = "Slurm " + sc.slurm_job_id;
  if (sc.known === true) {
    if (sc.state) t += " " + sc.state;
    if (sc.reason) t += " (" + sc.reason + ")";
    if (sc.nodes) t += " on " + sc.nodes;
  } else {
    t += sc.known === false ? " · not known to Slurm" : " · not asked yet";
  }
  return t;
}

// job.yaml as codex-train writes it (maps by indentation, scalars, flow
// lists, "- item" lists) into {"train.lr": "0.003", ...}.
function flattenYaml(text) {
  const out = {}, stack = [];
  let listKey = null;
  for (const raw of (text || "").split("\n")) {
    const line = raw.replace(/\s+#.*$/, "").replace(/^#.*$/, "");
    if (!line.trim()) continue;
    const indent = line.length - line.trimStart().length;
    const body = line.trim();
    if (body.startsWith("- ") && listKey) {
      out[listKey] = (out[listKey] ? out[listKey] + ", " : "") + body.slice(2).trim();
      continue;
    }
    const m = /^([^:]+):\s*(.*)$/.exec(body);
    if (!m) continue;
    while (stack.length && stack[stack.length - 1].indent >= indent) stack.pop();
    const key = stack.map((s) => s.key).concat(m[1].trim()).join(".");
    if (m[2] === "") {
      stack.push({ indent, key: m[1].trim() });
      listKey = key;
    } else {
      out[key] = m[2].replace(/^"(.*)"$/, "$1");
      listKey = null;
    }
  }
  for (const s of Object.keys(out)) if (out[s] === "") delete out[s];
  return out;
}

function download(name, type, text) {
  const a = el("a", { href: URL.createObjectURL(new Blob([text], { type })), download: name });
  document.body.appendChild(a);
  a.click();
  setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
}

// ---- the job list (polled by every view that needs it) ----

async function fetchJobs() {
  const jobs = [];
  let cursor = null;
  for (let page = 0; page < 20; page++) {
    const d = await api("/v1/jobs?limit=500" + (cursor ? "&cursor=" + cursor : ""));
    jobs.push(...d.jobs);
    cursor = d.next_cursor;
    if (!cursor) break;
  }
  state.jobs = jobs;
  document.body.dataset.jobs = String(jobs.length);
  schedBanner(jobs);
  return jobs;
}

function schedBanner(jobs) {
  const errs = new Map();
  for (const j of jobs) {
    const e = j.scheduler && j.scheduler.error;
    if (e) errs.set(e, (errs.get(e) || 0) + 1);
  }
  const b = document.getElementById("schedbanner");
  b.hidden = errs.size === 0;
  b.textContent = [...errs].map(([e, n]) =>
    "Scheduler: " + e + " (" + n + " job" + (n > 1 ? "s" : "") + "; their Slurm column shows the last answer)").join(" · ");
}

// ---- view: jobs ----

const COLUMNS = [
  { title: "job", key: (j) => j.id },
  { title: "status", key: (j) => j.status },
  { title: "scheduler", key: (j) => schedText(j.scheduler) },
  { title: "step", key: (j) => j.step },
  { title: "progress", key: (j) => j.progress },
  { title: "loss", key: (j) => j.loss },
  { title: "tokens/s", key: (j) => j.tokens_per_s },
  { title: "ETA", key: (j) => j.eta_s },
  { title: "heartbeat", key: (j) => j.heartbeat_age_s },
  { title: "started", key: (j) => j.started_at },
];

function compareValues(a, b) {
  const na = a === null || a === undefined, nb = b === null || b === undefined;
  if (na || nb) return na - nb; // missing values last
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b), "en", { numeric: true });
}

function visibleJobs() {
  const name = document.getElementById("f-name").value.trim().toLowerCase();
  const st = document.getElementById("f-status").value;
  let jobs = state.jobs.filter((j) => (!name || j.id.toLowerCase().includes(name)) &&
                                      (!st || j.status === st));
  if (state.sort.col !== null) {
    const k = COLUMNS[state.sort.col].key, d = state.sort.dir;
    jobs = jobs.slice().sort((a, b) => d * compareValues(k(a), k(b)) || a.id.localeCompare(b.id));
  }
  return jobs;
}

function buildTableHead() {
  const tr = document.querySelector("#jobs thead tr");
  tr.replaceChildren(el("th", { class: "pick" },
    el("input", { type: "checkbox", id: "pick-all", title: "select every shown job", "aria-label": "select all" })));
  COLUMNS.forEach((c, i) => {
    const th = el("th", { "data-col": String(i), tabindex: "0", title: "sort by " + c.title }, c.title);
    th.addEventListener("click", () => {
      state.sort = { col: i, dir: state.sort.col === i ? -state.sort.dir : 1 };
      renderJobs();
    });
    tr.appendChild(th);
  });
  document.getElementById("pick-all").addEventListener("change", (ev) => {
    for (const j of visibleJobs()) ev.target.checked ? state.selected.add(j.id) : state.selected.delete(j.id);
    renderJobs();
  });
}

function renderTable(jobs) {
  const tbody = document.querySelector("#jobs tbody");
  tbody.replaceChildren();
  document.querySelectorAll("#jobs thead th[data-col]").forEach((th) => {
    const i = Number(th.dataset.col);
    th.dataset.sort = state.sort.col === i ? (state.sort.dir > 0 ? "asc" : "desc") : "";
  });
  for (const j of jobs) {
    const tr = document.createElement("tr");
    tr.dataset.job = j.id;
    tr.dataset.status = j.status;
    const pick = el("input", { type: "checkbox", "aria-label": "select " + j.id });
    pick.checked = state.selected.has(j.id);
    pick.addEventListener("change", () => {
      pick.checked ? state.selected.add(j.id) : state.selected.delete(j.id);
      updateCompareButton();
    });
    tr.appendChild(el("td", { class: "pick" }, pick));
    tr.appendChild(el("td", {}, el("a", { href: "#/job/" + encodeURIComponent(j.id), text: j.id })));
    // the same reason codexctl status and list show (rundir's rule)
    const status = el("span", {}, badge(j.status, j.reason || j.detail || null));
    if (j.reason) status.appendChild(el("small", { class: "reason", text: " " + j.reason }));
    tr.appendChild(el("td", {}, status));
    tr.appendChild(el("td", { class: "sched", text: schedText(j.scheduler) }));
    tr.appendChild(el("td", { class: "num step", text: j.step + " / " + j.max_steps }));
    const fill = el("span");
    fill.style.width = Math.round(100 * Math.min(1, j.progress || 0)) + "%";
    tr.appendChild(el("td", {}, el("span", { class: "bar" }, fill)));
    tr.appendChild(el("td", { class: "num", text: fmt(j.loss, 4) }));
    tr.appendChild(el("td", { class: "num",
      text: j.tokens_per_s === null ? "–" : Math.round(j.tokens_per_s).toLocaleString("en") }));
    tr.appendChild(el("td", { class: "num", text: fmtDuration(j.eta_s) }));
    tr.appendChild(el("td", { class: "num",
      text: j.heartbeat_age_s === null ? "–" : fmtDuration(j.heartbeat_age_s) + " ago" }));
    tr.appendChild(el("td", { text: fmtTime(j.started_at) }));
    tbody.appendChild(tr);
  }
  document.getElementById("empty").hidden = state.jobs.length > 0;
  document.getElementById("shown").textContent = jobs.length === state.jobs.length ?
    jobs.length + " jobs" : jobs.length + " of " + state.jobs.length + " jobs";
  updateCompareButton();
}

function updateCompareButton() {
  const b = document.getElementById("compare-btn");
  const ids = [...state.selected].filter((id) => state.jobs.some((j) => j.id === id));
  b.disabled = ids.length < 2;
  b.textContent = "Compare selected (" + ids.length + ")";
}

function cardFor(id) {
  let e = state.cards.get(id);
  if (!e) {
    const canvas = el("canvas", { class: "chart", "data-job": id, "data-drawn": "0" });
    const card = el("div", { class: "card", "data-job": id },
      el("h2", {}, el("a", { href: "#/job/" + encodeURIComponent(id), text: id })), canvas);
    e = { id, card, canvas, cursor: null, series: {}, seen: null, busy: false };
    state.cards.set(id, e);
  }
  return e;
}

function drawCard(e) {
  drawChart(e.canvas, {
    yLabel: "loss", series: [
      { name: "loss", color: PALETTE[0], points: e.series.loss || [] },
      { name: "val loss", color: PALETTE[1], points: e.series.val_loss || [], width: 2 },
    ],
  });
  document.body.dataset.charts = String(document.querySelectorAll('#charts canvas[data-drawn="1"]').length);
}

function onScreen(node) {
  if (node.hidden || !node.isConnected) return false;
  const r = node.getBoundingClientRect();
  return r.bottom > 0 && r.top < window.innerHeight && r.width > 0;
}

function renderJobs() {
  const jobs = visibleJobs();
  renderTable(jobs);
  const grid = document.getElementById("charts");
  const want = jobs.map((j) => cardFor(j.id).card);
  if (want.length !== grid.children.length || want.some((c, i) => grid.children[i] !== c))
    grid.replaceChildren(...want);
  for (const j of jobs) {
    const e = cardFor(j.id);
    if (e.seen === null && !e.drawnOnce) { drawCard(e); e.drawnOnce = true; }
  }
}

// Metrics for the cards on screen whose job moved on since their last fetch.
async function pullVisibleCards() {
  const byId = new Map(state.jobs.map((j) => [j.id, j]));
  const todo = [];
  for (const e of state.cards.values()) {
    const j = byId.get(e.id);
    if (!j || e.busy || !onScreen(e.card)) continue;
    const mark = j.status + "|" + j.step + "|" + (j.updated_at || "");
    if (mark !== e.seen) todo.push([e, mark]);
  }
  document.body.dataset.visibleCards = String(
    [...state.cards.values()].filter((e) => onScreen(e.card)).length);
  await Promise.all(todo.map(async ([e, mark]) => {
    e.busy = true;
    try {
      await pullMetrics(e.id, e, ["loss", "val_loss"]);
      e.seen = mark;
      drawCard(e);
    } catch (err) {
      if (err.status !== 429) console.warn(e.id, err.message);
    } finally {
      e.busy = false;
    }
  }));
}

const jobsView = {
  show() {
    renderJobs();
  },
  async refresh() {
    await fetchJobs();
    renderJobs();
    await pullVisibleCards();
  },
  hide() {},
};

// ---- view: one job ----

const METRIC_CHARTS = [
  { name: "loss", title: "Loss", y: "loss", names: ["loss"], log: true, smooth: true },
  { name: "val_loss", title: "Validation loss", y: "val loss", names: ["val_loss"], log: true },
  { name: "lr", title: "Learning rate", y: "lr", names: ["lr"] },
  { name: "grad_norm", title: "Gradient norm", y: "grad norm", names: ["grad_norm"] },
  { name: "tokens_per_s", title: "Throughput", y: "tokens/s", names: ["tokens_per_s"] },
];
const JOB_METRICS = ["loss", "val_loss", "lr", "grad_norm", "tokens_per_s"];

function jobView(id) {
  const v = {
    id, metrics: { cursor: null, series: {} }, events: [], evCursor: null,
    seen: null, config: null, ckptMark: null, detail: null,
  };
  const root = document.getElementById("view-job");
  const charts = root.querySelector(".job-charts");

  function redraw() {
    const w = Number(document.getElementById("smooth").value);
    const log = document.getElementById("logscale").checked;
    document.getElementById("smooth-val").textContent = w.toFixed(2);
    for (const c of METRIC_CHARTS) {
      const canvas = charts.querySelector('canvas[data-chart="' + c.name + '"]');
      const pts = v.metrics.series[c.names[0]] || [];
      const series = c.smooth
        ? [{ name: "loss (raw)", color: "#93c5fd", points: pts, width: 1 },
           { name: "loss (smoothed " + w.toFixed(2) + ")", color: PALETTE[0], points: smooth(pts, w), width: 2 }]
        : [{ name: c.y, color: c.name === "val_loss" ? PALETTE[1] : PALETTE[METRIC_CHARTS.indexOf(c) % PALETTE.length],
             points: pts, width: 2, dots: c.name === "val_loss" }];
      drawChart(canvas, { yLabel: c.y, log: c.log && log, series, empty: "no " + c.y + " recorded yet" });
    }
  }

  function renderState(d) {
    const st = d.state || {};
    root.querySelector(".job-title").textContent = d.id;
    const head = root.querySelector(".job-status");
    head.replaceChildren(badge(d.status, d.detail || null));
    if (d.reason) head.append(el("span", { class: "reason", text: " " + d.reason }));
    const err = st.error && st.error.message;
    const box = root.querySelector(".job-error");
    box.hidden = !err && !(d.status === "FAILED" || d.status === "LOST");
    box.textContent = err ? "Failure: " + err + (st.error.rank !== undefined ? " (rank " + st.error.rank + ")" : "")
      : d.detail || d.reason || "";
    const facts = [
      ["step", st.step + " / " + st.max_steps + (st.epoch !== undefined ? " · epoch " + st.epoch : "")],
      ["progress", d.progress === null ? "–" : (100 * d.progress).toFixed(1) + " %"],
      ["loss", fmt(st.loss, 4)], ["learning rate", st.lr === null || st.lr === undefined ? "–" : fmtValue(st.lr)],
      ["tokens/s", st.tokens_per_s ? Math.round(st.tokens_per_s).toLocaleString("en") : "–"],
      ["ETA", fmtDuration(d.eta_s)], ["heartbeat", d.heartbeat_age_s === null ? "–" : fmtDuration(d.heartbeat_age_s) + " ago"],
      ["ranks", (st.world_size || "–") + (st.hosts ? " on " + st.hosts.join(", ") : "")],
      ["started", fmtTime(st.started_at)], ["updated", fmtTime(st.updated_at)], ["finished", fmtTime(st.finished_at)],
      ["best eval", st.best_eval ? "val loss " + fmt(st.best_eval.val_loss, 4) + " at step " + st.best_eval.step : "–"],
      ["last checkpoint", st.last_checkpoint ? st.last_checkpoint.file + " (step " + st.last_checkpoint.step + ")" : "–"],
    ];
    root.querySelector(".job-facts").replaceChildren(
      ...facts.flatMap(([k, val]) => [el("dt", { text: k }), el("dd", { "data-fact": k, text: val })]));
    const sc = d.scheduler;
    root.querySelector(".job-sched").textContent = sc ? schedText(sc) +
      (sc.error ? "\nlast refresh failed: " + sc.error : "") + "\n\n" + JSON.stringify(sc, null, 2)
      : "Not a scheduler job (no Slurm id): started locally" + (st.pid ? " as pid " + st.pid : "") + ".";
    root.dataset.status = d.status;
    root.dataset.step = String(st.step === undefined ? "" : st.step);
  }

  function renderEvents() {
    const ol = root.querySelector(".job-events");
    ol.replaceChildren(...v.events.slice(-300).reverse().filter((e) => e.type !== "sample").map((e) =>
      el("li", { class: "ev " + e.type },
        el("time", { text: fmtTime(e.time) }), el("span", { class: "ev-type", text: e.type }),
        el("span", { class: "ev-step", text: "step " + e.step }), el("span", { text: e.message || "" }))));
    const samples = v.events.filter((e) => e.type === "sample");
    const box = root.querySelector(".job-samples");
    box.replaceChildren(...(samples.length ? samples.slice(-50).reverse().map((e) =>
      el("figure", { class: "sample" },
        el("figcaption", { text: "step " + e.step + (e.prompt_index !== undefined ? " · prompt " + e.prompt_index : "") }),
        el("pre", { text: e.message || "" }))) : [el("p", { class: "muted",
          text: "No samples: they are written at each evaluation when eval.prompts is set (after the safety policy's redaction, as stored in events.jsonl)." })]));
  }

  async function renderCheckpoints() {
    const d = await api("/v1/jobs/" + encodeURIComponent(id) + "/checkpoints");
    const rows = d.checkpoints.map((c) => {
      const ev = c.eval || {};
      const best = d.best_eval && d.best_eval.step === c.step;
      return el("tr", { "data-step": String(c.step) },
        el("td", { class: "num", text: String(c.step) }), el("td", { text: c.file + (c.latest ? " (latest)" : "") }),
        el("td", { class: "num", text: (c.size_bytes / 1048576).toFixed(2) + " MiB" }), el("td", { text: fmtTime(c.time) }),
        el("td", { class: "num", text: fmt(ev.val_loss, 4) + (best ? " ★ best" : "") }),
        el("td", { class: "num", text: fmt(ev.val_ppl, 2) }), el("td", { class: "num", text: fmt(ev.val_acc, 3) }));
    });
    const tb = root.querySelector(".job-ckpts tbody");
    tb.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: "7", class: "muted", text: "no checkpoints" }))]));
  }

  function renderExports() {
    const ul = root.querySelector(".job-exports");
    const q = encodeURIComponent(id);
    const mk = (text, fn) => {
      const a = el("a", { href: "#", text });
      a.addEventListener("click", (ev) => { ev.preventDefault(); fn(); });
      return el("li", {}, a);
    };
    ul.replaceChildren(
      mk("metrics.csv (every metric the page has loaded)", () => {
        const steps = new Map();
        for (const n of JOB_METRICS)
          for (const [s, y] of v.metrics.series[n] || []) (steps.get(s) || steps.set(s, {}).get(s))[n] = y;
        const lines = ["step," + JOB_METRICS.join(",")];
        for (const s of [...steps.keys()].sort((a, b) => a - b))
          lines.push(s + "," + JOB_METRICS.map((n) => steps.get(s)[n] ?? "").join(","));
        download(id + "-metrics.csv", "text/csv", lines.join("\n") + "\n");
      }),
      mk("events.jsonl", () => download(id + "-events.jsonl", "application/x-ndjson",
        v.events.map((e) => JSON.stringify(e)).join("\n") + "\n")),
      mk((v.config && v.config.file) || "job.yaml", () => download(id + "-job.yaml", "text/yaml", (v.config && v.config.yaml) || "")),
      el("li", {}, "Hugging Face PEFT adapter: ",
        el("code", { text: "codexctl export runs/" + id + " --format peft -o exports/" + id }), " (",
        el("code", { text: "--format merged" }), " for a merged model, ", el("code", { text: "--which best" }),
        " for the best evaluation; runs/ is the service's runs_dir; docs/export.md)"),
      el("li", {}, "API: ", el("a", { href: "/v1/jobs/" + q + "/metrics", text: "metrics" }), " · ",
        el("a", { href: "/v1/jobs/" + q + "/events", text: "events" }), " · ",
        el("a", { href: "/v1/jobs/" + q + "/checkpoints", text: "checkpoints" }),
        " (send the key as X-API-Key)"));
  }

  v.show = () => {
    root.dataset.job = id;
    charts.replaceChildren(...METRIC_CHARTS.map((c) => el("div", { class: "card" },
      el("h2", { text: c.title }), el("canvas", { class: "chart", "data-chart": c.name, "data-drawn": "0" }))));
    for (const sel of [".job-title", ".job-facts", ".job-events", ".job-samples", ".job-sched", ".job-config"])
      root.querySelector(sel).replaceChildren();
    root.querySelector(".job-status").replaceChildren(el("span", { class: "muted", text: "loading…" }));
    root.querySelector(".job-title").textContent = id;
    root.querySelector(".job-ckpts tbody").replaceChildren();
    root.querySelector(".job-error").hidden = true;
    renderExports();
    redraw();
  };
  v.redraw = redraw;
  v.refresh = async () => {
    const q = "/v1/jobs/" + encodeURIComponent(id);
    let d;
    try {
      d = await api(q);
    } catch (err) {
      if (err.status === 404) {
        root.querySelector(".job-status").replaceChildren(el("span", { class: "muted",
          text: "no such job (yet): the page shows it as soon as its directory appears" }));
        return;
      }
      throw err;
    }
    v.detail = d;
    renderState(d);
    const st = d.state || {};
    const mark = d.status + "|" + st.step + "|" + st.updated_at;
    if (mark === v.seen) return;
    await pullMetrics(id, v.metrics, JOB_METRICS);
    redraw();
    for (let page = 0; page < 20; page++) {
      const e = await api(q + "/events?limit=5000" + (v.evCursor !== null ? "&cursor=" + v.evCursor : ""));
      v.events.push(...e.events);
      v.evCursor = e.next_cursor;
      if (!e.more) break;
    }
    renderEvents();
    const ckMark = d.status + "|" + v.events.filter((e) => e.type === "checkpoint" || e.type === "eval").length;
    if (ckMark !== v.ckptMark) { await renderCheckpoints(); v.ckptMark = ckMark; }
    if (!v.config || !v.config.file) {
      v.config = await api(q + "/config");
      root.querySelector(".job-config").textContent = v.config.yaml ||
        "No job.yaml yet (codex-train writes it when the job starts).";
    }
    v.seen = mark;
    root.dataset.loaded = "1";
  };
  v.hide = () => { if (chartTip) chartTip.hidden = true; };
  return v;
}

// ---- view: compare ----

function compareView(ids) {
  const v = { ids, runs: ids.map((id) => ({ id, cursor: null, series: {}, seen: null, config: null })) };
  const root = document.getElementById("view-compare");

  function redraw() {
    const log = document.getElementById("cmp-log").checked;
    const w = Number(document.getElementById("cmp-smooth").value);
    document.getElementById("cmp-smooth-val").textContent = w.toFixed(2);
    drawChart(root.querySelector('canvas[data-chart="loss"]'), { yLabel: "loss", log,
      series: v.runs.map((r, i) => ({ name: r.id, color: PALETTE[i % PALETTE.length],
                                       points: smooth(r.series.loss || [], w), width: 2 })) });
    drawChart(root.querySelector('canvas[data-chart="val_loss"]'), { yLabel: "val loss", log,
      series: v.runs.map((r, i) => ({ name: r.id, color: PALETTE[i % PALETTE.length],
                                       points: r.series.val_loss || [], width: 2, dots: true })) });
  }

  function renderDiff() {
    const flat = v.runs.map((r) => flattenYaml(r.config && r.config.yaml));
    const keys = [...new Set(flat.flatMap((f) => Object.keys(f)))].sort();
    const differ = keys.filter((k) => new Set(flat.map((f) => f[k] ?? "–")).size > 1 && k !== "job.name");
    const t = root.querySelector(".cmp-diff");
    t.replaceChildren(
      el("thead", {}, el("tr", {}, el("th", { text: "key" }),
        ...v.runs.map((r, i) => el("th", {}, el("span", { class: "swatch", style: "background:" + PALETTE[i % PALETTE.length] }), " " + r.id)))),
      el("tbody", {}, ...(differ.length ? differ.map((k) => el("tr", { "data-key": k }, el("td", { text: k }),
        ...flat.map((f) => el("td", { text: f[k] ?? "–" })))) :
        [el("tr", {}, el("td", { colspan: String(v.runs.length + 1), class: "muted",
          text: "the configs do not differ (besides job.name)" }))])));
    root.dataset.differ = String(differ.length);
  }

  v.show = () => {
    root.querySelector(".cmp-title").textContent = "Comparing " + ids.length + " runs";
    root.querySelector(".cmp-legend").replaceChildren(...v.runs.map((r, i) => el("li", {},
      el("span", { class: "swatch", style: "background:" + PALETTE[i % PALETTE.length] }), " ",
      el("a", { href: "#/job/" + encodeURIComponent(r.id), text: r.id }), el("span", { class: "cmp-status muted", "data-job": r.id }))));
    for (const c of root.querySelectorAll("canvas")) c.dataset.drawn = "0";
    root.querySelector(".cmp-diff").replaceChildren();
    redraw();
  };
  v.redraw = redraw;
  v.refresh = async () => {
    const jobs = await fetchJobs();
    const byId = new Map(jobs.map((j) => [j.id, j]));
    let changed = false;
    for (const r of v.runs) {
      const j = byId.get(r.id);
      const tag = root.querySelector('.cmp-status[data-job="' + CSS.escape(r.id) + '"]');
      if (tag) tag.textContent = j ? " " + j.status + " · step " + j.step : " (no such job)";
      if (!j) continue;
      const mark = j.status + "|" + j.step + "|" + (j.updated_at || "");
      if (mark !== r.seen) {
        await pullMetrics(r.id, r, ["loss", "val_loss"]);
        r.seen = mark;
        changed = true;
      }
      if (!r.config || !r.config.file) { r.config = await api("/v1/jobs/" + encodeURIComponent(r.id) + "/config"); changed = true; }
    }
    if (changed) { redraw(); renderDiff(); }
    root.dataset.loaded = "1";
  };
  v.hide = () => { if (chartTip) chartTip.hidden = true; };
  return v;
}

// ---- routing and polling ----

function route() {
  const h = location.hash.replace(/^#/, "");
  let m;
  if ((m = /^\/job\/(.+)$/.exec(h))) return { name: "job", make: () => jobView(decodeURIComponent(m[1])) };
  if ((m = /^\/compare\/(.+)$/.exec(h)))
    return { name: "compare", make: () => compareView(m[1].split(",").map(decodeURIComponent).filter(Boolean)) };
  return { name: "jobs", make: () => jobsView };
}

function switchView() {
  if (state.view && state.view.hide) state.view.hide();
  const r = route();
  for (const n of ["jobs", "job", "compare"]) document.getElementById("view-" + n).hidden = n !== r.name;
  document.body.dataset.view = r.name;
  state.view = r.make();
  state.view.show();
  refresh();
}

async function refresh() {
  if (!state.key) {
    setStatus("enter an API key (scope read)");
    return;
  }
  if (state.busy) return; // the previous round is still waiting for its tokens
  state.busy = true;
  const view = state.view;
  try {
    await view.refresh();
    if (view === state.view) setStatus("updated " + new Date().toLocaleTimeString("en-GB"));
  } catch (err) {
    setStatus("error: " + err.message);
  } finally {
    state.busy = false;
  }
}

function start() {
  state.key = readKey();
  document.getElementById("key").value = state.key;
  document.getElementById("keyform").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.key = document.getElementById("key").value.trim();
    try { localStorage.setItem("codex-ita-key", state.key); } catch (e) { /* ignore */ }
    refresh();
  });
  const fs = document.getElementById("f-status");
  for (const s of STATUSES) fs.appendChild(el("option", { value: s, text: s }));
  document.getElementById("f-name").addEventListener("input", () => { renderJobs(); pullVisibleCards(); });
  fs.addEventListener("change", () => { renderJobs(); pullVisibleCards(); });
  document.getElementById("compare-btn").addEventListener("click", () => {
    const ids = visibleJobs().map((j) => j.id).filter((id) => state.selected.has(id));
    location.hash = "#/compare/" + ids.map(encodeURIComponent).join(",");
  });
  buildTableHead();
  for (const id of ["smooth", "logscale"])
    document.getElementById(id).addEventListener("input", () => state.view.redraw && state.view.redraw());
  for (const id of ["cmp-smooth", "cmp-log"])
    document.getElementById(id).addEventListener("input", () => state.view.redraw && state.view.redraw());
  let scrollTimer = null;
  const onScroll = () => {
    clearTimeout(scrollTimer);
    scrollTimer = setTimeout(() => { if (state.view === jobsView) pullVisibleCards(); }, 250);
  };
  window.addEventListener("scroll", onScroll);
  window.addEventListener("resize", () => {
    if (state.view === jobsView) state.cards.forEach(drawCard);
    else if (state.view.redraw) state.view.redraw();
  });
  window.addEventListener("hashchange", switchView);
  switchView();
  setInterval(refresh, POLL_MS);
}

start();
