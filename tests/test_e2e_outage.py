"""An ECS API outage on a real scheduler (PostgreSQL where installed) with 200 tasks queued and
running: the local endpoint refuses connections, then answers 5xx, then throttles everything,
then recovers. Nothing fails, nothing is launched twice, every try runs in one container, and
the tries still queued are all launched within the quota's floor (plus a probe and a heartbeat)
once the API is back.

OUTAGE_PHASE_SECONDS (default 30: 90 s in all) sets each phase's length; `make soak` runs the
same test with 200 s phases (a 10-minute outage).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import pytest

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.local.faults import Faults
from airflow_fargate.local.stack import AirflowStack
from tests import postgres
from tests.chaos_checks import set_faults
from tests.helpers import e2e_stack, slowdown, wait_until

PHASE_SECONDS = float(os.environ.get("OUTAGE_PHASE_SECONDS", "30"))
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900 + 3 * PHASE_SECONDS),
    pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 2 commands carry no try number to count containers by"),
]
DAG_ID, RUN_ID, TASKS = "e2e_outage", "outage", 200
RATE, BURST = 4.0, 20  # a slow quota, so that tries are still queued when the outage starts
TASK_SECONDS = 20.0
HEARTBEAT_SECONDS = 1.0
PROBE_SECONDS = 5.0  # the breaker probes at least this often


@pytest.fixture(scope="module")
def stack() -> Iterator[AirflowStack]:
    quota = {"run_task_rate": RATE, "run_task_burst": BURST, "describe_tasks_rate": 20, "describe_tasks_burst": 100}
    concurrency = {
        "AIRFLOW__CORE__PARALLELISM": str(TASKS),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(TASKS),
        "AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT": str(TASKS),
        "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": str(TASKS),
        "AIRFLOW__AWS_ECS_EXECUTOR__RUN_TASK_RATE": str(RATE),
        "AIRFLOW__AWS_ECS_EXECUTOR__RUN_TASK_BURST": str(BURST),
    }
    with contextlib.ExitStack() as resources:
        url = resources.enter_context(postgres.postgres_server()) if postgres.available() else None
        yield resources.enter_context(
            e2e_stack(
                ["tests/e2e_dags/e2e_outage.py"],
                {},
                concurrency,
                db_url=url,
                faults=Faults(**quota),
                runtime="simulate-api",
                simulate_duration=TASK_SECONDS,
            )
        )


def test_an_api_outage_fails_no_task_and_launching_resumes_at_the_quotas_pace(stack):
    quota = {"run_task_rate": RATE, "run_task_burst": BURST, "describe_tasks_rate": 20, "describe_tasks_burst": 100}
    stack.wait_for_dag(DAG_ID, timeout=300 * slowdown())
    stack.trigger(DAG_ID, RUN_ID)
    wait_until(lambda: stack.stats()["tasks_created"] >= 60, 300 * slowdown(), "the first launches")
    for outage in ("refuse", "5xx", "throttle"):
        set_faults(stack, **quota, api_outage=outage)
        time.sleep(PHASE_SECONDS)
    stats = stack.stats()
    waiting = TASKS - stats["tasks_created"]
    assert waiting > BURST, "the outage must find tries still queued"
    assert stats["outage_answers"] > 0
    set_faults(stack, **quota)
    recovered = time.monotonic()
    wait_until(lambda: stack.stats()["tasks_created"] >= TASKS, 600 * slowdown(), "launches after the outage")
    took = time.monotonic() - recovered
    floor = max(0.0, waiting - BURST) / RATE
    assert took <= floor + PROBE_SECONDS + HEARTBEAT_SECONDS + 10 * slowdown(), (took, floor, waiting)
    assert stack.wait_for_run(DAG_ID, RUN_ID, timeout=600 * slowdown()) == "success"
    rows = stack.task_rows(DAG_ID, RUN_ID)
    assert len(rows) == TASKS and all(row.state == "success" and row.try_number == 1 for row in rows), rows
    stats = stack.stats()
    ours = {key: n for key, n in stats["created_per_try"].items() if key.startswith(f"{DAG_ID}|")}
    assert len(ours) == TASKS and set(ours.values()) == {1}, ours  # one container per try, none twice
    assert stats["doubly_run_tries"] == [] and stats["overlapping_tries"] == []
    log = (stack.home / "logs" / "scheduler.log").read_text()
    assert log.count("ECS API outage (") == 1 and log.count("The ECS API answers again") == 1, "logged once each"
    assert log.count("listing this deployment's ECS tasks failed") <= 2  # quiet while the breaker is open
    print(f"{waiting} tries waited out a {3 * PHASE_SECONDS:.0f} s outage; all launched {took:.1f} s after it")
