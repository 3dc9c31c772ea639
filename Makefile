# peersync: every developer and CI entry point.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: test demo lint typecheck unit coverage bench-core sim fuzz clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

lint: $(STAMP)
	$(PY) -m ruff check peersync_proto peersync_server tests fuzz bench tools
	$(PY) -m ruff format --check peersync_proto peersync_server

typecheck: $(STAMP)
	$(PY) -m mypy --strict

unit: $(STAMP)
	rm -f .coverage .coverage.*
	$(PY) -m coverage run -m pytest -q
	$(PY) -m coverage combine -q || true

coverage: unit
	$(PY) -m coverage report --include='peersync_proto/*' --fail-under=100
	$(PY) -m coverage report --include='peersync_server/*'

test: lint typecheck coverage

demo: $(STAMP)
	$(PY) -m peersync_server.demo

bench-core: $(STAMP)
	$(PY) bench/core.py

clean:
	rm -rf $(VENV) .coverage .coverage.* .mypy_cache .pytest_cache .hypothesis

# Deterministic simulation (tests/sim): N seeds from FIRST; a failing seed
# prints its trace and the command that replays it. `make test` runs 1,000.
SEEDS ?= 1000
FIRST ?= 0
.PHONY: sim-long

sim: $(STAMP)
	$(PY) -m tests.sim --seeds $(SEEDS) --first $(FIRST)

# The distributions of docs/failover.md and 24 simulated hours of a healthy
# pair (jitter, then probe loss): several minutes, so not part of `make test`.
sim-long: $(STAMP)
	$(PY) -m tests.sim --measure
	$(PY) -m tests.sim --hours 24

# Long fuzz runs: make fuzz SECONDS=600 (the same harnesses make test runs briefly).
fuzz: $(STAMP)
	$(PY) -m fuzz.run --seconds $(or $(SECONDS),60)

# The long variants of tests/hostile (20 s lock hammering, 200 kills, full load).
hostile-long: $(STAMP)
	PEERSYNC_LONG=1 $(PY) -m pytest tests/hostile -q

# Side-by-side benchmarks (bench/run.py): peersync-server beside the stdlib,
# a bare h11 server and uvicorn, then failover and the core; writes
# docs/performance.md. A few minutes, so not part of `make test`. Uses wrk
# (installed here when apt-get can; else bench/loadgen.py makes the load).
BENCH_STAMP := $(VENV)/.installed-bench
.PHONY: bench

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install -q -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null 2>&1 \
		|| sudo -n apt-get install -y -q wrk >/dev/null 2>&1 \
		|| echo "wrk not installed: bench/loadgen.py makes the load"
	$(PY) bench/run.py
