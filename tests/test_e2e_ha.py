"""Airflow HA: two schedulers with FargateExecutor on one PostgreSQL database, one killed -9 while
its RunTask answers are on their way. The survivor adopts or sweeps every task of the dead one:
every task succeeds, no try ever runs twice, nothing is left running (local endpoint's records)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.local.stack import AirflowStack
from tests.chaos_checks import (
    SLOW_ANSWERS,
    assert_no_try_lost_doubled_or_orphaned,
    set_faults,
    wait_for_run_task_calls,
)
from tests.helpers import e2e_stack, wait_until
from tests.postgres import postgres_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 2 commands carry no try number to count containers by"),
]
DAG_ID, RUN_ID = "e2e_chaos", "ha"


@pytest.fixture(scope="module")
def stack() -> Iterator[AirflowStack]:
    with postgres_server() as url, e2e_stack(["tests/e2e_dags/e2e_chaos.py"], {}, db_url=url) as running:
        yield running


def test_survivor_of_two_schedulers_adopts_or_sweeps_every_task_of_the_dead_one(stack):
    logs = stack.home / "logs"
    # the killed scheduler's answers come back only after its successor is up and it is dead
    set_faults(stack, **{**SLOW_ANSWERS, "run_task_response_delay_s": 40.0})
    stack.trigger(DAG_ID, RUN_ID)
    wait_for_run_task_calls(stack, 0)  # scheduler A launched the first stage; answers on the way
    stack.start_process("scheduler-b", "scheduler")
    wait_until(lambda: "Starting the scheduler" in (logs / "scheduler-b.log").read_text(), 180, "B never started")
    time.sleep(3)
    stack.kill("scheduler")
    set_faults(stack)
    assert stack.wait_for_run(DAG_ID, RUN_ID, timeout=600) == "success"
    rows = stack.task_rows(DAG_ID, RUN_ID)
    assert len(rows) == 16
    print(assert_no_try_lost_doubled_or_orphaned(stack, DAG_ID, RUN_ID, [logs / "scheduler-b.log"]))
