"""metadata_db's reads against a real (migrated SQLite) metadata DB: exactly the named task
instances, one statement per 100 of them, on Airflow 2 and 3."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey

from airflow_fargate import metadata_db
from airflow_fargate.compat import AIRFLOW_V3
from tests.ti_rows import DAG, add_ti, insert_row, selects


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


def test_try_states_are_each_named_tries_own_row_one_select_per_two_hundred(rows: sqlite3.Connection) -> None:
    for i in range(220):
        add_ti(rows, "mapped", "run_a", i, state="running" if i % 2 else "success", try_number=2)
        add_ti(rows, "mapped", "run_b", i, state="failed")  # the same tasks in another run: near misses
    add_ti(rows, "retried", "run_a", -1, state="queued", try_number=3)
    add_ti(rows, "reset", "run_a", -1, state=None)
    named = [(DAG, "mapped", "run_a", i, 2) for i in range(220)]
    named += [(DAG, "retried", "run_a", -1, 2)]  # the row moved on to try 3: it speaks for that try only
    named += [(DAG, "reset", "run_a", -1, 1), (DAG, "absent", "run_a", -1, 1)]

    with selects() as statements:
        found = metadata_db.try_states(named)

    expected = {(DAG, "mapped", "run_a", i, 2): "running" if i % 2 else "success" for i in range(220)}
    assert found == expected | {(DAG, "reset", "run_a", -1, 1): None}
    assert len([s for s in statements if "task_instance" in s]) == 2  # 223 named: two statements


@pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 2's task instance rows have no primary key of their own")
def test_a_row_read_once_is_read_again_by_its_key_and_only_a_row_whose_key_is_gone_by_its_identity(
    rows: sqlite3.Connection,
) -> None:
    """Each poll round reads every tracked try's row: after the first read, by the row's primary
    key (one parameter a try). Airflow replaces the key when it prepares the row for a new try
    (a retry, a clear) and the row may be deleted: those are looked up by identity again, so
    every read answers exactly what a read by identity would."""
    for i in range(260):
        add_ti(rows, "mapped", "run_a", i, state="running", try_number=2)
    for task_id in ("retried", "moved_on", "deleted"):
        add_ti(rows, task_id, "run_a", -1, state="running", try_number=2)
    named = [(DAG, "mapped", "run_a", i, 2) for i in range(260)]
    named += [(DAG, task_id, "run_a", -1, 2) for task_id in ("retried", "moved_on", "deleted")]
    row_ids: dict = {}

    assert metadata_db.try_states(named, row_ids) == metadata_db.try_states(named)
    assert len(row_ids) == 263

    set_row = "UPDATE task_instance SET {} WHERE dag_id = ? AND task_id = ?"
    rows.execute(set_row.format("state = 'success'"), [DAG, "mapped"])
    rows.execute(set_row.format("id = ?, state = 'up_for_retry'"), [uuid.uuid4().hex, DAG, "retried"])  # new key
    rows.execute(set_row.format("try_number = 3, state = 'scheduled'"), [DAG, "moved_on"])  # same key
    rows.execute("DELETE FROM task_instance WHERE dag_id = ? AND task_id = ?", [DAG, "deleted"])
    with selects() as statements:
        second = metadata_db.try_states(named, row_ids)

    assert second == metadata_db.try_states(named)
    assert second == {identity: "success" for identity in named[:260]} | {
        (DAG, "retried", "run_a", -1, 2): "up_for_retry"
    }
    by_key, by_identity = (
        [s for s in statements if "task_instance.id IN" in s],
        [s for s in statements if "task_instance.dag_id =" in s],
    )
    assert len(by_key) == 1  # 263 keys: one statement
    assert len(by_identity) == 1 and by_identity[0].count("task_instance.dag_id =") == 2  # retried, deleted
    assert len(row_ids) == 262  # the retried row's new key; the deleted row has none

    with selects() as statements:
        assert metadata_db.try_states(named[:10], row_ids) == {identity: "success" for identity in named[:10]}
    assert len(statements) == 1 and len(row_ids) == 10  # the others are no longer tracked: forgotten


@pytest.mark.parametrize(
    "query",
    [
        "_rows_query",
        "_states_query",
        pytest.param(
            "_pokes_query", marks=pytest.mark.skipif(not AIRFLOW_V3, reason="the poke check is Airflow 3 only")
        ),
        pytest.param(
            "_states_by_id_query", marks=pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 2's rows have no id")
        ),
    ],
)
def test_tries_are_found_through_the_unique_index_not_a_table_scan(rows: sqlite3.Connection, query: str) -> None:
    """A row-value IN is a full scan of task_instance on SQLite (the table every task run ever
    left); the reads run every heartbeat, so each must seek the (dag_id, task_id, run_id,
    map_index) index."""
    from sqlalchemy.dialects import sqlite

    if query == "_states_by_id_query":
        (size, params), *_ = metadata_db._some_ids([uuid.uuid4().hex for _ in range(5)])
    else:
        (size, params), *_ = metadata_db._some_of([(DAG, "t", "r", i) for i in range(5)])
    compiled = getattr(metadata_db, query)(size).compile(dialect=sqlite.dialect())
    bound = compiled.construct_params(params)
    values = [bound[name] for name in compiled.positiontup or []]
    plan = " | ".join(str(row[-1]) for row in rows.execute(f"EXPLAIN QUERY PLAN {compiled}", values))
    assert "SCAN task_instance" not in plan, plan
    assert "USING INDEX" in plan


def test_try_states_read_the_same_on_postgres_whose_driver_names_its_parameters() -> None:
    """The states are read with the DB driver's own SQL (compiled once per statement size): on
    PostgreSQL (psycopg2's named %(d0)s parameters, a native uuid key), as on SQLite (positional
    ?). The second read goes by the keys the first one found (Airflow 3)."""
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, event

    from tests.postgres import postgres_server

    keys = [Column("id", TaskInstance.__table__.c.id.type, primary_key=True)] if AIRFLOW_V3 else []  # uuid
    with postgres_server() as url:
        engine = create_engine(url)
        table = Table(  # the columns the read names, under the real table's name
            TaskInstance.__tablename__,
            MetaData(),
            *keys,
            *(Column(name, String(250)) for name in ("dag_id", "task_id", "run_id", "state")),
            Column("map_index", Integer),
            Column("try_number", Integer),
        )
        rows: list[dict[str, Any]] = [
            {"dag_id": DAG, "task_id": "t", "run_id": "r", "map_index": i, "try_number": 2, "state": "running"}
            for i in range(150)
        ]
        rows[7]["state"] = "success"
        rows[8]["try_number"] = 3  # moved on: it speaks for try 3 only
        for row in rows if AIRFLOW_V3 else ():
            row["id"] = uuid.uuid4()
        named = [(DAG, "t", "r", i, 2) for i in range(150)] + [(DAG, "x", "r", -1, 1)]
        statements: list[str] = []
        event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
        row_ids: dict = {}
        with engine.begin() as connection:
            table.create(connection)
            connection.execute(table.insert(), rows)
            first = metadata_db.states_on(connection, named, row_ids)
            statements.clear()
            second = metadata_db.states_on(connection, named, row_ids)
        engine.dispose()

    expected = {(DAG, "t", "r", i, 2): "success" if i == 7 else "running" for i in range(150) if i != 8}
    assert first == second == expected
    if AIRFLOW_V3:
        assert len(row_ids) == 150
        # by key (150, filled up to 256), then the try without a row by identity
        assert [(s.count("%(i"), s.count("%(d")) for s in statements] == [(256, 0), (0, 1)]


def test_two_schedulers_claiming_one_try_on_postgres_exactly_one_wins(monkeypatch) -> None:
    """claim_try is one conditional UPDATE: two schedulers adopting the same dead scheduler's try
    at the same moment (each in its own transaction on a real PostgreSQL) cannot both win; the
    row ends with the winner's ARN and job, and a claim of a try already claimed loses."""
    import contextlib
    import threading

    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import Column, DateTime, Integer, MetaData, String, Table, create_engine, select
    from sqlalchemy.orm import sessionmaker

    from tests.postgres import postgres_server

    identity = (DAG, "t", "r", -1, 1)
    with postgres_server() as url:
        engine = create_engine(url, pool_size=4)
        table = Table(
            TaskInstance.__tablename__,
            MetaData(),
            *(Column(name, String(250)) for name in ("dag_id", "task_id", "run_id", "state", "external_executor_id")),
            Column("map_index", Integer),
            Column("try_number", Integer),
            Column("queued_by_job_id", Integer),
            Column("updated_at", DateTime(timezone=True)),  # the model sets it on every update
        )
        with engine.begin() as connection:
            table.create(connection)
            connection.execute(
                table.insert(),
                [
                    {
                        "dag_id": DAG,
                        "task_id": "t",
                        "run_id": "r",
                        "map_index": -1,
                        "try_number": 1,
                        "state": "queued",
                        "queued_by_job_id": 5,
                    }
                ],
            )
        factory = sessionmaker(bind=engine)
        gate = [threading.Barrier(2, timeout=30)]

        @contextlib.contextmanager
        def session_at_the_barrier():
            session = factory()
            try:
                gate[0].wait()  # both claims go out together
                yield session
                session.commit()
            finally:
                session.close()

        monkeypatch.setattr("airflow.utils.session.create_session", session_at_the_barrier)
        results: dict[int, bool] = {}

        def claim(job: int) -> None:
            results[job] = metadata_db.claim_try(identity, f"arn-{job}", "5", job)

        threads = [threading.Thread(target=claim, args=(job,)) for job in (7, 8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        with engine.connect() as connection:
            row = connection.execute(select(table.c.external_executor_id, table.c.queued_by_job_id)).one()
        gate[0] = threading.Barrier(1)  # the next claim waits for no one
        late = metadata_db.claim_try(identity, "arn-9", "5", 9)  # the dead job no longer owns it
        engine.dispose()
    assert sorted(results.values()) == [False, True], results
    winner = next(job for job, won in results.items() if won)
    assert tuple(row) == (f"arn-{winner}", winner)
    assert late is False


def test_running_jobs_reads_job_states_without_airflows_deprecated_job_state(airflow_db: str) -> None:
    """airflow.utils.state.JobState is deprecated in Airflow 3 (the sweep would break when it goes)."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert metadata_db.running_jobs(["123456789"]) == set()
    assert not [w for w in caught if "JobState" in str(w.message)]
