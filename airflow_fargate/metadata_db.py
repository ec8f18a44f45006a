"""What the metadata DB says about task tries and scheduler jobs.

Two readers: the orphan sweep (sweep.py), which finds ECS tasks nobody tracks and asks whether
their try still wants them, and the poller (try_reports.py), which learns from each tracked try's
own row that it ended. Reads happen in a session of their own (the sweep's and the one
conditional write on the scheduler thread, the tries' states on the poller's), with the same
columns on Airflow 2.10+ and 3.x.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

TryIdentity = tuple[str, str, str, int, int]  # dag_id, task_id, run_id, map_index, try_number
ACTIVE_STATES = ("queued", "running")  # a try some executor is (or should be) running
# The tries' states are read every poll round: 200 a statement (800 bound parameters, within the
# 999 of older SQLite builds) keeps a scheduler running 200 tasks at one statement a round.
TRY_STATES_PER_STATEMENT = 200
IDS_PER_STATEMENT = 500  # read by primary key (Airflow 3): one bound parameter a try


@dataclass(frozen=True)
class TryRow:
    """The task instance row of a (dag_id, task_id, run_id, map_index), as it is now."""

    state: str | None
    try_number: int
    external_executor_id: str | None
    queued_by_job_id: str | None
    executor_config: Any = None
    queue: str | None = None
    end_date: float | None = None  # epoch seconds the try ended, if it has


def _ti_match(dag_id: str, task_id: str, run_id: str, map_index: int) -> Any:
    from airflow.models.taskinstance import TaskInstance

    return (
        (TaskInstance.dag_id == dag_id)
        & (TaskInstance.task_id == task_id)
        & (TaskInstance.run_id == run_id)
        & (TaskInstance.map_index == map_index)
    )


@functools.cache
def _named(size: int) -> Any:
    """WHERE clause naming ``size`` task instances by bound parameters (d0, t0, r0, m0, ...): an OR
    of equalities on the unique (dag_id, task_id, run_id, map_index) index. Built once per size,
    so SQLAlchemy compiles each statement once. A row-value IN, the obvious spelling, is a full
    table scan on SQLite (EXPLAIN: SCAN task_instance): 2.4 ms per 200 tries at 10,000 rows."""
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import and_, bindparam, or_

    return or_(
        *(
            and_(
                TaskInstance.dag_id == bindparam(f"d{i}"),
                TaskInstance.task_id == bindparam(f"t{i}"),
                TaskInstance.run_id == bindparam(f"r{i}"),
                TaskInstance.map_index == bindparam(f"m{i}"),
            )
            for i in range(size)
        )
    )


def _filled(items: Collection[Any], per: int) -> Iterator[tuple[int, list[Any]]]:
    """(size, chunk) of these items sorted, ``per`` at most a chunk. A chunk holds a power of two
    of them (the last one repeated to fill it): a handful of statements, each built and compiled
    once, serve every batch size."""
    batch = sorted(items)
    for start in range(0, len(batch), per):
        chunk = batch[start : start + per]
        size = min(per, 1 << (len(chunk) - 1).bit_length())
        yield size, chunk + [chunk[-1]] * (size - len(chunk))


def _some_of(identities: Collection[tuple[str, str, str, int]], per: int = 100) -> Iterator[tuple[int, dict[str, Any]]]:
    """(size, parameters) of the clauses (``_named(size)``) naming these (distinct) task instances,
    ``per`` at most a clause."""
    for size, chunk in _filled(identities, per):
        params: dict[str, Any] = {}
        for i, (dag_id, task_id, run_id, map_index) in enumerate(chunk):
            params.update({f"d{i}": dag_id, f"t{i}": task_id, f"r{i}": run_id, f"m{i}": map_index})
        yield size, params


def _some_ids(row_ids: Collection[Any], per: int = IDS_PER_STATEMENT) -> Iterator[tuple[int, dict[str, Any]]]:
    """(size, parameters) of ``_states_by_id_query(size)`` for these primary keys, as ``_some_of``."""
    for size, chunk in _filled(row_ids, per):
        yield size, {f"i{i}": row_id for i, row_id in enumerate(chunk)}


def _select_named(*columns: str) -> Any:
    """SELECT the identity columns (dag_id, task_id, run_id, map_index) and ``columns`` of
    task_instance."""
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    names = ("dag_id", "task_id", "run_id", "map_index", *columns)
    return select(*(getattr(TaskInstance, name) for name in names))


@functools.cache
def _rows_query(size: int) -> Any:
    return _select_named(
        "state", "try_number", "external_executor_id", "queued_by_job_id", "executor_config", "queue", "end_date"
    ).where(_named(size))


def load_rows(identities: Iterable[TryIdentity]) -> dict[tuple[str, str, str, int], TryRow]:
    """The current row of every task instance named (whatever its try number now is)."""
    from airflow.utils.session import create_session

    wanted = {identity[:4] for identity in identities}
    rows: dict[tuple[str, str, str, int], TryRow] = {}
    if not wanted:
        return rows
    with create_session() as session:
        for size, params in _some_of(wanted):
            for row in session.execute(_rows_query(size), params):
                state = row.state.value if hasattr(row.state, "value") else row.state
                rows[(row.dag_id, row.task_id, row.run_id, row.map_index)] = TryRow(
                    state=None if state is None else str(state),
                    try_number=int(row.try_number),
                    external_executor_id=row.external_executor_id,
                    queued_by_job_id=None if row.queued_by_job_id is None else str(row.queued_by_job_id),
                    executor_config=row.executor_config,
                    queue=row.queue,
                    end_date=row.end_date.timestamp() if row.end_date is not None else None,
                )
    return rows


@functools.cache
def _has_row_ids() -> bool:
    """Airflow 3 gives each try's task instance row a primary key of its own (``id``, replaced
    when the row is prepared for a new try); Airflow 2's rows have none."""
    from airflow.models.taskinstance import TaskInstance

    return "id" in TaskInstance.__table__.columns


