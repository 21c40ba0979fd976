#!/usr/bin/env python3
"""The codex-ita dashboard in headless Chromium, loaded from a real codex-ita
(on the fixture jobs) with a read key in the URL fragment.

usage: ita_dashboard.py CODEX_ITA CODEXCTL SOURCE_DIR CHROMIUM [CASE]

Cases:
  dom   (default) Chromium's --dump-dom after a virtual time budget shows a
        table row per job with its status, and a drawn loss chart
        (data-drawn="1", with points) for the jobs that have metrics; the
        page polls and fetches metrics incrementally. A screenshot is kept
        when ITA_SCREENSHOT names a file.
        Then jobs with Slurm ids against fake squeue/sacct: the scheduler
        column shows Slurm's state, reason and nodes.
  live  Chromium driven over the DevTools protocol (--remote-debugging-pipe):
        while the page is open, a writer appends 30 steps to a running
        job's metrics.jsonl and rewrites its state.json; within seconds,
        and without a reload, the table shows the new step and the job's
        chart has drawn the new points.
"""
import os
import fcntl
import json
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ita_server import (Ctx, FakeSlurm, Server, T, now_rfc3339, sched_job, set_state,  # noqa: E402
                        submit_yaml)


def chromium(binary, url, extra, timeout=90):
    profile = tempfile.mkdtemp(prefix="ita-chromium-")
    try:
        cmd = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--user-data-dir=" + profile, "--window-size=1280,1100",
               "--virtual-time-budget=8000"] + extra + [url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


class DevTools:
    """The DevTools protocol over --remote-debugging-pipe: JSON messages
    ending in NUL, Chromium reading fd 3 and writing fd 4."""

    def __init__(self, binary):
        self.profile = tempfile.mkdtemp(prefix="ita-chromium-")
        to_chrome_r, self.to_chrome = os.pipe()
        self.from_chrome, from_chrome_w = os.pipe()
        def fds():  # in the child: the pipe ends become fds 3 and 4
            r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)
        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--user-data-dir=" + self.profile, "--window-size=1280,1100",
             "--remote-debugging-pipe", "about:blank"],
            preexec_fn=fds, pass_fds=(3, 4),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self.buf = b""
        self.next_id = 0
        self.session = None

    def call(self, method, params=None, timeout=20):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if self.session and not method.startswith("Target."):
            msg["sessionId"] = self.session
        os.write(self.to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.time() + timeout
        while time.time() < deadline:
            while b"\0" in self.buf:
                raw, self.buf = self.buf.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError("%s: %s" % (method, reply["error"]))
                    return reply.get("result", {})
            r, _, _ = select.select([self.from_chrome], [], [], 0.5)
            if r:
                chunk = os.read(self.from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self.buf += chunk
        raise RuntimeError("no reply to " + method)

    def open(self, url):
        targets = self.call("Target.getTargets")["targetInfos"]
        page = [x for x in targets if x["type"] == "page"][0]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": page["targetId"], "flatten": True})["sessionId"]
        self.call("Page.navigate", {"url": url})

    def eval(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        return r.get("result", {}).get("value")

    def close(self):
        try:
            self.proc.kill()
            self.proc.wait(10)
        finally:
            os.close(self.to_chrome)
            os.close(self.from_chrome)
            shutil.rmtree(self.profile, ignore_errors=True)


PROBE = """(() => {
  const c = document.querySelector('canvas[data-job="run-live"]');
  const tr = document.querySelector('tr[data-job="run-live"]');
  return {points: c ? Number(c.dataset.points || 0) : -1,
          step: tr ? tr.querySelector("td.step").textContent : null,
          rows: document.querySelectorAll("#jobs tbody tr").length};
})()"""


def wait_for(dt, pred, timeout):
    deadline, v = time.time() + timeout, None
    while time.time() < deadline:
        v = dt.eval(PROBE)
        if v and pred(v):
            return True, v
        time.sleep(0.25)
    return False, v


def case_live(ctx, browser, t):
    with Server(ctx) as s:
        dt = DevTools(browser)
        try:
            dt.open("http://127.0.0.1:%d/#key=%s" % (s.port, s.keys["reader"]))
            ok, v = wait_for(dt, lambda v: v["points"] == 122 and v["rows"] == 6, 20)
            t.check(ok, "first view: 6 rows, run-live chart with 120 + 2 points: %s" % v)
            t.check(v and v["step"] == "120 / 400", "first view shows step 120: %s" % v)
            metrics = os.path.join(s.runs, "run-live", "metrics.jsonl")
            with open(metrics, "a") as f:
                for step in range(121, 151):
                    f.write(json.dumps({"time": now_rfc3339(), "step": step,
                                        "loss": 2.3 - step * 1e-3}) + "\n")
            set_state(s.runs, "run-live", step=150, updated_at=now_rfc3339())
            t0 = time.time()
            ok, v = wait_for(dt, lambda v: v["points"] == 152 and v["step"] == "150 / 400", 15)
            t.check(ok, "without a reload the page shows step 150 and 30 new points: %s" % v)
            t.check(time.time() - t0 < 10, "the update arrives within 10 s (%.1f s)" %
                    (time.time() - t0))
        finally:
            dt.close()


def case_scheduler(ctx, browser, t):
    """Jobs with Slurm ids (fake squeue/sacct): the scheduler column says
    what Slurm says (state, reason, nodes, or that it does not know the id)
    and the status badge carries the detail."""
    fake = FakeSlurm()
    runs = tempfile.mkdtemp(prefix="ita-dash-sched-")
    try:
        for name, sid in (("sl-run", "7001"), ("sl-pend", "7002"), ("sl-timeout", "7003"),
                          ("sl-gone", "7005")):
            sched_job(runs, name, sid, age_s=1)
        fake.put("squeue.txt", "7001|RUNNING|None|node1\n7002|PENDING|Priority|\n"
                 "7003|TIMEOUT|TimeLimit|node1\n")
        with Server(ctx, live_runs=runs, extra_yaml=submit_yaml(ctx, None, fake),
                    env=fake.env) as s:
            # the page is loaded once the service has asked Slurm
            end = time.time() + 10
            while time.time() < end:
                st, h, d = s.json("/v1/jobs/sl-gone")
                if ((d or {}).get("scheduler") or {}).get("known") is not None:
                    break
                time.sleep(0.1)
            url = "http://127.0.0.1:%d/#key=%s" % (s.port, s.keys["reader"])
            p = chromium(browser, url, ["--dump-dom"])
            dom = p.stdout
            sched = dict(re.findall(r'<tr data-job="([^"]+)"[^>]*>.*?<td class="sched">([^<]*)</td>',
                                    dom))
            print("scheduler column:", sched)
            t.check(sched.get("sl-run") == "Slurm 7001 RUNNING on node1",
                    "a running Slurm job shows its state and node: %r" % sched.get("sl-run"))
            t.check(sched.get("sl-pend") == "Slurm 7002 PENDING (Priority)",
                    "a pending one shows Slurm's reason: %r" % sched.get("sl-pend"))
            t.check(sched.get("sl-timeout") == "Slurm 7003 TIMEOUT (TimeLimit) on node1" and
                    'data-job="sl-timeout" data-status="TIMEOUT"' in dom,
                    "a job Slurm ended for its time limit shows TIMEOUT: %r" %
                    sched.get("sl-timeout"))
            t.check(sched.get("sl-gone") == "Slurm 7005 · not known to Slurm",
                    "a job no scheduler knows says so: %r" % sched.get("sl-gone"))
            t.check(re.search(r'<span class="badge TIMEOUT" title="[^"]*TIMEOUT', dom) is not None,
                    "the TIMEOUT badge carries the detail as its title")
    finally:
        fake.close()
        shutil.rmtree(runs, ignore_errors=True)


def main():
    if len(sys.argv) not in (5, 6):
        print(__doc__)
        return 2
    ctx = Ctx(*sys.argv[1:4])
    browser = sys.argv[4]
    t = T()
    if len(sys.argv) == 6 and sys.argv[5] == "live":
        try:
            case_live(ctx, browser, t)
        except Exception as e:  # reported as a failure with its cause
            t.check(False, "live case raised %r" % e)
        return t.summary()
    with Server(ctx) as s:
        url = "http://127.0.0.1:%d/#key=%s" % (s.port, s.keys["reader"])
        p = chromium(browser, url, ["--dump-dom"])
        dom = p.stdout
        t.check(p.returncode == 0 and "<table" in dom, "chromium dumped the page (rc %d): %s" %
                (p.returncode, p.stderr[-500:]))
        rows = dict(re.findall(r'<tr data-job="([^"]+)" data-status="([^"]+)"', dom))
        t.check(rows == {"demo-completed": "COMPLETED", "run-live": "RUNNING",
                         "run-stale": "LOST", "run-partial": "LOST", "failed-nan": "FAILED",
                         "queued": "PENDING"}, "a table row per job with its status: %s" % rows)
        drawn = {}
        for tag in re.findall(r"<canvas [^>]*>", dom):
            a = dict(re.findall(r'([a-z-]+)="([^"]*)"', tag))
            if a.get("data-drawn") == "1" and int(a.get("data-points", 0)) > 0:
                drawn[a["data-job"]] = int(a["data-points"])
        t.check(int(drawn.get("demo-completed", 0)) == 204,
                "demo-completed chart drawn with 200 loss + 4 val points: %s" % drawn)
        t.check(set(drawn) >= {"demo-completed", "run-live", "run-stale", "run-partial",
                               "failed-nan"}, "every job with metrics has a drawn chart")
        t.check("queued" not in drawn and 'data-job="queued" data-drawn="0"' in dom,
                "no chart drawn for a job without metrics")
        t.check("error:" not in dom, "no API error shown")
        # Every request the page made went to this server, with the key.
        lines = s.audit_lines()
        t.check(lines and all(l["remote"] == "127.0.0.1" for l in lines), "local requests only")
        api = [l for l in lines if l["path"].startswith("/v1/")]
        t.check(api and all(l["key"] == "reader" and l["status"] == 200 for l in api),
                "the page's API calls carry the key and succeed (%d)" % len(api))
        polls = [l for l in api if l["path"].startswith("/v1/jobs?")]
        t.check(len(polls) >= 2, "the page polls the job list (%d times)" % len(polls))
        t.check(any("/metrics?" in l["path"] and "cursor=" in l["path"] for l in api),
                "later metric fetches continue from a cursor (only new lines)")
        t.check(any(l["path"] in ("/style.css",) for l in lines) and
                any(l["path"] == "/app.js" for l in lines), "static files served by codex-ita")
        shot = os.environ.get("ITA_SCREENSHOT")
        if shot:
            p = chromium(browser, url, ["--screenshot=" + shot, "--hide-scrollbars"])
            t.check(os.path.exists(shot), "screenshot written")
        # Without a key the page asks for one and shows no data.
        p = chromium(browser, "http://127.0.0.1:%d/" % s.port, ["--dump-dom"])
        t.check("enter an API key" in p.stdout and "<tr data-job" not in p.stdout,
                "without a key: a prompt, no data")
    try:
        case_scheduler(ctx, browser, t)
    except Exception as e:  # reported as a failure with its cause
        t.check(False, "scheduler case raised %r" % e)
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
