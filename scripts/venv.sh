#!/usr/bin/env bash
# Creates .venv with moto's server (the local AWS) unless it is there already.
set -euo pipefail
cd "$(dirname "$0")/.."
# moto serves SQS and DynamoDB; openapi-spec-validator and schemathesis check openapi.yaml.
if [ ! -x .venv/bin/moto_server ] || [ ! -x .venv/bin/schemathesis ]; then
  echo "Setting up .venv with moto[server] and schemathesis (first run only)…" >&2
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check \
    'moto[server]>=5.2,<5.3' 'schemathesis>=4.3,<5' 'openapi-spec-validator>=0.7,<1'
fi
