"""Every difference between Airflow 2.10/2.11 and Airflow 3.x lives here."""

from __future__ import annotations

import importlib
import uuid
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

AIRFLOW_V3 = Version(AIRFLOW_VERSION).major >= 3


def import_string(dotted_path: str) -> Any:
    """Airflow's own import_string (ImportError naming the path and what is missing)."""
    module = "airflow.sdk.module_loading" if AIRFLOW_V3 else "airflow.utils.module_loading"
    return importlib.import_module(module).import_string(dotted_path)


def _key_match(key: Any) -> Any:
    """SQL condition selecting the task instance row of one try."""
    from airflow.models.taskinstance import TaskInstance

    return (
        (TaskInstance.dag_id == key.dag_id)
        & (TaskInstance.task_id == key.task_id)
        & (TaskInstance.run_id == key.run_id)
        & (TaskInstance.map_index == key.map_index)
        & (TaskInstance.try_number == key.try_number)
    )


def job_state_running() -> Any:
    """JobState.RUNNING from where this Airflow keeps it (airflow.jobs.job; Airflow 2.10 only
    in airflow.utils.state, where Airflow 3 deprecates it)."""
    try:
        from airflow.jobs.job import JobState
    except ImportError:  # Airflow 2.10
        from airflow.utils.state import JobState  # type: ignore[no-redef]
    return JobState.RUNNING


def task_instance_key(dag_id: str, task_id: str, run_id: str, map_index: int, try_number: int) -> Any:
    """Airflow's TaskInstanceKey (same module and fields on 2.10+ and 3.x)."""
    from airflow.models.taskinstancekey import TaskInstanceKey

    return TaskInstanceKey(dag_id, task_id, run_id, try_number, map_index)


def command_for_adopted(key: Any, executor: Any) -> list[str]:
    """Rebuild the command of an adopted try from its metadata DB row (needed only if it must be
    relaunched). The row is read in a fresh session: the TaskInstance handed to adoption is long
    detached by then. On Airflow 3 the workload carries a new execution-API token from the
    executor's JWT generator, exactly as the scheduler's own queueing does."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ti = session.scalar(select(TaskInstance).where(_key_match(key)))
        if ti is None:
            raise LookupError(f"no task instance row for {key} in the metadata database")
        if AIRFLOW_V3:
            from airflow.executors.workloads import ExecuteTask

            from airflow_fargate.work import container_command

            return container_command(ExecuteTask.make(ti, generator=executor.jwt_generator))
        # the same arguments the Airflow 2 scheduler queues the try with
        return list(ti.command_as_list(local=True, pickle_id=ti.dag_model.pickle_id))


try:  # Airflow 3.1+: module-level incr/gauge/timer/timing
    from airflow.observability import stats as _stats_impl
except ImportError:
    from airflow.stats import Stats as _stats_impl  # type: ignore[no-redef]

stats: Any = _stats_impl
"""Airflow's metrics facade (StatsD/OTel as configured); exposes incr, gauge, timer, timing."""


def requeue_try_for_relaunch(key: Any) -> str | None:
    """Put a try whose container ECS killed (Spot, failed start) back to QUEUED so a relaunched
    container may start it again: the execution API only starts QUEUED task instances.

    Only a try still QUEUED or RUNNING (nobody reported an outcome) is requeued. Returns None if
    the try may be relaunched, else the state that forbids it (the try already ended).
    """
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select, update

    match = _key_match(key)
    relaunchable = (TaskInstanceState.QUEUED, TaskInstanceState.RUNNING)
    with create_session() as session:
        updated = session.execute(
            update(TaskInstance)
            .where(match & TaskInstance.state.in_(relaunchable))
            .values(state=TaskInstanceState.QUEUED, hostname="", pid=None)
            .execution_options(synchronize_session=False)
        )
        if getattr(updated, "rowcount", 0):
            return None
        state = session.scalar(select(TaskInstance.state).where(match))
    return f"task instance is {state}" if state else "task instance try not found"


def record_connection_test_failure(key: Any, reason: str) -> None:
    """Mark a connection test FAILED with the executor's reason (Airflow 3.3+), unless it already
    ended: its container reports success or failure itself when it runs."""
    from airflow.models.connection_test import ACTIVE_STATES, ConnectionTestRequest, ConnectionTestState
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(
            update(ConnectionTestRequest)
            .where(
                (ConnectionTestRequest.id == uuid.UUID(str(key.id))) & ConnectionTestRequest.state.in_(ACTIVE_STATES)
            )
            .values(state=ConnectionTestState.FAILED, result_message=reason[:2000])
            .execution_options(synchronize_session=False)
        )
