#!/usr/bin/env bash
# Install Dora and its development tools into ./.venv from uv.lock (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -m uv --version >/dev/null 2>&1; then
    "$PYTHON" -m pip install --quiet --disable-pip-version-check "uv>=0.5"
fi
"$PYTHON" -m uv sync --frozen --quiet
echo "dora installed: $(.venv/bin/dora version --client | head -1)"
