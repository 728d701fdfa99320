#!/usr/bin/env bash
# Creates .venv with moto's server (the local AWS) unless it is there already.
set -euo pipefail
cd "$(dirname "$0")/.."
# moto serves SQS and DynamoDB; openapi-spec-validator and schemathesis check openapi.yaml;
# standardwebhooks and cryptography verify Herald's signatures independently of Herald.
# The stamp names the package set, so changing it reinstalls.
packages=('moto[server]>=5.2,<5.3' 'schemathesis>=4.3,<5' 'openapi-spec-validator>=0.7,<1'
          'standardwebhooks>=1.0,<2' 'cryptography>=42')
stamp=".venv/.herald-$(printf '%s\n' "${packages[@]}" | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  echo "Setting up .venv with moto[server], schemathesis and verifiers (first run only)…" >&2
  if ! python3 -m venv .venv; then
    echo "python3 -m venv failed: Herald needs Python 3.9+ with venv (Debian/Ubuntu: apt install python3-venv)" >&2
    exit 1
  fi
  .venv/bin/pip install --quiet --disable-pip-version-check "${packages[@]}"
  touch "$stamp"
fi
