#!/usr/bin/env bash
# usage: install-test-packages.sh NAME
#
# Installs the npm packages of the tests in tests/NAME (agents: the MCP
# client SDKs, OpenAPI validators; dashboard: playwright-core, which drives
# the system's Chromium and downloads no browser) into
# tests/NAME/node_modules, exactly as pinned by tests/NAME/package-lock.json
# (`npm ci`). The product never needs them. scripts/install-deps.sh calls
# this for each such folder, so README's install and CI get them; the tests
# then run offline. Skipped when the installed tree already matches the
# lockfile.
set -euo pipefail
name="${1:?usage: install-test-packages.sh NAME (a folder of tests/ with a package-lock.json)}"
dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/tests/$name"
if [ ! -f "$dir/package-lock.json" ]; then
  echo "install-test-packages.sh: no tests/$name/package-lock.json" >&2
  exit 2
fi
stamp="$dir/node_modules/.cu-package-lock.sha256"
want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "== $name test packages already installed"
  exit 0
fi
echo "== npm ci in tests/$name"
# never a browser download (playwright-core has none; this makes sure)
(cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
echo "$want" > "$stamp"
