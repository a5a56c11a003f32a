# The two commands of the README: `make serve` and `make test`. Each installs what it needs.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test test-uvicorn-bounds lint system-deps bench

serve: $(STAMP)
	$(BIN)/hearth serve

# The whole suite on the embedded broker, then the core server tests once more on each Redis
# topology (protocol §16): one server, a three-primary Cluster, a Sentinel set.
# Four pytest-xdist workers: the server tests mostly wait on sockets and timers, so they overlap
# well even on two cores; the browser tests stay on one worker (tests/conftest.py).
XDIST := -n 4 --dist loadgroup
CORE_TESTS := tests/test_app.py tests/test_join.py tests/test_talking.py tests/test_resume.py \
	tests/test_facilitation.py tests/test_room_language.py tests/test_safety.py

test: $(STAMP) system-deps lint
	$(BIN)/pytest $(XDIST)
	$(BIN)/pytest $(XDIST) --core-broker=redis $(CORE_TESTS)
	$(BIN)/pytest $(XDIST) --core-broker=cluster $(CORE_TESTS)
	$(BIN)/pytest $(XDIST) --core-broker=sentinel $(CORE_TESTS)

# uvicorn's range (pyproject.toml) at both ends: the venv above gets the newest release when
# it is made, so `make test` covers that end; this runs the transport and core server tests
# again in a venv of their own, on the oldest release the range allows.
UVICORN_LOWEST := 0.52.1
LOWEST_VENV := .venv-uvicorn-$(UVICORN_LOWEST)
LOWEST_STAMP := $(LOWEST_VENV)/.installed

test-uvicorn-bounds: $(STAMP) $(LOWEST_STAMP)
	@$(BIN)/python -c 'import uvicorn; print("newest end: uvicorn", uvicorn.__version__)'
	@$(LOWEST_VENV)/bin/python -c 'import uvicorn; print("lowest end: uvicorn", uvicorn.__version__)'
	$(LOWEST_VENV)/bin/pytest tests/test_transport.py $(CORE_TESTS)

$(LOWEST_STAMP): pyproject.toml
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/pip install --quiet --upgrade pip
	$(LOWEST_VENV)/bin/pip install --quiet -e ".[test]" "uvicorn==$(UVICORN_LOWEST)"
	touch $(LOWEST_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/mypy

# make bench BENCH_ARGS="--topologies redis,cluster" (bench/README.md lists the options)
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

AXE := tests/browser/node_modules/.installed

# Tests start private redis-server processes, drive the system's headless Chromium, and audit
# the pages with axe-core (a test-only npm package, pinned in tests/browser/package-lock.json).
system-deps: $(AXE)

$(AXE): tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
	touch $(AXE)

system-deps:
	@command -v redis-server >/dev/null && command -v chromium >/dev/null || { \
	  echo "installing redis-server and chromium from the OS packages"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server chromium >/dev/null; }
