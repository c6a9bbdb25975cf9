#!/usr/bin/env bash
# Installs everything iirg and its test suite need, into ./.venv (idempotent; ~2-3 min when new).
#   - Python venv with iirg[all] (torch pinned first: an unpinned torch pulls a multi-GB CUDA build)
#   - Neo4j's Cypher linter (npm, tests/lint) used by the test suite
#   - Debian's chromium for the dashboard's browser test (when run as root with apt available)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==${TORCH_VERSION}"
.venv/bin/python -m pip install -q -e ".[all]"

if command -v npm >/dev/null 2>&1; then
  npm ci --prefix tests/lint --no-audit --no-fund --loglevel=error
else
  echo "install.sh: npm not found; the Cypher lint test will skip" >&2
fi

if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
echo "install.sh: done (.venv ready)"
