# Two entry points: `make demo` runs the demo sweep, `make test` runs the test suite.
# Both create .venv on a fresh machine. torch is installed first and pinned, because a bare
# `torch` requirement with nothing installed pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ltxlab-installed
TORCH  ?= torch==2.13.0
RESULTS ?= results

.PHONY: install demo test browser postgres clean

install: $(STAMP)

# --no-compile: pip byte-compiles every file of every package, one at a time (74 of the 140 s
# these installs took on the 2-core machine); Python compiles a module when it is first imported
# instead, and caches it, so only what runs is compiled. That cache needs bytecode writing on, so
# PYTHONDONTWRITEBYTECODE (set in some images) is not passed to the recipes: without the cache
# every Ray worker process would compile torch and ray again.
unexport PYTHONDONTWRITEBYTECODE

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --no-compile $(TORCH)
	$(PY) -m pip install --quiet --no-compile -e '.[test]'
	# reference wheels for the LPIPS parity test, run in a subprocess (never installed: the
	# torchvision wheels here are CUDA builds that break transformers beside CPU torch)
	$(PY) -m pip download --quiet --no-deps --dest $(VENV)/reference-wheels lpips==0.1.4 torchvision==0.28.0
	touch $(STAMP)

# Debian's chromium for the browser tests; Playwright drives it and never downloads one.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Install Debian's chromium (sudo apt-get install chromium) to run the browser tests."; fi; }

# Debian's PostgreSQL server binaries for the survey's database tests; each test session starts
# its own throwaway server (tests/_postgres.py) and never uses the cluster the package sets up.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "Install Debian's PostgreSQL (sudo apt-get install postgresql) to run the survey database tests."; fi; }

demo: $(STAMP)
	$(VENV)/bin/ltxlab sweep demo --results $(RESULTS)

# Two pytest workers by default (the tests wait on Ray start-up, servers and subprocesses about
# half the time, so two share 2 cores well); --dist loadfile keeps each file's module fixtures
# in one worker, and --no-loadscope-reorder hands files out in collection order, where
# tests/conftest.py puts the longest first. TEST_WORKERS=0 runs them in this process, in order.
TEST_WORKERS ?= 2

test: $(STAMP) browser postgres
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

clean:
	rm -rf $(VENV) .pytest_cache
