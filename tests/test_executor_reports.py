"""FargateExecutor learns that a try ended from the try's own task instance row: reported within
about a heartbeat, with no DescribeTasks call, while ECS still runs its container. What the row
cannot tell (a failure's exit code and output, a container that died silently) still comes from
ECS. A real migrated metadata DB; the poller's own rounds, not forced ones."""

from __future__ import annotations

import sqlite3
import time
from typing import Any

import pytest
from airflow.utils.state import TaskInstanceState

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.executor import FargateExecutor
from airflow_fargate.poller import Ended
from tests.executor_harness import calls, queue, started_executor
from tests.helpers import CONTAINER, MotoEcs, make_workload
from tests.ti_rows import DAG, add_ti, insert_row, selects


def heartbeats_until(executor: FargateExecutor, wanted: Any, timeout: float = 20) -> dict[Any, Any]:
    """Heartbeat as a scheduler does (every 0.2 s here) until ``wanted(events so far)``."""
    seen: dict[Any, Any] = {}
    deadline = time.monotonic() + timeout
    while True:
        executor.heartbeat()
        seen.update(executor.get_event_buffer())
        if wanted(seen):
            return seen
        assert time.monotonic() < deadline, f"not seen in {timeout}s: {seen}"
        time.sleep(0.2)


def set_row(db: sqlite3.Connection, task_id: str, state: str) -> None:
    db.execute("UPDATE task_instance SET state = ? WHERE dag_id = ? AND task_id = ?", [state, DAG, task_id])


def launched(executor: FargateExecutor, ecs: MotoEcs, db: sqlite3.Connection, task_id: str) -> tuple[Any, str]:
    """A try whose row says running and whose container ECS runs (the row is set as soon as the
    launch is applied: before the poller's first look at the new task, a round later)."""
    add_ti(db, task_id, "run1", -1, state="queued")
    (key,) = queue(executor, make_workload(task_id, dag_id=DAG))
    seen = heartbeats_until(executor, lambda events: key in events)
    arn = seen[key][1]
    set_row(db, task_id, "running")
    ecs.set_state(arn, "RUNNING")
    return key, arn


def test_a_try_whose_row_says_it_ended_is_reported_without_asking_ecs(executor, ecs, rows):
    described = calls(executor, "DescribeTasks")
    key, arn = launched(executor, ecs, rows, "quick")
    started = time.monotonic()
    while time.monotonic() - started < 2.5:  # rounds go on: the try reports running, nothing to ask ECS
        assert key not in heartbeats_until(executor, lambda events: True)
        time.sleep(0.2)
    set_row(rows, "quick", "success")
    seen = heartbeats_until(executor, lambda events: events.get(key, (None,))[0] == TaskInstanceState.SUCCESS)
    assert seen[key] == (TaskInstanceState.SUCCESS, arn)
    assert described == []
    assert ecs.task(arn).desired_status == "RUNNING"  # its container exits on its own (callbacks, log upload)
    assert executor.tracker.watched() == {} and executor.tracker.active_arns() == [arn]


@pytest.mark.parametrize("ended", ["deferred", "up_for_reschedule", "skipped"])
def test_a_try_that_deferred_or_rescheduled_itself_is_reported_ended_too(executor, ecs, rows, ended):
    key, arn = launched(executor, ecs, rows, "waits")
    set_row(rows, "waits", ended)
    seen = heartbeats_until(executor, lambda events: events.get(key, (None,))[0] == TaskInstanceState.SUCCESS)
    assert seen[key] == (TaskInstanceState.SUCCESS, arn)


def test_a_try_whose_row_says_it_failed_is_reported_with_its_containers_exit(executor, ecs, rows):
    described = calls(executor, "DescribeTasks")
    key, arn = launched(executor, ecs, rows, "broken")
    set_row(rows, "broken", "up_for_retry")
    ecs.set_state(arn, "STOPPED", exit_codes={CONTAINER: 1})
    seen = heartbeats_until(executor, lambda events: events.get(key, (None,))[0] == TaskInstanceState.FAILED)
    assert f"{CONTAINER} exit 1" in str(seen[key][1])
    assert any(arn in call["tasks"] for call in described)


@pytest.fixture
def quick_check(monkeypatch, ecs: MotoEcs) -> FargateExecutor:
    """An executor that describes a running try every 2 s (running_check_interval)."""
    return started_executor(monkeypatch, ecs, running_check_interval="2")


def test_a_container_that_died_without_its_try_reporting_is_found_by_describing(quick_check, ecs, rows):
    key, arn = launched(quick_check, ecs, rows, "oom")
    ecs.set_state(arn, "STOPPED", exit_codes={CONTAINER: 137})  # the row still says running
    seen = heartbeats_until(quick_check, lambda events: events.get(key, (None,))[0] == TaskInstanceState.FAILED)
    assert f"{CONTAINER} exit 137" in str(seen[key][1])


@pytest.mark.skipif(not AIRFLOW_V3, reason="the poke check is Airflow 3 only")
def test_only_a_poke_is_checked_before_it_is_reported_and_one_already_scheduled_is_not(executor, ecs, rows):
    """A poke's row may be SCHEDULED for the next poke by the time Airflow would read its report,
    which Airflow 3.3 takes for a task killed externally: the report is dropped. A success is
    reported without that check (its row cannot go back to SCHEDULED for the same try)."""
    poke, poke_arn = launched(executor, ecs, rows, "sensor")
    done, done_arn = launched(executor, ecs, rows, "plain")
    ti_id = rows.execute("SELECT id FROM task_instance WHERE dag_id = ? AND task_id = 'sensor'", [DAG]).fetchone()[0]
    set_row(rows, "sensor", "scheduled")  # the round read up_for_reschedule; the scheduler moved on
    insert_row(rows, "task_reschedule", {"ti_id": ti_id})
    with selects() as statements:
        executor._apply_ended(Ended(frozenset({poke_arn, done_arn}), pokes=frozenset({poke_arn})))
        executor._report_successes()
    assert executor.get_event_buffer() == {done: (TaskInstanceState.SUCCESS, done_arn)}
    assert poke not in executor.running
    assert len([s for s in statements if "task_reschedule" in s]) == 1  # one check, for the poke


def test_a_launch_and_an_ended_row_are_applied_in_the_heartbeat_that_sees_them(executor, ecs, rows, monkeypatch):
    """No answer waits a heartbeat it need not: the RUNNING event of a launch made in this
    heartbeat, and the end of a try whose row this heartbeat read, are in this heartbeat's events
    (the settle moment is made long here so the test does not depend on this machine's speed;
    the executor waits only while an answer is due, so it returns as soon as they are in)."""
    monkeypatch.setattr("airflow_fargate.executor.SETTLE_SECONDS", 10.0)
    add_ti(rows, "now", "run1", -1, state="queued")
    (key,) = queue(executor, make_workload("now", dag_id=DAG))
    started = time.monotonic()
    executor.heartbeat()
    (state, arn) = executor.get_event_buffer()[key]
    assert state == TaskInstanceState.RUNNING and time.monotonic() - started < 9
    set_row(rows, "now", "running")
    ecs.set_state(arn, "RUNNING")
    time.sleep(1.0)  # the rows are read at most every ROWS_MIN_SECONDS (or more when reads are slow)
    set_row(rows, "now", "success")
    executor.heartbeat()
    assert executor.get_event_buffer()[key] == (TaskInstanceState.SUCCESS, arn)
