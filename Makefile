# fastwt developer commands. The two that matter on a fresh machine:
#   make run    build + install fastwt, then start the echo dev server (prints URL, hash, JS)
#   make test   install everything the tests need, then lint, type-check and run all tests
# Both use the project's own virtual environment, .venv/ (created from the system's python3
# on first use; never the system interpreter itself). PYTHON=/path/to/python picks another.
PYTHON ?=
HOST ?=
PORT ?= 4433
export PYTHON
# The interpreter the scripts chose (creates .venv/ when needed); evaluated per recipe.
PY = $$(bash scripts/python.sh)

.PHONY: help install run test lint fmt wheel

help:
	@echo "make run     build, install and start the echo dev server on 127.0.0.1 and ::1 (PORT=$(PORT))"
	@echo "make test    the whole test suite (installs chromium, firefox-esr + test deps; lint, types, tests)"
	@echo "make lint    cargo fmt/clippy, ruff, mypy only"
	@echo "make fmt     format Rust and Python sources"
	@echo "make wheel   build the release abi3 wheel into dist/"

install:
	bash scripts/install.sh

run: install
	"$(PY)" -m fastwt dev --port $(PORT) $(if $(HOST),--host $(HOST))

test:
	bash scripts/test.sh

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	"$(PY)" -m ruff check .
	"$(PY)" -m ruff format --check .
	"$(PY)" -m mypy

fmt:
	cargo fmt --all
	"$(PY)" -m ruff format .
	"$(PY)" -m ruff check --fix .

wheel:
	"$(PY)" -m maturin build --release --out dist
