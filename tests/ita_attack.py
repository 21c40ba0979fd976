"""codex-ita under attack (issue 18): each case reproduces an attack's
symptom against a real server and checks the bound that holds it. Nothing
here depends on one request still being busy when the next arrives: the
worker pool is filled through a test-only hold file (CU_ITA_POOL_HOLD) and
its state read from /metrics; timeouts are checked as "closed within a
generous bound", never as "open for exactly so long".

usage: ita_attack.py CODEX_ITA CODEXCTL SOURCE_DIR CASE

Cases:
  pool          pool.threads 1, pool.queue 1: with jobs held, two scans are
                admitted and the third is answered 503 + Retry-After at once;
                /healthz answers meanwhile; released, both admitted scans 200
  pool_submit   pool.threads 1, queue 0: with the pool held, submit, cancel
                and the blocking MCP tools are refused 503 + Retry-After (MCP:
                a JSON-RPC busy error for the request's id); a submission whose
                sbatch blocks on the test's FIFO leaves /healthz answering
  slow_header   a client trickling header bytes is closed after
                timeouts.header_s (it would otherwise hold the connection)
  write_timeout a client that pipelines requests for large answers and reads
                nothing is closed after timeouts.write_s
  reserve       max_connections filled by idle connections: /healthz on a
                new connection still answers (the oldest idle one is evicted)
  rapid_reset   HTTP/2 over TLS: a connection opening and resetting streams
                past http2.max_requests_per_s is closed
  job_index     5,000 job directories: all listed through the pages; new,
                removed and rewritten jobs show as documented
  smuggling     HTTP/1.1 requests framed ambiguously (two Content-Length,
                Content-Length with Transfer-Encoding, two Transfer-Encoding,
                a folded header line) are answered 400 and the connection
                closed; the request pipelined behind is never served. HTTP/2:
                h2o resets content-length/DATA mismatches and transfer-encoding
  renegotiation TLS 1.2 client-initiated renegotiation (openssl s_client R)
                gets no second handshake
  audit         audit.max_mb rotates the log keeping audit.keep files;
                401 answers past audit.rejected_per_s are summed in aggregate
                lines and every one is accounted for
"""
import json
import os
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks as T  # noqa: E402
from ita_server import Ctx, FakeSlurm, Server  # noqa: E402


