#!/usr/bin/env bash
# Installs the npm packages the `agents` tests use (the official MCP client
# SDKs, the MCP inspector, OpenAPI validators, GitHub's OpenAPI description)
# into tests/agents/node_modules, exactly as pinned by
# tests/agents/package-lock.json (`npm ci`). The product never needs them.
# scripts/install-deps.sh calls this, so README's install and CI get them;
# the tests then run offline. Skipped when the installed tree already
# matches the lockfile.
set -euo pipefail
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/agents"
stamp="$dir/node_modules/.cu-package-lock.sha256"
want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "== agents test packages already installed"
  exit 0
fi
echo "== npm ci in tests/agents"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
echo "$want" > "$stamp"
