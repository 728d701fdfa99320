#!/usr/bin/env bash
# Runs a command with moto's server on a free loopback port (or MOTO_PORT), exporting
# HERALD_TEST_MOTO_URL, AWS_ENDPOINT_URL and dummy credentials; stops moto afterwards.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/venv.sh"
port="${MOTO_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
log="${MOTO_LOG:-$root/target/moto.log}"
mkdir -p "$(dirname "$log")"
"$root/.venv/bin/python" "$root/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto=$!
trap 'kill $moto 2>/dev/null; wait $moto 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then break; fi
  if ! kill -0 $moto 2>/dev/null; then echo "moto_server did not start; see $log" >&2; exit 1; fi
  sleep 0.2
done
export HERALD_TEST_MOTO_URL="http://127.0.0.1:$port"
export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}"
export AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
set +e
"$@"
status=$?
set -e
exit $status
