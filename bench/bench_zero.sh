#!/usr/bin/env bash
# Memory of full fine-tuning with and without train.shard_optimizer: peak
# resident memory of every rank (GNU time's %M) for codex-train at GPT-2 124M
# shapes (12 layers, width 768, 50,257 tokens; 124.4M trainable parameters),
# 3 optimizer steps of a global batch of 4 x 64 random tokens, on 1, 2 and 4
# ranks, sharded and not, the mean time of steps 2 and 3 (metrics.jsonl's
# ms_per_step: the first step also faults the buffers in), and the time of
# the end-of-run checkpoint (one writer unsharded, every rank sharded) from
# events.jsonl.
#
# PRECISION=bf16 runs the same in bf16 (train.precision: the products on
# oneDNN, fp32 master weights; sharded, each rank keeps the fp32 masters of
# its own slice of the matrices only).
#
# usage: [PRECISION=fp32|bf16] bench/bench_zero.sh [BUILD_DIR] [RANKS...]
#        (default: fp32, build 1 2 4)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build}
shift || true
ranks=("$@")
[ ${#ranks[@]} -gt 0 ] || ranks=(1 2 4)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 CU_PROGRESS=0
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
common=(configs/demo-base.yaml "job.runs_dir=$runs" data.source=random model.n_layer=12
        model.n_head=12 model.n_embd=768 model.vocab_size=50257 model.max_seq_len=1024
        data.seq_len=64 train.global_batch_size=4 train.micro_batch_size=1 train.max_steps=3
        train.warmup_steps=0 train.log_every=1 lora.enabled=false eval.every_steps=0
        "train.precision=${PRECISION:-fp32}")
echo "precision ${PRECISION:-fp32}"
printf "%-6s %-8s %-34s %-12s %s\n" ranks sharded "peak RSS per rank (MB)" "ms/step" "checkpoint save (s)"
for w in "${ranks[@]}"; do
  for shard in false true; do
    name="w${w}_${shard}"
    # each rank's GNU time report in a file of its own (on stderr the
    # ranks' lines can run together)
    mpirun -n "$w" --oversubscribe sh -c '/usr/bin/time -o "$0.$OMPI_COMM_WORLD_RANK" \
          -f "%M" "$@"' "$runs/rss_$name" "$build/jobs/codex-train" "${common[@]}" \
          "job.name=$name" "train.shard_optimizer=$shard" >/dev/null 2>&1
    rss=$(cat "$runs/rss_$name".* | sort -n |
          awk '{ printf "%s%.0f", (NR > 1 ? " " : ""), $1 / 1024 }')
    save=$(grep '"type": "checkpoint"' "$runs/$name/events.jsonl" | tail -1 |
           sed -n 's/.*"seconds": \([0-9.]*\).*/\1/p')
    step=$(sed -n 's/.*"step": \([0-9]*\),.*"ms_per_step": \([0-9.]*\).*/\1 \2/p' \
             "$runs/$name/metrics.jsonl" | awk '$1 >= 2 { s += $2; n++ } END { if (n) printf "%.0f", s / n }')
    printf "%-6s %-8s %-34s %-12s %s\n" "$w" "$shard" "$rss" "$step" "$save"
    rm -rf "${runs:?}/$name"
  done
done
