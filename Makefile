# The two commands a newcomer needs: `make test` and `make demo`. Everything else is a helper.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv lint typecheck unit test test-airflow3 test-airflow2 demo bench bench-dag bench-large soak docs clean postgres

# The Airflow 3 venv has apache-airflow-providers-amazon too, as the apache/airflow image and most
# AWS deployments do (tests/test_provider_compat.py checks the two coexist); the Airflow 2 venv
# below has not, so both situations are tested.
$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --quiet --python $(PY) -e '.[test]' apache-airflow-providers-amazon
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check airflow_fargate config tests benchmarks docs
	$(BIN)/ruff format --check airflow_fargate config tests benchmarks docs
	$(BIN)/lint-imports setup.cfg

typecheck: venv
	$(BIN)/mypy

unit: venv
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

# Both Airflow suites run even when the first fails; the target fails at the end if either did.
test: lint typecheck
	@status=0; \
	$(MAKE) --no-print-directory test-airflow3 || status=1; \
	$(MAKE) --no-print-directory test-airflow2 || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: a suite failed (see above)"; fi; \
	exit $$status

# Two workers; --dist loadfile keeps each test file on one worker, so an e2e module's stack (a real
# scheduler, api-server and endpoint) starts once, not once per worker.
XDIST ?= -n 2 --dist loadfile

test-airflow3: venv postgres
	$(PY) -m pytest $(XDIST) $(PYTEST_ARGS)

# PostgreSQL from Debian's package for the two-scheduler (HA) test, which starts a throwaway
# server itself (tests/postgres.py). Where apt-get cannot install it, that test skips and says why.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null 2>&1 && \
	        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null 2>&1; }; }; } || \
	  echo "PostgreSQL (Debian package postgresql) is not installable here: the HA test will be skipped."

# Airflow 2.10/2.11 stay supported: the unit tests and the Airflow 2 end-to-end DAG run again in a
# second venv (Airflow 3's e2e tests skip there).
AIRFLOW2_VENV ?= .venv-airflow2
AIRFLOW2_VERSION ?= 2.11.*
$(AIRFLOW2_VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(AIRFLOW2_VENV)
	$(AIRFLOW2_VENV)/bin/pip install --quiet --upgrade pip uv
	$(AIRFLOW2_VENV)/bin/uv pip install --quiet --python $(AIRFLOW2_VENV)/bin/python -e '.[test]' 'apache-airflow==$(AIRFLOW2_VERSION)'
	touch $@

test-airflow2: $(AIRFLOW2_VENV)/.installed
	$(AIRFLOW2_VENV)/bin/python -m pytest $(XDIST) $(PYTEST_ARGS)

# The ECS API outage test on a real scheduler with a 10-minute outage (three 200 s phases:
# connections refused, 5xx, every call throttled) instead of CI's 90 s: nothing may fail.
soak: venv postgres
	OUTAGE_PHASE_SECONDS=200 $(PY) -m pytest -s -p no:cacheprovider tests/test_e2e_outage.py

docs: venv
	$(PY) -m airflow_fargate.docs README.md

clean:
	rm -rf $(VENV) $(AIRFLOW2_VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info build dist

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

# Both executors at their default settings, alternating A/B pairs, medians and ratios, then the
# targets verdict: the executor driven directly (benchmarks/executor_bench.py, N = 100/500/2000),
# then a real scheduler running a DAG of 300 mapped tasks (benchmarks/dag_bench.py, bench-dag).
# bench-large is N = 10,000 (one pair, about half an hour).
DAG_BENCH_ARGS ?=
bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/executor_bench.py $(BENCH_ARGS)
	$(BENCH_VENV)/bin/python benchmarks/dag_bench.py $(DAG_BENCH_ARGS)

bench-dag: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/dag_bench.py $(DAG_BENCH_ARGS)

bench-large: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python benchmarks/executor_bench.py --n 10000 --pairs 1 \
		--json benchmarks/results/executor_bench_large.json $(BENCH_ARGS)
