#!/usr/bin/env python3
"""Tests of codex-ita over real HTTP: the server is started as a subprocess on
a free loopback port (it binds port 0 and prints the port), against a copy of
the fixture job directories in tests/fixtures/ita/runs, and always stopped at
the end.

usage: ita_server.py CODEX_ITA CODEXCTL SOURCE_DIR CASE

Cases (each prints "N passed, N failed" last):
  config      --help, --version, --check; unknown keys and bad values exit 2
              naming the key
  keys_cli    codexctl keys create/list/revoke: key printed once, file 0600
              holding no key, duplicate names and bad scopes refused
  auth        no key, bad key, wrong scope, good key (both headers), revoked
              key (before start and while running): 401/403/200 kept apart,
              WWW-Authenticate on 401; rate limit answers 429 + Retry-After
  trace       X-Request-Id echoed when valid, generated otherwise, on every
              response (errors too); problem+json carries it; the audit log
              has a line per request with key name but never the key
  jobs        every job endpoint against the fixtures: listing order,
              pagination, filters, detail with LOST and ETA, metrics paging
              (since_step, names, cursor), partial last line ignored, events,
              checkpoints with eval; state refreshed when rewritten atomically
  robustness  path traversal (.., encoded, symlink out of runs/), oversized
              and malformed requests, wrong methods: all refused, server alive;
              max_connections bounds open connections
  sse         a writer appends events and rewrites state.json while an SSE
              client listens: events arrive in order with ids, state events,
              an end event at completion; Last-Event-ID resumes
  prometheus  /metrics: request counters and latency histograms by route and
              status, jobs by status, per-job step, loss, tokens/s
  shutdown    SIGTERM with an open event stream: the stream gets an end
              event and the process exits 0 promptly
  tls         HTTPS with a throw-away certificate; a bad one stops the start
  submit      POST /v1/jobs against fake Slurm commands: validation (400
              naming the key), scopes, dry_run, confinement to runs/, 409,
              502 on sbatch failure, sweeps; a real local launch and cancel
  sched       the cached scheduler view from fake squeue/sacct: Slurm state,
              reason, nodes, array tasks, LOST only when no scheduler knows
              the job, no squeue per request, cancel and its finishing
  monitoring  /metrics passes `promtool check metrics`: codex_job_info with
              status and scheduler state, validation losses, learning rate,
              ETA, heartbeat age only for active jobs; docs/monitoring's
              alert rules pass `promtool check rules` and `promtool test rules`

A case is a function registered in CASES and in tests/ita.cmake's list; a
new one needs only a function taking (ctx, t). For a live 2-rank job: start
`mpirun -n 2 codex-train ...` writing into a temporary runs directory, then
`with Server(ctx, live_runs=that_dir) as s:` and use s.json(...), s.get(...)
and sse_events(...) as the cases below do.
"""
import base64
import http.client
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time


from checks import Checks as T


class Ctx:
    def __init__(self, ita, ctl, src):
        self.ita, self.ctl, self.src = ita, ctl, src
        self.fixtures = os.path.join(src, "tests", "fixtures", "ita", "runs")


def now_rfc3339():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, path)


def set_state(runs, job, **kw):
    p = os.path.join(runs, job, "state.json")
    with open(p) as f:
        st = json.load(f)
    st.update(kw)
    write_atomic(p, json.dumps(st, indent=2) + "\n")
    return st