@functools.cache
def _states_query(size: int) -> Any:
    return _select_named("try_number", "state", *(("id",) if _has_row_ids() else ())).where(_named(size))


@functools.cache
def _states_by_id_query(size: int) -> Any:
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import bindparam, select

    return select(TaskInstance.id, TaskInstance.try_number, TaskInstance.state).where(
        TaskInstance.id.in_([bindparam(f"i{i}") for i in range(size)])
    )


@functools.cache
def _driver_sql(dialect: Any, query: Callable[[int], Any], size: int) -> tuple[str, tuple[str, ...] | None]:
    """``query(size)`` as this DB driver's own SQL, and the order of its parameters if the
    driver's are positional. Compiled once per size: SQLAlchemy's per-execution work (800 bound
    parameters, typed rows) costs three times what SQLite takes to answer, every round."""
    compiled = query(size).compile(dialect=dialect)
    return compiled.string, tuple(compiled.positiontup or ()) if compiled.positional else None


def _fetch(
    connection: Any, query: Callable[[int], Any], batches: Iterable[tuple[int, dict[str, Any]]]
) -> Iterator[Any]:
    """The rows of ``query`` for each (size, parameters) batch, through the driver's own SQL."""
    for size, params in batches:
        sql, order = _driver_sql(connection.dialect, query, size)
        bound = params if order is None else tuple(params[name] for name in order)
        yield from connection.exec_driver_sql(sql, bound).fetchall()


def try_states(
    identities: Collection[TryIdentity], row_ids: dict[tuple[str, str, str, int], Any] | None = None
) -> dict[TryIdentity, str | None]:
    """The state each named try's row reports now. A try whose row is gone or has moved on to
    another try number is left out: only its own row speaks for a try.

    ``row_ids`` (kept by the caller from one read to the next) remembers each row's primary key
    on Airflow 3: a row read once is read again by that key (one bound parameter, not four), and
    only a row whose key is gone (deleted, or prepared for a new try) is looked up again."""
    from airflow.utils.session import create_session

    with create_session() as session:
        return states_on(session.connection(), identities, row_ids)


