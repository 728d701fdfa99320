#!/usr/bin/env bash
# Installs what runs the arm64 bootstraps (the template's default architecture) on this
# x86_64 machine, when missing: Debian's qemu-user and the arm64 C library its guests
# load (libc6-arm64-cross, in /usr/aarch64-linux-gnu). `make hot-code` logs their code
# under it; `make bench` counts their memory (docs/PERFORMANCE.md, "arm64's memory").
set -euo pipefail
if ! command -v qemu-aarch64 >/dev/null 2>&1 || ! command -v qemu-x86_64 >/dev/null 2>&1 \
  || [ ! -d /usr/aarch64-linux-gnu/lib ]; then
  echo "Installing qemu-user and libc6-arm64-cross (Debian) for the arm64 bootstraps…" >&2
  apt-get install -y -qq qemu-user libc6-arm64-cross >/dev/null
fi
