#!/usr/bin/env bash
# Multi-node figures on the test bed of tests/cluster/ (hosts that are
# namespaces of this machine, linked by veth pairs and a bridge; needs root):
#   1. MPI_Allreduce of a 4 MB gradient bucket: 1 host x 2 ranks (shared
#      memory) against 2 hosts x 1 rank over TCP, with and without a
#      1 Gbit/s tbf limit on each host's link;
#   2. tokens/s of codex-train, LoRA and full fine-tuning, on 1 host x 2
#      ranks against 2 hosts x 1 rank, with and without the limit.
# Every figure comes from this run; docs/performance.md turns them into a
# model of the step time against link bandwidth and node count.
#
# usage: bench/bench_cluster.sh [BUILD_DIR]
#   CU_CLUSTER_DIR  the bed's state directory (default BUILD_DIR/bench-cluster)
#   CU_BENCH_RATE   the limit (default 1gbit)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
src=$PWD
build=$(cd "${1:-build}" && pwd)
export CU_CLUSTER_DIR=${CU_CLUSTER_DIR:-$build/bench-cluster}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 CU_PROGRESS=0
rate=${CU_BENCH_RATE:-1gbit}
bed=$src/tests/cluster/cluster.sh
$bed down
trap '$bed down' EXIT
$bed up 2
runs=$CU_CLUSTER_DIR/shared
mkdir -p "$runs"

one_host=(mpirun -n 2 --bind-to none)
two_hosts=(mpirun --host cu-n1:1,cu-n2:1 -n 2 --map-by node --bind-to none
           --mca plm_rsh_agent "$src/tests/cluster/rsh" --mca oob_tcp_if_include cu0
           --mca btl tcp,self --mca btl_tcp_if_include cu0)
limit() { $bed limit cu-n1 "$1" && $bed limit cu-n2 "$1"; }

allreduce() { # where: one|two
  local -n cmd=$1
  $bed exec cu-head "${cmd[@]}" "$build/bench/bench_allreduce" $((4 << 20)) 20 |
    sed -n 's/.*: \([0-9.]*\) ms.*algbw \([0-9]*\).*/\1 \2/p'
}

common=("$src/configs/demo-base.yaml" "job.runs_dir=$runs" data.source=random model.n_layer=4
        model.n_embd=256 model.n_head=4 data.seq_len=128 model.max_seq_len=128
        train.global_batch_size=16 train.micro_batch_size=8 train.max_steps=30
        train.warmup_steps=2 train.log_every=1000)
tokens() { # launcher-array kind(lora|full) run-name
  local -n cmd=$1
  rm -rf "${runs:?}/$3"
  $bed exec cu-head "${cmd[@]}" "$build/jobs/codex-train" "${common[@]}" "job.name=$3" \
    "lora.enabled=$([ "$2" = lora ] && echo true || echo false)" |
    sed -n 's/.* \([0-9.]*\) tokens\/s.*/\1/p' | tail -1
}

read -r ar1 bw1 < <(allreduce one_host)
read -r ar2 bw2 < <(allreduce two_hosts)
limit "$rate"
read -r ar3 bw3 < <(allreduce two_hosts)
limit none

echo "allreduce of a 4 MB bucket, 2 ranks (median of 20):"
printf "  1 host  x 2 ranks (shared memory): %8.2f ms  algbw %6s MB/s\n" "$ar1" "$bw1"
printf "  2 hosts x 1 rank  (TCP, veth):     %8.2f ms  algbw %6s MB/s\n" "$ar2" "$bw2"
printf "  2 hosts x 1 rank  (TCP, %s tbf): %8.2f ms  algbw %6s MB/s\n" "$rate" "$ar3" "$bw3"

echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
echo "codex-train tokens/s, 4 layers x 256 wide, global batch 16 x 128 tokens:"
for kind in lora full; do
  t1=$(tokens one_host $kind $kind-1x2)
  t2=$(tokens two_hosts $kind $kind-2x1)
  limit "$rate"
  t3=$(tokens two_hosts $kind $kind-2x1-limited)
  limit none
  printf "  %-4s 1 host x 2 ranks %8.0f | 2 hosts x 1 rank %8.0f (ratio %.2f) | with %s %8.0f (ratio %.2f)\n" \
    "$kind" "$t1" "$t2" "$(awk -v a="$t1" -v b="$t2" 'BEGIN{print b/a}')" "$rate" "$t3" \
    "$(awk -v a="$t1" -v b="$t3" 'BEGIN{print b/a}')"
done
