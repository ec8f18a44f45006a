"""The log view of finished tries (FargateTaskLogIO) and structured lines for the UI."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from airflow_fargate.log_view import FargateTaskLogIO, is_ecs_task_arn
from airflow_fargate.logs import log_view_line
from tests.executor_harness import launched_running

JSON_LINE = json.dumps({"timestamp": "2026-01-01T00:00:00Z", "level": "info", "logger": "task", "event": "hello"})


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (JSON_LINE, JSON_LINE),  # a Task SDK line stays a structured event
        ('{"event": "no time"}', json.dumps({"event": "no time", "timestamp": "1970-01-01T00:00:01+00:00"})),
        ("plain text", "[1970-01-01T00:00:01.000+00:00] plain text"),
        ('{"no": "event key"}', '[1970-01-01T00:00:01.000+00:00] {"no": "event key"}'),
        ("{not json}", "[1970-01-01T00:00:01.000+00:00] {not json}"),
        ("[1, 2]", "[1970-01-01T00:00:01.000+00:00] [1, 2]"),
    ],
)
def test_log_view_lines(message, expected):
    assert log_view_line({"timestamp": 1000, "message": message}) == expected


def test_what_counts_as_an_ecs_task_arn():
    assert is_ecs_task_arn("arn:aws:ecs:us-east-1:1:task/c/abc")
    assert not is_ecs_task_arn("local-executor-id") and not is_ecs_task_arn(None)


def finished_ti(key, arn, state="success", **extra):
    return SimpleNamespace(
        key=key, dag_id=key.dag_id, task_id=key.task_id, run_id=key.run_id, map_index=key.map_index,
        try_number=key.try_number, external_executor_id=arn, state=state, queue="default", executor_config=None,
        **extra,
    )  # fmt: skip


def test_a_finished_try_is_read_from_its_cloudwatch_stream(executor, ecs):
    key, arn = launched_running(executor, ecs)
    ecs.print(arn, JSON_LINE, "plain output")
    io = FargateTaskLogIO(reasons=lambda ti: [])
    io._launched_task_definition = lambda ti: pytest.fail("only needed once ECS forgot the task")
    sources, logs = io.read("ignored/relative/path.log", finished_ti(key, arn))
    assert sources == [f"Output of ECS task {arn} from CloudWatch Logs group /ecs/airflow, stream airflow/base/{arn.rsplit('/', 1)[-1]}"]  # fmt: skip
    first, second = logs[0].splitlines()
    assert first == JSON_LINE and second.endswith("] plain output")
    io.upload("any/path.log", None)  # a no-op: awslogs shipped the output already


def test_a_running_try_is_left_to_the_executor(executor, ecs):
    key, arn = launched_running(executor, ecs)
    ecs.print(arn, "x")
    assert FargateTaskLogIO(reasons=lambda ti: []).read("p", finished_ti(key, arn, state="running")) == ([], [])


def test_a_stopped_task_ecs_forgot_is_found_through_the_configured_task_definition(executor, ecs, monkeypatch):
    key, arn = launched_running(executor, ecs)
    ecs.print(arn, "still in CloudWatch")
    io = FargateTaskLogIO(reasons=lambda ti: [])
    forgotten = SimpleNamespace(tasks={})
    monkeypatch.setattr(io._task_output()._ecs, "describe_tasks", lambda arns: forgotten)
    sources, logs = io.read("p", finished_ti(key, arn))
    assert "still in CloudWatch" in logs[0], sources


def test_the_executors_reason_is_shown_for_a_try_that_never_launched():
    when = datetime(2026, 1, 1, tzinfo=timezone.utc)
    io = FargateTaskLogIO(reasons=lambda ti: [(when, "Invalid executor_config: executor_config sets count=2")])
    ti = SimpleNamespace(external_executor_id=None, state="failed")
    sources, logs = io.read("p", ti)
    assert sources == ["FargateExecutor's reason for failing this try (audit log)"]
    assert json.loads(logs[0]) == {
        "timestamp": "2026-01-01T00:00:00+00:00",
        "level": "error",
        "logger": "airflow_fargate.executor",
        "event": "Invalid executor_config: executor_config sets count=2",
    }


def test_reading_never_raises_into_the_log_view():
    def broken(ti):
        raise RuntimeError("database is down")

    sources, logs = FargateTaskLogIO(reasons=broken).read(
        "p", SimpleNamespace(external_executor_id=None, state="failed")
    )
    assert sources == ["FargateExecutor could not read this try's log: RuntimeError: database is down"] and logs == []


def test_reasons_come_from_the_executors_audit_log_events(monkeypatch, tmp_path):
    """executor_reasons reads exactly this try's "fargate task failed" rows."""
    from airflow.models.log import Log
    from airflow.models.taskinstancekey import TaskInstanceKey
    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    from airflow_fargate import log_view

    engine = create_engine(f"sqlite:///{tmp_path / 'log.db'}")
    Log.__table__.create(engine)
    key = TaskInstanceKey("d", "t", "r", 2, -1)
    with sessionmaker(engine)() as session:
        session.add_all([
            Log(event="fargate task failed", task_instance=key, extra="the reason"),
            Log(event="fargate task failed", task_instance=key._replace(try_number=1), extra="older try"),
            Log(event="state mismatch", task_instance=key, extra="not ours"),
        ])  # fmt: skip
        session.commit()

    import contextlib

    @contextlib.contextmanager
    def session_here():
        with sessionmaker(engine)() as session:
            yield session

    monkeypatch.setattr("airflow.utils.session.create_session", session_here)
    ti = SimpleNamespace(dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=2)
    assert [reason for _, reason in log_view.executor_reasons(ti)] == ["the reason"]


def test_the_logging_config_class_adds_the_reader_unless_remote_logging_is_on(monkeypatch):
    import importlib

    from airflow_fargate import log_config
    from airflow_fargate.compat import AIRFLOW_V3

    monkeypatch.delenv("AIRFLOW__LOGGING__REMOTE_LOGGING", raising=False)
    importlib.reload(log_config)
    handler = log_config.LOGGING_CONFIG["handlers"]["task"]["class"]
    if AIRFLOW_V3:
        assert isinstance(log_config.REMOTE_TASK_LOG, FargateTaskLogIO)
        assert handler != "airflow_fargate.log_handler.FargateTaskHandler"
    else:
        assert log_config.REMOTE_TASK_LOG is None and handler == "airflow_fargate.log_handler.FargateTaskHandler"
    monkeypatch.setenv("AIRFLOW__LOGGING__REMOTE_LOGGING", "True")
    importlib.reload(log_config)
    assert log_config.REMOTE_TASK_LOG is None  # Airflow resolves the configured remote logging itself
    assert log_config.LOGGING_CONFIG["handlers"]["task"]["class"] != "airflow_fargate.log_handler.FargateTaskHandler"
    monkeypatch.delenv("AIRFLOW__LOGGING__REMOTE_LOGGING")
    importlib.reload(log_config)


def test_airflow2s_task_handler_reads_the_same_way(executor, ecs, tmp_path):
    from airflow_fargate.log_handler import FargateTaskHandler

    key, arn = launched_running(executor, ecs)
    ecs.print(arn, "from CloudWatch on Airflow 2")
    handler = FargateTaskHandler(base_log_folder=str(tmp_path))
    handler._io = FargateTaskLogIO(reasons=lambda ti: [])
    sources, logs = handler._read_remote_logs(finished_ti(key, arn), key.try_number)
    assert "from CloudWatch on Airflow 2" in logs[0], sources
