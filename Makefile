# Shipyard — two commands: `make run` and `make test`.
VENV   := .venv
BIN    := $(VENV)/bin
UV_VERSION := 0.13.9
RUN_STAMP := $(VENV)/.synced-run
DEV_STAMP := $(VENV)/.synced-dev

# The first Python 3.11 or newer on PATH (or PYTHON=/path/to/python). Only the first environment
# build needs it: the variable is recursive, so make looks only when that recipe runs.
PYTHON_CANDIDATES := python3.13 python3.12 python3.11 python3
PYTHON ?= $(firstword $(foreach p,$(PYTHON_CANDIDATES),$(shell command -v $(p) >/dev/null 2>&1 \
	&& $(p) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && echo $(p))))
NO_PYTHON := no Python 3.11 or newer found (tried $(PYTHON_CANDIDATES)); install one, or run \
	make PYTHON=/path/to/python3.11-or-newer

.PHONY: run test venv fuzz bench lint fmt services clean

# Two environments in one folder: `run` syncs without the development tools, `test` (and bench,
# lint, fmt) with them. Both syncs are --inexact, so one never uninstalls what the other added:
# switching between `make run` and `make test` costs one no-op sync, never a reinstall. Each is
# redone only when the lock file, pyproject or this file changes. Packages are byte-compiled at
# install: with PYTHONDONTWRITEBYTECODE set (as on our CI machines) every process would otherwise
# compile them again at import (~0.5 s per server, worker and CLI start).
$(BIN)/uv:
	@echo "==> creating the environment in $(VENV) with $(or $(PYTHON),$(error $(NO_PYTHON))) (first time only, ~1 min)"
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
		|| { echo "error: $(PYTHON) is older than 3.11" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --progress-bar off uv==$(UV_VERSION)

$(RUN_STAMP): pyproject.toml uv.lock Makefile | $(BIN)/uv
	@UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --no-dev --inexact --compile-bytecode
	@touch $@

$(DEV_STAMP): pyproject.toml uv.lock Makefile | $(BIN)/uv
	@UV_PROJECT_ENVIRONMENT=$(VENV) $(BIN)/uv sync --frozen --inexact --compile-bytecode
	@touch $@

# checkov (the Kubernetes manifests' security scan, tests/deploy) pins boto3 1.35, older than
# aiobotocore's botocore: it gets an environment of its own, inside .venv, from pinned versions.
CHECKOV_VERSION := 3.3.30
CHECKOV := $(VENV)/tools/checkov/bin/checkov
CHECKOV_PINS := tests/deploy/checkov-requirements.txt
$(CHECKOV): $(CHECKOV_PINS) | $(BIN)/uv
	@$(BIN)/uv venv --quiet --allow-existing --python $(BIN)/python $(VENV)/tools/checkov
	@VIRTUAL_ENV=$(VENV)/tools/checkov $(BIN)/uv pip install --quiet -r $(CHECKOV_PINS) \
		checkov==$(CHECKOV_VERSION)
	@touch $@

venv: $(DEV_STAMP) $(CHECKOV)

# The server migrates the record store when it starts (SHIPYARD_MIGRATE_ON_START).
run: $(RUN_STAMP)
	$(BIN)/shipyard serve

test: $(DEV_STAMP) $(CHECKOV)
	@scripts/services.sh
	SHIPYARD_REQUIRE_SERVICES=$${SHIPYARD_REQUIRE_SERVICES:-1} $(BIN)/pytest -q $(PYTEST_ARGS)

# schemathesis over the OpenAPI document, against a real server on PostgreSQL (docs/development.md).
fuzz: $(DEV_STAMP)
	@scripts/services.sh
	$(BIN)/python -m tests.e2e.fuzz $(FUZZ_ARGS)

bench: $(DEV_STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy

fmt: $(DEV_STAMP)
	$(BIN)/ruff format src tests bench examples
	$(BIN)/ruff check --fix src tests bench examples

services:
	@scripts/services.sh

clean:
	rm -rf $(VENV) .shipyard .pytest_cache .mypy_cache .ruff_cache
