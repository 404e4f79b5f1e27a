# The two commands of the quick start:
#   make demo   set everything up, generate demo data if ./lake/raw is empty, run the main job
#   make test   set everything up, run ruff (lint, format check) and the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: setup java demo test ui api bench wheel clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# Spark 4 (tests/test_spark_sql.py, the Spark baseline of make bench) needs Java 17 or newer; when
# it is missing, apt installs it (as root, like CI; elsewhere install a JDK 17+ or set JAVA_HOME).
JAVA = $(if $(JAVA_HOME),$(JAVA_HOME)/bin/java,java)
JAVA_MAJOR = $(JAVA) -version 2>&1 | sed -n '1s/.*version "\([0-9]*\).*/\1/p'
APT_GET ?= apt-get
java:
	@major=$$($(JAVA_MAJOR)); [ "$${major:-0}" -ge 17 ] || { \
	  if command -v $(APT_GET) >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Java 17 for Spark (found: $${major:-no java})"; \
	    export DEBIAN_FRONTEND=noninteractive; $(APT_GET) update -qq && \
	    { $(APT_GET) install -y -qq openjdk-17-jre-headless || $(APT_GET) install -y -qq default-jre-headless; } >/dev/null; \
	  fi; \
	  major=$$($(JAVA_MAJOR)); [ "$${major:-0}" -ge 17 ] || { \
	    echo "Spark needs Java 17 or newer (found: $${major:-no java at $(JAVA)}): install a JDK 17+ (Debian/Ubuntu: apt-get install openjdk-17-jre-headless) or set JAVA_HOME"; \
	    exit 1; }; }

demo: setup
	mkdir -p $(DAGSTER_HOME) && { [ -f $(DAGSTER_HOME)/dagster.yaml ] || cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml; }
	$(PY) -m petinsure_assets refresh $(ARGS)

# Lint and formatting first (ruff, configured in pyproject.toml): a quick failure before the suite.
test: setup java
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest $(PYTEST_ARGS)

# The Dagster UI (webserver + daemon) on http://127.0.0.1:3000, same instance as `make demo`.
# `dg dev` is the current name of `dagster dev` (same server; the old name warns "superseded").
ui: setup
	mkdir -p $(DAGSTER_HOME) && { [ -f $(DAGSTER_HOME)/dagster.yaml ] || cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml; }
	$(VENV)/bin/dg dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The reference claims API on http://127.0.0.1:8000 (docs at /docs), reading ./lake/gold/snapshots,
# and its front door writing into ./lake/raw (writes need PETINSURE_WRITE_TOKEN set; README).
# Other address: make api ARGS="--port 8080" (or --uds /path/to/socket).
api: setup
	$(PY) -m petinsure_assets api $(ARGS)

# The benchmark: 15,000, 1,000,000 and 10,000,000 claims against the pandas and Spark baselines;
# writes docs/performance.md. Fewer sizes: make bench ARGS="--claims 15000 1000000".
bench: setup java
	$(PY) -m bench.run $(ARGS)

# The package wheel for a Databricks cluster or serverless environment (README, "Databricks").
wheel: setup
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

clean:
	rm -rf lake .dagster_home
