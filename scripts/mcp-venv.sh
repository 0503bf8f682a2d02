#!/usr/bin/env bash
# Makes (once) a Python venv with the official MCP Python SDK, for the MCP interoperability
# tests, and prints its python. Usage: export PICOCLAW_TEST_MCP_PYTHON="$(bash scripts/mcp-venv.sh)"
set -euo pipefail
venv="${PICOCLAW_MCP_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/picoclaw/mcp-venv}"
if ! "$venv/bin/python" -c 'import mcp.server' >/dev/null 2>&1; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "mcp>=2,<3" >&2
fi
echo "$venv/bin/python"