class Server:
    """codex-ita on a copy of the fixtures, with read/submit/admin keys."""

    def __init__(self, ctx, extra_yaml="", runs=None, keys=True, live_runs=None, env=None,
                 preexec=None):
        """runs: a folder to copy instead of the fixtures; live_runs: a runs
        directory to serve in place (e.g. one a running codex-train writes)."""
        self.ctx = ctx
        self.dir = tempfile.mkdtemp(prefix="ita-test-")
        if live_runs:
            self.runs = os.path.abspath(live_runs)
        else:
            self.runs = os.path.join(self.dir, "runs")
            shutil.copytree(runs or ctx.fixtures, self.runs, symlinks=True)
            if os.path.isdir(os.path.join(self.runs, "run-live")):
                set_state(self.runs, "run-live", updated_at=now_rfc3339())
        self.keys_file = os.path.join(self.dir, "keys.json")
        self.audit = os.path.join(self.dir, "audit.jsonl")
        self.keys = {}
        if keys:
            for name, scope in (("reader", "read"), ("submitter", "submit"), ("boss", "admin"),
                                ("gone", "read")):
                self.keys[name] = self.create_key(name, scope)
            self.revoke_key("gone")
        self.cfg = os.path.join(self.dir, "ita.yaml")
        with open(self.cfg, "w") as f:
            f.write("listen:\n  host: 127.0.0.1\n  port: 0\nruns_dir: %s\n" % self.runs +
                    "keys_file: keys.json\n" +
                    ("" if "threads:" in extra_yaml else "threads: 2\n") +
                    "log:\n  audit: audit.jsonl\n"
                    "  error: error.log\n" +
                    ("" if "sse:" in extra_yaml else "sse:\n  poll_ms: 50\n") +
                    # Tests send bursts with one key; only the rate-limit test limits it.
                    ("" if "rate_limit:" in extra_yaml else "rate_limit:\n  per_second: 0\n") +
                    extra_yaml)
        self.proc = None
        self.port = None
        self.env = env
        self.preexec = preexec

    def create_key(self, name, scope):
        p = subprocess.run([self.ctx.ctl, "keys", "create", "--name", name, "--scope", scope,
                            "--file", self.keys_file], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return p.stdout.strip()

    def revoke_key(self, name):
        p = subprocess.run([self.ctx.ctl, "keys", "revoke", name, "--file", self.keys_file],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr

    def __enter__(self):
        env = dict(self.env or os.environ)  # for ASan builds: h2o's own exit-time allocations
        env["LSAN_OPTIONS"] = "suppressions=" + os.path.join(
            self.ctx.src, "tests", "fixtures", "ita", "lsan.supp")
        self.proc = subprocess.Popen([self.ctx.ita, "--config", self.cfg], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env,
                                     preexec_fn=self.preexec)
        line = self.proc.stdout.readline()
        m = re.search(r"127\.0\.0\.1:(\d+)", line)
        if not m:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            shutil.rmtree(self.dir, ignore_errors=True)
            raise RuntimeError("codex-ita did not start: %r %s" % (line, err))
        self.port = int(m.group(1))
        return self

    def stop(self, timeout=5):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None

    def __exit__(self, *a):
        self.stop()
        if self.proc:
            self.proc.stdout.close()
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def conn(self, timeout=10):
        if getattr(self, "tls", None):
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout,
                                               context=self.tls)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def get(self, path, key=None, headers=None, method="GET", body=None, bearer=False):
        h = dict(headers or {})
        if key:
            if bearer:
                h["Authorization"] = "Bearer " + key
            else:
                h["X-API-Key"] = key
        c = self.conn()
        try:
            c.request(method, path, body=body, headers=h)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            c.close()

    def json(self, path, key=None, **kw):
        st, h, body = self.get(path, key or self.keys.get("reader"), **kw)
        try:
            return st, h, json.loads(body) if body else None
        except ValueError:
            return st, h, None

    def raw(self, data, read_timeout=5):
        """Sends raw bytes, returns what comes back until the server closes."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=read_timeout)
        try:
            s.sendall(data)
            out = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except (socket.timeout, ConnectionResetError):
                    break
                if not chunk:
                    break
                out += chunk
            return out
        finally:
            s.close()

    def audit_lines(self):
        with open(self.audit) as f:
            return [json.loads(l) for l in f if l.strip()]


def is_problem(t, st, h, body, status, what):
    t.check(st == status, "%s: status %s, expected %s" % (what, st, status))
    t.check(h.get("content-type", "").startswith("application/problem+json"),
            "%s: problem+json content type (%s)" % (what, h.get("content-type")))
    try:
        doc = json.loads(body)
    except ValueError:
        t.check(False, "%s: problem body is JSON" % what)
        return
    t.check(doc.get("status") == status and doc.get("title") and doc.get("type"),
            "%s: problem fields %s" % (what, doc))
    t.check(doc.get("request_id") == h.get("x-request-id"),
            "%s: problem request_id equals the header" % what)


# ---------------------------------------------------------------- cases

def case_config(ctx, t):
    p = subprocess.run([ctx.ita, "--help"], capture_output=True, text=True)
    t.check(p.returncode == 0 and "--config" in p.stdout, "--help exits 0 and documents --config")
    p = subprocess.run([ctx.ita, "--version"], capture_output=True, text=True)
    t.check(p.returncode == 0 and "codex-ita" in p.stdout, "--version")
    p = subprocess.run([ctx.ita, "--bogus"], capture_output=True, text=True)
    t.check(p.returncode == 2, "unknown argument exits 2")
    d = tempfile.mkdtemp(prefix="ita-cfg-")
    try:
        def run(text):
            path = os.path.join(d, "ita.yaml")
            with open(path, "w") as f:
                f.write(text)
            return subprocess.run([ctx.ita, "--config", path, "--check"], capture_output=True,
                                  text=True)
        p = run("listen:\n  port: 8471\nthreads: 3\n")
        t.check(p.returncode == 0 and "127.0.0.1:8471, 3 threads" in p.stdout, "--check prints")
        p = run("listen:\n  prot: 8471\n")
        # codex-train's style (issue 19): FILE:LINE:COLUMN of the key, the nearest valid one
        t.check(p.returncode == 2 and "unknown key 'listen.prot' at %s:2:3; did you mean "
                "'listen.port'?" % os.path.join(d, "ita.yaml") in p.stderr,
                "unknown key named with its file:line:column and a suggestion: %r" % p.stderr)
        p = run("metrics:\n  public: true\nrate_limit:\n  per_secnd: 3\n")
        t.check(p.returncode == 2 and "'metrics.public' at " in p.stderr and
                "did you mean 'metrics_public'?" in p.stderr, "a nested key for a top-level one: %r"
                % p.stderr)
        p = run("rate_limit:\n  per_secnd: 3\n")
        t.check(p.returncode == 2 and "did you mean 'rate_limit.per_second'?" in p.stderr,
                "a typo in a leaf: %r" % p.stderr)
        p = run("threads: 3\nlisten:\n  port: 70000\n")
        t.check(p.returncode == 2 and "listen.port must be an integer in [0, 65535], got '70000' "
                "at %s:3:9" % os.path.join(d, "ita.yaml") in p.stderr and ": :" not in p.stderr,
                "a bad value named at its value's line:column: %r" % p.stderr)
        p = run("threads: many\n")
        t.check(p.returncode == 2 and "threads" in p.stderr, "bad value named")
        p = run("listen:\n  port: 70000\n")
        t.check(p.returncode == 2 and "listen.port" in p.stderr, "port out of range")
        p = run("listen:\n  host: example.com\n")
        t.check(p.returncode == 2 and "listen.host" in p.stderr, "host must be numeric")
        p = run("tls:\n  cert: a.pem\n")
        t.check(p.returncode == 2 and "tls" in p.stderr, "tls needs cert and key")
        p = run("runs_dir: [a, b]\n")
        t.check(p.returncode == 2, "a list is refused")
        p = run("runs_dir: /nonexistent/runs\nwww_dir: /nonexistent\n")
        t.check(p.returncode == 0, "--check does not open directories")
        p = subprocess.run([ctx.ita, "--config", os.path.join(d, "missing.yaml")],
                           capture_output=True, text=True)
        t.check(p.returncode == 2 and "missing.yaml" in p.stderr, "missing config named")
        path = os.path.join(d, "ita.yaml")
        with open(path, "w") as f:
            f.write("runs_dir: /nonexistent/runs\nlisten:\n  port: 0\nlog:\n  audit: '-'\n")
        p = subprocess.run([ctx.ita, "--config", path], capture_output=True, text=True, timeout=10)
        t.check(p.returncode != 0 and "/nonexistent/runs" in p.stderr,
                "a missing runs directory stops the start with its name: %r" % p.stderr)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def case_keys_cli(ctx, t):
    d = tempfile.mkdtemp(prefix="ita-keys-")
    kf = os.path.join(d, "keys.json")
    try:
        def ctl(*a):
            return subprocess.run([ctx.ctl, "keys"] + list(a) + ["--file", kf],
                                  capture_output=True, text=True)
        p = subprocess.run([ctx.ctl, "keys", "--help"], capture_output=True, text=True)
        t.check(p.returncode == 0 and "create" in p.stdout, "keys --help")
        p = subprocess.run([ctx.ctl, "help"], capture_output=True, text=True)
        t.check("keys" in p.stdout, "codexctl help lists keys")
        p = ctl("create", "--name", "ci-bot", "--scope", "read")
        key = p.stdout.strip()
        t.check(p.returncode == 0 and re.fullmatch(r"cuk_[0-9a-f]{16}_[0-9a-f]{64}", key),
                "create prints one key: %r" % p.stdout)
        t.check(stat.S_IMODE(os.stat(kf).st_mode) == 0o600, "keys file mode 0600")
        text = open(kf).read()
        t.check(key not in text and key.split("_")[2] not in text, "file holds no key")
        doc = json.loads(text)
        e = doc["keys"][0]
        t.check(e["name"] == "ci-bot" and e["scope"] == "read" and len(e["salt"]) == 32 and
                len(e["sha256"]) == 64, "entry has name, scope, salt, hash")
        p = ctl("create", "--name", "ci-bot", "--scope", "admin")
        t.check(p.returncode == 2 and "exists" in p.stderr, "duplicate name refused")
        p = ctl("create", "--name", "x", "--scope", "root")
        t.check(p.returncode == 2 and "scope" in p.stderr, "bad scope refused")
        p = ctl("create", "--name", "bad name!", "--scope", "read")
        t.check(p.returncode == 2, "bad name refused")
        p = ctl("create", "--name", "ops", "--scope", "admin")
        key2 = p.stdout.strip()
        t.check(p.returncode == 0 and key2 != key, "a second key differs")
        p = ctl("list")
        t.check(p.returncode == 0 and "ci-bot" in p.stdout and "ops" in p.stdout and
                key not in p.stdout, "list shows names, not keys")
        p = ctl("revoke", "ci-bot")
        t.check(p.returncode == 0, "revoke")
        p = ctl("list")
        line = [l for l in p.stdout.splitlines() if "ci-bot" in l][0]
        t.check(not line.rstrip().endswith("-"), "list shows the revocation time")
        p = ctl("revoke", "ci-bot")
        t.check(p.returncode == 1, "revoking twice fails")
        p = ctl("create", "--name", "ci-bot", "--scope", "read")
        t.check(p.returncode == 0, "a revoked name can be reused")
        t.check(stat.S_IMODE(os.stat(kf).st_mode) == 0o600, "still 0600 after rewrites")
        t.check(not [f for f in os.listdir(d) if ".tmp" in f], "no temporary files left")
        # Concurrent creates are serialised by the lock: none is lost.
        procs = [subprocess.Popen([ctx.ctl, "keys", "create", "--name", "p%d" % i, "--scope",
                                   "read", "--file", kf], stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL) for i in range(8)]
        for p in procs:
            p.communicate()
        names = {e["name"] for e in json.load(open(kf))["keys"]}
        t.check(all(p.returncode == 0 for p in procs) and
                {"p%d" % i for i in range(8)} <= names, "8 concurrent creates all kept")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def case_auth(ctx, t):
    with Server(ctx) as s:
        st, h, b = s.get("/healthz")
        t.check(st == 200 and json.loads(b)["status"] == "ok", "healthz without a key")
        st, h, b = s.get("/v1/jobs")
        is_problem(t, st, h, b, 401, "no key")
        t.check("bearer" in h.get("www-authenticate", "").lower(), "401 has WWW-Authenticate")
        bad = "cuk_0123456789abcdef_" + "0" * 64
        for k, what in ((bad, "well-formed unknown key"), ("nonsense", "garbage key"),
                        (s.keys["reader"][:-1] + ("1" if s.keys["reader"][-1] == "0" else "0"),
                         "key with a changed last digit")):
            st, h, b = s.get("/v1/jobs", k)
            is_problem(t, st, h, b, 401, what)
        st, h, b = s.get("/v1/jobs", s.keys["gone"])
        is_problem(t, st, h, b, 401, "revoked key")
        t.check(b"revoked" in b, "revoked key says so")
        for name in ("reader", "submitter"):
            st, h, b = s.get("/v1/keys", s.keys[name])
            is_problem(t, st, h, b, 403, "%s key on an admin route" % name)
        st, h, b = s.get("/v1/keys", s.keys["boss"])
        t.check(st == 200, "admin key on /v1/keys")
        keys = json.loads(b)["keys"]
        t.check({k["name"] for k in keys} == {"reader", "submitter", "boss", "gone"},
                "/v1/keys lists every key")
        t.check(all("sha256" not in k and "salt" not in k for k in keys), "no hashes served")
        for name in ("reader", "submitter", "boss"):
            st, _, _ = s.get("/v1/jobs", s.keys[name])
            t.check(st == 200, "%s key reads jobs" % name)
        st, _, _ = s.get("/v1/jobs", s.keys["reader"], bearer=True)
        t.check(st == 200, "Authorization: Bearer works")
        st, _, _ = s.get("/v1/jobs", headers={"Authorization": "Basic " + s.keys["reader"]})
        t.check(st == 401, "other Authorization schemes are not keys")
        st, _, _ = s.get("/metrics")
        t.check(st == 401, "/metrics needs a key by default")
        st, _, _ = s.get("/", None)
        t.check(st == 200, "the dashboard page needs no key (its data does)")
        # Revocation while running takes effect without a restart.
        s.revoke_key("reader")
        deadline, st = time.time() + 3, 200
        while time.time() < deadline and st == 200:
            st, _, _ = s.get("/v1/jobs", s.keys["reader"])
            time.sleep(0.1)
        t.check(st == 401, "a key revoked while running is refused within 3 s")
        newkey = s.create_key("late", "read")
        deadline, st = time.time() + 3, 401
        while time.time() < deadline and st != 200:
            st, _, _ = s.get("/v1/jobs", newkey)
            time.sleep(0.1)
        t.check(st == 200, "a key created while running is accepted within 3 s")
        audit = open(s.audit).read()
        t.check(all(k not in audit for k in s.keys.values()) and newkey not in audit,
                "no key ever reaches the audit log")
    with Server(ctx, "rate_limit:\n  per_second: 2\n  burst: 4\n") as s:
        codes, retry = [], None
        for _ in range(8):
            st, h, b = s.get("/v1/jobs", s.keys["reader"])
            codes.append(st)
            if st == 429:
                retry = h.get("retry-after")
                is_problem(t, st, h, b, 429, "rate limited")
        t.check(codes[:4] == [200] * 4 and 429 in codes, "burst of 4 then 429: %s" % codes)
        t.check(retry is not None and retry.isdigit() and int(retry) >= 1,
                "Retry-After in whole seconds: %r" % retry)
        st, _, _ = s.get("/v1/jobs", s.keys["boss"])
        t.check(st == 200, "the limit is per key")
        time.sleep(1.1)
        st, _, _ = s.get("/v1/jobs", s.keys["reader"])
        t.check(st == 200, "tokens refill")


def case_trace(ctx, t):
    with Server(ctx) as s:
        st, h, _ = s.get("/healthz", headers={"X-Request-Id": "client-abc_123.4:5"})
        t.check(h.get("x-request-id") == "client-abc_123.4:5", "valid id echoed")
        ids = set()
        for bad in ("x" * 65, "has space", "semi;colon", "quote\"", ""):
            st, h, _ = s.get("/healthz", headers={"X-Request-Id": bad} if bad else {})
            rid = h.get("x-request-id", "")
            t.check(re.fullmatch(r"[0-9a-f]{32}", rid) is not None,
                    "invalid id %r replaced by a generated one (%r)" % (bad[:10], rid))
            ids.add(rid)
        t.check(len(ids) == 5, "generated ids differ")
        for path, key, method in (("/nope", None, "GET"), ("/v1/jobs", None, "GET"),
                                  ("/v1/jobs/none", "reader", "GET"),
                                  ("/v1/jobs", "reader", "DELETE"),
                                  ("/v1/jobs/run-live", "reader", "GET")):
            st, h, b = s.get(path, s.keys.get(key), method=method,
                             headers={"X-Request-Id": "rid-%s" % method})
            t.check(h.get("x-request-id") == "rid-%s" % method,
                    "echoed on %s %s (%d)" % (method, path, st))
            if st >= 400:
                t.check(json.loads(b).get("request_id") == "rid-%s" % method,
                        "problem carries the id on %s" % path)
        c = s.conn()
        c.request("GET", "/v1/jobs/run-live/events", headers={
            "X-API-Key": s.keys["reader"], "Accept": "text/event-stream", "X-Request-Id": "sse-1"})
        r = c.getresponse()
        t.check(r.status == 200 and r.getheader("x-request-id") == "sse-1",
                "echoed on an event stream")
        c.close()
        s.get("/v1/jobs/run-live", s.keys["boss"], headers={"X-Request-Id": "audit-me"})
        time.sleep(0.2)
        lines = s.audit_lines()
        t.check(len(lines) >= 13, "a line per request (%d)" % len(lines))
        mine = [l for l in lines if l["request_id"] == "audit-me"]
        t.check(len(mine) == 1, "the request is audited once")
        if mine:
            l = mine[0]
            t.check(l["key"] == "boss" and l["method"] == "GET" and
                    l["path"] == "/v1/jobs/run-live" and l["status"] == 200 and
                    isinstance(l["latency_ms"], float) and re.match(r"\d{4}-\d\d-\d\dT", l["time"]),
                    "audit fields: %s" % l)
        anon = [l for l in lines if l["path"] == "/nope"]
        t.check(anon and anon[0]["key"] is None and anon[0]["status"] == 404,
                "unauthenticated requests audited with key null")
        text = open(s.audit).read()
        t.check(all(k not in text for k in s.keys.values()), "keys never in the audit log")


def case_jobs(ctx, t):
    with Server(ctx) as s:
        st, _, doc = s.json("/v1/jobs")
        ids = [j["id"] for j in doc["jobs"]]
        t.check(st == 200 and ids == ["failed-nan", "run-partial", "run-stale", "run-live",
                                      "demo-completed", "queued"],
                "newest first, no-state skipped: %s" % ids)
        by = {j["id"]: j for j in doc["jobs"]}
        t.check(by["run-stale"]["status"] == "LOST" and by["run-stale"]["lost"],
                "stale heartbeat reads LOST")
        t.check(by["run-live"]["status"] == "RUNNING", "fresh heartbeat stays RUNNING")
        t.check(by["demo-completed"]["status"] == "COMPLETED" and
                by["demo-completed"]["progress"] == 1.0, "completed with progress 1")
        t.check(doc["next_cursor"] is None, "one page, no cursor")
        seen, cursor, pages = [], None, 0
        while pages < 10:
            q = "/v1/jobs?limit=2" + ("&cursor=" + cursor if cursor else "")
            st, _, d = s.json(q)
            seen += [j["id"] for j in d["jobs"]]
            pages += 1
            cursor = d["next_cursor"]
            if not cursor:
                break
        t.check(seen == ids and pages == 3, "pages of 2 cover every job once: %s" % seen)
        st, _, d = s.json("/v1/jobs?status=LOST")
        t.check(sorted(j["id"] for j in d["jobs"]) == ["run-partial", "run-stale"],
                "status filter (LOST)")
        st, _, d = s.json("/v1/jobs?status=COMPLETED,FAILED")
        t.check(sorted(j["id"] for j in d["jobs"]) == ["demo-completed", "failed-nan"],
                "status filter with a list")
        for q in ("limit=0", "limit=501", "limit=x", "cursor=zz", "cursor=00"):
            st, h, b = s.get("/v1/jobs?" + q, s.keys["reader"])
            is_problem(t, st, h, b, 400, "bad query " + q)
        # One job: all of state.json plus progress, ETA and LOST.
        st, _, d = s.json("/v1/jobs/run-live")
        with open(os.path.join(s.runs, "run-live", "state.json")) as f:
            raw = json.load(f)
        t.check(st == 200 and d["state"] == raw, "all of state.json is served")
        t.check(d["status"] == "RUNNING" and not d["lost"] and abs(d["progress"] - 0.3) < 1e-9
                and d["eta_s"] == 31.4 and d["heartbeat_age_s"] < 60, "derived fields: %s" %
                {k: d[k] for k in ("status", "progress", "eta_s", "heartbeat_age_s")})
        st, _, d = s.json("/v1/jobs/run-stale")
        t.check(d["status"] == "LOST" and d["state"]["status"] == "RUNNING" and d["eta_s"] is None,
                "LOST job keeps its written status under state")
        st, _, d = s.json("/v1/jobs/failed-nan")
        t.check(d["state"]["error"]["rank"] == 1, "error object served")
        for job in ("no-state", "missing", "x" * 129):
            st, h, b = s.get("/v1/jobs/" + job, s.keys["reader"])
            is_problem(t, st, h, b, 404, "job " + job[:10])
        # Cache refresh: an atomic rewrite is seen at once.
        set_state(s.runs, "run-live", step=121, loss=2.0, updated_at=now_rfc3339())
        st, _, d = s.json("/v1/jobs/run-live")
        t.check(d["state"]["step"] == 121 and d["state"]["loss"] == 2.0, "rewritten state seen")
        set_state(s.runs, "run-live", updated_at="2026-01-01T00:00:00.000Z")
        st, _, d = s.json("/v1/jobs/run-live")
        t.check(d["status"] == "LOST", "heartbeat going stale turns LOST")
        set_state(s.runs, "run-live", updated_at=now_rfc3339())
        # Metrics.
        st, _, d = s.json("/v1/jobs/demo-completed/metrics")
        recs = d["records"]
        t.check(len(recs) == 204 and not d["more"], "all 200 steps and 4 evals (%d)" % len(recs))
        st, _, d = s.json("/v1/jobs/demo-completed/metrics?since_step=149")
        t.check([r["step"] for r in d["records"]][:3] == [150, 150, 151] and
                d["records"][1].get("val_loss") is not None, "since_step keeps the eval line")
        st, _, d = s.json("/v1/jobs/demo-completed/metrics?since_step=100&names=val_loss")
        t.check([r["step"] for r in d["records"]] == [150, 200] and
                set(d["records"][0]) == {"time", "step", "val_loss"}, "names filter")
        st, _, d = s.json("/v1/jobs/demo-completed/metrics?names=loss,val_loss&limit=1000")
        t.check(len(d["records"]) == 204, "names with several metrics")
        got, cursor, n = [], None, 0
        while n < 50:
            st, _, d = s.json("/v1/jobs/demo-completed/metrics?limit=37" +
                              ("&cursor=" + cursor if cursor else ""))
            got += d["records"]
            cursor = d["next_cursor"]
            n += 1
            if not d["more"]:
                break
        t.check(got == recs and n == 6, "cursor pages of 37 reassemble the file (%d pages)" % n)
        st, h, b = s.get("/v1/jobs/demo-completed/metrics?cursor=5", s.keys["reader"])
        is_problem(t, st, h, b, 400, "cursor in the middle of a line")
        for q in ("since_step=abc", "limit=5001", "names=lo%20ss", "names=" + ",".join("a" * 17)):
            st, h, b = s.get("/v1/jobs/demo-completed/metrics?" + q, s.keys["reader"])
            is_problem(t, st, h, b, 400, "bad metrics query " + q[:20])
        # A partial last line is ignored until it is complete.
        st, _, d = s.json("/v1/jobs/run-partial/metrics")
        t.check([r["step"] for r in d["records"]] == list(range(1, 11)),
                "partial last line ignored")
        with open(os.path.join(s.runs, "run-partial", "metrics.jsonl"), "a") as f:
            f.write('ss": 3.4}\n{"step": 12, "loss": 3.3')
        st, _, d = s.json("/v1/jobs/run-partial/metrics?since_step=10")
        t.check([r["step"] for r in d["records"]] == [11] and d["records"][0]["loss"] == 3.4,
                "completed line appears, the next partial one does not")
        st, _, d = s.json("/v1/jobs/queued/metrics")
        t.check(st == 200 and d["records"] == [], "empty metrics")
        # Events.
        st, _, d = s.json("/v1/jobs/demo-completed/events")
        t.check([e["type"] for e in d["events"]] == ["started", "checkpoint", "checkpoint",
                                                      "completed"], "events in order")
        st, _, d2 = s.json("/v1/jobs/demo-completed/events?limit=2")
        st, _, d3 = s.json("/v1/jobs/demo-completed/events?cursor=" + d2["next_cursor"])
        t.check(d2["events"] + d3["events"] == d["events"] and d2["more"], "event pages")
        # Checkpoints.
        st, _, d = s.json("/v1/jobs/demo-completed/checkpoints")
        cks = d["checkpoints"]
        t.check([c["step"] for c in cks] == [100, 200], "checkpoint steps")
        t.check([c["size_bytes"] for c in cks] == [
            os.path.getsize(os.path.join(s.runs, "demo-completed", c["file"])) for c in cks],
            "checkpoint sizes")
        t.check(cks[1]["latest"] and not cks[0]["latest"] and d["latest"] == "step_00000200.h5",
                "latest checkpoint marked")
        t.check(abs(cks[0]["eval"]["val_loss"] - 2.746) < 1e-9 and
                re.match(r"\d{4}-", cks[0]["time"]), "eval and time of each checkpoint")
        t.check(d["best_eval"]["step"] == 200, "best eval from state")
        write_atomic(os.path.join(s.runs, "demo-completed", "checkpoints", "latest"),
                     "checkpoints/step_00000100.h5\n")
        with open(os.path.join(s.runs, "demo-completed", "checkpoints", "step_00000300.h5.tmp"),
                  "w") as f:
            f.write("partial")
        st, _, d = s.json("/v1/jobs/demo-completed/checkpoints")
        t.check([c["latest"] for c in d["checkpoints"]] == [True, False],
                "latest written as a path is understood; temporary files ignored")
        st, _, d = s.json("/v1/jobs/run-live/checkpoints")
        t.check(st == 200 and d["checkpoints"] == [] and d["latest"] is None, "no checkpoints")
        st, h, b = s.get("/v1/jobs/run-live", s.keys["reader"], method="HEAD")
        t.check(st == 200 and b == b"", "HEAD answers without a body")
        # The config as stored: job.yaml, else submit.yaml, else nulls.
        st, _, d = s.json("/v1/jobs/demo-completed/config")
        with open(os.path.join(s.runs, "demo-completed", "job.yaml")) as f:
            text = f.read()
        t.check(st == 200 and d == {"job": "demo-completed", "file": "job.yaml", "yaml": text,
                                    "truncated": False}, "config: job.yaml as stored")
        os.rename(os.path.join(s.runs, "queued", "job.yaml"),
                  os.path.join(s.runs, "queued", "submit.yaml"))
        st, _, d = s.json("/v1/jobs/queued/config")
        t.check(st == 200 and d["file"] == "submit.yaml" and d["yaml"],
                "config: submit.yaml before the job wrote job.yaml: %s" % d)
        os.unlink(os.path.join(s.runs, "queued", "submit.yaml"))
        st, _, d = s.json("/v1/jobs/queued/config")
        t.check(st == 200 and d["file"] is None and d["yaml"] is None, "config: neither file")
        os.mkfifo(os.path.join(s.runs, "queued", "job.yaml"))
        st, _, d = s.json("/v1/jobs/queued/config")
        t.check(st == 200 and d["file"] is None, "config: a FIFO as job.yaml is not read")
        st, h, b = s.get("/v1/jobs/nope/config", s.keys["reader"])
        is_problem(t, st, h, b, 404, "config of no job")
        # A long metrics file is indexed once; later pages read only what they
        # answer (the server's read byte count, /proc/PID/io rchar, shows it).
        big = os.path.join(s.runs, "run-stale", "metrics.jsonl")
        with open(big, "w") as f:
            for i in range(1, 100001):
                f.write('{"time": "2026-11-24T06:20:00.000Z", "step": %d, "loss": %.4f, '
                        '"lr": 0.001, "tokens_per_s": 4100.0}\n' % (i, 3.0 - i * 1e-5))
        size = os.path.getsize(big)
        c = s.conn()
        def page(q):
            c.request("GET", "/v1/jobs/run-stale/metrics?" + q,
                      headers={"X-API-Key": s.keys["reader"]})
            r = c.getresponse()
            return json.loads(r.read())
        def rchar():
            with open("/proc/%d/io" % s.proc.pid) as f:
                return int(re.search(r"rchar: (\d+)", f.read()).group(1))
        d = page("since_step=99990")  # first request on this thread: builds the index
        t.check([r["step"] for r in d["records"]] == list(range(99991, 100001)),
                "since_step near the end of 100k lines")
        r0 = rchar()
        d = page("since_step=50000&limit=5")
        d2 = page("since_step=99995")
        dr = rchar() - r0
        c.close()
        t.check([r["step"] for r in d["records"]] == list(range(50001, 50006)) and
                len(d2["records"]) == 5, "pages from the middle and the end")
        t.check(dr < size / 20, "two later pages read %d bytes of a %d-byte file" % (dr, size))


def case_robustness(ctx, t):
    outside = tempfile.mkdtemp(prefix="ita-outside-")
    try:
        os.makedirs(os.path.join(outside, "secret"))
        with open(os.path.join(outside, "secret", "state.json"), "w") as f:
            json.dump({"status": "RUNNING", "job": "SECRET-OUTSIDE"}, f)
        with Server(ctx) as s:
            os.symlink(os.path.join(outside, "secret"), os.path.join(s.runs, "escape"))
            os.symlink("run-live", os.path.join(s.runs, "alias"))
            os.symlink(os.path.join(outside, "secret", "state.json"),
                       os.path.join(s.runs, "queued", "evil.json"))
            os.makedirs(os.path.join(s.runs, "linkstate"))
            os.symlink(os.path.join(outside, "secret", "state.json"),
                       os.path.join(s.runs, "linkstate", "state.json"))
            k = s.keys["reader"]
            for path in ("/v1/jobs/../../etc/passwd", "/v1/jobs/..", "/v1/jobs/%2e%2e",
                         "/v1/jobs/..%2f..%2fetc%2fpasswd", "/v1/jobs/.hidden",
                         "/v1/jobs/escape", "/v1/jobs/escape/metrics", "/v1/jobs/linkstate",
                         "/v1/jobs/run-live%00", "/v1/jobs/run-live/../../..",
                         "/v1/jobs/%252e%252e", "//v1/jobs", "/v1/jobs/a/b/c",
                         "/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd"):
                st, h, b = s.get(path, k)
                t.check(st in (400, 404) and b"SECRET" not in b and b"root:" not in b,
                        "traversal %s refused (%d)" % (path, st))
            st, _, d = s.json("/v1/jobs")
            ids = [j["id"] for j in d["jobs"]]
            t.check("escape" not in ids and "linkstate" not in ids, "escapes never listed")
            t.check("alias" in ids, "a symlink that stays inside runs/ is followed")
            st, _, d = s.json("/v1/jobs/alias")
            t.check(st == 200 and d["state"]["job"] == "run-live", "inside symlink served")
            # Oversized and malformed requests.
            st, h, b = s.get("/v1/jobs", k, headers={"X-Big": "a" * 20000})
            t.check(st in (400, 413, 431), "a 20 KB header refused (%d)" % st)
            st, h, b = s.get("/v1/jobs", k, headers={"X-H%d" % i: "v" for i in range(150)})
            t.check(st in (400, 431), "150 headers refused (%d)" % st)
            st, h, b = s.get("/v1/jobs?" + "a" * 3000, k)
            is_problem(t, st, h, b, 414, "3000-byte target")
            st, h, b = s.get("/v1/jobs", k, method="PUT", body=b"x" * 10)
            is_problem(t, st, h, b, 405, "PUT")
            t.check(h.get("allow") == "GET, HEAD, POST", "405 names the methods")
            st, h, b = s.get("/v1/jobs/run-live", k, method="POST", body=b"x" * 10)
            is_problem(t, st, h, b, 405, "POST to a job")
            t.check(h.get("allow") == "GET, HEAD", "405 names the methods")
            st, h, b = s.get("/v1/jobs/run-live/cancel", k)
            is_problem(t, st, h, b, 405, "GET of cancel")
            t.check(h.get("allow") == "POST", "cancel: 405 names POST")
            st, h, b = s.get("/v1/jobs", k, method="GET", body=b"x" * 10000)
            is_problem(t, st, h, b, 413, "10 KB body")
            out = s.raw(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" +
                        b"x" * 200000)
            t.check(out.startswith(b"HTTP/1.1 413"), "a 10 MB body refused: %r" % out[:40])
            for junk in (b"\x00\x01\x02garbage\r\n\r\n", b"GET\r\n\r\n",
                         b"GET /healthz HTTP/9.9\r\n\r\n",
                         b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n"):
                out = s.raw(junk, read_timeout=3)
                t.check(out == b"" or out.startswith(b"HTTP/1.1 4") or
                        out.startswith(b"HTTP/1.0 4"), "malformed %r refused: %r" %
                        (junk[:12], out[:30]))
            out = s.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-A: " + b"b" * 600000 +
                        b"\r\n\r\n", read_timeout=5)
            t.check(out == b"" or b" 4" in out[:13], "a 600 KB header refused: %r" % out[:30])
            out = s.raw(b"GET /v1/jobs/\xe9t\xe9 HTTP/1.1\r\nHost: x\r\nX-API-Key: " +
                        k.encode() + b"\r\nConnection: close\r\n\r\n")
            t.check(out.startswith(b"HTTP/1.1 404"), "non-ASCII path: %r" % out[:20])
            st, _, _ = s.get("/healthz")
            t.check(st == 200, "server alive after all that")
            lines = s.audit_lines()  # every line is valid JSON, whatever was sent
            t.check(len(lines) > 20, "audit lines valid JSON (%d)" % len(lines))
            t.check(s.proc.poll() is None, "process still running")
    finally:
        shutil.rmtree(outside, ignore_errors=True)
    # Connections are bounded: with max_connections 1 (one thread) a second
    # client waits in the backlog until the first one leaves.
    with Server(ctx, "threads: 1\nmax_connections: 1\n") as s:
        a = s.conn()
        a.request("GET", "/healthz")
        ra = a.getresponse()
        ra.read()
        b = s.conn(timeout=1)
        b.request("GET", "/healthz")
        try:
            b.getresponse()
            waited = False
        except (socket.timeout, TimeoutError):
            waited = True
        t.check(waited and ra.status == 200, "a connection beyond max_connections waits")
        b.close()
        a.close()
        st, _, _ = s.get("/healthz")
        t.check(st == 200, "served again once the first connection closed")


def sse_events(resp, stop_after=None, timeout=20):
    """Parses an SSE stream into (event, id, data) tuples until it ends."""
    events, ev, data, eid = [], None, [], None
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = resp.fp.readline()
        if not line:
            break
        line = line.decode().rstrip("\n")
        if line == "":
            if data or ev:
                events.append((ev or "message", eid, "\n".join(data)))
                if stop_after and stop_after(events):
                    break
            ev, data, eid = None, [], None
        elif line.startswith(":"):
            continue
        elif line.startswith("event: "):
            ev = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
        elif line.startswith("id: "):
            eid = line[4:]
    return events


def writer(runs, job, n, delay, done):
    """A stand-in for codex-train: appends events and metrics (sometimes
    in two writes, leaving a partial line for a moment) and rewrites
    state.json atomically."""
    d = os.path.join(runs, job)
    for i in range(n):
        step = 121 + i
        ev = json.dumps({"time": now_rfc3339(), "step": step, "type": "eval",
                         "message": "eval %d" % i, "seq": i}) + "\n"
        with open(os.path.join(d, "events.jsonl"), "a") as f:
            f.write(ev[:20])
            f.flush()
            time.sleep(delay / 2)
            f.write(ev[20:])
        with open(os.path.join(d, "metrics.jsonl"), "a") as f:
            f.write(json.dumps({"time": now_rfc3339(), "step": step, "loss": 2.0 - i * 0.01}) + "\n")
        set_state(runs, job, step=step, updated_at=now_rfc3339())
        time.sleep(delay / 2)
    with open(os.path.join(d, "events.jsonl"), "a") as f:
        f.write(json.dumps({"time": now_rfc3339(), "step": 121 + n, "type": "completed",
                            "message": "done"}) + "\n")
    set_state(runs, job, status="COMPLETED", step=121 + n, updated_at=now_rfc3339())
    done.set()


def case_sse(ctx, t):
    with Server(ctx) as s:
        c = s.conn(timeout=30)
        c.request("GET", "/v1/jobs/run-live/events",
                  headers={"X-API-Key": s.keys["reader"], "Accept": "text/event-stream"})
        r = c.getresponse()
        t.check(r.status == 200 and r.getheader("content-type", "").startswith(
            "text/event-stream"), "event stream answered")
        done = threading.Event()
        w = threading.Thread(target=writer, args=(s.runs, "run-live", 8, 0.15, done))
        w.start()
        evs = sse_events(r, stop_after=lambda e: e[-1][0] == "end", timeout=30)
        w.join()
        c.close()
        types = [e[0] for e in evs]
        evals = [json.loads(e[2]) for e in evs if e[0] == "eval"]
        t.check(types[0] in ("started", "state"), "stream starts with history: %s" % types[:3])
        t.check([e["seq"] for e in evals] == list(range(8)),
                "all 8 appended events in order, none torn: %s" % [e.get("seq") for e in evals])
        t.check("completed" in types and types[-1] == "end", "completion then end: %s" % types[-3:])
        states = [json.loads(e[2]) for e in evs if e[0] == "state"]
        t.check(len(states) >= 3 and states[-1]["status"] == "COMPLETED",
                "state events follow the job (%d)" % len(states))
        t.check(all(e[1] is None or e[1].isdigit() for e in evs) and
                any(e[1] for e in evs if e[0] == "eval"), "events carry byte-offset ids")
        # Resume after the 3rd eval's batch: only later events come again.
        ids = [(i, e[1]) for i, e in enumerate(evs) if e[1]]
        mid_i, mid = ids[len(ids) // 2]
        c = s.conn(timeout=30)
        c.request("GET", "/v1/jobs/run-live/events",
                  headers={"X-API-Key": s.keys["reader"], "Accept": "text/event-stream",
                           "Last-Event-ID": mid})
        r = c.getresponse()
        again = sse_events(r, stop_after=lambda e: e[-1][0] == "end", timeout=15)
        c.close()
        later = [e[2] for e in evs[mid_i + 1:] if e[0] not in ("state", "end")]
        t.check([e[2] for e in again if e[0] not in ("state", "end")] == later,
                "Last-Event-ID resumes right after that event")
        # ?from=end: only new events (none, the job is complete: just the end).
        c = s.conn(timeout=30)
        c.request("GET", "/v1/jobs/run-live/events?from=end",
                  headers={"X-API-Key": s.keys["reader"], "Accept": "text/event-stream"})
        r = c.getresponse()
        tail = sse_events(r, stop_after=lambda e: e[-1][0] == "end", timeout=15)
        c.close()
        t.check([e[0] for e in tail if e[0] != "state"] == ["end"], "from=end skips history")
        st, _, _ = s.get("/v1/jobs/missing/events", s.keys["reader"],
                         headers={"Accept": "text/event-stream"})
        t.check(st == 404, "stream of a missing job is 404")
        st, _, _ = s.get("/v1/jobs/run-live/events", None, headers={"Accept": "text/event-stream"})
        t.check(st == 401, "streams need a key")
    with Server(ctx, "sse:\n  poll_ms: 50\n  max_streams: 1\n", ) as s:
        cs = []
        for _ in range(2):
            c = s.conn(timeout=10)
            c.request("GET", "/v1/jobs/run-live/events",
                      headers={"X-API-Key": s.keys["reader"], "Accept": "text/event-stream"})
            cs.append((c, c.getresponse()))
        # With 2 threads and 1 stream each, a third concurrent stream is refused.
        c = s.conn(timeout=10)
        c.request("GET", "/v1/jobs/run-live/events",
                  headers={"X-API-Key": s.keys["reader"], "Accept": "text/event-stream"})
        r3 = c.getresponse()
        statuses = [r.status for _, r in cs] + [r3.status]
        t.check(503 in statuses, "a stream beyond sse.max_streams gets 503: %s" % statuses)
        for cc, _ in cs:
            cc.close()
        c.close()


def case_live_job(ctx, t):
    """A real 2-rank codex-train job served while it runs: the job endpoints
    follow it, an SSE client receives its events up to completion, and the
    checkpoints it saved are listed."""
    train = os.path.join(os.path.dirname(ctx.ctl), "codex-train")
    runs = tempfile.mkdtemp(prefix="ita-live-")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OPENBLAS_NUM_THREADS="1", CU_PROGRESS="0")
    job = subprocess.Popen(
        ["mpirun", "-n", "2", "--oversubscribe", train,
         os.path.join(ctx.src, "configs/demo-base.yaml"), "job.runs_dir=" + runs, "job.name=live",
         "train.max_steps=300", "train.micro_batch_size=4", "train.log_every=10",
         "eval.every_steps=50", "checkpoint.every_steps=100"],
        cwd=ctx.src, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        state = os.path.join(runs, "live", "state.json")
        deadline = time.time() + 60
        while time.time() < deadline and not os.path.exists(state):
            time.sleep(0.05)
        t.check(os.path.exists(state), "the training job wrote state.json")
        with Server(ctx, live_runs=runs) as s:
            st, _, body = s.json("/v1/jobs/live")
            t.check(st == 200 and body["state"]["status"] == "RUNNING" and
                    body["state"]["world_size"] == 2, "the running job is RUNNING on 2 ranks: %s"
                    % (body and body.get("state", {}).get("status")))
            c = s.conn(timeout=120)
            c.request("GET", "/v1/jobs/live/events",
                      headers={"X-API-Key": s.keys["reader"], "Accept": "text/event-stream"})
            r = c.getresponse()
            evs = sse_events(r, stop_after=lambda e: e[-1][0] in ("completed", "end"), timeout=120)
            c.close()
            types = [e[0] for e in evs]
            history = [k for k in types if k != "state"]
            t.check(history and history[0] == "started",
                    "the stream's history starts with 'started': %s" % types[:3])
            for kind in ("eval", "checkpoint", "completed"):
                t.check(kind in types, "the stream carried a '%s' event" % kind)
            job.wait(timeout=120)
            t.check(job.returncode == 0, "the training job exited 0 (%s)" % job.returncode)
            st, _, body = s.json("/v1/jobs/live")
            t.check(st == 200 and body["state"]["status"] == "COMPLETED" and
                    body["state"]["step"] == 300, "the job reads COMPLETED at step 300")
            st, _, body = s.json("/v1/jobs/live/metrics?since_step=0")
            steps = [m.get("step") for m in (body or {}).get("records", [])]
            t.check(st == 200 and 300 in steps, "metrics include the last step (%d records)" % len(steps))
            st, _, body = s.json("/v1/jobs/live/checkpoints")
            found = json.dumps(body)
            t.check(st == 200 and "step_00000300.h5" in found and "step_00000100.h5" in found,
                    "the saved checkpoints are listed")
    finally:
        if job.poll() is None:
            job.kill()
        job.communicate()
        shutil.rmtree(runs, ignore_errors=True)


def case_hygiene(ctx, t):
    """POST /v1/hygiene/scan: texts and diffs scanned for secrets, JSON or
    SARIF answers that never contain the secret."""
    key = "AKIA" + "Q3EGRT7P" + "LXW5M2ND"   # fake, pattern-valid, built at run time
    with Server(ctx) as s:
        reader = s.keys["reader"]
        text = ("import os\n\naws_access_key_id = '%s'\n" % key).encode()
        st, h, body = s.get("/v1/hygiene/scan?path=app/settings.py", reader, method="POST", body=text,
                            headers={"Content-Type": "text/plain"})
        doc = json.loads(body) if st == 200 else {}
        f = doc.get("findings", [])
        t.check(st == 200 and len(f) >= 1, "a text with a key has a finding (%s, %d)" % (st, len(f)))
        t.check(any(x.get("rule") == "aws_access_key" or x.get("rule_id") == "aws_access_key" or
                    "aws_access_key" in json.dumps(x) for x in f), "the finding names aws_access_key")
        t.check(key.encode() not in body, "the answer never contains the secret")
        t.check(any(x.get("line") == 3 for x in f), "the finding is at line 3")
        diff = ("diff --git a/cfg.py b/cfg.py\n--- a/cfg.py\n+++ b/cfg.py\n@@ -1,2 +1,3 @@\n"
                " a = 1\n+token = '%s'\n b = 2\n" % key).encode()
        st, h, body = s.get("/v1/hygiene/scan", reader, method="POST", body=diff,
                            headers={"Content-Type": "text/x-diff"})
        doc = json.loads(body) if st == 200 else {}
        f = doc.get("findings", [])
        t.check(st == 200 and len(f) == 1 and f[0].get("line") == 2 and "cfg.py" in json.dumps(f[0]),
                "a diff's added line is reported at its line in the new file: %s" % f[:1])
        st, h, body = s.get("/v1/hygiene/scan?format=sarif&kind=diff", reader, method="POST", body=diff)
        doc = json.loads(body) if st == 200 else {}
        t.check(st == 200 and doc.get("version") == "2.1.0" and doc["runs"][0]["results"],
                "SARIF 2.1.0 with results")
        st, _, body = s.get("/v1/hygiene/scan", reader, method="POST", body=b"x = 1\n")
        t.check(st == 200 and json.loads(body).get("findings") == [], "a clean text has no findings")
        st, h, _ = s.get("/v1/hygiene/scan", reader)
        t.check(st == 405 and h.get("allow") == "POST", "GET gets 405 with Allow: POST")
        st, _, _ = s.get("/v1/hygiene/scan", None, method="POST", body=text)
        t.check(st == 401, "scanning needs a key")
        st, h, body = s.get("/v1/hygiene/scan?format=xml", reader, method="POST", body=text)
        t.check(st == 400 and h.get("content-type", "").startswith("application/problem+json"),
                "an unknown format is a 400 problem")
        # announced as 2 MiB: refused without reading it
        out = s.raw(b"POST /v1/hygiene/scan HTTP/1.1\r\nHost: x\r\nX-API-Key: " + reader.encode() +
                    b"\r\nContent-Length: 2097152\r\n\r\n" + b"a" * 100000)
        t.check(out.startswith(b"HTTP/1.1 413"), "a body over 1 MiB gets 413: %r" % out[:40])
        audit = [l for l in s.audit_lines() if l.get("path", "").startswith("/v1/hygiene/scan")]
        t.check(audit and all(key not in json.dumps(l) for l in audit), "audited, without the secret")


def case_tests_run(ctx, t):
    """POST /v1/tests/run: allowlisted test commands in the sandbox."""
    import socket
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]
    extra = 'test_commands:\n  sh: "bash run.sh"\ntests_timeout_s: 1.5\n'
    with Server(ctx, extra) as s:
        sub = s.keys["submitter"]

        def run(script, key=sub, command="sh", files=None):
            body = json.dumps({"command": command, "files": files or {"run.sh": script}}).encode()
            st, h, b = s.get("/v1/tests/run", key, method="POST", body=body,
                             headers={"Content-Type": "application/json"})
            try:
                return st, h, json.loads(b)
            except ValueError:
                return st, h, None

        st, _, r = run("echo hello; exit 0\n")
        t.check(st == 200 and r["passed"] and r["stdout"] == "hello\n", "a passing command: %s" % r)
        t.check("seccomp" in r.get("sandbox", ""), "the sandbox layers are reported")
        st, _, r = run("echo oops >&2; exit 5\n")
        t.check(st == 200 and not r["passed"] and r["exit_code"] == 5 and "oops" in r["stderr"],
                "a failing command reports its exit code and stderr")
        st, _, r = run("sleep 20\n")
        t.check(st == 200 and r["timed_out"] and r["wall_s"] < 5, "a sleeper is stopped at 1.5 s")
        st, _, r = run("exec 3<>/dev/tcp/127.0.0.1/%d && echo connected\n" % port)
        t.check(st == 200 and not r["passed"] and "connected" not in r["stdout"],
                "no connection to a loopback listener")
        marker = "/tmp/cu-sandbox-escape-%d" % os.getpid()
        st, _, r = run("echo x > %s\n" % marker)
        t.check(st == 200 and not os.path.exists(marker),
                "a write to /tmp stays in the run's private tmpfs")
        marker = "/var/tmp/cu-sandbox-escape-%d" % os.getpid()
        st, _, r = run("echo x > %s\n" % marker)
        t.check(st == 200 and not r["passed"] and not os.path.exists(marker),
                "no write outside the private directory")
        # issue 18: the service's own files are not readable inside
        st, _, r = run("cat %s %s\n" % (s.keys_file, s.audit))
        t.check(st == 200 and not r["passed"] and "sha256" not in r["stdout"]
                and r["stdout"] == "", "the keys file and audit log are unreadable: %s" % r)
        # output that is not UTF-8 comes back (base64, flagged), not a 500
        st, _, r = run("printf 'ok\\377\\376\\n'\n")
        t.check(st == 200 and r.get("stdout_encoding") == "base64"
                and base64.b64decode(r["stdout"]) == b"ok\xff\xfe\n"
                and r.get("stderr_encoding") == "utf-8", "non-UTF-8 output: %s" % r)
        st, _, r = run("echo fine\n")
        t.check(st == 200 and r.get("stdout_encoding") == "utf-8" and r["stdout"] == "fine\n",
                "UTF-8 output is a plain string")
        st, _, r = run("cat data.txt\n", files={"run.sh": "cat data.txt\n", "data.txt": "abc"})
        t.check(st == 200 and r["stdout"] == "abc", "the request's files are there")
        st, _, _ = run("true\n", command="python")
        t.check(st == 403, "a command outside the allowlist is refused")
        st, _, _ = run("true\n", key=s.keys["reader"])
        t.check(st == 403, "scope read cannot run tests")
        st, _, _ = run("true\n", key=None)
        t.check(st == 401, "no key, no run")
        st, _, _ = run("true\n", files={"../x.sh": "true"})
        t.check(st == 400, "a file name with a path is refused")
        st, _, _ = s.get("/v1/tests/run", sub, method="POST", body=b"not json")
        t.check(st == 400, "a body that is not JSON is a 400")
        st, h, _ = s.get("/v1/tests/run", sub)
        t.check(st == 405 and h.get("allow") == "POST", "GET gets 405")
        t.check("cgroup" in r.get("sandbox", "") or "cgroup" not in open("/proc/filesystems").read(),
                "each run in a cgroup of its own where there are cgroups: %s" % r.get("sandbox"))
    lsock.close()
    # without a cgroup for the runs: a warning at start, and runs refused unless
    # sandbox.allow_rlimits_only accepts rlimits only
    nocg = extra + 'sandbox:\n  cgroup_parent: /nonexistent/cu-delegated\n'
    with Server(ctx, nocg) as s:
        body = json.dumps({"command": "sh", "files": {"run.sh": "echo hi\n"}}).encode()
        st, _, b = s.get("/v1/tests/run", s.keys["submitter"], method="POST", body=body,
                         headers={"Content-Type": "application/json"})
        t.check(st == 503 and b"allow_rlimits_only" in b,
                "no cgroup: the run is refused, 503 saying why (%d %r)" % (st, b[:200]))
    d = tempfile.mkdtemp(prefix="ita-cg-")
    try:
        path = os.path.join(d, "ita.yaml")
        for allow, says in (("false", "will be refused"), ("true", "held by rlimits only")):
            with open(path, "w") as f:
                f.write(nocg + "  allow_rlimits_only: %s\n" % allow)
            p = subprocess.run([ctx.ita, "--config", path, "--check"], capture_output=True,
                               text=True)
            t.check(p.returncode == 0 and "warning: no cgroup" in p.stderr and says in p.stderr,
                    "the start-up warning says it (allow_rlimits_only %s): %r" % (allow, p.stderr))
    finally:
        shutil.rmtree(d, ignore_errors=True)
    with Server(ctx, nocg + "  allow_rlimits_only: true\n") as s:
        body = json.dumps({"command": "sh", "files": {"run.sh": "echo hi\n"}}).encode()
        st, _, b = s.get("/v1/tests/run", s.keys["submitter"], method="POST", body=body,
                         headers={"Content-Type": "application/json"})
        r = json.loads(b) if st == 200 else {}
        t.check(st == 200 and r.get("stdout") == "hi\n" and "cgroup" not in r.get("sandbox", ""),
                "allow_rlimits_only: the run goes ahead without a cgroup: %s" % r)


def case_prometheus(ctx, t):
    with Server(ctx) as s:
        for _ in range(3):
            s.get("/v1/jobs/run-live", s.keys["reader"])
        s.get("/v1/jobs/missing", s.keys["reader"])
        s.get("/v1/jobs")
        st, h, b = s.get("/metrics", s.keys["reader"])
        text = b.decode()
        t.check(st == 200 and h.get("content-type", "").startswith("text/plain; version=0.0.4"),
                "exposition content type")
        def val(pattern):
            m = re.search("^" + re.escape(pattern) + r" ([0-9.e+-]+)$", text, re.M)
            return float(m.group(1)) if m else None
        t.check(val('codex_ita_requests_total{route="/v1/jobs/{id}",status="200"}') == 3,
                "request counter by route and status")
        t.check(val('codex_ita_requests_total{route="/v1/jobs/{id}",status="404"}') == 1, "404s")
        t.check(val('codex_ita_requests_total{route="/v1/jobs",status="401"}') == 1, "401s")
        t.check(val('codex_ita_request_duration_seconds_count{route="/v1/jobs/{id}",status="200"}')
                == 3 and val('codex_ita_request_duration_seconds_bucket{route="/v1/jobs/{id}",'
                             'status="200",le="+Inf"}') == 3, "latency histogram")
        t.check(val('codex_jobs{status="LOST"}') == 2 and val('codex_jobs{status="RUNNING"}') == 1
                and val('codex_jobs{status="COMPLETED"}') == 1, "jobs by status")
        t.check(val('codex_job_step{job="demo-completed"}') == 200, "per-job step")
        t.check(val('codex_job_loss{job="run-stale"}') == 3.1, "per-job loss")
        t.check(val('codex_job_tokens_per_second{job="run-live"}') == 5432.1, "per-job tokens/s")
        t.check("# TYPE codex_ita_request_duration_seconds histogram" in text, "TYPE lines")
        bad = [l for l in text.splitlines() if l and not l.startswith("#") and
               not re.fullmatch(r'[a-z_]+(\{([a-z_]+="[^"]*",?)*\})? [0-9.e+-]+', l)]
        t.check(not bad, "every sample line well formed: %s" % bad[:3])
    with Server(ctx, "metrics_public: true\n") as s:
        st, _, _ = s.get("/metrics")
        t.check(st == 200, "metrics_public opens /metrics")


def case_shutdown(ctx, t):
    s = Server(ctx)
    with s:
        c = s.conn(timeout=10)
        c.request("GET", "/v1/jobs/run-live/events",
                  headers={"X-API-Key": s.keys["reader"], "Accept": "text/event-stream"})
        r = c.getresponse()
        got = []
        reader = threading.Thread(target=lambda: got.extend(sse_events(r, timeout=10)))
        reader.start()
        time.sleep(0.3)
        t0 = time.time()
        rc = s.stop(timeout=5)
        dt = time.time() - t0
        reader.join(5)
        c.close()
        t.check(rc == 0, "SIGTERM exits 0 (got %s)" % rc)
        t.check(dt < 2.0, "stops within 2 s (%.2f)" % dt)
        t.check(got and got[-1][0] == "end" and "shutdown" in got[-1][2],
                "the open stream is ended: %s" % got[-1:])
        with open(os.path.join(s.dir, "error.log")) as f:
            log = f.read()
        t.check("shutting down" in log and "stopped" in log, "shutdown logged")


def case_tls(ctx, t):
    import ssl
    d = tempfile.mkdtemp(prefix="ita-tls-")
    try:
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                            "1", "-subj", "/CN=codex-ita-test", "-keyout", key, "-out", cert],
                           capture_output=True, text=True)
        if not t.check(p.returncode == 0, "openssl made a test certificate: %s" % p.stderr[-200:]):
            return
        with Server(ctx, "tls:\n  cert: %s\n  key: %s\n" % (cert, key)) as s:
            tls = ssl.create_default_context(cafile=cert)
            tls.check_hostname = False  # the test certificate names no address
            s.tls = tls
            st, h, b = s.get("/v1/jobs/run-live", s.keys["reader"])
            t.check(st == 200 and json.loads(b)["id"] == "run-live", "HTTPS request answered")
            st, _, _ = s.get("/v1/jobs/run-live")
            t.check(st == 401, "keys still required over TLS")
            out = s.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=3)
            t.check(not out.startswith(b"HTTP/1.1 200"), "plain HTTP is not served on a TLS port")
        with Server(ctx, "tls:\n  cert: %s\n  key: %s\n" % (key, key)) as s:
            pass
        t.check(False, "a bad certificate must stop the start")
    except RuntimeError as e:
        t.check("tls.cert" in str(e), "a bad certificate is named: %s" % str(e)[-200:])
    finally:
        shutil.rmtree(d, ignore_errors=True)



# ---------------------------------------------------------------- submission and the scheduler view

FAKE_SLURM = {
    # each fake logs its argv, answers from files the test rewrites, and
    # fails when a ".fail" file holds the message
    "sbatch": """#!/bin/bash
echo "$@" >> "$FAKE/sbatch.log"
if [ -f "$FAKE/sbatch.fail" ]; then cat "$FAKE/sbatch.fail" >&2; exit 1; fi
n=$(cat "$FAKE/next_id" 2>/dev/null || echo 5000); echo $((n + 1)) > "$FAKE/next_id"
echo "$n"
""",
    "squeue": """#!/bin/bash
echo "$@" >> "$FAKE/squeue.log"
if [ -f "$FAKE/squeue.fail" ]; then cat "$FAKE/squeue.fail" >&2; exit 1; fi
cat "$FAKE/squeue.txt" 2>/dev/null; exit 0
""",
    "sacct": """#!/bin/bash
echo "$@" >> "$FAKE/sacct.log"
[ -f "$FAKE/sacct.txt" ] || { echo "sacct: accounting storage is disabled" >&2; exit 1; }
cat "$FAKE/sacct.txt"
""",
    "scancel": """#!/bin/bash
echo "$@" >> "$FAKE/scancel.log"
""",
}


class FakeSlurm:
    """sbatch/squeue/sacct/scancel stand-ins in a bin folder put first in
    codex-ita's PATH."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ita-fake-slurm-")
        os.makedirs(os.path.join(self.dir, "bin"))
        for name, text in FAKE_SLURM.items():
            p = os.path.join(self.dir, "bin", name)
            with open(p, "w") as f:
                f.write(text.replace("$FAKE", self.dir))
            os.chmod(p, 0o755)
        self.env = dict(os.environ, PATH=os.path.join(self.dir, "bin") + ":" + os.environ["PATH"])

    def put(self, name, text):
        write_atomic(os.path.join(self.dir, name), text)

    def drop(self, name):
        try:
            os.unlink(os.path.join(self.dir, name))
        except OSError:
            pass

    def log(self, name):
        try:
            with open(os.path.join(self.dir, name + ".log")) as f:
                return f.read().splitlines()
        except OSError:
            return []

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def submit_yaml(ctx, s, fake):
    train = os.path.join(os.path.dirname(ctx.ctl), "codex-train")
    return ("slurm:\n  refresh_s: 0.2\n  timeout_s: 10\nsubmit:\n  workdir: %s\n  train: %s\n"
            % (ctx.src, train))


def post(s, path, doc, key, raw=None):
    body = raw if raw is not None else json.dumps(doc).encode()
    st, h, b = s.get(path, key, method="POST", body=body,
                     headers={"Content-Type": "application/json"})
    try:
        return st, h, json.loads(b) if b else None, b
    except ValueError:
        return st, h, None, b


def case_submit(ctx, t):
    """POST /v1/jobs against fake Slurm commands: validation errors name the
    key, scopes, dry_run returns the script and writes nothing, a submission
    writes the run directory and records PENDING with the Slurm id, sbatch
    failures are 502 and recorded FAILED, sweeps become arrays, a second
    submission of an active job is a 409; the local launcher runs a real
    job to completion and a cancel stops another."""
    fake = FakeSlurm()
    with open(os.path.join(ctx.src, "configs", "demo-base.yaml")) as f:
        base = f.read()
    try:
        with Server(ctx, extra_yaml=submit_yaml(ctx, None, fake), env=fake.env) as s:
            sub, reader, boss = s.keys["submitter"], s.keys["reader"], s.keys["boss"]
            small = ["train.max_steps=10", "train.warmup_steps=2", "train.micro_batch_size=4"]

            def bad(doc, want, what, key=sub, raw=None, path="/v1/jobs?dry_run=true"):
                st, h, d, b = post(s, path, doc, key, raw=raw)
                is_problem(t, st, h, b, 400, what)
                t.check(d is not None and want in d.get("detail", ""),
                        "%s: the detail names %r (%s)" % (what, want, d and d.get("detail")))

            # scopes
            st, h, d, b = post(s, "/v1/jobs?dry_run=true", {"config": base}, reader)
            is_problem(t, st, h, b, 403, "a read key cannot submit")
            st, h, d, b = post(s, "/v1/jobs?dry_run=true", {"config": base}, None)
            is_problem(t, st, h, b, 401, "no key cannot submit")
            # dry run
            st, h, d, b = post(s, "/v1/jobs?dry_run=true",
                               {"config": base, "overrides": ["job.name=dry1"] + small}, sub)
            t.check(st == 200 and d.get("dry_run") is True and d["job"] == "dry1" and
                    "#SBATCH --job-name=dry1" in d["script"] and "--requeue" in d["script"],
                    "dry_run answers the batch script (%s %s)" % (st, b[:300]))
            t.check(d and ("/runs/dry1" in d["run_dir"] or d["run_dir"].startswith(s.runs)),
                    "the run directory is in the service's runs folder")
            t.check(not os.path.exists(os.path.join(s.runs, "dry1")), "dry_run writes nothing")
            t.check(fake.log("sbatch") == [], "dry_run runs no sbatch")
            st, h, d, b = post(s, "/v1/jobs?dry_run=true", {"config": base, "overrides": small},
                               boss)
            t.check(st == 200, "an admin key may submit too")
            # JSON configs are accepted as well as YAML
            st, h, d, b = post(s, "/v1/jobs?dry_run=1", {
                "config": json.dumps({"job": {"name": "js"}, "train": {"max_steps": 5},
                                      "slurm": {"ntasks_per_node": 1}})}, sub)
            t.check(st == 200 and d.get("job") == "js", "a JSON config (%s %s)" % (st, b[:200]))
            # validation, exactly as codex-train's
            bad({"config": base, "overrides": ["train.lrr=1"]}, "train.lr", "a typo in a key")
            bad({"config": "train:\n  lr: -1\n"}, "train.lr", "a value out of range")
            bad({"config": "train: [1, 2\n"}, "config", "YAML that does not parse")
            bad({"config": base, "overrides": ["train.global_batch_size=6",
                                               "slurm.ntasks_per_node=4"]},
                "global_batch_size", "a batch the ranks cannot split")
            bad({"config": base, "overrides": ["job.runs_dir=/tmp"]}, "job.runs_dir",
                "a runs_dir outside the service's")
            bad({"config": base, "overrides": ["train.output=/tmp/out.h5"]}, "train.output",
                "an output outside the runs directory")
            bad({"config": base, "overrides": ["train.output=runs/../../x.h5"]}, "train.output",
                "an output that climbs out with ..")
            bad({"config": base, "overrides": ["slurm.extra=[--output=/tmp/x.out]"]},
                "slurm.extra", "an sbatch option that moves the output")
            bad({"config": base, "overrides": ["job.name=../x"]}, "job.name", "a bad job name")
            bad(None, "JSON object", "a body that is not JSON", raw=b"not json")
            bad({"overrides": []}, "config", "no config")
            bad({"config": base, "priority": 1}, "priority", "an unknown field")
            bad({"config": base, "launcher": "pbs"}, "launcher", "an unknown launcher")
            bad({"config": base, "launcher": "local"}, "ranks", "local without ranks")
            bad({"config": base, "ranks": 2}, "ranks", "ranks without local")
            bad({"config": base}, "dry_run", "a bad dry_run", path="/v1/jobs?dry_run=maybe")
            t.check(fake.log("sbatch") == [] and
                    not any(os.path.exists(os.path.join(s.runs, n)) for n in ("js", "x")),
                    "nothing was submitted or written for bad input")
            # a real submission (to the fake sbatch)
            st, h, d, b = post(s, "/v1/jobs", {"config": base,
                                               "overrides": ["job.name=sub1"] + small}, sub)
            t.check(st == 201 and d["slurm_job_id"] == "5000" and d["status"] == "PENDING" and
                    h.get("location") == "/v1/jobs/sub1", "submitted: 201 with the Slurm id "
                    "and Location (%s %s)" % (st, b[:200]))
            calls = fake.log("sbatch")
            t.check(len(calls) == 1 and "--parsable" in calls[0] and
                    calls[0].endswith(os.path.join(s.runs, "sub1", "job.sbatch")),
                    "sbatch ran once on the run directory's script: %s" % calls)
            with open(os.path.join(s.runs, "sub1", "state.json")) as f:
                st1 = json.load(f)
            t.check(st1["status"] == "PENDING" and st1["slurm_job_id"] == "5000" and
                    st1["max_steps"] == 10, "state.json: PENDING with the Slurm id")
            t.check(os.path.exists(os.path.join(s.runs, "sub1", "submit.yaml")),
                    "the resolved config is in the run directory")
            with open(os.path.join(s.runs, "sub1", "events.jsonl")) as f:
                ev = [json.loads(l) for l in f]
            t.check(ev and ev[-1]["type"] == "submitted" and "submitter" in ev[-1]["message"],
                    "a 'submitted' event names the key")
            audit = [a for a in s.audit_lines() if a.get("action") == "submit"]
            keyid = sub.split("_")[1]
            t.check(audit and audit[-1]["key_id"] == keyid and audit[-1]["job"] == "sub1" and
                    audit[-1]["launched"] == "slurm 5000" and audit[-1]["status"] == 201,
                    "the audit line records the key id, the job and the Slurm id: %s"
                    % (audit[-1:]))
            st, h, d = s.json("/v1/jobs/sub1")
            t.check(st == 200 and d["status"] == "PENDING" and
                    d["scheduler"]["slurm_job_id"] == "5000", "GET shows it PENDING with its id")
            # the same job again while it is active
            st, h, d, b = post(s, "/v1/jobs", {"config": base,
                                               "overrides": ["job.name=sub1"] + small}, sub)
            is_problem(t, st, h, b, 409, "resubmitting an active job")
            # a sweep is one job array
            st, h, d, b = post(s, "/v1/jobs", {"config": base, "sweep": "train.lr=1e-3,2e-3",
                                               "overrides": ["job.name=sw"] + small}, sub)
            ids = [j["slurm_job_id"] for j in (d or {}).get("jobs", [])]
            t.check(st == 201 and ids == ["5001_0", "5001_1"], "a sweep: array tasks %s" % ids)
            st, h, d = s.json("/v1/jobs/sw-1")
            t.check(st == 200 and d["scheduler"]["array_job_id"] == "5001" and
                    d["scheduler"]["array_task_id"] == 1, "an array task's scheduler ids")
            # sbatch refuses
            fake.put("sbatch.fail", "sbatch: error: Batch job submission failed: Invalid account\n")
            st, h, d, b = post(s, "/v1/jobs", {"config": base,
                                               "overrides": ["job.name=refused"] + small}, sub)
            is_problem(t, st, h, b, 502, "sbatch failing")
            t.check(d and "Invalid account" in d.get("detail", ""), "502 carries sbatch's words")
            st, h, d = s.json("/v1/jobs/refused")
            t.check(st == 200 and d["status"] == "FAILED" and
                    "Invalid account" in d["state"]["error"]["message"],
                    "the refused job is recorded FAILED with the reason")
            fake.drop("sbatch.fail")
            # the local launcher: a real 1-rank codex-train
            st, h, d, b = post(s, "/v1/jobs", {"config": base, "launcher": "local", "ranks": 1,
                                               "overrides": ["job.name=loc"] + small}, sub)
            t.check(st == 201 and d["launcher"] == "local" and d["pid"] > 0,
                    "a local launch answers its pid (%s %s)" % (st, b[:200]))
            end = time.time() + 90
            while time.time() < end:
                st, h, d = s.json("/v1/jobs/loc")
                if d and d["status"] in ("COMPLETED", "FAILED", "LOST"):
                    break
                time.sleep(0.5)
            t.check(d and d["status"] == "COMPLETED" and d["state"]["step"] == 10,
                    "the local job completes (%s)" % (d and d["status"]))
            st, h, d, b = post(s, "/v1/jobs", {"config": base, "launcher": "local", "ranks": 1,
                                               "overrides": ["job.name=loc2",
                                                             "train.max_steps=100000000"]}, sub)
            t.check(st == 201, "a long local job starts")
            pid = d and d["pid"]
            end = time.time() + 60
            while time.time() < end:
                st, h, d = s.json("/v1/jobs/loc2")
                if d and d["status"] == "RUNNING":
                    break
                time.sleep(0.3)
            st, h, d, b = post(s, "/v1/jobs/loc2/cancel", {}, sub)
            t.check(st == 202 and d["status"] == "CANCELLED", "cancel a local job: 202")
            end = time.time() + 30
            alive = True
            while time.time() < end and alive:
                try:
                    os.kill(pid, 0)
                    with open("/proc/%d/stat" % pid) as f:
                        alive = f.read().split()[2] != "Z"
                except OSError:
                    alive = False
                time.sleep(0.3)
            t.check(not alive, "the local launcher has stopped")
            end = time.time() + 10
            while time.time() < end:
                st, h, d = s.json("/v1/jobs/loc2")
                if d["state"]["status"] == "CANCELLED":
                    break
                time.sleep(0.3)
            t.check(d["status"] == "CANCELLED" and d["state"]["status"] == "CANCELLED",
                    "the cancelled local job stays CANCELLED (%s)" % d["state"]["status"])
    finally:
        fake.close()


def sched_job(runs, name, slurm_id, status="RUNNING", age_s=3600):
    os.makedirs(os.path.join(runs, name))
    t = time.time() - age_s
    upd = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))
    st = {"version": 1, "job": name, "status": status, "step": 5, "max_steps": 100,
          "loss": 2.0, "slurm_job_id": slurm_id, "started_at": "2026-11-24T06:00:00.000Z",
          "updated_at": upd, "finished_at": None, "error": None}
    write_atomic(os.path.join(runs, name, "state.json"), json.dumps(st) + "\n")


