# Two entry points (see README): `make demo` and `make test`.
# Both create the virtual environment from the pinned lock file when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: demo test lint clean-results

# tools/install_lock.py installs with uv (from pip's configured sources) when it can, else pip.
$(STAMP): requirements.lock pyproject.toml tools/install_lock.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python tools/install_lock.py requirements.lock
	touch $(STAMP)

# The demo's jobs are tiny (40 videos): profiles/tiny gives each analysis job one thread,
# so that two run at once on two cores.
demo: $(STAMP)
	$(BIN)/snakemake --workflow-profile profiles/default --profile profiles/tiny --configfile config.demo.yaml --cores $(CORES) all

test: $(STAMP)
	$(BIN)/python -m pytest -n $(CORES) --dist loadgroup --durations=15 -rs

# The package's lint and types (pinned ruff and mypy, settings in pyproject.toml), then the workflow's.
lint: $(STAMP)
	$(BIN)/ruff check dimcollapse scripts
	$(BIN)/mypy
	$(BIN)/snakemake --lint
