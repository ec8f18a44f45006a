"""End to end on Airflow 2.10/2.11: a real scheduler runs `airflow tasks run ...` commands as
local ECS tasks. Runs in the Airflow 2 venv of `make test`; skipped on Airflow 3."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.local.faults import Faults
from airflow_fargate.local.stack import AirflowStack
from tests.helpers import adopted_command, e2e_stack, epoch, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(600),
    pytest.mark.skipif(AIRFLOW_V3, reason="Airflow 2 end-to-end test (make test runs it in the Airflow 2 venv)"),
]
DAG_ID, RUN_ID = "e2e_airflow2", "e2e-airflow2"


DEPROVISION_SECONDS = 20.0  # as on Fargate: seconds between a container's exit and STOPPED


@pytest.fixture(scope="module")
def stack() -> Iterator[AirflowStack]:
    """One executor slot and slow STOPPEDs: a slot frees when the try reports its end."""
    with e2e_stack(
        ["tests/e2e_dags_airflow2/e2e_airflow2.py"],
        {DAG_ID: RUN_ID},
        {"AIRFLOW__CORE__PARALLELISM": "1"},
        faults=Faults(deprovision_delay_s=DEPROVISION_SECONDS),
    ) as running:
        yield running


def test_airflow2_dag_runs_tasks_as_ecs_tasks(stack):
    assert stack.wait_for_run(DAG_ID, RUN_ID) == "failed"  # `raises` fails on purpose
    rows = {r.task_id: r for r in stack.task_rows(DAG_ID, RUN_ID)}
    assert {k: r.state for k, r in rows.items()} == {"numbers": "success", "total": "success", "raises": "failed"}
    assert all(r.external_executor_id.startswith("arn:aws:ecs:") for r in rows.values())
    # the task wrote its log file in its own container home (gone); its output is in CloudWatch
    assert not list(stack.task_log_dir(DAG_ID, RUN_ID).glob("task_id=total/**/*.log"))
    assert "FARGATE_GREETING=hello from airflow 2" in stack.container_output(rows["total"].external_executor_id)
    started = stack.stats()["containers_started"]
    assert started == 3  # one container per try: nothing launched twice


def test_a_try_that_wrote_its_success_frees_its_slot_before_ecs_stops_its_container(stack):
    """Airflow 2 tasks write their own row too: with one executor slot, the next try is queued
    while the first try's container still deprovisions."""
    stack.wait_for_run(DAG_ID, RUN_ID)
    rows = stack._query(
        "SELECT task_id, queued_dttm FROM task_instance WHERE dag_id = :d AND run_id = :r ORDER BY queued_dttm",
        d=DAG_ID,
        r=RUN_ID,
    )
    (first, _), (second, queued) = rows[0], rows[1]
    stopped = wait_until(
        lambda: stack.stats()["stopped_at"].get(f"{DAG_ID}|{first}|{RUN_ID}|-1"), 120, f"{first} container STOPPED"
    )
    assert epoch(queued) < stopped, (first, second, epoch(queued), stopped)


def test_adopted_try_command_is_rebuilt_from_its_db_row(stack):
    stack.wait_for_run(DAG_ID, RUN_ID)
    (row,) = [r for r in stack.task_rows(DAG_ID, RUN_ID) if r.task_id == "total"]
    command = adopted_command(stack, DAG_ID, RUN_ID, row)
    assert command[:6] == ["airflow", "tasks", "run", DAG_ID, "total", RUN_ID]
    assert "--local" in command
    assert command[command.index("--subdir") + 1].endswith("e2e_airflow2.py")


def test_the_log_view_shows_a_finished_tries_output_from_cloudwatch(stack):
    """Airflow 2's own log reading code, with the one logging line of the README, in the place of
    the webserver: the try's log file went with its container, its output is read from CloudWatch."""
    assert stack.wait_for_run(DAG_ID, RUN_ID) == "failed"
    script = str(Path(__file__).parent / "e2e_dags_airflow2" / "read_log_view.py")
    env = {**stack.env(), "AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS": "airflow_fargate.log_config.LOGGING_CONFIG"}
    result = subprocess.run(
        [sys.executable, script, DAG_ID, RUN_ID, "total"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    view = result.stdout
    assert "Output of ECS task arn:aws:ecs:" in view and "FARGATE_GREETING=hello from airflow 2" in view, view[-3000:]