def case_sched(ctx, t):
    """The scheduler view against fake squeue/sacct: Slurm's state, reason,
    nodes and array task in GET /v1/jobs/{id} and the list; a stale
    heartbeat is LOST only when no scheduler knows the job; Slurm's TIMEOUT,
    CANCELLED and NODE_FAIL show over a stale RUNNING; squeue runs per
    refresh, not per request; a failing squeue keeps the last view and says
    why; cancel scancels and records CANCELLED, again after the job stopped."""
    fake = FakeSlurm()
    runs = tempfile.mkdtemp(prefix="ita-sched-")
    try:
        shutil.copytree(ctx.fixtures, runs, dirs_exist_ok=True, symlinks=True)
        jobs = {"sl-run": "7001", "sl-pend": "7002", "sl-timeout": "7003", "sl-nodefail": "7004",
                "sl-gone": "7005", "sl-cancelled": "7007", "sl-arr": "7010_1",
                "sl-arrpend": "7011_2"}
        for name, sid in jobs.items():
            sched_job(runs, name, sid, status="PENDING" if name == "sl-arrpend" else "RUNNING")
        sched_job(runs, "sl-fresh", "7006", age_s=1)
        sched_job(runs, "sl-sse", "7020", age_s=1)
        # a local launch whose launcher died before codex-train wrote anything
        sched_job(runs, "loc-dead", None, status="SUBMITTED", age_s=1)
        gone = subprocess.Popen(["true"])
        gone.wait()
        write_atomic(os.path.join(runs, "loc-dead", "launcher.pid"), "%d\n" % gone.pid)
        sched_job(runs, "loc-alive", None, status="RUNNING", age_s=3600)
        write_atomic(os.path.join(runs, "loc-alive", "launcher.pid"), "%d\n" % os.getpid())
        fake.put("squeue.txt", "7001|RUNNING|None|node1\n7002|PENDING|Priority|\n"
                 "7020|RUNNING|None|node1\n"
                 "7003|TIMEOUT|TimeLimit|node1\n7007|CANCELLED|None|node1\n"
                 "7010_1|RUNNING|None|node2\n7011_[2-3%1]|PENDING|JobArrayTaskLimit|\n")
        fake.put("sacct.txt", "7004|NODE_FAIL|0:0|node2\n7004.batch|CANCELLED|0:15|node2\n")
        with Server(ctx, live_runs=runs, extra_yaml=submit_yaml(ctx, None, fake),
                    env=fake.env) as s:
            def view(name):
                st, h, d = s.json("/v1/jobs/" + name)
                return d or {}

            end = time.time() + 10
            while time.time() < end and (view("sl-run").get("scheduler") or {}).get("known") is None:
                time.sleep(0.1)
            d = view("sl-run")
            sc = d.get("scheduler") or {}
            t.check(d.get("status") == "RUNNING" and d.get("lost") is False and
                    sc.get("state") == "RUNNING" and sc.get("nodes") == "node1" and
                    sc.get("slurm_job_id") == "7001" and sc.get("source") == "squeue",
                    "a stale heartbeat of a job Slurm runs is RUNNING, not LOST: %s" % d)
            t.check(isinstance(sc.get("view_age_s"), (int, float)) and sc["view_age_s"] < 5 and
                    sc.get("error") is None, "the view's age is reported: %s" % sc.get("view_age_s"))
            d = view("sl-pend")
            t.check(d.get("status") == "PENDING" and d["scheduler"]["reason"] == "Priority" and
                    not d["lost"], "PENDING with Slurm's reason")
            d = view("sl-timeout")
            t.check(d.get("status") == "TIMEOUT" and not d["lost"] and
                    d["state"]["status"] == "RUNNING", "TIMEOUT shows over a stale RUNNING")
            d = view("sl-cancelled")
            t.check(d.get("status") == "CANCELLED", "CANCELLED shows over a stale RUNNING")
            d = view("sl-nodefail")
            t.check(d.get("status") == "FAILED" and "NODE_FAIL" in (d.get("detail") or "") and
                    d["scheduler"]["source"] == "sacct" and d["scheduler"]["exit_code"] == "0:0",
                    "NODE_FAIL from sacct shows FAILED with the reason: %s" % d.get("detail"))
            d = view("sl-gone")
            t.check(d.get("status") == "LOST" and d["lost"] and d["scheduler"]["known"] is False,
                    "a stale job no scheduler knows is LOST")
            d = view("sl-fresh")
            t.check(d.get("status") == "RUNNING" and not d["lost"],
                    "an unknown job with a fresh heartbeat is not LOST")
            d = view("sl-arr")
            t.check(d.get("status") == "RUNNING" and d["scheduler"]["array_task_id"] == 1 and
                    d["scheduler"]["nodes"] == "node2", "an array task's line")
            d = view("sl-arrpend")
            t.check(d.get("status") == "PENDING" and d["scheduler"]["array_job_id"] == "7011" and
                    d["scheduler"]["reason"] == "JobArrayTaskLimit",
                    "a pending array's range line answers its task")
            d = view("loc-dead")
            t.check(d.get("status") == "LOST" and "launcher" in (d.get("detail") or ""),
                    "a local job whose launcher died without an end is LOST: %s" % d.get("detail"))
            d = view("loc-alive")
            t.check(d.get("status") == "RUNNING" and not d["lost"],
                    "a stale local job whose launcher runs is not LOST")
            d = view("run-stale")
            t.check(d.get("status") == "LOST" and d.get("scheduler") is None,
                    "a stale job without a Slurm id or launcher is LOST")
            st, h, d = s.json("/v1/jobs?status=TIMEOUT,LOST&limit=500")
            got = {j["id"]: j for j in d["jobs"]}
            t.check("sl-timeout" in got and "sl-gone" in got and "run-stale" in got and
                    "sl-run" not in got, "the list filters on the merged status: %s" % sorted(got))
            t.check(got.get("sl-timeout", {}).get("scheduler", {}).get("state") == "TIMEOUT",
                    "list items carry the scheduler view")
            # an event stream ends when Slurm ends the job, with no other request
            c = s.conn(timeout=20)
            c.request("GET", "/v1/jobs/sl-sse/events",
                      headers={"X-API-Key": s.keys["reader"], "Accept": "text/event-stream"})
            r = c.getresponse()
            with open(os.path.join(fake.dir, "squeue.txt")) as fh:
                text = fh.read()
            fake.put("squeue.txt", text.replace("7020|RUNNING", "7020|TIMEOUT"))
            evs = sse_events(r, stop_after=lambda e: e[-1][0] == "end", timeout=15)
            c.close()
            states = [json.loads(e[2]).get("status") for e in evs if e[0] == "state"]
            t.check(evs and evs[-1][0] == "end" and states[-1:] == ["TIMEOUT"],
                    "the stream of a job Slurm timed out ends: %s" % [e[0] for e in evs])
            # squeue runs per refresh, not per request
            before = len(fake.log("squeue"))
            t0 = time.time()
            for _ in range(300):
                s.get("/v1/jobs/sl-run", s.keys["reader"])
            dt = time.time() - t0
            calls = len(fake.log("squeue")) - before
            t.check(calls <= dt / 0.2 + 3, "%d squeue calls for 300 requests in %.1fs" % (calls, dt))
            t.check(all("--array" in c and "--states=all" in c for c in fake.log("squeue")),
                    "squeue is asked once for every job, array tasks apart")
            t.check(all("7001" not in c for c in fake.log("sacct")),
                    "sacct is asked only about jobs squeue no longer holds")
            # the view follows Slurm
            fake.put("squeue.txt", "7001|RUNNING|None|node1\n7002|RUNNING|None|node3\n")
            end = time.time() + 5
            while time.time() < end and view("sl-pend").get("status") != "RUNNING":
                time.sleep(0.1)
            d = view("sl-pend")
            t.check(d.get("status") == "RUNNING" and d["scheduler"]["nodes"] == "node3",
                    "the view follows squeue")
            t.check(view("sl-timeout").get("status") == "TIMEOUT",
                    "an ended job's answer is kept once squeue forgets it")
            # squeue failing: the last view stays, with the error
            fake.put("squeue.fail", "squeue: error: slurm_load_jobs: Unable to contact slurm controller\n")
            end = time.time() + 5
            while time.time() < end and view("sl-run")["scheduler"].get("error") is None:
                time.sleep(0.1)
            d = view("sl-run")
            t.check("Unable to contact" in (d["scheduler"].get("error") or "") and
                    d["status"] == "RUNNING", "a failing squeue: last view kept, error shown")
            time.sleep(0.5)
            t.check(view("sl-run")["scheduler"]["view_age_s"] >= 0.4, "and the view ages")
            fake.drop("squeue.fail")
            # cancel
            st, h, d, b = post(s, "/v1/jobs/sl-run/cancel", {}, s.keys["reader"])
            is_problem(t, st, h, b, 403, "a read key cannot cancel")
            st, h, d, b = post(s, "/v1/jobs/nope/cancel", {}, s.keys["submitter"])
            is_problem(t, st, h, b, 404, "cancelling an unknown job")
            st, h, d, b = post(s, "/v1/jobs/sl-timeout/cancel", {}, s.keys["submitter"])
            is_problem(t, st, h, b, 409, "cancelling a job that ended")
            st, h, d, b = post(s, "/v1/jobs/sl-run/cancel", {}, s.keys["submitter"])
            t.check(st == 202 and d["status"] == "CANCELLED" and d["slurm_job_id"] == "7001",
                    "cancel: 202 (%s %s)" % (st, b[:200]))
            t.check(fake.log("scancel")[-1:] == ["7001"], "scancel 7001 ran: %s" % fake.log("scancel"))
            with open(os.path.join(runs, "sl-run", "state.json")) as f:
                t.check(json.load(f)["status"] == "CANCELLED", "state.json records CANCELLED")
            with open(os.path.join(runs, "sl-run", "events.jsonl")) as f:
                ev = [json.loads(l) for l in f]
            t.check(ev[-1]["type"] == "cancelled" and "submitter" in ev[-1]["message"],
                    "a 'cancelled' event names the key")
            aud = [a for a in s.audit_lines() if a.get("action") == "cancel" and a["status"] == 202]
            t.check(aud and aud[-1]["job"] == "sl-run" and aud[-1]["launched"] == "slurm 7001",
                    "the cancel is in the audit log")
            # codex-train, on its way out, writes RUNNING once more; Slurm then ends the job
            set_state(runs, "sl-run", status="RUNNING")
            fake.put("squeue.txt", "7001|CANCELLED|None|node1\n")
            end = time.time() + 10
            final = None
            while time.time() < end:
                with open(os.path.join(runs, "sl-run", "state.json")) as f:
                    final = json.load(f)["status"]
                if final == "CANCELLED":
                    break
                time.sleep(0.2)
            t.check(final == "CANCELLED", "CANCELLED is recorded again once the job stopped")
    finally:
        fake.close()
        shutil.rmtree(runs, ignore_errors=True)

