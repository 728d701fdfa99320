#!/usr/bin/env bash
# Writes functions/hot-code.ld: which functions the bootstraps run at a cold start and at
# work, profiled under valgrind's callgrind (installed here from Debian when missing).
#   1. the bootstraps built as `make build-x86_64` builds them, with their symbols kept
#      (HERALD_KEEP_SYMBOLS=1), so each function has the name it has in the stripped build;
#   2. the emulator tests (tests/tests/integration/lambda.rs) and the bench's cold starts
#      (bench/src/coldstart.rs: a start and one empty invocation) run each bootstrap
#      under callgrind, through wrappers given as HERALD_TEST_BOOTSTRAP_DIR;
#   3. the same for the arm64 bootstraps (the template's default), built by `sam build`
#      with their symbols kept and run under qemu-user (Debian's qemu-user and
#      libc6-arm64-cross, installed when missing), which logs the function of each block
#      of code it translates (`-d in_asm`);
#   4. scripts/hot_code.py writes the linker script from the profiles and the logs, the
#      start's first;
#   5. the bootstraps are built again, stripped, with the new script.
# Run it after a change of dependencies or of the compiler (their hashes are in every
# name), or of what a cold start runs; then `make bench` shows the cold start's figures.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

if ! command -v valgrind >/dev/null 2>&1; then
  echo "Installing valgrind (Debian) for the profiles…" >&2
  apt-get install -y -qq valgrind >/dev/null
fi
scripts/qemu-user.sh

work="$(mktemp -d /tmp/herald-hot-code.XXXXXX)"
trap 'rm -rf "$work"' EXIT

HERALD_KEEP_SYMBOLS=1 make build-x86_64
mkdir -p "$work/bin"
for f in ingest manage deliver; do
  cp "target/lambda-x86_64/$f/bootstrap" "$work/bin/$f"
  for kind in start work; do
    mkdir -p "$work/$kind/$f" "$work/profiles-$kind"
    # A session of its own: the emulator's kill at the end of a test reaches the shell,
    # and the function, finding the runtime API gone, ends and writes its profile.
    cat > "$work/$kind/$f/bootstrap" <<EOF
#!/bin/sh
setsid valgrind -q --tool=callgrind --compress-strings=no --compress-pos=no --demangle=no \
  --callgrind-out-file=$work/profiles-$kind/$f.%p $work/bin/$f "\$@" &
wait
EOF
    chmod +x "$work/$kind/$f/bootstrap"
  done
done
make hello-x86_64 # the cold start's yardstick; a fresh checkout has none yet
mkdir -p "$work/start/hello"
cp target/lambda-x86_64/hello/bootstrap "$work/start/hello/bootstrap"

# arm64, as `make check-template` builds it (the template's default architecture).
HERALD_KEEP_SYMBOLS=1 PATH="$root/.venv-deploy/bin:$PATH" .venv-deploy/bin/sam build \
  --beta-features --build-dir "$work/sam-arm64"
mkdir -p "$work/arm64-bin"
for f in ingest manage deliver; do
  function="$(tr '[:lower:]' '[:upper:]' <<<"${f:0:1}")${f:1}Function"
  cp "$work/sam-arm64/$function/bootstrap" "$work/arm64-bin/$f"
  for kind in start work; do
    mkdir -p "$work/arm64-$kind/$f" "$work/logs-$kind"
    # qemu puts the process id where the log's name says %d.
    cat > "$work/arm64-$kind/$f/bootstrap" <<EOF
#!/bin/sh
setsid qemu-aarch64 -L /usr/aarch64-linux-gnu -d in_asm -D $work/logs-$kind/$f.%d \
  $work/arm64-bin/$f "\$@" &
wait
EOF
    chmod +x "$work/arm64-$kind/$f/bootstrap"
  done
done
mkdir -p "$work/arm64-start/hello"
cp target/lambda-x86_64/hello/bootstrap "$work/arm64-start/hello/bootstrap"

rie="$(scripts/deploy-tools.sh rie)"
cargo build --release -p herald-bench
bench="${CARGO_TARGET_DIR:-$root/target}/release/herald-bench"
# The tests' verdicts do not matter here (two look at the binaries themselves, which are
# wrappers now); what ran does.
if command -v cargo-nextest >/dev/null 2>&1; then
  tests=(cargo nextest run --no-fail-fast --workspace -E 'test(/^lambda::/)')
else
  tests=(cargo test --no-fail-fast -p herald-tests --test integration -- lambda::)
fi
HERALD_TEST_BOOTSTRAP_DIR="$work/work" HERALD_TEST_RIE="$rie" scripts/with-moto.sh "${tests[@]}" || true
HERALD_TEST_BOOTSTRAP_DIR="$work/start" HERALD_BENCH_SECTIONS=cold_start HERALD_BENCH_OUT="$work/bench.json" \
  HERALD_TEST_RIE="$rie" scripts/with-moto.sh "$bench" >/dev/null
HERALD_TEST_BOOTSTRAP_DIR="$work/arm64-work" HERALD_TEST_RIE="$rie" scripts/with-moto.sh "${tests[@]}" || true
HERALD_TEST_BOOTSTRAP_DIR="$work/arm64-start" HERALD_BENCH_SECTIONS=cold_start \
  HERALD_BENCH_OUT="$work/bench-arm64.json" HERALD_TEST_RIE="$rie" \
  scripts/with-moto.sh "$bench" >/dev/null
sleep 2 # the last profiles and logs are written as their functions end

python3 scripts/hot_code.py functions/hot-code.ld \
  --start "$work"/profiles-start/* --work "$work"/profiles-work/* \
  --arm64-start "$work"/logs-start/* --arm64-work "$work"/logs-work/*
make build-x86_64
echo "functions/hot-code.ld written; \`make bench\` (section cold_start) shows its effect." >&2
