"""Shared fixtures. Airflow and AWS are pointed at throwaway places before anything imports them."""

from __future__ import annotations

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="airflow-fargate-tests-")
os.environ["AIRFLOW_HOME"] = _HOME
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ["AIRFLOW__CORE__EXECUTOR"] = "airflow_fargate.FargateExecutor"
# Airflow 2 refuses non-local executors on SQLite unless told this is a test (its own switch).
os.environ["_AIRFLOW__SKIP_DATABASE_EXECUTOR_COMPATIBILITY_CHECK"] = "1"
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}.items():
    os.environ[_name] = _value
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECS"):
    os.environ.pop(_name, None)

import pytest  # noqa: E402

from tests import helpers  # noqa: E402
from tests.helpers import SECTION_PREFIXES  # noqa: E402

pytest_plugins = ["tests.executor_harness", "tests.ti_rows"]  # fixtures: `ecs`, `executor`; `rows`


@pytest.fixture(autouse=True)
def _clean_executor_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees another test's [fargate]/[aws_ecs_executor] env vars."""
    for name in list(os.environ):
        if name.startswith(SECTION_PREFIXES):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def airflow_db() -> str:
    """A migrated SQLite metadata DB (for connections and anything touching the ORM)."""
    import subprocess
    import sys

    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ.copy()
    )
    return os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


@pytest.fixture(scope="session", autouse=True)
def _e2e_work_root(tmp_path_factory: pytest.TempPathFactory) -> None:
    """e2e stacks make their work directories (DB, logs: megabytes each) under pytest's basetemp,
    which pytest prunes to the last three sessions (tests.helpers.e2e_stack)."""
    helpers.E2E_WORK_ROOT = tmp_path_factory


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Record failed tests: an e2e stack keeps its work directory only when one of its tests failed."""
    report = yield
    if report.failed:
        helpers.FAILED_TESTS.append(item.nodeid)
    return report
