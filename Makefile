# The two commands of the quick start:
#   make demo   set everything up, generate demo data if ./lake/raw is empty, run the main job
#   make test   set everything up, run the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: setup demo test ui api bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	mkdir -p $(DAGSTER_HOME) && { [ -f $(DAGSTER_HOME)/dagster.yaml ] || cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml; }
	$(PY) -m petinsure_assets refresh $(ARGS)

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

# The Dagster UI (webserver + daemon) on http://127.0.0.1:3000, same instance as `make demo`.
ui: setup
	mkdir -p $(DAGSTER_HOME) && { [ -f $(DAGSTER_HOME)/dagster.yaml ] || cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml; }
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# The reference claims API on http://127.0.0.1:8000 (docs at /docs), reading ./lake/gold/snapshots.
api: setup
	$(VENV)/bin/uvicorn petinsure_assets.reference_api:app --host 127.0.0.1 --port 8000

# The benchmark: 15,000, 1,000,000 and 10,000,000 claims against the pandas and Spark baselines;
# writes docs/performance.md. Fewer sizes: make bench ARGS="--claims 15000 1000000".
bench: setup
	$(PY) -m bench.run $(ARGS)

clean:
	rm -rf lake .dagster_home
