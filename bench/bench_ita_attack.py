"""The codex-ita load benchmark under attack (issue 18): GET /healthz and
GET /v1/jobs/{id} latency (p50, p99) from a well-behaved client while one
attack runs at a time against the same server:

  none        no attack (the baseline)
  slowloris   SLOW connections trickling header bytes, one every 0.5 s each
  emfile      descriptors exhausted: RLIMIT_NOFILE 256 and idle connections
              past it (the server's max_connections is derived from it)
  scan        pathological hygiene scans in a loop: 1 MiB of unterminated
              "-----BEGIN RSA PRIVATE KEY-----" lines
  rapid_reset HTTP/2 over TLS, HEADERS + RST_STREAM floods on one connection
              after another (the TLS phase has its own server and client)

Python's standard library only. Prints one line per attack and the figures.

usage: python3 bench/bench_ita_attack.py BUILD_DIR [SECONDS_PER_PHASE]
"""
import http.client
import os
import resource
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

SRC = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(build, d, extra, preexec=None):
    runs = os.path.join(d, "runs")
    if not os.path.isdir(runs):
        shutil.copytree(os.path.join(SRC, "tests", "fixtures", "ita", "runs"), runs, symlinks=True)
    keys = os.path.join(d, "keys.json")
    if not os.path.exists(keys):
        p = subprocess.run([os.path.join(build, "jobs", "codexctl"), "keys", "create", "--name",
                            "bench", "--scope", "read", "--file", keys],
                           capture_output=True, text=True, check=True)
        with open(os.path.join(d, "key"), "w") as f:
            f.write(p.stdout.strip())
    cfg = os.path.join(d, "ita.yaml")
    with open(cfg, "w") as f:
        f.write("listen:\n  host: 127.0.0.1\n  port: 0\nruns_dir: runs\nkeys_file: keys.json\n"
                "log:\n  audit: audit.jsonl\n  error: error.log\nrate_limit:\n  per_second: 0\n"
                + extra)
    proc = subprocess.Popen([os.path.join(build, "ita", "codex-ita"), "--config", cfg],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=preexec)
    line = proc.stdout.readline()
    port = int(line.rsplit(":", 1)[1])
    with open(os.path.join(d, "key")) as f:
        key = f.read()
    return proc, port, key


def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure(port, key, seconds, tls=None):
    """Sequential requests on keep-alive connections, alternating the two
    routes; a failed request counts as its time to failure."""
    lat = {"/healthz": [], "/v1/jobs/run-live": []}
    errors = {}
    end = time.time() + seconds
    conn = None
    while time.time() < end:
        for path in lat:
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = (http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=tls)
                            if tls else http.client.HTTPConnection("127.0.0.1", port, timeout=30))
                conn.request("GET", path, headers={"X-API-Key": key})
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    what = "%s %d" % (path, r.status)
                    errors[what] = errors.get(what, 0) + 1
            except OSError as e:
                what = "%s %s" % (path, type(e).__name__)
                errors[what] = errors.get(what, 0) + 1
                conn = None
            lat[path].append(time.perf_counter() - t0)
            time.sleep(0.005)
    return lat, errors


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e3 if xs else float("nan")


def report(name, lat, errors, note=""):
    parts = []
    for path, xs in lat.items():
        parts.append("%s n=%d p50=%.2f ms p99=%.2f ms" % (path, len(xs), pct(xs, 0.5),
                                                          pct(xs, 0.99)))
    kinds = ", ".join("%s x%d" % kv for kv in sorted(errors.items()))
    print("%-12s %s errors=%d%s %s" % (name, " | ".join(parts), sum(errors.values()),
                                     " (%s)" % kinds if kinds else "", note), flush=True)


class Attack(threading.Thread):
    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.stop, self.count = fn, threading.Event(), 0

    def run(self):
        self.fn(self)


def slowloris(port, n):
    def go(a):
        socks = []
        while not a.stop.is_set():
            while len(socks) < n and not a.stop.is_set():
                try:
                    s = socket.create_connection(("127.0.0.1", port), timeout=2)
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                    socks.append(s)
                    a.count += 1
                except OSError:
                    break
            alive = []
            for s in socks:
                try:
                    s.sendall(b"X-a: b\r\n")
                    alive.append(s)
                except OSError:
                    s.close()
            socks = alive
            a.stop.wait(0.5)
        for s in socks:
            s.close()
    return Attack(go)


