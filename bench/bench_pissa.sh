#!/usr/bin/env bash
# ScaLAPACK figures (issue 8), printed for docs/performance.md:
#  1. seconds of the distributed SVD of a 2304 x 768 matrix (GPT-2 small's
#     c_attn weight) on 1, 2 and 4 ranks, as ratios to 1 rank, and
#     single-process LAPACK dgesvd on the same matrix for reference;
#  2. on the demo task (configs/demo.yaml over runs/demo-base/final.h5, which
#     is trained first when missing), validation loss every 10 steps with
#     lora.init pissa, olora and kaiming, and the steps each needs to reach
#     a target validation loss (default: the best kaiming reaches).
#
# usage: bench/bench_pissa.sh [BUILD_DIR] [TARGET_VAL_LOSS]
#        CU_BENCH_PART=svd|demo runs one part only
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build}
target=${2:-}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 CU_PROGRESS=0

part=${CU_BENCH_PART:-all}
if [ "$part" != demo ]; then
echo "== distributed SVD, 2304 x 768 (median of 3)"
declare -A secs
for n in 1 2 4; do
  line=$(mpirun -n "$n" --oversubscribe "$build/bench/bench_svd" 2304 768 3 | tail -1)
  echo "$line"
  secs[$n]=$(sed -n 's/.*: \([0-9.]*\) s (median.*/\1/p' <<<"$line")
done
for n in 2 4; do
  awk -v a="${secs[1]}" -v b="${secs[$n]}" -v n="$n" \
    'BEGIN { printf "time %d ranks / 1 rank: %.2f (speed-up %.2fx)\n", n, b / a, a / b }'
done
"$build/bench/bench_svd" 2304 768 1 --lapack | tail -1
fi
[ "$part" = svd ] && exit 0

seeds=${CU_BENCH_SEEDS:-1337 1 2 3 4}
echo "== PiSSA / OLoRA / kaiming on the demo task (job.seed: $seeds)"
if [ ! -f runs/demo-base/final.h5 ]; then
  mpirun -n 1 --oversubscribe "$build/jobs/codex-train" configs/demo-base.yaml >/dev/null
fi
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
for seed in $seeds; do
  for init in kaiming pissa olora; do
    mpirun -n 1 --oversubscribe "$build/jobs/codex-train" configs/demo.yaml "job.runs_dir=$runs" \
      "job.name=$init-$seed" "lora.init=$init" "job.seed=$seed" eval.every_steps=10 \
      eval.batches=8 >/dev/null
  done
done
/usr/bin/python3 - "$runs" "$target" $seeds <<'PY'
import json, os, statistics, sys
runs, target_arg, seeds = sys.argv[1], sys.argv[2], sys.argv[3:]
INITS = ("kaiming", "pissa", "olora")


def curve(name):
    pts = []
    with open(os.path.join(runs, name, "metrics.jsonl")) as fh:
        for line in fh:
            o = json.loads(line)
            if "val_loss" in o:
                pts.append((o["step"], o["val_loss"]))
    return pts


ratios = {"pissa": [], "olora": []}
for seed in seeds:
    curves = {init: curve(f"{init}-{seed}") for init in INITS}
    # the target: what kaiming reaches with this seed, unless one was given
    target = float(target_arg) if target_arg else min(v for _, v in curves["kaiming"])
    print(f"seed {seed}: target validation loss {target:.4f}")
    steps = {}
    for init, pts in curves.items():
        hit = next((s for s, v in pts if v <= target), None)
        steps[init] = hit
        best = min(pts, key=lambda p: p[1])
        print(f"  {init:8s} first eval {pts[0][1]:.4f} @ {pts[0][0]}, best {best[1]:.4f} @ "
              f"{best[0]}, steps to target: {hit if hit is not None else 'not reached'}")
    for init in ratios:
        if steps["kaiming"] and steps[init]:
            ratios[init].append(steps[init] / steps["kaiming"])
        else:
            ratios[init].append(None)
for init, rs in ratios.items():
    got = [r for r in rs if r is not None]
    shown = " ".join("-" if r is None else f"{r:.2f}" for r in rs)
    med = f"{statistics.median(got):.2f}" if got else "-"
    print(f"steps {init} / steps kaiming per seed: {shown} (median of reached {med}, "
          f"reached in {len(got)} of {len(rs)})")
PY
