#!/usr/bin/env bash
# Installs what the test suite needs beyond Python packages, on a fresh machine:
# redis-server (tests start their own), Prometheus + promtool (observability tests), Chromium
# (the console's browser tests drive it with Playwright from PyPI), helm.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v promtool >/dev/null || need+=(prometheus)
command -v chromium >/dev/null || need+=(chromium)
if ((${#need[@]})); then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing ${need[*]} from Debian packages" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    # the Debian package starts a Prometheus service we do not want on :9090
    pkill -x prometheus 2>/dev/null || true
  else
    echo "missing ${need[*]}: install them (Debian: apt-get install ${need[*]})" >&2
    exit 1
  fi
fi
bash scripts/install-helm.sh >/dev/null
# An independent MCP tasks-extension client for tests/mcp: fastmcp 4 in a venv of its own
# (its pins are not ours). Pinned; made once.
fastmcp_venv=.cache/fastmcp-venv
if [ ! -x "$fastmcp_venv/bin/python" ] || ! "$fastmcp_venv/bin/python" -c "import fastmcp_tasks" 2>/dev/null; then
  echo "installing the fastmcp 4 test client into $fastmcp_venv" >&2
  rm -rf "$fastmcp_venv"
  python3 -m venv "$fastmcp_venv"
  "$fastmcp_venv/bin/python" -m pip install -q "fastmcp[tasks]==4.1.4" >/dev/null
fi
