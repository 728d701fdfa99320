#!/usr/bin/env bash
# Creates .venv with moto's server (the local AWS) unless it is there already.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/moto_server ]; then
  echo "Setting up .venv with moto[server] (first run only)…" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5.2,<5.3'
fi
