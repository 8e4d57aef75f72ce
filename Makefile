# Two entry points (see README): `make demo` and `make test`.
# Both create the virtual environment from the pinned lock file when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= 2

.PHONY: demo test lint clean-results

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --workflow-profile profiles/default --configfile config.demo.yaml --cores $(CORES) all

test: $(STAMP)
	$(BIN)/python -m pytest -n $(CORES) --dist loadgroup --durations=15 -rs

lint: $(STAMP)
	$(BIN)/snakemake --lint
