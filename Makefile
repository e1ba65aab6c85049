# The two commands a new user types: `make demo` and `make test`.
# Both create the virtualenv at .venv (if needed), install with the pinned constraints, then run.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help install demo test test-fast lint clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "neurorecon needs Python >= 3.11; set PYTHON=/path/to/python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: a looser requirement would pull multi-GB CUDA builds on CPU-only machines.
	$(BIN)/python -m pip install -q -c constraints.txt torch
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install neurorecon with pinned dependencies

demo: $(STAMP)  ## generate a phantom and run the whole reconstruction on it
	$(BIN)/neurorecon demo

# Two test processes (pytest-xdist), each test file kept in one process (its module fixtures, e.g. a
# reference run, are built once): most tests wait on subprocesses, servers and clusters.
TEST_WORKERS ?= 2

test: $(STAMP)  ## run the whole test suite (what CI runs)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)  ## the suite without tests marked slow
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow"

lint: $(STAMP)  ## ruff
	$(BIN)/python -m ruff check pipeline flows tests benchmarks

clean:  ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .hypothesis
