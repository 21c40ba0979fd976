// codex-ita dashboard: line charts on a <canvas> with plain 2D calls.
//
//   drawChart(canvas, {series, xLabel, yLabel, log})
//
// series: [{name, color, points: [[x, y], ...], width, dash, dots}]. Axes
// carry tick values and labels; with log set, the y axis is logarithmic
// (points <= 0 are left out). Hovering the canvas shows, for the step
// under the pointer, each series' nearest value in a tooltip. A drawn chart
// sets data-drawn="1" and data-points=N (all series) on its canvas, which
// the headless-browser tests read.
"use strict";

const CHART_PAD = { L: 58, R: 12, T: 12, B: 38 };

function niceTicks(lo, hi, n) {
  const span = hi - lo || 1;
  const step0 = span / n;
  const mag = Math.pow(10, Math.floor(Math.log10(step0)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(v);
  return ticks;
}

// Powers of ten (and 2x, 5x when few decades are shown) inside [lo, hi].
function logTicks(lo, hi) {
  const ticks = [];
  const d0 = Math.floor(Math.log10(lo)), d1 = Math.ceil(Math.log10(hi));
  const mults = d1 - d0 <= 2 ? [1, 2, 3, 5] : [1];
  for (let d = d0; d <= d1; d++)
    for (const m of mults) {
      const v = m * Math.pow(10, d);
      if (v >= lo && v <= hi) ticks.push(v);
    }
  return ticks;
}

function fmtTick(v) {
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1e5 || a < 1e-3) return v.toExponential(1);
  if (a >= 100) return String(Math.round(v));
  return String(Number(v.toPrecision(3)));
}

function drawChart(c, opt) {
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth || 400, h = c.clientHeight || 220;
  c.width = Math.round(w * dpr);
  c.height = Math.round(h * dpr);
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  g.font = "11px system-ui, sans-serif";
  g.fillStyle = "#667085";
  const log = !!opt.log;
  const series = opt.series.map((s) => ({
    ...s, pts: log ? s.points.filter((p) => p[1] > 0) : s.points,
  }));
  let n = 0, x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of series)
    for (const [x, y] of s.pts) {
      if (!Number.isFinite(y)) continue;
      n++;
      x0 = Math.min(x0, x); x1 = Math.max(x1, x);
      y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
  c._chart = null;
  if (n === 0) {
    g.textAlign = "left";
    g.textBaseline = "alphabetic";
    g.fillText(opt.empty || "no metrics yet", 12, 20);
    c.dataset.drawn = "0";
    c.dataset.points = "0";
    return;
  }
  const { L, R, T, B } = CHART_PAD;
  if (x1 === x0) x1 = x0 + 1;
  let ty;
  if (log) {
    if (y1 / y0 < 1.5) { y0 /= 1.2; y1 *= 1.2; }
    const l0 = Math.log10(y0), l1 = Math.log10(y1), pad = (l1 - l0) * 0.05;
    y0 = Math.pow(10, l0 - pad); y1 = Math.pow(10, l1 + pad);
    ty = (y) => (Math.log10(y) - Math.log10(y0)) / (Math.log10(y1) - Math.log10(y0));
  } else {
    const pad = (y1 - y0) * 0.05 || Math.abs(y0) * 0.1 || 0.5;
    y0 -= pad; y1 += pad;
    ty = (y) => (y - y0) / (y1 - y0);
  }
  const X = (x) => L + (x - x0) / (x1 - x0) * (w - L - R);
  const Y = (y) => T + (1 - ty(y)) * (h - T - B);
  // grid and tick values
  g.strokeStyle = "#e5e7eb";
  g.lineWidth = 1;
  g.textAlign = "right";
  g.textBaseline = "middle";
  for (const v of log ? logTicks(y0, y1) : niceTicks(y0, y1, 5)) {
    g.beginPath(); g.moveTo(L, Y(v)); g.lineTo(w - R, Y(v)); g.stroke();
    g.fillText(fmtTick(v), L - 6, Y(v));
  }
  g.textAlign = "center";
  g.textBaseline = "top";
  for (const v of niceTicks(x0, x1, 6)) {
    if (v < x0 || v > x1) continue;
    g.fillText(fmtTick(Math.round(v)), X(v), h - B + 5);
  }
  g.strokeStyle = "#9ca3af";
  g.beginPath(); g.moveTo(L, T); g.lineTo(L, h - B); g.lineTo(w - R, h - B); g.stroke();
  // axis labels
  g.fillStyle = "#374151";
  g.fillText(opt.xLabel || "step", L + (w - L - R) / 2, h - 14);
  g.save();
  g.translate(12, T + (h - T - B) / 2);
  g.rotate(-Math.PI / 2);
  g.textBaseline = "middle";
  g.fillText((opt.yLabel || "") + (log ? " (log)" : ""), 0, 0);
  g.restore();
  // the curves, clipped to the plot area
  g.save();
  g.beginPath(); g.rect(L, T - 2, w - L - R, h - T - B + 4); g.clip();
  for (const s of series) {
    if (!s.pts.length) continue;
    g.strokeStyle = s.color;
    g.lineWidth = s.width || 1.5;
    g.setLineDash(s.dash || []);
    g.beginPath();
    s.pts.forEach(([x, y], i) => (i ? g.lineTo(X(x), Y(y)) : g.moveTo(X(x), Y(y))));
    g.stroke();
    g.setLineDash([]);
    if (s.dots || s.pts.length < 50) {
      g.fillStyle = s.color;
      for (const [x, y] of s.pts) { g.beginPath(); g.arc(X(x), Y(y), 2.5, 0, 2 * Math.PI); g.fill(); }
    }
  }
  g.restore();
  c._chart = { series, X, Y, x0, x1, L, R, T, B, w, h };
  c.dataset.drawn = "1";
  c.dataset.points = String(n);
  attachHover(c);
}

// The nearest point of a sorted series to step x (binary search).
function nearest(pts, x) {
  let lo = 0, hi = pts.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (pts[mid][0] < x) lo = mid; else hi = mid;
  }
  return Math.abs(pts[lo][0] - x) <= Math.abs(pts[hi][0] - x) ? pts[lo] : pts[hi];
}

