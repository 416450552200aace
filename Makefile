# The commands a newcomer types. Each target installs what it needs first (make setup is idempotent).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PROFILE ?= demo
TEST_WORKERS ?= 2  # pytest-xdist workers for make test (one per core of the CI machine)

export SPARK_LOCAL_IP := 127.0.0.1
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))
export TF_CPP_MIN_LOG_LEVEL := 2
export AIRFLOW__CORE__LOAD_EXAMPLES := False
# Let Python cache the project's compiled modules (site-packages is compiled by make setup): with
# PYTHONDONTWRITEBYTECODE=1, every process of a night or of the tests recompiles them from source
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup run test bench demo lint lock clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

setup:  ## create .venv from the lock file and install system packages (idempotent)
	@bash scripts/setup.sh

run: setup  ## the main job: generate the demo world and bring the platform up on it
	$(PY) -m cli run --profile $(PROFILE)

test: setup  ## the full test suite (tiny data profile)
	$(PY) -m pytest tests -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

bench: setup  ## benchmarks; writes reports/bench/*.json
	$(PY) -m benchmarks

demo: setup  ## short closed-loop A/B simulation against the running service; prints the A/B table
	$(PY) -m cli loop demo

lint: setup  ## ruff
	$(VENV)/bin/ruff check .

lock:  ## re-resolve requirements.lock from pyproject.toml
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean:  ## remove generated data, artifacts and reports (keeps the venv)
	rm -rf data artifacts reports