CASES = {
    "config": case_config,
    "keys_cli": case_keys_cli,
    "auth": case_auth,
    "trace": case_trace,
    "jobs": case_jobs,
    "robustness": case_robustness,
    "sse": case_sse,
    "prometheus": case_prometheus,
    "shutdown": case_shutdown,
    "tls": case_tls,
    "live_job": case_live_job,
    "hygiene": case_hygiene,
    "tests_run": case_tests_run,
    "submit": case_submit,
    "sched": case_sched,
}


def case_hostile(ctx, t):
    """Issue 18: a second server on the port, FIFOs in the runs directory.
    Each attack is bounded by a socket or process timeout."""
    with Server(ctx, "threads: 1\n") as s:
        for name in ("fifo-state",):
            os.makedirs(os.path.join(s.runs, name))
            os.mkfifo(os.path.join(s.runs, name, "state.json"))
        for f in ("metrics.jsonl", "events.jsonl", "launcher.pid"):
            p = os.path.join(s.runs, "run-live", f)
            if os.path.exists(p):
                os.unlink(p)
            os.mkfifo(p)
        os.makedirs(os.path.join(s.runs, "run-live", "checkpoints"), exist_ok=True)
        latest = os.path.join(s.runs, "run-live", "checkpoints", "latest")
        if os.path.exists(latest):
            os.unlink(latest)
        os.mkfifo(latest)
        k = s.keys["reader"]
        for path in ("/v1/jobs/fifo-state", "/v1/jobs/run-live", "/v1/jobs/run-live/metrics",
                     "/v1/jobs/run-live/events", "/v1/jobs/run-live/checkpoints", "/v1/jobs"):
            try:
                st, _, _ = s.get(path, k)
            except (socket.timeout, TimeoutError):
                st = "timeout"
            t.check(st in (200, 404), "a FIFO does not block %s (%s)" % (path, st))
        st, _, _ = s.get("/healthz")
        t.check(st == 200, "the worker is not blocked by a FIFO")
        # HTTP/2 cleartext: neither an Upgrade nor the prior-knowledge preface.
        out = s.raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings"
                    b"\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
                    b"Connection: close\r\n\r\n", read_timeout=10)
        t.check(out.startswith(b"HTTP/1.1 200"), "no h2c upgrade on the plain port: %r" % out[:20])
        out = s.raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00",
                    read_timeout=10)
        t.check(out == b"" or out.startswith(b"HTTP/1.1 4"),
                "no h2 prior knowledge on the plain port: %r" % out[:20])
        # Amplification: a body full of findings answers a bounded report.
        key = "AKIA" + "Q3EGRT7P" + "LXW5M2ND"   # fake, pattern-valid, built at run time
        text = ("aws_access_key_id = '%s'\n" % key * 3000).encode()
        st, _, body = s.get("/v1/hygiene/scan?path=a.txt", s.keys["reader"], method="POST",
                            body=text, headers={"Content-Type": "text/plain"})
        doc = json.loads(body) if st == 200 else {}
        t.check(st == 200 and len(doc.get("findings", [])) == 1000 and
                doc.get("findings_total", 0) > 1000 and doc.get("truncated") is True,
                "hygiene findings capped with a truncated flag (%s, %d listed of %s, %d bytes)"
                % (st, len(doc.get("findings", [])), doc.get("findings_total"), len(body)))
        # A second codex-ita on the same port refuses to start.
        cfg2 = os.path.join(s.dir, "ita2.yaml")
        with open(s.cfg) as f:
            text = f.read().replace("port: 0", "port: %d" % s.port)
        with open(cfg2, "w") as f:
            f.write(text.replace("audit.jsonl", "audit2.jsonl").replace("error.log", "e2.log"))
        for threads in ("1", "2"):
            with open(cfg2, "w") as f:
                f.write(text.replace("threads: 1", "threads: " + threads)
                        .replace("audit.jsonl", "audit2.jsonl").replace("error.log", "e2.log"))
            try:
                p = subprocess.run([ctx.ita, "--config", cfg2], capture_output=True, text=True,
                                   timeout=20)
                rc, err = p.returncode, p.stderr
            except subprocess.TimeoutExpired:
                rc, err = "still running", ""
            t.check(rc not in (0, "still running") and "in use" in err,
                    "a second server (%s threads) on the port refuses: %s %r"
                    % (threads, rc, err[-200:]))
        st, _, _ = s.get("/healthz")
        t.check(st == 200, "the first server still serves")


