# Two entry points for a fresh machine: `make demo` and `make test`. Both create the virtual
# environment and install the pinned stack (constraints.txt) first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export GX_ANALYTICS_ENABLED := false
export DAGSTER_DISABLE_TELEMETRY := true

.PHONY: install demo test test-fast lint format ui lock clean chromium

install: $(VENV)/.installed metorigin/sql/target/manifest.json

$(VENV)/.installed: pyproject.toml setup.py constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel setuptools
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $@

# dagster-dbt loads the dbt project from its manifest; prepare it here, not only under `dagster dev`:
# the model arms' generated dbt files first (metorigin/arms/), then `dbt parse` where stale.
metorigin/sql/target/manifest.json: $(VENV)/.installed $(wildcard metorigin/arms/*.py metorigin/sql/*.yml metorigin/sql/models/*/*.sql metorigin/sql/models/*/*.yml metorigin/sql/macros/*.sql)
	$(BIN)/python -c "from metorigin.defs.feature_store.dbt import prepare_manifest; prepare_manifest()"
	touch $@

demo: install
	$(BIN)/metorigin demo --cohort demo/cohort --store demo/store

# Lint first (seconds): a broken import contract or a ruff finding fails the suite before the long tests.
# Two test processes (pytest-xdist), each taking whole files (`loadfile`: a module's fixtures are
# built once): much of the suite waits on subprocesses (dbt, the UI, run workers), not on a core.
# (Three were measured slower on two cores: 999 s against 944 s.)
TEST_PROCESSES ?= 2
# `--durations=25`: every run shows where its time goes (the budget is 12 minutes of pytest).
test: install lint chromium
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile --durations=25

# The study report's browser test opens the page in headless Chromium: Debian's package, installed
# here when missing (as root, or with sudo), so a fresh machine needs nothing by hand.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

# Without the slow tests and those that start a server of their own (markers in pyproject.toml).
test-fast: install lint
	$(BIN)/pytest -n $(TEST_PROCESSES) --dist loadfile -m "not (slow or pacs or slurm or postgres)"

# ruff (lint and format) and the import-linter contracts in pyproject.toml (the layers).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo/cohort/scans.csv: | install
	$(BIN)/metorigin synth --out demo/cohort

ui: install demo/cohort/scans.csv
	$(BIN)/metorigin ui --cohort demo/cohort --store demo/store

# Re-pin the whole stack after changing pyproject.toml: resolves in a scratch venv, writes constraints.txt.
lock:
	rm -rf /tmp/metorigin-lock && $(PYTHON) -m venv /tmp/metorigin-lock
	/tmp/metorigin-lock/bin/pip install --quiet --upgrade pip wheel setuptools
	/tmp/metorigin-lock/bin/pip install --quiet -e ".[dev]"
	/tmp/metorigin-lock/bin/pip freeze --exclude-editable > constraints.txt

clean:
	rm -rf $(VENV) demo .dagster_home  # .dagster_home: the shared instance of older versions
