#!/usr/bin/env bash
# From a fresh machine to a trained demo model: installs the Debian packages,
# builds, and runs the demo job (configs/demo.yaml: a small GPT-2 with LoRA
# learning this repository's own C sources with the byte tokenizer) on one
# MPI rank. Extra arguments are config overrides, e.g. train.max_steps=50.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1
mpirun -n 1 --oversubscribe ./build/jobs/codex-train configs/demo.yaml "$@"
