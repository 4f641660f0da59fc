#!/usr/bin/env bash
# Install Dora and its development tools into ./.venv (idempotent, offline-friendly after the first run).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v uv >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check "uv>=0.5"
fi
uv sync --frozen --quiet
echo "dora installed: $(.venv/bin/dora version)"
