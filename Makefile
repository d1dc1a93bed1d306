# The two commands of the README, and the checks behind them. Needs only Python 3.11+ and git.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo demo-ci test check lint typecheck bench clean

$(STAMP): pyproject.toml requirements/constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "phasegate needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[dev]'
	touch $(STAMP)

## Set up, then run a session on the bundled example project (SQLite) that stops at each
## gate for your review (a one-time login link is printed); Ctrl-C stops the dashboard.
demo: $(STAMP)
	$(BIN)/phasegate demo --dir $(or $(DIR),demo-project)

## The same session, unattended (CI): --yes approves both gates, and it exits when done.
demo-ci: $(STAMP)
	$(BIN)/phasegate demo --yes --dir $(or $(DIR),demo-project)

## Set up, then run the whole test suite.
test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) demo-project artifacts .pytest_cache .mypy_cache .ruff_cache
