#!/usr/bin/env bash
# Builds and runs the test suite with CTest.
#   scripts/test.sh             every test (labels unit, mpi, ita, slurm, reference,
#                               cluster, ...)
#   scripts/test.sh --asan      the unit tests under ASan+UBSan
#   scripts/test.sh -L LABEL    only one label (any ctest arguments pass through)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OPENBLAS_NUM_THREADS=1
if [ "${1:-}" = "--asan" ]; then
  shift
  bash scripts/build.sh --asan
  cd build-asan
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --output-on-failure -L unit "$@"
else
  bash scripts/build.sh
  cd build
  ctest --output-on-failure "$@"
fi
