# Every target sets itself up: `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: setup run test lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

run: setup  ## the main job on the embedded default: a short tour of the library
	$(PY) examples/quickstart.py

test: setup  ## the whole test suite
	$(PY) -m pytest

lint: setup  ## ruff (lint and format) and mypy --strict
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/mypy

format: setup
	$(VENV)/bin/ruff check --fix src tests benchmarks examples
	$(VENV)/bin/ruff format src tests benchmarks examples

# The stores under test live in .bench-tmp on the project's disk: on some
# machines /tmp is far slower to create files in (seen here: 0.7 ms a file
# against 28 us elsewhere on the same disk), which would bury the file stores' figures.
bench: $(BENCH_STAMP)  ## side-by-side benchmarks against peer libraries
	mkdir -p .bench-tmp
	TMPDIR=$(CURDIR)/.bench-tmp $(PY) benchmarks/bench_core.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
