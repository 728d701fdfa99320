#!/usr/bin/env bash
# Makes sure a Docker engine answers, for `sam local`: installs Debian's docker.io when
# there is no engine (as root), starts dockerd in the background when none runs (it keeps
# running afterwards; its log is target/dockerd.log), and waits for it. Fails with the
# reason when it cannot: the SAM tests must not be skipped silently.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if docker info >/dev/null 2>&1; then
  exit 0
fi
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else
    echo "docker: '$*' needs root, and this user is not root and has no sudo" >&2
    return 1
  fi
}
if ! command -v dockerd >/dev/null 2>&1; then
  echo "No Docker engine here: installing Debian's docker.io (sam local runs functions in it)…" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! as_root apt-get install -y -qq docker.io >/dev/null; then
    as_root apt-get update -qq >/dev/null
    as_root apt-get install -y -qq docker.io >/dev/null || {
      echo "docker: apt-get install docker.io failed; install a Docker engine and start it" >&2
      exit 1
    }
  fi
fi
if ! pgrep -x dockerd >/dev/null 2>&1; then
  mkdir -p "$root/target"
  echo "Starting dockerd in the background (log: target/dockerd.log)…" >&2
  as_root sh -c "nohup dockerd >'$root/target/dockerd.log' 2>&1 &" || exit 1
fi
for _ in $(seq 1 120); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.5
done
echo "docker: the engine did not answer within 60 s; the last lines of target/dockerd.log:" >&2
tail -n 20 "$root/target/dockerd.log" >&2 2>/dev/null || true
exit 1
