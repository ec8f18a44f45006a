# The two commands a newcomer needs: `make test` and `make demo`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv lint typecheck unit test demo bench docs clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(PY) -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check airflow_fargate config tests benchmarks
	$(BIN)/ruff format --check airflow_fargate config tests benchmarks

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

test: lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

docs: venv
	$(PY) -m airflow_fargate.docs README.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info build dist

demo: venv
	$(PY) -m airflow_fargate.local.demo

# Benchmark venv: ours plus the reference AwsEcsExecutor (apache-airflow-providers-amazon).
BENCH_VENV ?= .venv-bench
BENCH_ARGS ?=
$(BENCH_VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip uv
	$(BENCH_VENV)/bin/uv pip install --quiet --python $(BENCH_VENV)/bin/python -e '.[local]' apache-airflow-providers-amazon
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/launch_throughput.py $(BENCH_ARGS)
