#!/usr/bin/env bash
# Data-parallel scaling: tokens/s of codex-train with 2 ranks x 1 thread
# against 1 rank x 1 thread, same model, same global batch, measured in the
# same run. Prints both figures and their ratio (ideal: 2.0).
#
# usage: bench/bench_dp.sh [BUILD_DIR] [extra overrides...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build}
shift || true
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 CU_PROGRESS=0
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
common=(configs/demo-base.yaml "job.runs_dir=$runs" data.source=random model.n_layer=4
        model.n_embd=256 model.n_head=4 data.seq_len=128 model.max_seq_len=128
        train.global_batch_size=16 train.micro_batch_size=8 train.max_steps=40
        train.warmup_steps=2 train.log_every=1000 lora.enabled=true "$@")
rate() { sed -n 's/.* \([0-9.]*\) tokens\/s.*/\1/p' | tail -1; }
one=$(mpirun -n 1 --bind-to core "$build/jobs/codex-train" "${common[@]}" job.name=one | rate)
two=$(mpirun -n 2 --bind-to core "$build/jobs/codex-train" "${common[@]}" job.name=two | rate)
echo "model: 4 layers, width 256, LoRA all-linear r=8, global batch 16 x 128 tokens, random data"
printf "1 rank  x 1 thread: %10.0f tokens/s\n" "$one"
printf "2 ranks x 1 thread: %10.0f tokens/s\n" "$two"
awk -v a="$one" -v b="$two" 'BEGIN { printf "ratio 2 ranks / 1 rank: %.2f (ideal 2.00)\n", b / a }'