CASES["hostile"] = case_hostile


def proc_cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def case_exhaustion(ctx, t):
    """Issue 18: out of descriptors, accept() must not spin; max_connections
    is derived from RLIMIT_NOFILE."""
    import resource
    with Server(ctx, "threads: 1\n") as s:
        hard = resource.prlimit(s.proc.pid, resource.RLIMIT_NOFILE)[1]
        resource.prlimit(s.proc.pid, resource.RLIMIT_NOFILE, (48, hard))
        socks = []
        for _ in range(80):
            try:
                socks.append(socket.create_connection(("127.0.0.1", s.port), timeout=5))
            except OSError:
                break
        time.sleep(0.5)
        c0 = proc_cpu_s(s.proc.pid)
        time.sleep(3)
        used = proc_cpu_s(s.proc.pid) - c0
        t.check(used < 0.6, "no busy accept loop at EMFILE: %.2f s CPU in 3 s (%d clients)"
                % (used, len(socks)))
        for c in socks:
            c.close()
        resource.prlimit(s.proc.pid, resource.RLIMIT_NOFILE, (1024, hard))
        st = None
        for _ in range(50):
            try:
                st, _, _ = s.get("/healthz")
                break
            except OSError:
                time.sleep(0.2)
        t.check(st == 200, "served again once descriptors are free (%s)" % st)

    def low_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

    with Server(ctx, "threads: 2\nmax_connections: 100000\n", preexec=low_limit) as s:
        st, _, _ = s.get("/healthz")
        with open(os.path.join(s.dir, "error.log")) as f:
            log = f.read()
        t.check(st == 200 and "max_connections 100000 per thread lowered to" in log,
                "max_connections derived from the descriptor limit: %r" % log[-300:])


