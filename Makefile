# One target per task. `make help` lists them.
#
# uv runs everything. The uv on PATH is used; without one, make installs uv
# into .tools/uv (git-ignored, this checkout only) with the machine's pip and
# says so. Point at another one with:  make test UV="python3 -m uv"
LOCAL_UV := $(CURDIR)/.tools/uv/bin/uv
UV ?= $(or $(shell command -v uv 2>/dev/null),$(LOCAL_UV))
# Debian's docker client first: BuildKit built in.
DOCKER_PATH := /usr/bin:$(PATH)

.DEFAULT_GOAL := help
.PHONY: help run up images compose-test test lint fmt bench clean check-uv

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

check-uv:
	@if ! $(UV) --version >/dev/null 2>&1; then \
	  if [ "$(UV)" != "$(LOCAL_UV)" ]; then \
	    echo "uv not found (UV=$(UV))." >&2; exit 1; \
	  fi; \
	  echo "uv is not installed: installing it into .tools/uv for this checkout"; \
	  echo "  python3 -m pip install --target .tools/uv uv"; \
	  python3 -m pip install --quiet --disable-pip-version-check --target .tools/uv uv || { \
	    echo "could not install uv with pip (apt-get install python3-pip, or see" >&2; \
	    echo "https://docs.astral.sh/uv/ and re-run)" >&2; exit 1; }; \
	  $(LOCAL_UV) --version; \
	fi

run: check-uv ## local cluster: gateway :8000, auth :8001, user :8002 (Ctrl-C stops; REPLICAS=2 for two of each)
	$(UV) run python deploy/local/cluster.py

up: ## the whole stack with Docker on http://localhost:8000 (docs/OPERATIONS.md)
	@PATH="$(DOCKER_PATH)" DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1 sh -c \
	  'if docker compose version >/dev/null 2>&1; then exec docker compose up --build; else exec docker-compose up --build; fi'

images: ## without a registry: base, stand-ins and the project's images (docs/OPERATIONS.md)
	@deploy/images/ensure-dockerd.sh
	deploy/images/make-images.sh

compose-test: check-uv ## run the compose stack for real: api.http, passkeys, restart (~5 min)
	@$(UV) sync --frozen --quiet
	@deploy/images/ensure-dockerd.sh
	deploy/images/make-images.sh
	$(UV) run pytest -m compose tests/compose -p no:cacheprovider

# Two workers: most of the suite waits on processes it started (services,
# browsers, Redis groups), so two keep both cores busy. A file stays on one
# worker (`--dist loadfile`; tests/conftest.py). PYTEST_WORKERS=0 runs it
# in one process.
PYTEST_WORKERS ?= 2

test: check-uv ## the whole suite but the compose stack; tests start what they need
	@$(UV) sync --frozen --quiet
	$(UV) run pytest -n $(PYTEST_WORKERS) --dist loadfile

lint: check-uv ## ruff lint, ruff format check, mypy, import-linter contracts
	$(UV) run ruff check . && $(UV) run ruff format --check . && $(UV) run mypy && $(UV) run lint-imports

fmt: check-uv ## format and autofix
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

bench: check-uv ## benchmark suite, ~17 min (BENCH_ARGS=--quick: ~2 min); bench/README.md
	@$(UV) sync --frozen --quiet
	@# The services under test import what a deployment has: the lock's runtime
	@# dependencies, no dev tools, compiled to bytecode as the image's are
	@# (bench/README.md, "How it measures"; P7).
	@UV_PROJECT_ENVIRONMENT=.venv-runtime $(UV) sync --frozen --no-dev --compile-bytecode --quiet
	BENCH_PROJECT_PYTHON=$(CURDIR)/.venv-runtime/bin/python \
	  $(UV) run --with-requirements bench/requirements.txt python -m bench $(BENCH_ARGS)

clean: ## remove the local cluster's data (.data: SQLite files, keys, nginx runtime)
	rm -rf .data
