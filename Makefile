# Herald's two commands: `make run` and `make test`. Both set up what they need.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test lint fmt

## Herald on http://127.0.0.1:3000 against a local moto; Ctrl-C stops everything.
run:
	$(CARGO) build -p herald-local
	MOTO_PORT=$${MOTO_PORT:-5000} scripts/with-moto.sh target/debug/herald-local

## Every test: unit, handler, adapters and the pipeline against moto.
test:
	$(CARGO) build --workspace --all-targets
	@if command -v cargo-nextest >/dev/null 2>&1; then \
	  scripts/with-moto.sh $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  scripts/with-moto.sh $(CARGO) test --workspace --no-fail-fast; \
	fi

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