CASES["exhaustion"] = case_exhaustion


def case_monitoring(ctx, t):
    """Issue 19: /metrics passes `promtool check metrics`; codex_job_info
    carries each job's status and its scheduler's state (from fake squeue);
    the last and best validation loss, learning rate and ETA per job; the
    heartbeat's age only for jobs still active (or LOST). The example alert
    rules of docs/monitoring pass `promtool check rules` and their unit
    tests (`promtool test rules`)."""
    promtool = shutil.which("promtool")
    if not t.check(promtool, "promtool is installed (Debian package prometheus)"):
        return
    fake = FakeSlurm()
    runs = tempfile.mkdtemp(prefix="ita-mon-")
    try:
        shutil.copytree(ctx.fixtures, runs, dirs_exist_ok=True, symlinks=True)
        set_state(runs, "run-live", updated_at=now_rfc3339(), lr=0.0004, eta_s=30.5,
                  last_eval={"step": 100, "val_loss": 2.5},
                  best_eval={"step": 80, "val_loss": 2.25})
        sched_job(runs, "sl-pend", "7002", status="PENDING", age_s=1)
        fake.put("squeue.txt", "7002|PENDING|Priority|\n")
        fake.put("sacct.txt", "")
        with Server(ctx, live_runs=runs, extra_yaml=submit_yaml(ctx, None, fake),
                    env=fake.env) as s:
            end = time.time() + 20  # hang guard: waits for the scheduler view, not a race
            text = ""
            while time.time() < end:
                st, h, b = s.get("/metrics", s.keys["reader"])
                text = b.decode()
                if 'scheduler_state="PENDING"' in text:
                    break
                time.sleep(0.1)
            p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                               text=True)
            t.check(p.returncode == 0, "promtool check metrics: %s%s" % (p.stdout, p.stderr))

            def val(pattern):
                m = re.search("^" + re.escape(pattern) + r" ([0-9.e+-]+)$", text, re.M)
                return float(m.group(1)) if m else None
            st, _, jobs = s.json("/v1/jobs?limit=100")
            listed = {j["id"]: j["status"] for j in (jobs or {}).get("jobs", [])}
            t.check(len(listed) >= 7, "jobs listed: %s" % listed)
            for job, status in listed.items():
                sched = "PENDING" if job == "sl-pend" else "local"
                t.check(val('codex_job_info{job="%s",status="%s",scheduler_state="%s"}'
                            % (job, status, sched)) == 1, "codex_job_info of %s" % job)
            t.check(len(re.findall(r"^codex_job_info\{", text, re.M)) == len(listed),
                    "one info series a job")
            t.check(val('codex_job_val_loss{job="run-live"}') == 2.5, "last validation loss")
            t.check(val('codex_job_best_val_loss{job="run-live"}') == 2.25, "best validation loss")
            t.check(val('codex_job_learning_rate{job="run-live"}') == 0.0004, "learning rate")
            t.check(val('codex_job_eta_seconds{job="run-live"}') == 30.5, "ETA of a running job")
            t.check(val('codex_job_eta_seconds{job="demo-completed"}') == 0, "ETA of a completed one")
            ages = set(re.findall(r'^codex_job_heartbeat_age_seconds\{job="([^"]+)"\}', text, re.M))
            want = {j for j, st in listed.items()
                    if st in ("SUBMITTED", "PENDING", "RUNNING", "PREEMPTED", "LOST")}
            t.check(ages == want and "demo-completed" not in ages,
                    "heartbeat age only for active jobs: %s, want %s" % (sorted(ages), sorted(want)))
    finally:
        fake.close()
        shutil.rmtree(runs, ignore_errors=True)
    docs = os.path.join(ctx.src, "docs", "monitoring")
    p = subprocess.run([promtool, "check", "rules", "alerts.yml"], cwd=docs, capture_output=True,
                       text=True)
    t.check(p.returncode == 0 and "3 rules" in p.stdout,
            "promtool check rules: %s%s" % (p.stdout, p.stderr))
    p = subprocess.run([promtool, "test", "rules", "alerts_test.yml"], cwd=docs,
                       capture_output=True, text=True)
    t.check(p.returncode == 0, "promtool test rules (LOST, FAILED, throughput halved): %s%s"
            % (p.stdout, p.stderr))


CASES["monitoring"] = case_monitoring


def main():
    if len(sys.argv) != 5 or sys.argv[4] not in CASES:
        print(__doc__)
        return 2
    ctx = Ctx(*sys.argv[1:4])
    t = T()
    try:
        CASES[sys.argv[4]](ctx, t)
    except Exception as e:  # a crash is a failure, reported with its cause
        import traceback
        traceback.print_exc()
        t.check(False, "case raised %r" % e)
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
