#!/usr/bin/env bash
# From a fresh machine to a fine-tuned demo model: installs the Debian
# packages, builds, and runs the demo on one MPI rank in two stages:
#   1. configs/demo-base.yaml trains a small GPT-2 fully on source code in
#      eight languages (skipped when runs/demo-base/final.h5 exists);
#   2. configs/demo.yaml adapts it to Python with LoRA.
# Extra arguments are overrides for stage 2, e.g. train.max_steps=50.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1
# mpirun gives the rank a terminal even when this script's output is a file
[ -t 1 ] || export CU_PROGRESS=0
if [ ! -f runs/demo-base/final.h5 ]; then
  echo "== stage 1: training the base model (configs/demo-base.yaml)"
  mpirun -n 1 --oversubscribe ./build/jobs/codex-train configs/demo-base.yaml
fi
echo "== stage 2: adapting it to Python with LoRA (configs/demo.yaml)"
mpirun -n 1 --oversubscribe ./build/jobs/codex-train configs/demo.yaml "$@"
