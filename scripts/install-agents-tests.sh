#!/usr/bin/env bash
# Installs the npm packages the `agents` tests use (the official MCP client
# SDKs, the MCP inspector, OpenAPI validators, GitHub's OpenAPI description)
# into tests/agents/node_modules, exactly as pinned by
# tests/agents/package-lock.json: scripts/install-test-packages.sh agents.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/install-test-packages.sh" agents
