# Herald's two commands: `make run` and `make test`. Both set up what they need: a Python
# virtualenv in .venv with moto's server (started on loopback and stopped afterwards), and
# for the tests .venv-deploy with the SAM CLI, cfn-lint and cargo-lambda.
SHELL := /bin/bash
CARGO ?= cargo
DEPLOY_TOOLS := $(CURDIR)/.venv-deploy/bin
BINARIES := --bin ingest --bin deliver --bin manage
# Where cargo puts what it builds: CARGO_TARGET_DIR when set, as cargo itself reads it.
# (The bootstraps' directories below are named explicitly and stay under target/.)
CARGO_TARGET := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
export SAM_CLI_TELEMETRY := 0

.PHONY: run test audit soak bench hot-code load lint fmt build build-arm64 build-x86_64 hello-x86_64 check-template sam-build-arm64 deploy-tools smoke deploy-code

## Herald on http://127.0.0.1:3000 (HERALD_LOCAL_ADDR) against moto on 127.0.0.1:5000
## (MOTO_PORT); Ctrl-C stops both.
run:
	$(CARGO) build -p herald-local
	MOTO_PORT=$${MOTO_PORT:-5000} scripts/with-moto.sh $(CARGO) run --quiet -p herald-local

## Every test: the template checked and built the SAM way, then unit, handler, adapter and
## pipeline tests against moto, the release bootstraps under the runtime emulator and under
## `sam local` in Docker (started here when it is not running), and the consumer portal in
## a headless chromium (Debian's chromium and chromium-driver, installed here when missing).
test: audit check-template build-x86_64
	$(CARGO) build --workspace --all-targets
	scripts/docker.sh
	scripts/chromium.sh
	@export HERALD_TEST_RIE="$$(scripts/deploy-tools.sh rie)"; \
	if command -v cargo-nextest >/dev/null 2>&1; then \
	  scripts/with-moto.sh $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  scripts/with-moto.sh $(CARGO) test --workspace --no-fail-fast; \
	fi

## Cargo.lock against the RustSec advisories, offline: cargo-audit (built once into
## .venv-deploy/cargo) reads the database snapshot in ../shared/advisory-db (ADVISORY_DB)
## and fails on any advisory that .cargo/audit.toml does not accept with its reason.
CARGO_AUDIT_VERSION := 0.22.2
CARGO_AUDIT := $(CURDIR)/.venv-deploy/cargo/bin/cargo-audit
ADVISORY_DB ?= $(CURDIR)/../shared/advisory-db
audit:
	@if [ "$$($(CARGO_AUDIT) --version 2>/dev/null)" != "cargo-audit $(CARGO_AUDIT_VERSION)" ]; then \
	  echo "Building cargo-audit $(CARGO_AUDIT_VERSION) into .venv-deploy/cargo (first run only)…" >&2; \
	  $(CARGO) install --quiet --locked --force cargo-audit --version $(CARGO_AUDIT_VERSION) \
	    --root $(CURDIR)/.venv-deploy/cargo; \
	fi
	@if [ ! -d "$(ADVISORY_DB)/crates" ]; then \
	  echo "no advisory database at $(ADVISORY_DB): make audit reads the snapshot beside the repository (ADVISORY_DB=<its path>)" >&2; \
	  exit 1; \
	fi
	$(CARGO_AUDIT) audit --db "$(ADVISORY_DB)" --no-fetch --stale --no-yanked

## The check to run right after `sam deploy` (docs/DEPLOY.md): one webhook through the
## whole stack. make smoke API=<the stack's ApiUrl> TOKEN=<a token for a tenant kept for
## checks> [URL=<an endpoint of yours; the API's own URL when left out>]
smoke:
	@if [ -z "$(API)" ] || [ -z "$(TOKEN)" ]; then \
	  echo "usage: make smoke API=<the stack's ApiUrl output> TOKEN=<a token for a tenant> [URL=<an endpoint of yours>]" >&2; \
	  exit 2; \
	fi
	@$(CARGO) build --quiet -p herald-cli
	@HERALD_API='$(API)' HERALD_TOKEN='$(TOKEN)' '$(CARGO_TARGET)/debug/herald' smoke $(if $(URL),--url '$(URL)')

## One function's new code in a deployed stack, its configuration kept (`cargo lambda
## deploy --env-var` would replace its whole environment; docs/DEPLOY.md):
## make deploy-code STACK=<stack name> FUNCTION=ingest|deliver|manage [ARCH=arm64|x86_64]
ARCH ?= arm64
deploy-code: deploy-tools
	@if [ -z "$(STACK)" ] || [ -z "$(filter $(FUNCTION),ingest deliver manage)" ]; then \
	  echo "usage: make deploy-code STACK=<stack name> FUNCTION=ingest|deliver|manage [ARCH=arm64|x86_64]" >&2; \
	  exit 2; \
	fi
	PATH="$(DEPLOY_TOOLS):$$PATH" $(CARGO) lambda build --release --output-format zip --bin $(FUNCTION) \
	  $(if $(filter x86_64,$(ARCH)),--x86-64 --lambda-dir target/lambda-x86_64,--arm64)
	$(DEPLOY_TOOLS)/python scripts/deploy-code.py --stack '$(STACK)' --function $(FUNCTION) \
	  --zip target/$(if $(filter x86_64,$(ARCH)),lambda-x86_64,lambda)/$(FUNCTION)/bootstrap.zip

## The big soak: HERALD_SOAK_EVENTS (2000) events to HERALD_SOAK_SUBSCRIPTIONS (2)
## flaky receivers through the local runner on moto; figures in target/soak.json.
soak:
	$(CARGO) build -p herald-tests --tests
	scripts/with-moto.sh $(CARGO) nextest run -p herald-tests --test integration --run-ignored only --no-capture -E 'test(/^soak::/)'

