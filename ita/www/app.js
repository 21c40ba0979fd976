// codex-ita dashboard. Reads the key from the URL fragment (#key=...) or
// localStorage, polls GET /v1/jobs every 2 s, and per job fetches only the
// metrics appended since its last cursor (names=loss,val_loss), then draws
// loss and validation-loss curves on a <canvas> with plain 2D calls.
// A drawn chart sets data-drawn="1" and data-points=N on its canvas, which
// the headless-browser test reads.
"use strict";

const POLL_MS = 2000;
const MAX_POINTS = 20000; // per series, per job: older points are thinned
const state = { key: "", jobs: new Map(), timer: null };

function readKey() {
  const m = /(?:^|[#&])key=([^&]+)/.exec(location.hash);
  if (m) {
    const k = decodeURIComponent(m[1]);
    try { localStorage.setItem("codex-ita-key", k); } catch (e) { /* private mode */ }
    history.replaceState(null, "", location.pathname); // keep the key out of the address bar
    return k;
  }
  try { return localStorage.getItem("codex-ita-key") || ""; } catch (e) { return ""; }
}

async function api(path) {
  const r = await fetch(path, { headers: { "X-API-Key": state.key }, cache: "no-store" });
  if (!r.ok) {
    let detail = r.status + " " + r.statusText;
    try { const p = await r.json(); if (p.detail) detail = p.detail; } catch (e) { /* not JSON */ }
    throw new Error(detail);
  }
  return r.json();
}

function setStatus(text) { document.getElementById("status").textContent = text; }

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

function cell(tr, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  if (text instanceof Node) td.appendChild(text); else td.textContent = text;
  tr.appendChild(td);
}

// What the scheduler says of a job: "Slurm 1234 RUNNING on node1",
// "Slurm 1235 PENDING (Priority)", "Slurm 1236 · not known to Slurm", plus
// why the last refresh failed when it did (the previous answer is kept).
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
  if (sc.error) t += " · " + sc.error;
  return t;
}

function renderTable(jobs) {
  const tbody = document.querySelector("#jobs tbody");
  tbody.replaceChildren();
  for (const j of jobs) {
    const tr = document.createElement("tr");
    tr.dataset.job = j.id;
    tr.dataset.status = j.status;
    cell(tr, j.id);
    const badge = document.createElement("span");
    badge.className = "badge " + j.status;
    badge.textContent = j.status;
    // the same reason codexctl status and list show (rundir's rule)
    const why = j.reason || j.detail;
    if (why) badge.title = why;
    const status = document.createElement("span");
    status.appendChild(badge);
    if (j.reason) {
      const r = document.createElement("small");
      r.className = "reason";
      r.textContent = " " + j.reason;
      status.appendChild(r);
    }
    cell(tr, status);
    cell(tr, schedText(j.scheduler), "sched");
    cell(tr, j.step + " / " + j.max_steps, "num step");
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.style.width = Math.round(100 * Math.min(1, j.progress || 0)) + "%";
    bar.appendChild(fill);
    cell(tr, bar);
    cell(tr, fmt(j.loss, 4), "num");
    cell(tr, j.tokens_per_s === null ? "–" : Math.round(j.tokens_per_s).toLocaleString("en"), "num");
    cell(tr, fmtDuration(j.eta_s), "num");
    cell(tr, j.heartbeat_age_s === null ? "–" : fmtDuration(j.heartbeat_age_s) + " ago", "num");
    cell(tr, j.started_at ? j.started_at.replace("T", " ").slice(0, 19) : "–");
    tbody.appendChild(tr);
  }
  document.getElementById("empty").hidden = jobs.length > 0;
}

function jobEntry(id) {
  let e = state.jobs.get(id);
  if (!e) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.job = id;
    const h = document.createElement("h2");
    h.textContent = id;
    const canvas = document.createElement("canvas");
    canvas.className = "chart";
    canvas.dataset.job = id;
    canvas.dataset.drawn = "0";
    card.append(h, canvas);
    document.getElementById("charts").appendChild(card);
    e = { cursor: null, loss: [], val: [], canvas, card, busy: false };
    state.jobs.set(id, e);
  }
  return e;
}

function thin(series) {
  if (series.length <= MAX_POINTS) return series;
  return series.filter((_, i) => i % 2 === 0);
}

