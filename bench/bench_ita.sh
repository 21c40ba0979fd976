#!/usr/bin/env bash
# Benchmark of codex-ita: wrk against GET /v1/jobs/{id} with a valid key, on
# a copy of the fixture job directories (tests/fixtures/ita/runs). Prints
# wrk's report (requests/s, latency percentiles, errors) and the command.
#
# usage: bench/bench_ita.sh [BUILD_DIR] [SECONDS] [CONNECTIONS] [WRK_THREADS] [ITA_THREADS]
# defaults: build-ita 10 64 1 2. Needs wrk (Debian package wrk).
# Only 127.0.0.1 is used. The rate limit is off and the audit log is on, as
# a service with many clients would run.
# BENCH_ITA_SLURM=1: the job has a Slurm id and a stand-in squeue (first in
# PATH) reports it RUNNING, so each answer carries the cached scheduler view
# (the background thread asks every second).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$here/build-ita}
secs=${2:-10}
conns=${3:-64}
wthreads=${4:-1}
ithreads=${5:-2}
ita=$build/ita/codex-ita
ctl=$build/jobs/codexctl
command -v wrk >/dev/null || { echo "bench_ita: wrk not found (apt-get install wrk)" >&2; exit 2; }
[ -x "$ita" ] && [ -x "$ctl" ] || { echo "bench_ita: build codex-ita and codexctl in $build" >&2; exit 2; }

dir=$(mktemp -d /tmp/bench-ita.XXXXXX)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
cp -r "$here/tests/fixtures/ita/runs" "$dir/runs"
if [ "${BENCH_ITA_SLURM:-0}" = 1 ]; then
  mkdir "$dir/bin"
  printf '#!/bin/sh\necho "4242|RUNNING|None|node01"\n' > "$dir/bin/squeue"
  printf '#!/bin/sh\nexit 1\n' > "$dir/bin/sacct"
  chmod +x "$dir/bin/squeue" "$dir/bin/sacct"
  export PATH="$dir/bin:$PATH"
  sed -i 's/"slurm_job_id": null/"slurm_job_id": "4242"/' "$dir/runs/run-live/state.json"
  slurm_yaml=$'slurm:\n  refresh_s: 1'
fi
key=$("$ctl" keys create --name bench --scope read --file "$dir/keys.json" 2>/dev/null)
cat > "$dir/ita.yaml" <<YAML
listen:
  host: 127.0.0.1
  port: 0
runs_dir: runs
keys_file: keys.json
threads: $ithreads
log:
  audit: audit.jsonl
  error: error.log
rate_limit:
  per_second: 0
${slurm_yaml:-}
YAML
"$ita" --config "$dir/ita.yaml" > "$dir/out" &
pid=$!
for _ in $(seq 50); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.1; done
port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/out")
[ -n "$port" ] || { echo "bench_ita: codex-ita did not start" >&2; cat "$dir/error.log" >&2; exit 1; }
url=http://127.0.0.1:$port/v1/jobs/run-live
curl -sf -H "X-API-Key: $key" "$url" > /dev/null || { echo "bench_ita: $url failed" >&2; exit 1; }
if [ "${BENCH_ITA_SLURM:-0}" = 1 ]; then
  sleep 1.5
  curl -sf -H "X-API-Key: $key" "$url" | grep -q '"state":"RUNNING","status":"RUNNING"' ||
    { echo "bench_ita: the scheduler view did not appear" >&2; exit 1; }
fi
echo "== $(nproc) cores; codex-ita $ithreads threads; wrk $wthreads threads, $conns connections, ${secs}s"
echo "== wrk -t$wthreads -c$conns -d${secs}s --latency -H 'X-API-Key: <read key>' $url"
cpu0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
wrk -t"$wthreads" -c"$conns" -d"${secs}s" --latency -H "X-API-Key: $key" "$url" | tee "$dir/wrk.out"
cpu1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
n=$(wc -l < "$dir/audit.jsonl")
echo "== audit lines written: $n"
# CPU time the server spent per request: less sensitive than requests/s to
# other work on a shared host
awk -v c="$((cpu1 - cpu0))" -v hz="$(getconf CLK_TCK)" -v n="$n" \
  'BEGIN { printf "== codex-ita CPU time: %.1f us per request\n", c / hz / n * 1e6 }'
