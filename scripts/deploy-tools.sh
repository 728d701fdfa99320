#!/usr/bin/env bash
# Creates .venv-deploy with the AWS deployment tools Herald is built and checked with,
# unless it is there already: the SAM CLI (sam validate, sam build, and the Lambda Runtime
# Interface Emulator it ships), cfn-lint, and cargo-lambda (with zig, for arm64 builds).
# They live apart from .venv because their pinned dependencies clash with moto's.
# Prints nothing; `scripts/deploy-tools.sh rie` prints the emulator's path.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=('aws-sam-cli>=1.150,<2' 'cfn-lint>=1.50,<2' 'cargo-lambda>=1.9,<2' 'ziglang>=0.13,<0.16')
stamp=".venv-deploy/.herald-$(printf '%s\n' "${packages[@]}" | cksum | cut -d' ' -f1)"
if [ ! -f "$stamp" ]; then
  echo "Setting up .venv-deploy with the SAM CLI, cfn-lint and cargo-lambda (first run only)…" >&2
  if ! python3 -m venv .venv-deploy; then
    echo "python3 -m venv failed: Herald needs Python 3.9+ with venv (Debian/Ubuntu: apt install python3-venv)" >&2
    exit 1
  fi
  .venv-deploy/bin/pip install --quiet --disable-pip-version-check "${packages[@]}"
  rie="$(.venv-deploy/bin/python -c 'import samcli, os; print(os.path.join(os.path.dirname(samcli.__file__), "local", "rapid", "aws-lambda-rie-x86_64"))')"
  chmod +x "$rie"
  touch "$stamp"
fi
if [ "${1:-}" = rie ]; then
  .venv-deploy/bin/python -c 'import samcli, os; print(os.path.join(os.path.dirname(samcli.__file__), "local", "rapid", "aws-lambda-rie-x86_64"))'
fi
