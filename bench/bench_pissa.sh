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

echo "== PiSSA / OLoRA / kaiming on the demo task"
if [ ! -f runs/demo-base/final.h5 ]; then
  mpirun -n 1 --oversubscribe "$build/jobs/codex-train" configs/demo-base.yaml >/dev/null
fi
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
for init in kaiming pissa olora; do
  mpirun -n 1 --oversubscribe "$build/jobs/codex-train" configs/demo.yaml "job.runs_dir=$runs" \
    "job.name=$init" "lora.init=$init" eval.every_steps=10 eval.batches=8 >/dev/null
done
/usr/bin/python3 - "$runs" "$target" <<'PY'
import json, os, sys
runs, target = sys.argv[1], sys.argv[2]
curves = {}
for init in ("kaiming", "pissa", "olora"):
    pts = []
    with open(os.path.join(runs, init, "metrics.jsonl")) as fh:
        for line in fh:
            o = json.loads(line)
            if "val_loss" in o:
                pts.append((o["step"], o["val_loss"]))
    curves[init] = pts
target = float(target) if target else min(v for _, v in curves["kaiming"])
print(f"target validation loss {target:.4f}")
for init, pts in curves.items():
    hit = next((s for s, v in pts if v <= target), None)
    best = min(pts, key=lambda p: p[1])
    print(f"{init:8s} first eval {pts[0][1]:.4f} @ {pts[0][0]}, best {best[1]:.4f} @ {best[0]}, "
          f"steps to {target:.4f}: {hit if hit is not None else 'not reached'}")
print("val loss every 10 steps:")
print("step " + " ".join(f"{init:>8s}" for init in curves))
for i in range(len(curves["kaiming"])):
    print(f"{curves['kaiming'][i][0]:4d} " + " ".join(f"{curves[k][i][1]:8.4f}" for k in curves if i < len(curves[k])))
PY
