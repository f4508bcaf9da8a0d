# fastwt developer commands. The two that matter on a fresh machine:
#   make run    build + install fastwt, then start the echo dev server (prints URL, hash, JS)
#   make test   install everything the tests need, then lint, type-check and run all tests
PYTHON ?= python3
HOST ?=
PORT ?= 4433

.PHONY: help install run test lint fmt wheel

help:
	@echo "make run     build, install and start the echo dev server on 127.0.0.1 and ::1 (PORT=$(PORT))"
	@echo "make test    the whole test suite (installs chromium + test deps; lint, types, tests)"
	@echo "make lint    cargo fmt/clippy, ruff, mypy only"
	@echo "make fmt     format Rust and Python sources"
	@echo "make wheel   build the release abi3 wheel into dist/"

install:
	PYTHON=$(PYTHON) bash scripts/install.sh

run: install
	$(PYTHON) -m fastwt dev --port $(PORT) $(if $(HOST),--host $(HOST))

test:
	PYTHON=$(PYTHON) bash scripts/test.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

fmt:
	cargo fmt --all
	$(PYTHON) -m ruff format .
	$(PYTHON) -m ruff check --fix .

wheel:
	$(PYTHON) -m maturin build --release --out dist