## Figures: batch efficiency, CPU per webhook, cold starts beside a hello-world bootstrap,
## AWS requests and cost per million deliveries, end-to-end rate and latency on moto.
## Prints a table and writes target/bench.json (docs/PERFORMANCE.md explains it).
## The functions' bootstraps are the ones `sam build` makes (build-x86_64): what deploys,
## and the build functions/hot-code.ld names the functions of (a build with other settings
## hashes every name differently). Hello is built beside them.
## The arm64 bootstraps (`sam build`'s, in target/sam-build) are measured under qemu-user,
## installed when missing (scripts/qemu-user.sh), against hello built for arm64 too.
bench: build-x86_64 sam-build-arm64 hello-x86_64
	PATH="$(DEPLOY_TOOLS):$$PATH" $(CARGO) lambda build --release --arm64 \
	  --bin hello --lambda-dir target/lambda-arm64
	scripts/qemu-user.sh
	$(CARGO) build --release -p herald-bench
	HERALD_TEST_RIE="$$(scripts/deploy-tools.sh rie)" scripts/with-moto.sh '$(CARGO_TARGET)/release/herald-bench'

## functions/hot-code.ld anew: the functions the bootstraps run at a cold start and at work,
## profiled under callgrind (valgrind installed when missing), laid out first by the link
## (docs/PERFORMANCE.md, "Cold start"). After a change of dependencies or of the compiler.
hot-code: deploy-tools
	scripts/hot-code.sh

## Open-loop load (docs/PERFORMANCE.md): publishes sent at a fixed rate whether Herald
## keeps up or not, against the local runner on moto (moto's ceiling) and against Herald's
## handlers with in-memory stores (Herald's own), the receiver failing FAIL_PERCENT (3) of
## requests; p50/p99/p99.9 publish-to-receive from the scheduled time, and a ledger that
## must balance (a void run exits non-zero). make load [RATE=<per second>] [DURATION=15]
## [RATES=10,20,40 (each in turn up to the first saturated)] [MOTO_RATES=…] [MEMORY_RATES=…]
## [TARGETS=moto,memory] [DRAIN=120] [P99_MS=5000] [FAIL_PERCENT=3]; with no rate each
## target climbs a ladder of its own. Writes target/load.json.
load:
	$(CARGO) build --release -p herald-bench
	HERALD_LOAD_RATE='$(RATE)' HERALD_LOAD_RATES='$(RATES)' HERALD_LOAD_DURATION='$(DURATION)' \
	  HERALD_LOAD_MOTO_RATES='$(MOTO_RATES)' HERALD_LOAD_MEMORY_RATES='$(MEMORY_RATES)' \
	  HERALD_LOAD_TARGETS='$(TARGETS)' HERALD_LOAD_DRAIN='$(DRAIN)' HERALD_LOAD_P99_MS='$(P99_MS)' \
	  HERALD_LOAD_FAIL_PERCENT='$(FAIL_PERCENT)' scripts/with-moto.sh '$(CARGO_TARGET)/release/herald-bench' load

deploy-tools:
	@scripts/deploy-tools.sh

## Release bootstraps for both architectures: arm64 (what template.yaml deploys by default)
## in target/lambda/<function>/bootstrap, x86_64 in target/lambda-x86_64/<function>/bootstrap.
build: build-arm64 build-x86_64

build-arm64: deploy-tools
	PATH="$(DEPLOY_TOOLS):$$PATH" $(CARGO) lambda build --release --arm64 $(BINARIES)

## The hello-world bootstrap the cold starts are measured against, for x86_64 (bench,
## hot-code), in target/lambda-x86_64/hello/bootstrap.
hello-x86_64: deploy-tools
	PATH="$(DEPLOY_TOOLS):$$PATH" $(CARGO) lambda build --release --x86-64 --compiler cargo \
	  --bin hello --lambda-dir target/lambda-x86_64

## x86_64 as `sam build` makes them (what `sam local` runs, in target/sam-build-x86_64),
## copied to target/lambda-x86_64/<binary>/bootstrap for the runtime emulator's tests.
build-x86_64: deploy-tools
	PATH="$(DEPLOY_TOOLS):$$PATH" $(DEPLOY_TOOLS)/sam build --beta-features \
	  --build-dir target/sam-build-x86_64 --parameter-overrides Architecture=x86_64
	@for f in Ingest:ingest Manage:manage Deliver:deliver; do \
	  mkdir -p target/lambda-x86_64/$${f#*:}; \
	  cp target/sam-build-x86_64/$${f%:*}Function/bootstrap target/lambda-x86_64/$${f#*:}/bootstrap; \
	done

## template.yaml as AWS would judge it, offline: cfn-lint and `sam validate --lint` with no
## warning, and `sam build` building every function (arm64, rust-cargolambda).
check-template: deploy-tools
	$(DEPLOY_TOOLS)/cfn-lint --non-zero-exit-code warning template.yaml
	AWS_DEFAULT_REGION=us-east-1 $(DEPLOY_TOOLS)/sam validate --lint
	@$(MAKE) --no-print-directory sam-build-arm64

## Every function as `sam build` makes it with the template's defaults (arm64), in
## target/sam-build: what `sam deploy` would upload.
sam-build-arm64: deploy-tools
	PATH="$(DEPLOY_TOOLS):$$PATH" $(DEPLOY_TOOLS)/sam build --beta-features --build-dir target/sam-build
	@for f in IngestFunction ManageFunction DeliverFunction; do \
	  test -x target/sam-build/$$f/bootstrap || { echo "sam build made no bootstrap for $$f" >&2; exit 1; }; \
	done

## What CI would refuse: formatting and clippy's warnings.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
