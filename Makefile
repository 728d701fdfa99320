# Herald's two commands: `make run` and `make test`. Both set up what they need: a Python
# virtualenv in .venv with moto's server, started on loopback and stopped afterwards.
SHELL := /bin/bash
CARGO ?= cargo

.PHONY: run test lint fmt

## Herald on http://127.0.0.1:3000 (HERALD_LOCAL_ADDR) against moto on 127.0.0.1:5000
## (MOTO_PORT); Ctrl-C stops both.
run:
	$(CARGO) build -p herald-local
	MOTO_PORT=$${MOTO_PORT:-5000} scripts/with-moto.sh $(CARGO) run --quiet -p herald-local

## Every test: unit, handler, adapters and the pipeline against moto.
test:
	$(CARGO) build --workspace --all-targets
	@if command -v cargo-nextest >/dev/null 2>&1; then \
	  scripts/with-moto.sh $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  scripts/with-moto.sh $(CARGO) test --workspace --no-fail-fast; \
	fi

## What CI would refuse: formatting and clippy's warnings.
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
