# One target per task. `make help` lists them.
#
# uv is required. When it is missing, make stops and says how to install it
# (python3 -m pip install --user uv) instead of installing it behind your back;
# CI (.ci/run) installs it itself. With uv installed elsewhere, point at it:
#   make test UV="python3 -m uv"
UV ?= uv

.DEFAULT_GOAL := help
.PHONY: help run up test lint fmt bench clean check-uv

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-6s %s\n", $$1, $$2}'

check-uv:
	@$(UV) --version >/dev/null 2>&1 || { \
	  echo "uv not found (UV=$(UV))." >&2; \
	  echo "Install it:  python3 -m pip install --user uv" >&2; \
	  echo "then re-run, or use:  make $(MAKECMDGOALS) UV='python3 -m uv'" >&2; \
	  exit 1; }

run: check-uv ## local cluster: gateway :8000, auth :8001, user :8002 (Ctrl-C stops)
	$(UV) run python deploy/local/cluster.py

up: check-uv ## production-like stack with Docker (docs/OPERATIONS.md; needs .env)
	$(UV) run python deploy/compose/init_secrets.py
	docker compose up --build

test: check-uv ## the whole suite; tests start the processes they need
	@$(UV) sync --frozen --quiet
	$(UV) run pytest

lint: check-uv ## ruff lint, ruff format check, mypy
	$(UV) run ruff check . && $(UV) run ruff format --check . && $(UV) run mypy

fmt: check-uv ## format and autofix
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

bench: check-uv ## benchmark suite, ~12 min (BENCH_ARGS=--quick: ~2 min); bench/README.md
	@$(UV) sync --frozen --quiet
	@# The services under test import what a deployment has: the lock's runtime
	@# dependencies, no dev tools (bench/README.md, "How it measures").
	@UV_PROJECT_ENVIRONMENT=.venv-runtime $(UV) sync --frozen --no-dev --quiet
	BENCH_PROJECT_PYTHON=$(CURDIR)/.venv-runtime/bin/python \
	  $(UV) run --with-requirements bench/requirements.txt python -m bench $(BENCH_ARGS)

clean: ## remove the local cluster's data (.data: SQLite files, keys, nginx runtime)
	rm -rf .data