let chartTip = null;

function attachHover(c) {
  if (c._hover) return;
  c._hover = true;
  c.addEventListener("mousemove", (ev) => {
    const k = c._chart;
    if (!k) return;
    const r = c.getBoundingClientRect();
    const px = ev.clientX - r.left;
    const x = k.x0 + (px - k.L) / (k.w - k.L - k.R) * (k.x1 - k.x0);
    const rows = [];
    let step = null;
    for (const s of k.series) {
      if (!s.pts.length) continue;
      const p = nearest(s.pts, x);
      if (step === null || Math.abs(p[0] - x) < Math.abs(step - x)) step = p[0];
      rows.push([s, p]);
    }
    if (!chartTip) {
      chartTip = document.createElement("div");
      chartTip.className = "chart-tip";
      document.body.appendChild(chartTip);
    }
    chartTip.replaceChildren();
    const head = document.createElement("div");
    head.textContent = "step " + step;
    chartTip.appendChild(head);
    for (const [s, p] of rows) {
      const line = document.createElement("div");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = s.color;
      line.append(sw, " " + s.name + ": " + fmtValue(p[1]) + (p[0] !== step ? " (step " + p[0] + ")" : ""));
      chartTip.appendChild(line);
    }
    chartTip.hidden = false;
    chartTip.style.left = (ev.pageX + 14) + "px";
    chartTip.style.top = (ev.pageY + 10) + "px";
  });
  c.addEventListener("mouseleave", () => { if (chartTip) chartTip.hidden = true; });
}

function fmtValue(v) {
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
  return String(Number(v.toPrecision(5)));
}

// Exponential moving average with debiasing (TensorBoard's smoothing):
// weight 0 is the raw curve, 0.99 very smooth.
function smooth(points, weight) {
  if (!weight) return points;
  const out = [];
  let last = 0, n = 0;
  for (const [x, y] of points) {
    if (!Number.isFinite(y)) continue;
    last = last * weight + (1 - weight) * y;
    n++;
    out.push([x, last / (1 - Math.pow(weight, n))]);
  }
  return out;
}