async function pullMetrics(id) {
  const e = jobEntry(id);
  if (e.busy) return;
  e.busy = true;
  try {
    for (let page = 0; page < 20; page++) {
      let q = "/v1/jobs/" + encodeURIComponent(id) + "/metrics?names=loss,val_loss&limit=5000";
      if (e.cursor !== null) q += "&cursor=" + e.cursor;
      const d = await api(q);
      for (const r of d.records) {
        if (typeof r.loss === "number") e.loss.push([r.step, r.loss]);
        if (typeof r.val_loss === "number") e.val.push([r.step, r.val_loss]);
      }
      e.cursor = d.next_cursor;
      if (!d.more) break;
    }
    e.loss = thin(e.loss);
    e.val = thin(e.val);
    draw(e);
  } finally {
    e.busy = false;
  }
}

function niceTicks(lo, hi, n) {
  const span = hi - lo || 1;
  const step0 = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-12; v += step) ticks.push(v);
  return ticks;
}

function draw(e) {
  const c = e.canvas;
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth || 400, h = c.clientHeight || 220;
  c.width = Math.round(w * dpr);
  c.height = Math.round(h * dpr);
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const all = e.loss.concat(e.val);
  const css = getComputedStyle(document.documentElement);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#667085";
  if (all.length === 0) {
    g.fillText("no metrics yet", 12, 20);
    c.dataset.drawn = "0";
    c.dataset.points = "0";
    return;
  }
  const L = 48, R = 10, T = 10, B = 24;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const [x, y] of all) {
    x0 = Math.min(x0, x); x1 = Math.max(x1, x);
    y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  if (x1 === x0) x1 = x0 + 1;
  const pad = (y1 - y0) * 0.05 || 0.5;
  y0 -= pad; y1 += pad;
  const X = (x) => L + (x - x0) / (x1 - x0) * (w - L - R);
  const Y = (y) => T + (1 - (y - y0) / (y1 - y0)) * (h - T - B);
  g.strokeStyle = "#e5e7eb";
  g.lineWidth = 1;
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (const v of niceTicks(y0, y1, 5)) {
    g.beginPath(); g.moveTo(L, Y(v)); g.lineTo(w - R, Y(v)); g.stroke();
    g.fillText(v.toFixed(2), L - 6, Y(v));
  }
  g.textAlign = "center";
  g.textBaseline = "top";
  for (const v of niceTicks(x0, x1, 6)) g.fillText(String(Math.round(v)), X(v), h - B + 6);
  const line = (pts, color, width) => {
    if (!pts.length) return;
    g.strokeStyle = color;
    g.lineWidth = width;
    g.beginPath();
    pts.forEach(([x, y], i) => (i ? g.lineTo(X(x), Y(y)) : g.moveTo(X(x), Y(y))));
    g.stroke();
    if (pts.length < 50) {
      g.fillStyle = color;
      for (const [x, y] of pts) { g.beginPath(); g.arc(X(x), Y(y), 2.5, 0, 2 * Math.PI); g.fill(); }
    }
  };
  line(e.loss, css.getPropertyValue("--loss").trim() || "#2563eb", 1.5);
  line(e.val, css.getPropertyValue("--val").trim() || "#ea580c", 2);
  c.dataset.drawn = "1";
  c.dataset.points = String(all.length);
  document.body.dataset.charts = String(
    document.querySelectorAll('canvas[data-drawn="1"]').length);
}

async function refresh() {
  if (!state.key) {
    setStatus("enter an API key (scope read)");
    return;
  }
  try {
    const jobs = [];
    let cursor = null;
    for (let page = 0; page < 20; page++) {
      const d = await api("/v1/jobs?limit=500" + (cursor ? "&cursor=" + cursor : ""));
      jobs.push(...d.jobs);
      cursor = d.next_cursor;
      if (!cursor) break;
    }
    renderTable(jobs);
    document.body.dataset.jobs = String(jobs.length);
    await Promise.all(jobs.map((j) => pullMetrics(j.id).catch(() => {})));
    setStatus("updated " + new Date().toLocaleTimeString("en-GB"));
  } catch (err) {
    setStatus("error: " + err.message);
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
  window.addEventListener("resize", () => state.jobs.forEach(draw));
  refresh();
  state.timer = setInterval(refresh, POLL_MS);
}

start();
