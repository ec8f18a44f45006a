"""metadata_db's reads against a real (migrated SQLite) metadata DB: exactly the named task
instances, one statement per 100 of them, on Airflow 2 and 3."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey

from airflow_fargate import metadata_db
from airflow_fargate.compat import AIRFLOW_V3
from tests.ti_rows import DAG, add_ti, insert_row


@contextlib.contextmanager
def selects() -> Iterator[list[str]]:
    """The SELECT statements the metadata DB runs meanwhile."""
    from airflow import settings
    from sqlalchemy import event

    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(settings.engine, "before_cursor_execute", seen)
    try:
        yield statements
    finally:
        event.remove(settings.engine, "before_cursor_execute", seen)


def test_load_rows_returns_exactly_the_named_task_instances_one_select_per_hundred(rows: sqlite3.Connection) -> None:
    for i in range(150):  # two runs of 150 mapped tries; the second run's are near misses
        add_ti(rows, "mapped", "run_a", i, state="running", try_number=2, external_executor_id=f"arn-{i}")
        add_ti(rows, "mapped", "run_b", i, state="success")
    add_ti(rows, "other", "run_a", 0, state="queued")
    named = [(DAG, "mapped", "run_a", i, 2) for i in range(0, 150, 2)]  # 75 of run_a
    named += [(DAG, "mapped", "run_b", i, 1) for i in range(1, 150, 2)]  # 75 of run_b
    named += [(DAG, "absent", "run_a", 0, 1)]  # no such row

    with selects() as statements:
        found = metadata_db.load_rows(named)

    assert set(found) == {identity[:4] for identity in named[:-1]}
    assert found[(DAG, "mapped", "run_a", 4)].state == "running"
    assert found[(DAG, "mapped", "run_a", 4)].try_number == 2
    assert found[(DAG, "mapped", "run_a", 4)].external_executor_id == "arn-4"
    assert found[(DAG, "mapped", "run_b", 5)].state == "success"
    assert len([s for s in statements if "task_instance" in s]) == 2  # 151 named: two statements


@pytest.mark.skipif(not AIRFLOW_V3, reason="the poke check is Airflow 3 only")
def test_pokes_awaiting_their_next_are_only_scheduled_rescheduled_tries_of_that_try_number(
    rows: sqlite3.Connection,
) -> None:
    def poke(task_id: str, map_index: int = -1, **columns: Any) -> TaskInstanceKey:
        ti_id = add_ti(rows, task_id, "run", map_index, **({"state": "scheduled"} | columns))
        insert_row(rows, "task_reschedule", {"ti_id": ti_id})
        return TaskInstanceKey(DAG, task_id, "run", columns.get("try_number", 1), map_index)

    awaiting = [poke("sensor", i) for i in range(120)]  # more than one statement's worth
    running = poke("running_sensor", state="running")
    deferral = poke("deferred", next_method="execute_complete")  # Airflow resumes that one itself
    newer_try = poke("retried", try_number=3)
    stale_key = newer_try._replace(try_number=2)  # the finished container was try 2
    add_ti(rows, "never_rescheduled", "run", -1, state="scheduled")
    plain = TaskInstanceKey(DAG, "never_rescheduled", "run", 1, -1)

    with selects() as statements:
        found = metadata_db.pokes_awaiting_their_next([*awaiting, running, deferral, stale_key, plain])

    assert found == set(awaiting)
    assert len([s for s in statements if "task_instance" in s]) == 2


def test_try_states_are_each_named_tries_own_row_one_select_per_hundred(rows: sqlite3.Connection) -> None:
    for i in range(120):
        add_ti(rows, "mapped", "run_a", i, state="running" if i % 2 else "success", try_number=2)
        add_ti(rows, "mapped", "run_b", i, state="failed")  # the same tasks in another run: near misses
    add_ti(rows, "retried", "run_a", -1, state="queued", try_number=3)
    add_ti(rows, "reset", "run_a", -1, state=None)
    named = [(DAG, "mapped", "run_a", i, 2) for i in range(120)]
    named += [(DAG, "retried", "run_a", -1, 2)]  # the row moved on to try 3: it speaks for that try only
    named += [(DAG, "reset", "run_a", -1, 1), (DAG, "absent", "run_a", -1, 1)]

    with selects() as statements:
        found = metadata_db.try_states(named)

    expected = {(DAG, "mapped", "run_a", i, 2): "running" if i % 2 else "success" for i in range(120)}
    assert found == expected | {(DAG, "reset", "run_a", -1, 1): None}
    assert len([s for s in statements if "task_instance" in s]) == 2  # 123 named: two statements
