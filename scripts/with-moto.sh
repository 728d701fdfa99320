#!/usr/bin/env bash
# Runs a command with moto's server on a free loopback port (or MOTO_PORT), exporting
# HERALD_TEST_MOTO_URL, AWS_ENDPOINT_URL and dummy credentials; stops moto afterwards and
# exits with the command's status.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/venv.sh"
port="${MOTO_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}"
log="${MOTO_LOG:-$root/target/moto.log}"
mkdir -p "$(dirname "$log")"
# The wrapper makes moto's DynamoDB writes atomic, as DynamoDB's are (see the script).
"$root/.venv/bin/python" "$root/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto=$!
# moto ignores the terminal's Ctrl-C (a background job); the command gets it, finishes,
# and moto is stopped here after it.
trap 'kill $moto 2>/dev/null; wait $moto 2>/dev/null || true' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
ready=false
for _ in $(seq 1 150); do
  if ! kill -0 $moto 2>/dev/null; then
    echo "moto_server did not start on 127.0.0.1:$port; see $log" >&2
    tail -n 5 "$log" >&2 || true
    exit 1
  fi
  if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null; then
    ready=true
    break
  fi
  sleep 0.2
done
if [ "$ready" != true ]; then
  echo "moto_server on 127.0.0.1:$port did not answer within 30 s; see $log" >&2
  exit 1
fi
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
