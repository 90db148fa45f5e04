#!/usr/bin/env bash
# Installs what the test suite needs beyond Python packages, on a fresh machine:
# redis-server (tests start their own), Prometheus + promtool (observability tests), helm.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v promtool >/dev/null || need+=(prometheus)
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