def metric(s, name):
    st, _, body = s.get("/metrics", s.keys["reader"])
    if st != 200:
        return None
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def wait_for(pred, timeout=30, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return None


def closed_within(sock, timeout):
    """Reads until EOF or reset; True when the server ended it in time."""
    sock.settimeout(timeout)
    end = time.time() + timeout
    try:
        while time.time() < end:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


# ---------------------------------------------------------------- the worker pool

def case_pool(ctx, t):
    hold = tempfile.mktemp(prefix="ita-pool-hold-")
    open(hold, "w").close()
    env = dict(os.environ, CU_ITA_POOL_HOLD=hold)
    try:
        with Server(ctx, "pool:\n  threads: 1\n  queue: 1\n", env=env) as s:
            key = s.keys["reader"]
            results = {}

            def scan(i):
                results[i] = s.get("/v1/hygiene/scan", key, method="POST",
                                   body=b"contact: alice@example.org\n")

            threads = []
            for i in range(2):
                th = threading.Thread(target=scan, args=(i,))
                th.start()
                threads.append(th)
            # both admitted (one held running, one waiting): read, not raced
            n = wait_for(lambda: metric(s, "codex_ita_pool_jobs") == 2, timeout=30)
            t.check(n, "two scans admitted to the pool (threads 1 + queue 1)")
            t0 = time.time()
            st, h, body = s.get("/v1/hygiene/scan", key, method="POST", body=b"x\n")
            t.check(st == 503 and h.get("retry-after") == "1",
                    "the third scan is refused 503 with Retry-After: %s %s" % (st, h))
            t.check(time.time() - t0 < 10, "the refusal is immediate, not queued")
            t.check(b"worker pool is full" in body, "the problem says why")
            st, _, _ = s.get("/healthz")
            t.check(st == 200, "/healthz answers while the pool is full")
            t.check(metric(s, "codex_ita_pool_refused_total") == 1, "the refusal is counted")
            os.unlink(hold)
            for th in threads:
                th.join(60)
            ok = [results.get(i, (None,))[0] for i in range(2)]
            t.check(ok == [200, 200], "both admitted scans answer 200 once released: %s" % ok)
            body = json.loads(results[0][2])
            t.check("findings_total" in body, "the scan ran: %s" % sorted(body)[:8])
            t.check(wait_for(lambda: metric(s, "codex_ita_pool_jobs") == 0, timeout=30),
                    "the pool is empty again")
    finally:
        if os.path.exists(hold):
            os.unlink(hold)


# ---------------------------------------------------------------- sbatch, scancel and MCP tools in the pool

# A fake sbatch that opens a FIFO of the test's (when there is one), logs its
# call, and waits for a line on it (hang guard 100 s): "sbatch is running"
# is read from its log, and it ends when the test says so.
SLOW_SBATCH = """#!/bin/bash
if [ -p "$FAKE/sbatch.fifo" ]; then exec 3<>"$FAKE/sbatch.fifo"; fi
echo "$@" >> "$FAKE/sbatch.log"
if [ -p "$FAKE/sbatch.fifo" ]; then read -t 100 -u 3 line; fi
n=$(cat "$FAKE/next_id" 2>/dev/null || echo 5000); echo $((n + 1)) > "$FAKE/next_id"
echo "$n"
"""


def post_long(s, path, doc, key, out, name):
    """POSTs doc in a thread of its own (hang guard 120 s) into out[name]."""
    def run():
        c = s.conn(timeout=120)
        try:
            c.request("POST", path, body=json.dumps(doc).encode(),
                      headers={"X-API-Key": key, "Content-Type": "application/json"})
            r = c.getresponse()
            out[name] = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        except Exception as e:  # noqa: BLE001 - reported by the check that reads out
            out[name] = (None, {}, repr(e).encode())
        finally:
            c.close()
    th = threading.Thread(target=run)
    th.start()
    return th


def mcp_call(s, key, rid, tool, args):
    body = json.dumps({"jsonrpc": "2.0", "id": rid, "method": "tools/call",
                       "params": {"name": tool, "arguments": args}}).encode()
    st, h, b = s.get("/mcp", key, method="POST", body=body,
                     headers={"Content-Type": "application/json",
                              "Accept": "application/json, text/event-stream"})
    try:
        return st, h, json.loads(b)
    except ValueError:
        return st, h, None


def is_busy_rpc(t, st, h, d, rid, what):
    err = (d or {}).get("error") or {}
    t.check(st == 503 and h.get("retry-after") == "1" and d and d.get("id") == rid and
            d.get("jsonrpc") == "2.0" and err.get("code") == -32050 and
            (err.get("data") or {}).get("retryAfter") == 1 and "busy" in err.get("message", ""),
            "%s: HTTP 503 + Retry-After and a JSON-RPC busy error for id %r (%s %s %s)"
            % (what, rid, st, h.get("retry-after"), d))


def case_pool_submit(ctx, t):
    """pool.threads 1, queue 0, one event loop. Held: submit, cancel and the
    MCP tools that block are refused at once (503 + Retry-After; MCP: a
    JSON-RPC error for the request's id) and nothing reaches sbatch, while
    /healthz, listings and tools/list answer. A submission whose sbatch does
    not return: /healthz and the job's status answer meanwhile; it ends 201
    when sbatch does; the cancel runs scancel."""
    fake = FakeSlurm()
    sb = os.path.join(fake.dir, "bin", "sbatch")
    with open(sb, "w") as f:
        f.write(SLOW_SBATCH.replace("$FAKE", fake.dir))
    hold = tempfile.mktemp(prefix="ita-pool-hold-")
    open(hold, "w").close()
    env = dict(fake.env, CU_ITA_POOL_HOLD=hold)
    with open(os.path.join(ctx.src, "configs", "demo-base.yaml")) as f:
        base = f.read()
    small = ["train.max_steps=10", "train.warmup_steps=2", "train.micro_batch_size=4"]
    train = os.path.join(os.path.dirname(ctx.ctl), "codex-train")
    yaml = ("threads: 1\npool:\n  threads: 1\n  queue: 0\n"
            "slurm:\n  refresh_s: 0.2\n  timeout_s: 120\n"
            "submit:\n  workdir: %s\n  train: %s\n" % (ctx.src, train))
    out = {}
    try:
        with Server(ctx, yaml, env=env) as s:
            sub, reader = s.keys["submitter"], s.keys["reader"]
            # -- the pool's one place taken by a held dry run
            th = post_long(s, "/v1/jobs?dry_run=true",
                           {"config": base, "overrides": ["job.name=held"] + small}, sub, out,
                           "held")
            t.check(wait_for(lambda: metric(s, "codex_ita_pool_jobs") == 1, timeout=30),
                    "the dry run is admitted to the pool (and held there)")
            st, h, d = s.json("/v1/jobs", sub, method="POST", body=json.dumps(
                {"config": base, "overrides": ["job.name=full1"] + small}).encode(),
                headers={"Content-Type": "application/json"})
            t.check(st == 503 and h.get("retry-after") == "1" and d and
                    "worker pool is full" in d.get("detail", ""),
                    "a submission is refused 503 + Retry-After at once: %s %s" % (st, d))
            st, h, d = s.json("/v1/jobs/demo-completed/cancel", sub, method="POST", body=b"")
            t.check(st == 503 and h.get("retry-after") == "1",
                    "a cancel is refused 503 + Retry-After: %s %s" % (st, d))
            st, h, d = mcp_call(s, sub, 7, "submit_job", {"config": base})
            is_busy_rpc(t, st, h, d, 7, "MCP submit_job")
            st, h, d = mcp_call(s, sub, "c8", "cancel_job", {"job": "demo-completed"})
            is_busy_rpc(t, st, h, d, "c8", "MCP cancel_job")
            st, h, d = mcp_call(s, reader, 9, "hygiene_scan", {"text": "a@example.org"})
            is_busy_rpc(t, st, h, d, 9, "MCP hygiene_scan")
            st, h, d = mcp_call(s, sub, 10, "run_tests", {"command": "none"})
            is_busy_rpc(t, st, h, d, 10, "MCP run_tests")
            st, _, d = s.json("/mcp", reader, method="POST", body=json.dumps(
                {"jsonrpc": "2.0", "id": 11, "method": "tools/list"}).encode(),
                headers={"Content-Type": "application/json"})
            t.check(st == 200 and len(d["result"]["tools"]) >= 9,
                    "tools/list (no blocking work) still answers: %s" % st)
            st, _, d = mcp_call(s, reader, 12, "job_status", {"job": "demo-completed"})
            t.check(st == 200 and d["result"]["structuredContent"]["id"] == "demo-completed",
                    "job_status (no blocking work) still answers: %s" % st)
            st, _, _ = s.get("/healthz")
            t.check(st == 200, "/healthz answers while the pool is full")
            st, _, _ = s.get("/v1/jobs", reader)
            t.check(st == 200, "the job listing answers while the pool is full")
            t.check(fake.log("sbatch") == [] and fake.log("scancel") == [],
                    "nothing refused reached sbatch or scancel")
            t.check(metric(s, "codex_ita_pool_refused_total") == 6, "six refusals counted")
            audit = [a for a in s.audit_lines() if a.get("status") == 503]
            t.check(any(a.get("action") == "mcp tools/call submit_job" for a in audit),
                    "the refused MCP call is audited with its tool")
            os.unlink(hold)
            th.join(120)
            st, _, b = out.get("held", (None, {}, b""))
            t.check(st == 200 and json.loads(b).get("dry_run") is True,
                    "released, the held dry run answers 200: %s %s" % (st, b[:200]))
            st, _, d = mcp_call(s, sub, 13, "submit_job",
                                {"config": base, "overrides": ["job.name=mcpdry"] + small})
            sc = ((d or {}).get("result") or {}).get("structuredContent") or {}
            t.check(st == 200 and sc.get("job") == "mcpdry" and "#SBATCH" in sc.get("script", ""),
                    "an MCP submit_job runs in the pool once there is room: %s %s" % (st, d))

            # -- sbatch that does not return until the test says so
            fifo = os.path.join(fake.dir, "sbatch.fifo")
            os.mkfifo(fifo)
            th = post_long(s, "/v1/jobs", {"config": base,
                                           "overrides": ["job.name=slow1"] + small}, sub, out,
                           "slow")
            t.check(wait_for(lambda: len(fake.log("sbatch")) == 1, timeout=60),
                    "sbatch is running")
            t0 = time.time()
            st, _, _ = s.get("/healthz")
            t.check(st == 200, "/healthz answers while sbatch runs (%.3f s)" % (time.time() - t0))
            st, _, d = s.json("/v1/jobs/slow1", reader)
            t.check(st == 200 and d["status"] == "SUBMITTED",
                    "the job being submitted reads SUBMITTED meanwhile: %s %s"
                    % (st, d and d.get("status")))
            st, h, _ = s.get("/v1/jobs", sub, method="POST", body=json.dumps(
                {"config": base, "overrides": ["job.name=full2"] + small}).encode(),
                headers={"Content-Type": "application/json"})
            t.check(st == 503 and h.get("retry-after") == "1",
                    "a second submission while sbatch runs: 503 (%s)" % st)
            st, h, d = mcp_call(s, sub, 14, "cancel_job", {"job": "slow1"})
            is_busy_rpc(t, st, h, d, 14, "MCP cancel_job while sbatch runs")
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.write(fd, b"go\n")
            os.close(fd)
            th.join(120)
            st, h, b = out.get("slow", (None, {}, b""))
            d = json.loads(b) if st else {}
            t.check(st == 201 and d.get("slurm_job_id") == "5000" and
                    h.get("location") == "/v1/jobs/slow1",
                    "sbatch returned: 201 with the Slurm id: %s %s" % (st, b[:200]))
            st, _, d = s.json("/v1/jobs/slow1/cancel", sub, method="POST", body=b"")
            t.check(st == 202 and d["status"] == "CANCELLED" and
                    fake.log("scancel") == ["5000"],
                    "the cancel runs scancel in the pool: %s %s %s"
                    % (st, d, fake.log("scancel")))
            audit = [a for a in s.audit_lines() if a.get("action") == "cancel"]
            t.check(audit and audit[-1]["launched"] == "slurm 5000" and audit[-1]["job"] == "slow1",
                    "the cancel's audit line names the job and the Slurm id: %s" % audit[-1:])
            t.check(wait_for(lambda: metric(s, "codex_ita_pool_jobs") == 0, timeout=30),
                    "the pool is empty again")
    finally:
        if os.path.exists(hold):
            os.unlink(hold)
        fake.close()


# ---------------------------------------------------------------- timeouts

def case_slow_header(ctx, t):
    with Server(ctx, "timeouts:\n  header_s: 1\n") as s:
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        closed, t0 = False, time.time()
        # one header line every 0.2 s: every read is progress, the request
        # never completes; the server must end it (hang guard: 30 s)
        while time.time() - t0 < 30:
            try:
                c.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            c.settimeout(0.2)
            try:
                if not c.recv(4096):
                    closed = True
                    break
            except socket.timeout:
                pass
            except ConnectionResetError:
                closed = True
                break
        took = time.time() - t0
        c.close()
        t.check(closed, "a trickling client is closed (took %.1f s, header_s 1)" % took)
        st, _, _ = s.get("/healthz")
        t.check(st == 200, "the server still answers")
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        t.check(closed_within(c, 30), "an idle connection that sends nothing is closed")
        c.close()


def case_write_timeout(ctx, t):
    with Server(ctx, "timeouts:\n  write_s: 1\n") as s:
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect(("127.0.0.1", s.port))
        n = 400  # 400 x 53 KB of /openapi.json: far more than socket buffers hold
        c.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * n)
        time.sleep(4)  # read nothing meanwhile
        got, closed = b"", False
        c.settimeout(30)
        t0 = time.time()
        try:
            while time.time() - t0 < 30:
                chunk = c.recv(1 << 20)
                if not chunk:
                    closed = True
                    break
                got += chunk
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            pass
        c.close()
        answers = got.count(b"HTTP/1.1 200")
        t.check(closed and answers < n,
                "a client reading nothing is closed: %d of %d answers sent" % (answers, n))
        st, _, _ = s.get("/healthz")
        t.check(st == 200, "the server still answers")
        t.check((metric(s, 'codex_ita_connections_closed_total{reason="timeout"}') or 0) >= 1,
                "the timeout is counted")


