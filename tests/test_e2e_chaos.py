"""Kill -9 a real scheduler while RunTask answers are on their way back, twice, and check from the
local endpoint's records that nothing was lost, no try ever ran twice and no orphan kept running.
The metadata DB is PostgreSQL where it is installed (tests/postgres.py), SQLite otherwise.

The endpoint starts each task at once but answers RunTask 8 s later (so the scheduler dies holding
no ARN), and tasks created meanwhile stay PROVISIONING for 90 s (as a slow Fargate start would),
long enough that an orphan not stopped by the sweep would surely start and show up as started.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.local.stack import AirflowStack
from tests import postgres
from tests.chaos_checks import SLOW_ANSWERS, assert_no_try_lost_doubled_or_orphaned, set_faults, wait_for_run_task_calls
from tests.helpers import e2e_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 2 commands carry no try number to count containers by"),
]
DAG_ID, RUN_ID = "e2e_chaos", "chaos"


@pytest.fixture(scope="module")
def stack() -> Iterator[AirflowStack]:
    """On PostgreSQL (started here) where it is installed, as production runs; SQLite otherwise."""
    with contextlib.ExitStack() as resources:
        url = resources.enter_context(postgres.postgres_server()) if postgres.available() else None
        yield resources.enter_context(e2e_stack(["tests/e2e_dags/e2e_chaos.py"], {}, db_url=url))


def kill_with_answers_on_the_way(stack: AirflowStack, calls_before: int) -> None:
    """Kill the scheduler -9 once RunTask calls reached the endpoint whose answers it never gets."""
    wait_for_run_task_calls(stack, calls_before)
    time.sleep(2)  # more launches join them; every answer is still 6+ s away
    stack.kill("scheduler")


def test_scheduler_killed_twice_with_run_task_answers_on_the_way(stack):
    set_faults(stack, **SLOW_ANSWERS)
    stack.trigger(DAG_ID, RUN_ID)
    kill_with_answers_on_the_way(stack, 0)  # 1: the first stage's launches in flight
    calls = stack.stats()["run_task_calls"]
    stack.start_process("scheduler", "scheduler")
    # 2: the successor's own launches (relaunched reset tries or the second stage) in flight
    kill_with_answers_on_the_way(stack, calls)
    set_faults(stack)
    stack.start_process("scheduler", "scheduler")
    assert stack.wait_for_run(DAG_ID, RUN_ID, timeout=600) == "success"
    assert len(stack.task_rows(DAG_ID, RUN_ID)) == 16
    print(assert_no_try_lost_doubled_or_orphaned(stack, DAG_ID, RUN_ID, [stack.home / "logs" / "scheduler.log"]))
