#!/usr/bin/env bash
# Writes functions/hot-code.ld: which functions the bootstraps run at a cold start and at
# work, profiled under valgrind's callgrind (installed here from Debian when missing).
#   1. the bootstraps built as `make build-x86_64` builds them, with their symbols kept
#      (HERALD_KEEP_SYMBOLS=1), so each function has the name it has in the stripped build;
#   2. the emulator tests (tests/tests/integration/lambda.rs) and the bench's cold starts
#      (bench/src/coldstart.rs: a start and one empty invocation) run each bootstrap
#      under callgrind, through wrappers given as HERALD_TEST_BOOTSTRAP_DIR;
#   3. scripts/hot_code.py writes the linker script from the profiles, the start's first;
#   4. the bootstraps are built again, stripped, with the new script.
# Run it after a change of dependencies or of the compiler (their hashes are in every
# name), or of what a cold start runs; then `make bench` shows the cold start's figures.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"

if ! command -v valgrind >/dev/null 2>&1; then
  echo "Installing valgrind (Debian) for the profiles…" >&2
  apt-get install -y -qq valgrind >/dev/null
fi

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
mkdir -p "$work/start/hello"
cp target/lambda-x86_64/hello/bootstrap "$work/start/hello/bootstrap"

rie="$(scripts/deploy-tools.sh rie)"
cargo build --release -p herald-bench
# The tests' verdicts do not matter here (two look at the binaries themselves, which are
# wrappers now); what ran does.
if command -v cargo-nextest >/dev/null 2>&1; then
  tests=(cargo nextest run --no-fail-fast --workspace -E 'test(/^lambda::/)')
else
  tests=(cargo test --no-fail-fast -p herald-tests --test integration -- lambda::)
fi
HERALD_TEST_BOOTSTRAP_DIR="$work/work" HERALD_TEST_RIE="$rie" scripts/with-moto.sh "${tests[@]}" || true
HERALD_TEST_BOOTSTRAP_DIR="$work/start" HERALD_BENCH_SECTIONS=cold_start HERALD_BENCH_OUT="$work/bench.json" \
  HERALD_TEST_RIE="$rie" scripts/with-moto.sh target/release/herald-bench >/dev/null
sleep 2 # the last profiles are written as their functions end

python3 scripts/hot_code.py functions/hot-code.ld \
  --start "$work"/profiles-start/* --work "$work"/profiles-work/*
make build-x86_64
echo "functions/hot-code.ld written; \`make bench\` (section cold_start) shows its effect." >&2
