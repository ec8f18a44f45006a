"""Kill -9 a real scheduler while RunTask answers are on their way back, twice, and check from the
local endpoint's records that nothing was lost, no try ever ran twice and no orphan kept running.

The endpoint starts each task at once but answers RunTask 8 s later (so the scheduler dies holding
no ARN), and tasks created meanwhile stay PROVISIONING for 90 s (as a slow Fargate start would),
long enough that an orphan not stopped by the sweep would surely start and show up as started.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.local.stack import AirflowStack
from tests.helpers import e2e_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1200),
    pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 2 commands carry no try number to count containers by"),
]
DAG_ID, RUN_ID = "e2e_chaos", "chaos"
SLOW = {"run_task_response_delay_s": 8.0, "provision_delay_s": 90.0}


@pytest.fixture(scope="module")
def stack() -> Iterator[AirflowStack]:
    with e2e_stack(["tests/e2e_dags/e2e_chaos.py"], {}) as running:
        yield running


def set_faults(stack: AirflowStack, **switches: Any) -> None:
    assert stack.ecs is not None
    stack.ecs.control("/_local/faults", switches)


def wait_until(predicate, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(what)


def kill_with_answers_on_the_way(stack: AirflowStack, calls_before: int) -> None:
    """Kill the scheduler -9 once RunTask calls reached the endpoint whose answers it never gets."""
    wait_until(lambda: stack.stats()["run_task_calls"] > calls_before, 400, "the scheduler never launched")
    time.sleep(2)  # more launches join them; every answer is still 6+ s away
    stack.kill("scheduler")


def test_scheduler_killed_twice_with_run_task_answers_on_the_way(stack):
    log = stack.home / "logs" / "scheduler.log"
    set_faults(stack, **SLOW)
    stack.trigger(DAG_ID, RUN_ID)
    kill_with_answers_on_the_way(stack, 0)  # 1: the first stage's launches in flight
    calls = stack.stats()["run_task_calls"]
    stack.start_process("scheduler", "scheduler")
    # 2: the successor's own launches (relaunched reset tries or the second stage) in flight
    kill_with_answers_on_the_way(stack, calls)
    set_faults(stack)
    stack.start_process("scheduler", "scheduler")
    assert stack.wait_for_run(DAG_ID, RUN_ID, timeout=600) == "success"

    rows = stack.task_rows(DAG_ID, RUN_ID)
    assert len(rows) == 16 and all(r.state == "success" for r in rows)
    stats = wait_until(
        lambda: (s := stack.stats())["running_tries"] == [] and s, 60, "containers still running at the end"
    )
    assert stats["doubly_run_tries"] == [] and stats["overlapping_tries"] == []
    final = {f"{DAG_ID}|{r.task_id}|{RUN_ID}|{r.map_index}|{r.try_number}" for r in rows}
    ours = {key: n for key, n in stats["created_per_try"].items() if key.startswith(f"{DAG_ID}|")}
    for key in final:
        assert ours.get(key) == 1, (key, stats)  # every final try ran in exactly one container
    reset = set(ours) - final
    for key in reset:  # the tries Airflow reset: their containers were stopped before they started
        assert stats["started_per_try"].get(key, 0) == 0, (key, stats)
        assert stats["stops_per_try"][key] and all("orphan sweep" in r for r in stats["stops_per_try"][key])
    text = log.read_text()
    adopted_by_tags = text.count("Orphan sweep: adopted") + sum(
        line.count("run_id='chaos'") for line in text.splitlines() if "Adopted " in line
    )
    assert reset or adopted_by_tags, "neither an orphan was stopped nor an unrecorded try adopted"
    print(f"reset tries: {len(reset)}, adoptions: {adopted_by_tags}")