# ---------------------------------------------------------------- /healthz at the connection bound

def case_reserve(ctx, t):
    with Server(ctx, "threads: 1\nmax_connections: 8\ntimeouts:\n  header_s: 600\n") as s:
        idle = [socket.create_connection(("127.0.0.1", s.port), timeout=5) for _ in range(8)]
        t0 = time.time()
        c = s.conn(timeout=20)
        try:
            c.request("GET", "/healthz")
            r = c.getresponse()
            r.read()
            st = r.status
        except OSError as e:
            st = repr(e)
        took = time.time() - t0
        c.close()
        t.check(st == 200, "/healthz answers with max_connections held by idle clients: %s (%.2f s)"
                % (st, took))
        # the evicted one is the oldest idle connection
        t.check(closed_within(idle[0], 20), "the oldest idle connection was closed for it")
        for x in idle:
            x.close()


# ---------------------------------------------------------------- HTTP/2 rapid reset

def h2_frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def hpack_literal(name, value):
    """Literal header field without indexing, new name, no Huffman."""
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def case_rapid_reset(ctx, t):
    d = tempfile.mkdtemp(prefix="ita-h2-")
    try:
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                            "1", "-subj", "/CN=codex-ita-test", "-keyout", key, "-out", cert],
                           capture_output=True, text=True)
        if not t.check(p.returncode == 0, "openssl made a test certificate"):
            return
        yaml = "tls:\n  cert: %s\n  key: %s\nhttp2:\n  max_requests_per_s: 50\n" % (cert, key)
        with Server(ctx, yaml) as s:
            tls = ssl.create_default_context(cafile=cert)
            tls.check_hostname = False
            tls.set_alpn_protocols(["h2"])
            raw = socket.create_connection(("127.0.0.1", s.port), timeout=20)
            c = tls.wrap_socket(raw)
            if not t.check(c.selected_alpn_protocol() == "h2", "HTTP/2 negotiated over TLS"):
                return
            hdr = (hpack_literal(b":method", b"GET") + hpack_literal(b":scheme", b"https") +
                   hpack_literal(b":path", b"/healthz") +
                   hpack_literal(b":authority", b"localhost"))
            n = 2000
            out = [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", h2_frame(4, 0, 0)]
            for i in range(n):
                sid = 2 * i + 1
                out.append(h2_frame(1, 0x5, sid, hdr))  # HEADERS, END_STREAM|END_HEADERS
                out.append(h2_frame(3, 0, sid, struct.pack(">I", 8)))  # RST_STREAM CANCEL
            data = b"".join(out)
            closed = False
            try:
                c.sendall(data)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                closed = True
            # the server must end the connection (GOAWAY and close); a hang
            # guard of 30 s, not a timing
            t0 = time.time()
            c.settimeout(30)
            try:
                while not closed and time.time() - t0 < 30:
                    if not c.recv(65536):
                        closed = True
            except (ConnectionResetError, ssl.SSLError, OSError):
                closed = True
            c.close()
            t.check(closed, "a connection resetting %d streams is closed" % n)
            s.tls = tls
            tls.set_alpn_protocols(["http/1.1"])
            st, _, _ = s.get("/healthz")
            t.check(st == 200, "the server still answers")
            t.check((metric(s, 'codex_ita_connections_closed_total{reason="http2_rate"}') or 0)
                    >= 1, "the closing is counted")
            # what h2o had already read of the flood is not parsed once the
            # limit trips: one refused stream per read at most (the flood
            # arrives in ~16 KB TLS records), not one per stream left
            refused = metric(s, 'codex_ita_streams_refused_total{reason="http2_rate"}') or 0
            t.check(0 < refused <= 100, "the rest of the flood is dropped unparsed: %d of the %d "
                    "streams past the limit were answered" % (refused, n - 50))
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------- request smuggling

SMUGGLED = b"GET /healthz?smuggled=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def smuggling_attacks():
    """(what, bytes): an ambiguously framed request with a second request
    behind it. A front end that frames the first one differently from h2o
    (which takes Transfer-Encoding, else the first Content-Length) would see
    the second as body, and h2o would serve it as a request nobody checked."""
    n = len(SMUGGLED)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    return [
        ("two differing Content-Length",
         head + b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % n + SMUGGLED),
        ("two identical Content-Length",
         head + b"Content-Length: 0\r\ncontent-length: 0\r\n\r\n" + SMUGGLED),
        ("Transfer-Encoding then Content-Length",
         head + b"Transfer-Encoding: chunked\r\nContent-Length: %d\r\n\r\n0\r\n\r\n" % (n + 5) +
         SMUGGLED),
        ("Content-Length then Transfer-Encoding",
         head + b"Content-Length: %d\r\nTRANSFER-ENCODING: chunked\r\n\r\n0\r\n\r\n" % (n + 5) +
         SMUGGLED),
        ("two Transfer-Encoding",
         head + b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
         SMUGGLED),
        ("a folded header line",
         head + b"Content-Length: 0\r\nX-Pad: a\r\n %d\r\n\r\n" % n + SMUGGLED),
    ]


def tls_cert(d):
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "1", "-subj", "/CN=codex-ita-test", "-keyout", key, "-out", cert],
                       capture_output=True, text=True)
    return (cert, key) if p.returncode == 0 else (None, None)