def idle_flood(port, n):
    def go(a):
        socks = []
        while not a.stop.is_set():
            while len(socks) < n and not a.stop.is_set():
                try:
                    socks.append(socket.create_connection(("127.0.0.1", port), timeout=2))
                    a.count += 1
                except OSError:
                    break
            a.stop.wait(0.2)
            socks = [s for s in socks if not dead(s)]
        for s in socks:
            s.close()
    return Attack(go)


def dead(s):
    s.setblocking(False)
    try:
        d = s.recv(1)
        r = d == b""
    except BlockingIOError:
        r = False
    except OSError:
        r = True
    s.setblocking(True)
    if r:
        s.close()
    return r


def scans(port, key):
    body = b"-----BEGIN RSA PRIVATE KEY-----\n" * (1024 * 1024 // 32)

    def go(a):
        while not a.stop.is_set():
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                c.request("POST", "/v1/hygiene/scan", body=body, headers={"X-API-Key": key})
                c.getresponse().read()
                c.close()
                a.count += 1
            except OSError:
                pass
    return [Attack(go) for _ in range(4)]


def h2_frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def lit(name, value):
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def rapid_reset(port, tls):
    hdr = lit(b":method", b"GET") + lit(b":scheme", b"https") + lit(b":path", b"/healthz") + \
        lit(b":authority", b"localhost")
    ctx = ssl.create_default_context(cafile=tls)
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["h2"])
    flood = [b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", h2_frame(4, 0, 0)]
    for i in range(5000):
        flood.append(h2_frame(1, 0x5, 2 * i + 1, hdr))
        flood.append(h2_frame(3, 0, 2 * i + 1, struct.pack(">I", 8)))
    data = b"".join(flood)

    def go(a):
        while not a.stop.is_set():
            try:
                c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=5))
                c.sendall(data)
                a.count += 1
                c.settimeout(5)
                while c.recv(65536):
                    pass
                c.close()
            except (OSError, ssl.SSLError):
                pass
    return Attack(go)


def phase(name, port, key, secs, attacks, tls=None):
    attacks = attacks if isinstance(attacks, list) else [attacks] if attacks else []
    for a in attacks:
        a.start()
    time.sleep(1.0 if attacks else 0)  # let the attack build up
    lat, errors = measure(port, key, secs, tls)
    for a in attacks:
        a.stop.set()
    for a in attacks:
        a.join(30)
    report(name, lat, errors, "(attack units: %d)" % sum(a.count for a in attacks))
    return lat


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    build, secs = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 8
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))  # the attackers' sockets
    d = tempfile.mkdtemp(prefix="bench-ita-attack-")
    worst = 0.0
    try:
        proc, port, key = start(build, d, "timeouts:\n  header_s: 5\n")
        try:
            for name, atk in (("none", None), ("slowloris", slowloris(port, 3000)),
                              ("scan", scans(port, key))):
                lat = phase(name, port, key, secs, atk)
                worst = max(worst, max(pct(x, 0.99) for x in lat.values()))
        finally:
            stop(proc)

        def low():
            resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
        proc, port, key = start(build, d, "threads: 2\n", preexec=low)
        try:
            lat = phase("emfile", port, key, secs, idle_flood(port, 600))
            worst = max(worst, max(pct(x, 0.99) for x in lat.values()))
        finally:
            stop(proc)
        cert, pkey = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=bench", "-keyout", pkey, "-out", cert],
                       capture_output=True, check=True)
        proc, port, key = start(build, d, "tls:\n  cert: %s\n  key: %s\n" % (cert, pkey))
        try:
            tls = ssl.create_default_context(cafile=cert)
            tls.check_hostname = False
            phase("tls none", port, key, secs, None, tls)
            lat = phase("rapid_reset", port, key, secs, rapid_reset(port, cert), tls)
            worst = max(worst, max(pct(x, 0.99) for x in lat.values()))
        finally:
            stop(proc)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    print("worst p99 under attack: %.2f ms (goal < 50 ms)" % worst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
