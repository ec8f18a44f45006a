"""The executor's task events reach the audit log through the scheduler's own saving code."""

from __future__ import annotations

import pytest
import sqlalchemy
from airflow.models.log import Log
from airflow.models.taskinstancekey import TaskInstanceKey
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from airflow_fargate.executor import FargateExecutor

KEY = TaskInstanceKey("dag", "task", "run", 1, -1)


def scheduler_saves(events, tmp_path) -> list[tuple[str, str, str]]:
    """What SchedulerJobRunner does with an executor's events each loop, on a fresh log table."""
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    Log.__table__.create(engine)
    with Session(engine) as session:
        SchedulerJobRunner._process_task_event_logs(events, session)
        session.commit()
        return [tuple(row) for row in session.execute(select(Log.event, Log.task_id, Log.extra))]


def test_failure_reasons_are_saved_by_the_scheduler(tmp_path):
    executor = FargateExecutor()
    executor.log_task_event(event="fargate task failed", extra="Invalid executor_config: cpu", ti_key=KEY)
    executor.log_task_event(event="fargate task failed", extra="second", ti_key=KEY._replace(task_id="other"))
    assert scheduler_saves(executor._task_event_logs, tmp_path) == [
        ("fargate task failed", "task", "Invalid executor_config: cpu"),
        ("fargate task failed", "other", "second"),
    ]
    executor._task_events.release_saved()
    assert executor._task_events._kept == []  # nothing held once saved


def test_rows_not_yet_saved_stay_held():
    executor = FargateExecutor()
    executor.log_task_event(event="fargate task failed", extra="x", ti_key=KEY)
    executor._task_events.release_saved()
    assert len(executor._task_events._kept) == 1


@pytest.mark.skipif(sqlalchemy.__version__.startswith("1."), reason="SQLAlchemy 1.4 (Airflow 2) holds the rows itself")
def test_without_the_extra_reference_airflow_loses_the_events(tmp_path):
    """Why the keeper exists: Airflow's own path loses rows that only the deque references."""
    from collections import deque

    events = deque([Log(event="fargate task failed", task_instance=KEY, extra="lost")])
    with pytest.raises(Exception, match=r"NOT NULL constraint failed: log\.event"):
        scheduler_saves(events, tmp_path)
