# famekit — the two commands of the README, plus their building blocks.
#   make report   create .venv if missing, install, train on the embedded default, regenerate reports
#   make test     create/update .venv, run the whole test suite
# Only Python 3.11 (or >= 3.10) and pip are needed; everything else is installed into .venv.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Tests that need the real datasets read ../shared/data through this variable (and skip,
# with a reason, when it is empty).
SHARED_DATA := $(abspath ../shared/data)
export FAMEKIT_SHARED_DATA ?= $(if $(wildcard $(SHARED_DATA)/README.md),$(SHARED_DATA),)
# One thread per core is what torch would take anyway; say it so that runs are reproducible.
export OMP_NUM_THREADS ?= $(shell nproc 2>/dev/null || echo 2)
export PYTHONUNBUFFERED := 1

.PHONY: install report test check-reports lint clean help

help:
	@echo "make report  - train FAME on the embedded default and regenerate the reports"
	@echo "make test    - run the whole test suite"

$(STAMP): pyproject.toml requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-r requirements.txt -e '.[notebooks,dev]'
	touch $(STAMP)

install: $(STAMP)

report: install
	$(BIN)/famekit report
	$(BIN)/famekit report --benchmarks

# nbval runs the notebooks in fresh kernels on a tiny world; their runs are trained into NB_RUNS
# (not runs/), from nothing, so a changed training cannot hide behind cached runs.
NB_RUNS := $(CURDIR)/.nbval-runs

test: install
	rm -rf $(NB_RUNS)
	$(BIN)/python -m pytest
	FAMEKIT_NB_QUICK=1 FAMEKIT_RUNS=$(NB_RUNS)/quick $(BIN)/python -m pytest --nbval-lax notebooks
	$(MAKE) check-reports

# The committed reports are what this code produces: re-executed over the runs they carry
# (reports/synthetic/runs/) and compared with stated tolerances, then retrained from scratch
# and compared within a band (famekit/report_check.py; tolerances in docs/decisions.md).
check-reports: install
	$(BIN)/famekit report --check --dataset synthetic --no-progress

lint: install
	$(BIN)/ruff check famekit tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache $(NB_RUNS)
