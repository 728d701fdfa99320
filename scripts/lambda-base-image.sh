#!/usr/bin/env bash
# Builds a local stand-in for AWS's `provided.al2023` Lambda base image from this machine's
# own files, for `sam local invoke|start-api|start-lambda --invoke-image <it>
# --skip-pull-image` where no image registry can be reached. Prints the image's name.
#
# What SAM needs of a base image: it builds its own image on top with
#   ADD aws-lambda-rie-<arch> /var/rapid/
#   RUN mv /var/rapid/aws-lambda-rie-<arch> /var/rapid/aws-lambda-rie && chmod +x …
# (samcli/local/docker/lambda_image.py), mounts the function's code at /var/task and runs
# the emulator, which starts /var/task/bootstrap. So the image holds /bin/sh, mv, chmod
# and cp, the C library and the other shared objects a Rust bootstrap links to (all
# copied, with their own dependencies, from this machine), the directories Lambda has
# (/var/task, /var/runtime, /opt, /tmp) and a name service that reads /etc/hosts first.
#
# The glibc inside is this machine's (Debian's 2.36), newer than AL2023's 2.34: a
# bootstrap that needs a newer symbol would run here and fail on AWS. The tests check the
# bootstraps' symbol versions against 2.34 for that reason (tests: `glibc`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
arch="$(uname -m)"
case "$arch" in
  x86_64) ;;
  aarch64) arch=arm64 ;;
  *) echo "lambda-base-image: no Lambda architecture matches this machine's $arch" >&2; exit 1 ;;
esac
# The tag names the recipe, so a changed script builds a new image.
recipe="$(cksum <"$0" | cut -d' ' -f1)"
image="herald-lambda-base:provided.al2023-$arch-$recipe"
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi

context="$(mktemp -d "${TMPDIR:-/tmp}/herald-lambda-base.XXXXXX")"
trap 'rm -rf "$context"' EXIT
rootfs="$context/rootfs"
mkdir -p "$rootfs"/{bin,etc,opt,tmp,var/task,var/runtime,var/rapid}
chmod 1777 "$rootfs/tmp"

# A file and every shared object it loads, at the same paths as on this machine.
copy_with_libraries() {
  local file="$1" target="$2"
  mkdir -p "$(dirname "$rootfs$target")"
  cp -L "$file" "$rootfs$target"
  ldd "$file" 2>/dev/null | grep -o '/[^ ]*' | while read -r library; do
    if [ ! -e "$rootfs$library" ]; then
      mkdir -p "$(dirname "$rootfs$library")"
      cp -L "$library" "$rootfs$library"
    fi
  done
}

copy_with_libraries "$(readlink -f /bin/sh)" /bin/sh
for tool in mv chmod cp rm ls cat; do
  copy_with_libraries "$(command -v "$tool")" "/bin/$tool"
done
# What a Rust bootstrap may link beyond libc (the runtime's unwinder, libm), and the name
# service modules getaddrinfo loads.
libdir="$(dirname "$(ldd /bin/sh | grep -o '/[^ ]*libc\.so\.6')")"
for library in libgcc_s.so.1 libm.so.6 libpthread.so.0 libdl.so.2 librt.so.1 libresolv.so.2 \
  libnss_files.so.2 libnss_dns.so.2; do
  if [ -e "$libdir/$library" ]; then
    copy_with_libraries "$libdir/$library" "$libdir/$library"
  fi
done
cat >"$rootfs/etc/nsswitch.conf" <<'EOF'
hosts: files dns
passwd: files
group: files
EOF
echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
echo 'root:x:0:' >"$rootfs/etc/group"
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$rootfs/etc/pki/tls/certs"
  cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/pki/tls/certs/ca-bundle.crt"
fi

cat >"$context/Dockerfile" <<'EOF'
FROM scratch
COPY rootfs/ /
ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin:/opt/bin \
    LAMBDA_TASK_ROOT=/var/task \
    LAMBDA_RUNTIME_DIR=/var/runtime \
    LANG=en_US.UTF-8 \
    TZ=:/etc/localtime
WORKDIR /var/task
EOF
echo "Building $image, a stand-in for provided.al2023 from this machine's files…" >&2
docker build --quiet --tag "$image" "$context" >/dev/null
# Nothing else uses the older recipes' images.
docker image ls --format '{{.Repository}}:{{.Tag}}' herald-lambda-base \
  | grep -v -x "$image" | xargs -r docker image rm >/dev/null 2>&1 || true
echo "$image"
