# Shipyard — two commands: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9
STAMP  := $(VENV)/.synced

.PHONY: run test fuzz bench lint fmt services clean

# The environment is rebuilt only when the lock file, pyproject or this file changes. Packages are
# byte-compiled at install: with PYTHONDONTWRITEBYTECODE set (as on our CI machines) every process
# would otherwise compile them again at import (~0.5 s per server, worker and CLI start).
$(STAMP): pyproject.toml uv.lock Makefile
	@echo "==> creating the environment in $(VENV) (first time only, ~1 min)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/pip install --quiet --progress-bar off uv==$(UV_VERSION)
	@UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --inexact --compile-bytecode
	@touch $(STAMP)

venv: $(STAMP)

# The server migrates the record store when it starts (SHIPYARD_MIGRATE_ON_START).
run: $(STAMP)
	$(BIN)/shipyard serve

test: $(STAMP)
	@scripts/services.sh
	SHIPYARD_REQUIRE_SERVICES=$${SHIPYARD_REQUIRE_SERVICES:-1} $(BIN)/pytest -q $(PYTEST_ARGS)

# schemathesis over the OpenAPI document, against a real server on PostgreSQL (README: Tests).
fuzz: $(STAMP)
	@scripts/services.sh
	$(BIN)/python -m tests.e2e.fuzz $(FUZZ_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

services:
	@scripts/services.sh

clean:
	rm -rf $(VENV) .shipyard .pytest_cache .mypy_cache .ruff_cache