def states_on(
    connection: Any,
    identities: Collection[TryIdentity],
    row_ids: dict[tuple[str, str, str, int], Any] | None = None,
) -> dict[TryIdentity, str | None]:
    """``try_states`` on this SQLAlchemy connection."""
    tries = {identity[:4]: identity[4] for identity in identities}
    found: dict[TryIdentity, str | None] = {}

    def note(named: tuple[str, str, str, int], try_number: int, state: Any) -> None:
        if tries.get(named) == try_number:
            found[(*named, try_number)] = None if state is None else str(state)

    unread: Collection[tuple[str, str, str, int]] = tries.keys()
    if row_ids is not None and _has_row_ids():
        for gone in [named for named in row_ids if named not in tries]:
            del row_ids[gone]
        by_id = {row_ids[named]: named for named in tries if named in row_ids}
        # _some_ids sorts the keys before the first statement: popping from by_id meanwhile is safe
        for row_id, try_number, state in _fetch(connection, _states_by_id_query, _some_ids(by_id)):
            if (named := by_id.pop(row_id, None)) is not None:
                note(named, try_number, state)
        for named in by_id.values():  # its key is gone: the row was deleted or prepared for a new try
            del row_ids[named]
        unread = [named for named in tries if named not in row_ids]
    for dag_id, task_id, run_id, map_index, try_number, state, *row_id in _fetch(
        connection, _states_query, _some_of(unread, per=TRY_STATES_PER_STATEMENT)
    ):
        named = (dag_id, task_id, run_id, map_index)
        if row_ids is not None and row_id:
            row_ids[named] = row_id[0]
        note(named, try_number, state)
    return found


def running_jobs(job_ids: Iterable[str]) -> set[str]:
    """Which of these scheduler jobs Airflow still counts as running (state RUNNING). A job that
    died is marked FAILED by the next scheduler's orphan check, after its heartbeat went stale."""
    from airflow.jobs.job import Job
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from airflow_fargate.compat import job_state_running

    numeric = sorted({int(job) for job in job_ids if str(job).isdigit()})
    if not numeric:
        return set()
    with create_session() as session:
        found = session.scalars(select(Job.id).where(Job.id.in_(numeric) & (Job.state == job_state_running())))
        return {str(job_id) for job_id in found}


def claim_try(identity: TryIdentity, arn: str, previous_job: str | None, our_job: Any) -> bool:
    """Make this scheduler the owner of a dead scheduler's try whose ECS task never reached the DB:
    record the ARN and our job, only if the row still is that try, active, without another ARN and
    still queued by ``previous_job``. One UPDATE, so a concurrent reset (another scheduler's
    orphan check) or adoption wins or loses as a whole. True if the row is now ours."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import update

    dag_id, task_id, run_id, map_index, try_number = identity
    owner = (
        TaskInstance.queued_by_job_id.is_(None)
        if previous_job is None
        else (TaskInstance.queued_by_job_id == int(previous_job))
    )
    condition = (
        _ti_match(dag_id, task_id, run_id, map_index)
        & (TaskInstance.try_number == try_number)
        & TaskInstance.state.in_(ACTIVE_STATES)
        & (TaskInstance.external_executor_id.is_(None) | (TaskInstance.external_executor_id == arn))
        & owner
    )
    with create_session() as session:
        result = session.execute(
            update(TaskInstance)
            .where(condition)
            .values(external_executor_id=arn, queued_by_job_id=int(our_job))
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))


@functools.cache
def _pokes_query(size: int) -> Any:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.taskreschedule import TaskReschedule
    from sqlalchemy import exists

    return _select_named("try_number").where(
        _named(size),
        TaskInstance.state == "scheduled",
        TaskInstance.next_method.is_(None),  # a deferral's resume: Airflow handles that one itself
        exists().where(TaskReschedule.ti_id == TaskInstance.id),
    )


def pokes_awaiting_their_next(keys: Iterable[Any]) -> set[Any]:
    """Which of these finished tries (TaskInstanceKeys) were a reschedule-mode sensor's poke whose
    task instance is already SCHEDULED for the next poke (Airflow 3 only).

    Airflow 3.3's scheduler reads a success event for a SCHEDULED try as a task killed
    externally and fails it (apache/airflow#71172); on ECS, where a task reports STOPPED seconds
    after its container exits, that is every sensor poking more often than that. The poke's own
    TaskReschedule row (keyed by the try's ti_id) says the container ended up_for_reschedule."""
    from airflow.utils.session import create_session

    by_identity = {(k.dag_id, k.task_id, k.run_id, k.map_index): k for k in keys}
    found: set[Any] = set()
    with create_session() as session:
        for size, params in _some_of(by_identity):
            for row in session.execute(_pokes_query(size), params):
                key = by_identity[(row.dag_id, row.task_id, row.run_id, row.map_index)]
                if key.try_number == row.try_number:
                    found.add(key)
    return found
