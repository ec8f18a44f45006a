"""metadata_db's reads against a real (migrated SQLite) metadata DB: exactly the named task
instances, one statement per 100 of them, on Airflow 2 and 3."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey

from airflow_fargate import metadata_db
from airflow_fargate.compat import AIRFLOW_V3

DAG = "metadata_db_test"


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def _insert(db: sqlite3.Connection, table: str, values: dict[str, Any]) -> None:
    """A row with these values; every other NOT NULL column without a default gets a filler."""
    for _, name, kind, notnull, default, primary in db.execute(f"PRAGMA table_info({table})"):
        if name in values or not notnull or default is not None or (primary and kind == "INTEGER"):
            continue
        upper = kind.upper()
        values[name] = 1 if "INT" in upper or "FLOAT" in upper else "2026-01-01 00:00:00" if "TIME" in upper else "x"
    names = ", ".join(values)
    db.execute(f"INSERT INTO {table} ({names}) VALUES ({', '.join('?' * len(values))})", list(values.values()))


@pytest.fixture
def rows(airflow_db: str) -> Iterator[sqlite3.Connection]:
    """Task instance rows written straight into the test DB (deleted afterwards)."""
    db = sqlite3.connect(_sqlite_path(airflow_db), isolation_level=None)  # no FK pragma: no dag_run needed
    try:
        yield db
    finally:
        if AIRFLOW_V3:
            db.execute(
                "DELETE FROM task_reschedule WHERE ti_id IN (SELECT id FROM task_instance WHERE dag_id = ?)", [DAG]
            )
        db.execute("DELETE FROM task_instance WHERE dag_id = ?", [DAG])
        db.close()


def add_ti(db: sqlite3.Connection, task_id: str, run_id: str, map_index: int, **columns: Any) -> str:
    ti_id = uuid.uuid4().hex
    values = {"dag_id": DAG, "task_id": task_id, "run_id": run_id, "map_index": map_index, "try_number": 1}
    if AIRFLOW_V3:
        values["id"] = ti_id
    _insert(db, "task_instance", values | columns)
    return ti_id


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
        _insert(rows, "task_reschedule", {"ti_id": ti_id})
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
