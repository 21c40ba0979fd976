#!/usr/bin/env bash
# Configures and builds Codex-Universal.
#   scripts/build.sh            release build in build/, warnings are errors
#   scripts/build.sh --asan     ASan+UBSan build in build-asan/
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir=build
flags=(-DCU_WERROR=ON -DCMAKE_BUILD_TYPE=Release)
if [ "${1:-}" = "--asan" ]; then
  dir=build-asan
  flags=(-DCU_WERROR=ON -DCU_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo)
fi
cmake -S . -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)"
echo "== built in $dir/"
