"""Job listing at scale (issue 18): GET /v1/jobs?limit=50 latency with
5,000, 20,000 and 100,000 job directories (20 of them RUNNING, the rest
finished), after a first listing has built the index and the runs
directory has been unchanged for 2.5 s. Also the listing
while 50 jobs rewrite their state.json between requests. Python's standard
library only.

usage: python3 bench/bench_ita_jobs.py BUILD_DIR [N ...]
"""
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def make_runs(runs, n):
    os.makedirs(runs)
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    for i in range(n):
        d = os.path.join(runs, "job-%06d" % i)
        os.mkdir(d)
        running = i % (n // 20) == 0  # 20 active jobs, whatever n
        st = {"job": "job-%06d" % i, "status": "RUNNING" if running else "COMPLETED",
              "step": 100, "max_steps": 100 if not running else 1000, "loss": 2.5,
              "tokens_per_s": 1000.0, "started_at": "2026-01-01T00:%02d:%02d.000Z" % (i // 60 % 60, i % 60),
              "updated_at": now, "pid": 0, "hosts": ["localhost"]}
        with open(os.path.join(d, "state.json"), "w") as f:
            json.dump(st, f)


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3


def main():
    build = sys.argv[1]
    sizes = [int(x) for x in sys.argv[2:]] or [5000, 20000, 100000]
    for n in sizes:
        d = tempfile.mkdtemp(prefix="bench-ita-jobs-")
        try:
            t0 = time.time()
            make_runs(os.path.join(d, "runs"), n)
            made = time.time() - t0
            keys = os.path.join(d, "keys.json")
            key = subprocess.run([os.path.join(build, "jobs", "codexctl"), "keys", "create",
                                  "--name", "b", "--scope", "read", "--file", keys],
                                 capture_output=True, text=True, check=True).stdout.strip()
            cfg = os.path.join(d, "ita.yaml")
            with open(cfg, "w") as f:
                f.write("listen:\n  port: 0\nruns_dir: runs\nkeys_file: keys.json\nthreads: 1\n"
                        "max_jobs: 100000\nlost_after_s: 1000000000\nlog:\n  audit: audit.jsonl\n"
                        "rate_limit:\n  per_second: 0\nslurm:\n  refresh_s: 0\n")
            p = subprocess.Popen([os.path.join(build, "ita", "codex-ita"), "--config", cfg],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            port = int(p.stdout.readline().rsplit(":", 1)[1])
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

                def get(path):
                    t = time.perf_counter()
                    c.request("GET", path, headers={"X-API-Key": key})
                    r = c.getresponse()
                    body = r.read()
                    assert r.status == 200, (r.status, body[:200])
                    return time.perf_counter() - t, json.loads(body)

                first, doc = get("/v1/jobs?limit=50")
                assert len(doc["jobs"]) == 50
                # steady state: while the runs directory's mtime is within 2 s
                # of the index's last reading, every listing reads the
                # directory again (coarse timestamps could hide a change)
                settle = os.stat(os.path.join(d, "runs")).st_mtime + 2.5 - time.time()
                if settle > 0:
                    time.sleep(settle)
                # a new connection: the first listing at 100k can outlast
                # timeouts.header_s, after which the server closes this one
                c.close()
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                lat = [get("/v1/jobs?limit=50")[0] for _ in range(200)]
                cur = doc["next_cursor"]
                deep = [get("/v1/jobs?limit=50&cursor=" + cur)[0] for _ in range(50)]
                filt = [get("/v1/jobs?limit=50&status=RUNNING")[0] for _ in range(50)]
                # 50 jobs rewritten (atomically) between listings
                churn = []
                for k in range(50):
                    jd = os.path.join(d, "runs", "job-%06d" % (k * 37 % n))
                    with open(os.path.join(jd, "state.json")) as f:
                        st = json.load(f)
                    st["step"] = st.get("step", 0) + 1
                    with open(os.path.join(jd, "state.json.tmp"), "w") as f:
                        json.dump(st, f)
                    os.rename(os.path.join(jd, "state.json.tmp"), os.path.join(jd, "state.json"))
                    churn.append(get("/v1/jobs?limit=50")[0])
                print("%6d jobs: first listing %.0f ms; limit=50 p50 %.2f ms p99 %.2f ms; "
                      "page 2 p99 %.2f ms; status=RUNNING p99 %.2f ms; with rewrites p99 %.2f ms "
                      "(runs made in %.0f s)" % (n, first * 1e3, pct(lat, .5), pct(lat, .99),
                                                 pct(deep, .99), pct(filt, .99), pct(churn, .99),
                                                 made), flush=True)
            finally:
                p.terminate()
                p.wait(10)
        finally:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