def h2_read_frames(c, want, timeout=30):
    """Reads frames until every stream in want has a HEADERS (1) or
    RST_STREAM (3) from the server (stream 0: GOAWAY, 7), or EOF, or the
    hang guard; returns {stream: first such frame type}."""
    got, buf, t0 = {}, b"", time.time()
    c.settimeout(timeout)
    while time.time() - t0 < timeout and not all(w in got for w in want):
        try:
            chunk = c.recv(65536)
        except (OSError, ssl.SSLError):
            break
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 9:
            n = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + n:
                break
            ftype, sid = buf[3], int.from_bytes(buf[5:9], "big") & 0x7fffffff
            if ftype in (1, 3, 7) and sid not in got:
                got[sid] = ftype
            buf = buf[9 + n:]
    return got


def smuggling_h2(ctx, t):
    """HTTP/2 frames bodies itself (DATA frames); h2o resets a stream whose
    content-length disagrees with its DATA and one carrying
    transfer-encoding, before any handler runs."""
    d = tempfile.mkdtemp(prefix="ita-h2s-")
    try:
        cert, key = tls_cert(d)
        if not t.check(cert, "openssl made a test certificate"):
            return
        with Server(ctx, "tls:\n  cert: %s\n  key: %s\n" % (cert, key)) as s:
            tls = ssl.create_default_context(cafile=cert)
            tls.check_hostname = False
            tls.set_alpn_protocols(["h2"])
            c = tls.wrap_socket(socket.create_connection(("127.0.0.1", s.port), timeout=20))
            if not t.check(c.selected_alpn_protocol() == "h2", "HTTP/2 negotiated over TLS"):
                return

            def hdr(method, extra=b""):
                return (hpack_literal(b":method", method) + hpack_literal(b":scheme", b"https") +
                        hpack_literal(b":path", b"/healthz") +
                        hpack_literal(b":authority", b"localhost") + extra)

            pre = [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", h2_frame(4, 0, 0)]
            c.sendall(b"".join(pre + [
                # content-length 10, 3 bytes of DATA
                h2_frame(1, 0x4, 1, hdr(b"POST", hpack_literal(b"content-length", b"10"))),
                h2_frame(0, 0x1, 1, b"abc"),
                # a plain request on the same connection
                h2_frame(1, 0x5, 3, hdr(b"GET"))]))
            got = h2_read_frames(c, (1, 3))
            c.close()
            t.check(got.get(1) == 3, "h2: content-length != DATA is reset: %s" % got)
            t.check(got.get(3) == 1, "h2: the plain request is answered: %s" % got)
            # transfer-encoding is not an HTTP/2 header: a connection error
            c = tls.wrap_socket(socket.create_connection(("127.0.0.1", s.port), timeout=20))
            c.sendall(b"".join(pre + [
                h2_frame(1, 0x5, 1, hdr(b"GET", hpack_literal(b"transfer-encoding", b"chunked"))),
                h2_frame(1, 0x5, 3, hdr(b"GET"))]))
            got = h2_read_frames(c, (0, 1, 3))
            c.close()
            t.check(got.get(0) == 7 and 1 not in got and 3 not in got,
                    "h2: transfer-encoding ends the connection (GOAWAY), nothing served: %s" % got)
            t.check(not any(l.get("method") == "POST" for l in s.audit_lines()),
                    "no reset stream reached a handler")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def case_renegotiation(ctx, t):
    """TLS 1.2 client-initiated renegotiation never succeeds (a client
    could otherwise make the server redo the expensive half of a handshake
    as often as it likes on one connection): openssl s_client's R command
    gets no second ServerHello, the connection fails. The server sets
    SSL_OP_NO_RENEGOTIATION; h2o 2.2's TLS layer also fails the attempt by
    itself (the client sees a record it cannot decrypt), so this guards the
    property, e.g. across an h2o upgrade, rather than the option alone."""
    d = tempfile.mkdtemp(prefix="ita-reneg-")
    try:
        cert, key = tls_cert(d)
        if not t.check(cert, "openssl made a test certificate"):
            return
        with Server(ctx, "tls:\n  cert: %s\n  key: %s\n" % (cert, key)) as s:
            # (line-buffered: s_client writes through stdio)
            p = subprocess.Popen(["stdbuf", "-oL", "openssl", "s_client", "-connect", "127.0.0.1:%d" % s.port,
                                  "-tls1_2", "-msg", "-CAfile", cert],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT)
            out, lines = [], []

            def reader():
                for line in p.stdout:
                    lines.append(line.decode(errors="replace"))
            th = threading.Thread(target=reader, daemon=True)
            th.start()
            try:
                # the first handshake done (its Finished read), then R
                t.check(wait_for(lambda: sum("Finished" in l and "<<<" in l for l in lines) >= 1,
                                 timeout=30), "the first TLS 1.2 handshake completed")
                p.stdin.write(b"R\n")
                p.stdin.flush()
                t0 = len(lines)

                def outcome():
                    after = lines[t0:]
                    if any("<<<" in l and "ServerHello" in l and "Done" not in l for l in after):
                        return "renegotiated"
                    # the server's no_renegotiation alert; through h2o the
                    # client may instead fail on the record that follows
                    if any("Alert" in l for l in after) or not th.is_alive():
                        return "refused"
                    return None
                got = wait_for(outcome, timeout=30)
                t.check(got == "refused", "client-initiated renegotiation refused: %s %r"
                        % (got, [l for l in lines[t0:] if not l.startswith("    ")][-8:]))
            finally:
                try:
                    p.stdin.close()
                except OSError:
                    pass
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
                th.join(10)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def case_smuggling(ctx, t):
    with Server(ctx, "threads: 1\n") as s:
        for what, data in smuggling_attacks():
            # the smuggled request closes the connection, so even a server
            # that serves it ends the exchange: read to EOF (20 s hang guard)
            out = s.raw(data, read_timeout=20)
            answers = out.count(b"HTTP/1.1 ")
            t.check(out.startswith(b"HTTP/1.1 400 "), "%s: answered 400: %r" % (what, out[:40]))
            t.check(answers == 1, "%s: the request behind it is not served (%d answers)"
                    % (what, answers))
            t.check(b"\r\nconnection: close\r\n" in out.lower(),
                    "%s: the connection is closed" % what)
        # a plain request with one Content-Length, and a chunked one, still work
        out = s.raw(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab" +
                    SMUGGLED.replace(b"smuggled", b"second"), read_timeout=20)
        t.check(out.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 200" in out,
                "one Content-Length: both pipelined requests answered: %r" % out[:40])
        out = s.raw(b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"2\r\nab\r\n0\r\n\r\n" + SMUGGLED.replace(b"smuggled", b"second"),
                    read_timeout=20)
        t.check(out.count(b"HTTP/1.1 ") == 2, "chunked alone: both requests answered: %r"
                % out[:40])
        st, _, _ = s.get("/healthz")
        t.check(st == 200, "the server still answers")
        lines = s.audit_lines()
        t.check(not any("smuggled" in (l.get("path") or "") for l in lines),
                "no smuggled request reached the audit log")
        t.check(sum(1 for l in lines if l.get("status") == 400) == len(smuggling_attacks()),
                "each refusal is audited")
    smuggling_h2(ctx, t)


# ---------------------------------------------------------------- the audit log

def case_audit(ctx, t):
    yaml = "audit:\n  max_mb: 0.02\n  keep: 2\n  rejected_per_s: 5\n"
    with Server(ctx, yaml) as s:
        n_bad = 300
        c = s.conn()
        for _ in range(n_bad):  # one keep-alive connection, a bad key each time
            c.request("GET", "/v1/jobs", headers={"X-API-Key": "cu_bogus"})
            r = c.getresponse()
            r.read()
        c.close()
        time.sleep(1.1)  # the second ends; the next line writes the aggregate
        st, _, _ = s.get("/v1/jobs", s.keys["reader"])
        t.check(st == 200, "a good request after the flood")
        c = s.conn()
        for _ in range(400):  # ~90 KB of accepted lines: rotates more than twice
            c.request("GET", "/healthz")
            c.getresponse().read()
        c.close()
        files = sorted(f for f in os.listdir(s.dir) if f.startswith("audit.jsonl"))
        t.check(files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"],
                "rotated keeping 2 old files: %s" % files)
        limit = int(0.02 * 1024 * 1024)
        sizes = [os.path.getsize(os.path.join(s.dir, f)) for f in files]
        t.check(all(z <= limit for z in sizes), "each file within audit.max_mb: %s" % sizes)
        st = s.stop()
        t.check(st == 0, "clean stop")
    # counted without rotation: every 401 is either a line or in an aggregate
    with Server(ctx, "audit:\n  rejected_per_s: 5\n") as s:
        t0 = time.time()
        c = s.conn()
        for _ in range(n_bad):
            c.request("GET", "/v1/jobs", headers={"X-API-Key": "cu_bogus"})
            c.getresponse().read()
        c.close()
        secs = time.time() - t0
        s.stop()
        lines = s.audit_lines()
        agg = sum(x["count"] for x in lines if x.get("aggregate") == "rejected")
        single = sum(1 for x in lines if x.get("status") == 401 and "aggregate" not in x)
        t.check(agg > 0, "aggregate lines sum the rejected past the budget")
        t.check(single + agg == n_bad, "all %d rejected requests accounted for: %d lines + %d summed"
                % (n_bad, single, agg))
        t.check(single <= 5 * (int(secs) + 2),
                "at most 5 lines a second: %d lines in %.1f s" % (single, secs))


# ---------------------------------------------------------------- the listing index

def case_job_index(ctx, t):
    """5,000 job directories (past the old 4,096-entry cache): every job is
    listed through the pages; a new directory shows at the next listing, a
    removed one is gone, a finished job rewritten shows within a bounded
    number of listings, an active job's update at once."""
    d = tempfile.mkdtemp(prefix="ita-index-")
    try:
        runs = os.path.join(d, "runs")
        os.makedirs(runs)
        n = 5000

        def write(job, **kw):
            st = {"job": job, "status": "COMPLETED", "step": 10, "max_steps": 10,
                  "started_at": "2026-01-01T00:00:00.000Z",
                  "updated_at": "2026-01-01T01:00:00.000Z"}
            st.update(kw)
            os.makedirs(os.path.join(runs, job), exist_ok=True)
            tmp = os.path.join(runs, job, "state.json.tmp")
            with open(tmp, "w") as f:
                json.dump(st, f)
            os.rename(tmp, os.path.join(runs, job, "state.json"))

        for i in range(n):
            write("job-%05d" % i)
        # one thread: each has its own index, caught up by its own listings
        with Server(ctx, "threads: 1\nmax_jobs: 100000\n", live_runs=runs) as s:
            key = s.keys["reader"]

            def listing(extra=""):
                ids, cur = [], None
                for _ in range(100):
                    q = "/v1/jobs?limit=500" + extra + ("&cursor=" + cur if cur else "")
                    st, _, doc = s.json(q, key)
                    assert st == 200, st
                    ids += [j["id"] for j in doc["jobs"]]
                    cur = doc["next_cursor"]
                    if not cur:
                        break
                return ids

            ids = listing()
            t.check(len(ids) == n and len(set(ids)) == n, "all %d jobs listed once: %d" % (n, len(ids)))
            write("job-new", started_at="2026-06-01T00:00:00.000Z")
            st, _, doc = s.json("/v1/jobs?limit=1", key)
            t.check(doc["jobs"][0]["id"] == "job-new", "a new directory shows at the next listing")
            shutil.rmtree(os.path.join(runs, "job-new"))
            st, _, doc = s.json("/v1/jobs?limit=1", key)
            t.check(doc["jobs"][0]["id"] != "job-new", "a removed directory is gone at once")
            write("job-00042", status="FAILED")  # a finished job rewritten
            seen = None
            for k in range(300):  # hang guard; expected within n/2048 + 1 listings
                st, _, doc = s.json("/v1/jobs?limit=500&status=FAILED", key)
                if any(j["id"] == "job-00042" for j in doc["jobs"]):
                    seen = k + 1
                    break
            t.check(seen is not None, "a rewritten finished job shows (after %s listings)" % seen)
            write("job-00007", status="RUNNING", step=3, max_steps=10,
                  started_at="2026-07-01T00:00:00.000Z")
            first = None
            for k in range(300):
                st, _, doc = s.json("/v1/jobs?limit=1", key)
                first = doc["jobs"][0]
                if first["id"] == "job-00007":
                    break
            t.check(first["id"] == "job-00007", "a finished job made active shows (after %d "
                    "listings): %s" % (k + 1, first))
            write("job-00007", status="RUNNING", step=4, max_steps=10,
                  started_at="2026-07-01T00:00:00.000Z")
            st, _, doc = s.json("/v1/jobs?limit=1", key)
            t.check(doc["jobs"][0]["id"] == "job-00007" and doc["jobs"][0]["step"] == 4,
                    "an active job's update shows at the next listing: %s" % doc["jobs"][0])
    finally:
        shutil.rmtree(d, ignore_errors=True)


CASES = {"job_index": case_job_index, "pool": case_pool, "pool_submit": case_pool_submit,
         "slow_header": case_slow_header, "write_timeout": case_write_timeout,
         "reserve": case_reserve, "rapid_reset": case_rapid_reset, "audit": case_audit,
         "smuggling": case_smuggling, "renegotiation": case_renegotiation}


def main():
    if len(sys.argv) != 5 or sys.argv[4] not in CASES:
        print(__doc__)
        return 2
    ctx = Ctx(*sys.argv[1:4])
    t = T()
    try:
        CASES[sys.argv[4]](ctx, t)
    except Exception as e:
        import traceback
        traceback.print_exc()
        t.check(False, "case raised %r" % e)
    return t.summary()


if __name__ == "__main__":
    sys.exit(main())
