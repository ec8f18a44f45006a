"""Task instance rows written straight into the tests' migrated SQLite metadata DB."""

from __future__ import annotations

import contextlib
import sqlite3
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_fargate.compat import AIRFLOW_V3

DAG = "metadata_db_test"


def _sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def insert_row(db: sqlite3.Connection, table: str, values: dict[str, Any]) -> None:
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
    insert_row(db, "task_instance", values | columns)
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
