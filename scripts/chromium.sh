#!/usr/bin/env bash
# Makes sure Debian's chromium and chromium-driver are installed, for the portal's browser
# test (tests/tests/integration/portal_browser.rs drives a headless chromium through
# chromedriver): installs them when missing (as root; `apt-get update` first when the
# package lists are stale), prints nothing when they are there. Fails with the reason when
# it cannot: the browser test must not be skipped silently.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else
    echo "chromium: '$*' needs root, and this user is not root and has no sudo" >&2
    return 1
  fi
}
if ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium: no apt-get here; install chromium and its chromedriver (on PATH) by hand" >&2
  exit 1
fi
echo "Installing Debian's chromium and chromium-driver (the portal's browser test drives them)…" >&2
export DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1
if ! as_root apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null; then
  as_root apt-get update -qq >/dev/null
  as_root apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null || {
    echo "chromium: apt-get install chromium chromium-driver failed; install them by hand" >&2
    exit 1
  }
fi
for binary in chromium chromedriver; do
  command -v "$binary" >/dev/null 2>&1 || {
    echo "chromium: $binary is still not on PATH after installing chromium and chromium-driver" >&2
    exit 1
  }
done
