"""End to end on Airflow 2.10/2.11: a real scheduler runs `airflow tasks run ...` commands as
local ECS tasks. Runs in the Airflow 2 venv of `make test`; skipped on Airflow 3."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.local.stack import AirflowStack
from tests.helpers import adopted_command

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(600),
    pytest.mark.skipif(AIRFLOW_V3, reason="Airflow 2 end-to-end test (make test runs it in the Airflow 2 venv)"),
]
ROOT = Path(__file__).resolve().parents[1]
DAG_ID, RUN_ID = "e2e_airflow2", "e2e-airflow2"


@pytest.fixture(scope="module")
def stack() -> Iterator[AirflowStack]:
    work = Path(tempfile.mkdtemp(prefix="airflow-fargate-e2e2-"))
    dags = work / "dags"
    dags.mkdir()
    shutil.copy(ROOT / "tests" / "e2e_dags_airflow2" / "e2e_airflow2.py", dags)
    with AirflowStack(home=work / "airflow", dags_folder=dags) as running:
        running.trigger(DAG_ID, RUN_ID)
        try:
            yield running
        finally:
            print(f"e2e stack logs: {running.home / 'logs'}")
            print(f"local ECS stats: {running.stats()}")


def test_airflow2_dag_runs_tasks_as_ecs_tasks(stack):
    assert stack.wait_for_run(DAG_ID, RUN_ID) == "failed"  # `raises` fails on purpose
    rows = {r.task_id: r for r in stack.task_rows(DAG_ID, RUN_ID)}
    assert {k: r.state for k, r in rows.items()} == {"numbers": "success", "total": "success", "raises": "failed"}
    assert all(r.external_executor_id.startswith("arn:aws:ecs:") for r in rows.values())
    logs = "".join(p.read_text() for p in stack.task_log_dir(DAG_ID, RUN_ID).glob("task_id=total/**/*.log"))
    assert "FARGATE_GREETING=hello from airflow 2" in logs
    started = stack.stats()["containers_started"]
    assert started == 3  # one container per try: nothing launched twice


def test_adopted_try_command_is_rebuilt_from_its_db_row(stack):
    stack.wait_for_run(DAG_ID, RUN_ID)
    (row,) = [r for r in stack.task_rows(DAG_ID, RUN_ID) if r.task_id == "total"]
    command = adopted_command(stack, DAG_ID, RUN_ID, row)
    assert command[:6] == ["airflow", "tasks", "run", DAG_ID, "total", RUN_ID]
    assert "--local" in command
    assert command[command.index("--subdir") + 1].endswith("e2e_airflow2.py")
