# tollgate: developer entry points. `make` alone lists the targets.
#
# Settings come from TOLLGATE_* environment variables (docs/configuration.md); the local
# stack (`tollgate dev ...`) keeps data, pids and logs in the run folder (.run/ by default).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
ENGINE_SOURCES := $(wildcard pipeline/billing/*.py)
ENGINE_BUILT := pipeline/billing/_compiled.digest
TOLLGATE := $(BIN)/tollgate
PYTEST_ARGS ?= --timeout=600
# The billing engine: `compiled` (built by `make install`; what the tests and the image run) or
# `source` (no compiler needed: `make install ENGINE=source`, `make test ENGINE=source`).
ENGINE ?= compiled

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install engine engine-clean lint format stack-up up down status reset test fuzz prometheus

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "} {printf "  make %-13s %s\n", $$1, $$2}'

install: $(INSTALLED) $(if $(filter source,$(ENGINE)),,$(ENGINE_BUILT)) ## Create .venv, install tollgate and its dev tools, compile the engine (incremental)

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
		|| { echo "error: $(PYTHON) is missing or older than 3.11: install Python 3.11+ or run make PYTHON=python3.11" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

engine: $(ENGINE_BUILT) ## Compile the billing engine with mypyc (again after its sources change)

$(ENGINE_BUILT): $(INSTALLED) $(ENGINE_SOURCES)
	$(TOLLGATE) engine build

engine-clean: ## Remove the compiled engine: pipeline/billing runs from its sources
	@test ! -x $(TOLLGATE) || $(TOLLGATE) engine clean

lint: install ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

stack-up: install ## Start the local stack (Kafka, PostgreSQL) or reuse it
	$(TOLLGATE) dev up

up: stack-up ## Start the stack and run the main job: worker, sinks and demo traffic, live
	$(TOLLGATE) demo

down: install ## Stop the local stack (its data stays in the run folder)
	$(TOLLGATE) dev down

status: install ## Show each service of the local stack
	$(TOLLGATE) dev status

reset: install ## Empty topics, consumer groups, worker state and tables
	$(TOLLGATE) dev reset

prometheus: ## Install prometheus and promtool (apt package) when missing: the alert and dashboard tests run them
	@bash deploy/prometheus/install.sh

test: lint stack-up prometheus ## Lint, start the stack, run every test (unit, scenarios, integration)
	@rc=0; TOLLGATE_ENGINE=$(ENGINE) $(BIN)/pytest $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc

.PHONY: chaos
chaos: install stack-up ## Kill -9 the worker, the intake and a broker of its own, many rounds (ROUNDS=8)
	TOLLGATE_CHAOS_ROUNDS=$(or $(ROUNDS),8) TOLLGATE_ENGINE=$(ENGINE) \
		$(BIN)/pytest $(PYTEST_ARGS) tests/integration/test_chaos.py

FUZZ_EXAMPLES ?= 20000

fuzz: install ## Long fuzzing campaign (FUZZ_EXAMPLES per property); prints how many examples ran
	TOLLGATE_ENGINE=$(ENGINE) TOLLGATE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m tests.unit.test_fuzz

# Benchmarks: each one is `python -m benchmarks NAME [options]` (benchmarks/__main__.py)

.PHONY: bench-core
bench-core: install ## Engine throughput: 1,000 subscriptions, 1,000,000 events, one process
	$(BIN)/python -m benchmarks core

.PHONY: bench-sinks
bench-sinks: stack-up ## Sink throughput: invoices stored and webhooks delivered per second
	$(BIN)/python -m benchmarks sinks

.PHONY: bench-pipeline
bench-pipeline: install stack-up ## Intake + worker: sustained events/s (1,000 and 100,000 subscriptions), ceiling, p50/p99
	$(BIN)/python -m benchmarks pipeline

.PHONY: bench-api
bench-api: install stack-up ## HTTP API: access checks/s, p50/p99 local and forwarded, while events stream in
	$(BIN)/python -m benchmarks api
