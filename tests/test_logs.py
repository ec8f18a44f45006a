"""Container output from CloudWatch Logs (moto): the UI's get_task_log and failure reasons."""

from __future__ import annotations

import json
import time
from concurrent.futures import Future
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from airflow.utils.state import TaskInstanceState
from botocore.exceptions import ClientError

from airflow_fargate.aws_session import AwsTarget
from airflow_fargate.logs import CloudWatchLogReader, FailureOutput, LogRead, LogStream, awslogs_stream
from tests.executor_harness import beat, events, launched_running
from tests.helpers import CONTAINER, LOG_GROUP, LOG_PREFIX, REGION

START_MS = (int(time.time()) - 60) * 1000  # CloudWatch drops events older than 14 days
ARN = "arn:aws:ecs:us-east-1:123456789012:task/airflow-tasks/0123abcd"


def definition(**log_configuration: Any) -> dict[str, Any]:
    return {
        "containerDefinitions": [
            {"name": "sidecar"},
            {"name": CONTAINER, "logConfiguration": log_configuration} if log_configuration else {"name": CONTAINER},
        ]
    }


# ---- where the stream is -----------------------------------------------------------------------------


def test_awslogs_stream_follows_the_driver_naming():
    found = awslogs_stream(
        definition(
            logDriver="awslogs",
            options={"awslogs-group": "/g", "awslogs-stream-prefix": "p", "awslogs-region": "eu-west-1"},
        ),
        CONTAINER,
        ARN,
    )
    assert found == LogStream("/g", f"p/{CONTAINER}/0123abcd", "eu-west-1")


@pytest.mark.parametrize(
    "log_configuration",
    [
        {},  # no log configuration at all
        {"logDriver": "awsfirelens", "options": {"Name": "cloudwatch"}},
        {"logDriver": "awslogs", "options": {"awslogs-group": "/g"}},  # no prefix: stream name unknowable
        {"logDriver": "awslogs", "options": {"awslogs-stream-prefix": "p"}},
    ],
)
def test_no_stream_without_a_usable_awslogs_configuration(log_configuration):
    assert awslogs_stream(definition(**log_configuration), CONTAINER, ARN) is None


def test_no_stream_for_an_unknown_container():
    assert awslogs_stream(definition(logDriver="awslogs"), "other", ARN) is None


# ---- reading it --------------------------------------------------------------------------------------


@pytest.fixture
def reader():
    from moto import mock_aws

    with mock_aws():
        logs = boto3.client("logs", region_name=REGION)
        logs.create_log_group(logGroupName="/g")
        logs.create_log_stream(logGroupName="/g", logStreamName="s")
        events = [{"timestamp": START_MS + i, "message": f"line {i}"} for i in range(30)]
        logs.put_log_events(logGroupName="/g", logStreamName="s", logEvents=events)
        yield CloudWatchLogReader(lambda: AwsTarget(boto3.session.Session(region_name=REGION)), REGION)


def test_reads_every_line_oldest_first_with_timestamps(reader):
    result = reader.read(LogStream("/g", "s"))
    assert result.problem is None
    assert len(result.lines) == 30
    start = datetime.fromtimestamp(START_MS / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")
    assert result.lines[0] == f"[{start}] line 0"
    assert result.lines[-1].endswith("line 29")
    assert result.source == "CloudWatch Logs group /g, stream s"


def test_reads_only_the_tail(reader):
    result = reader.read(LogStream("/g", "s"), tail=3)
    assert [line.split("] ", 1)[1] for line in result.lines] == ["line 27", "line 28", "line 29"]


def test_missing_stream_is_a_message_not_an_error(reader):
    result = reader.read(LogStream("/g", "not-yet"))
    assert result.lines == []
    assert "no output yet" in result.problem and "not-yet" in result.problem


class ScriptedLogs:
    """A logs client that answers from a script (pages, or errors)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def get_log_events(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def scripted_reader(client: ScriptedLogs) -> CloudWatchLogReader:
    reader = CloudWatchLogReader(lambda: AwsTarget(boto3.session.Session(region_name=REGION)), REGION)
    reader._clients[REGION] = client
    return reader


def page(token: str, *messages: str) -> dict[str, Any]:
    return {"events": [{"timestamp": 0, "message": m} for m in messages], "nextForwardToken": token}


def test_follows_pages_until_the_token_repeats():
    client = ScriptedLogs(page("t1", "a"), page("t2", "b"), page("t2"))
    result = scripted_reader(client).read(LogStream("/g", "s"))
    assert [line.split("] ", 1)[1] for line in result.lines] == ["a", "b"]
    assert [c.get("nextToken") for c in client.calls] == [None, "t1", "t2"]


def test_throttling_after_botocore_retries_is_reported():
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "GetLogEvents")
    result = scripted_reader(ScriptedLogs(throttled)).read(LogStream("/g", "s"))
    assert result.lines == []
    assert "ThrottlingException" in result.problem


class RawBody:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any):
        yield self.body


def test_cloudwatch_throttling_is_retried_by_botocore(reader):
    from botocore.awsrequest import AWSResponse

    throttles = []

    def throttle_twice(request, **_):
        if len(throttles) < 2:
            throttles.append(request.url)
            body = b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'
            return AWSResponse(request.url, 400, {"x-amzn-ErrorType": "ThrottlingException"}, RawBody(body))
        return None

    reader._client(REGION).meta.events.register("before-send.logs.GetLogEvents", throttle_twice)
    result = reader.read(LogStream("/g", "s"), tail=1)
    assert len(throttles) == 2
    assert result.problem is None and result.lines[0].endswith("line 29")


# ---- held failures -----------------------------------------------------------------------------------


class FakeOutput:
    def __init__(self, result: LogRead | Exception | None) -> None:
        self.result = result
        self.calls: list[tuple[str, str | None, int | None]] = []

    def read(self, arn: str, task_definition_arn: str | None = None, *, tail: int | None = None) -> LogRead:
        self.calls.append((arn, task_definition_arn, tail))
        if isinstance(self.result, Exception):
            raise self.result
        assert self.result is not None
        return self.result


def held(output: FakeOutput, now: float = 0.0) -> FailureOutput:
    failures = FailureOutput(output, lines=5, wait_seconds=10)  # type: ignore[arg-type]
    failures.hold("key", "exit 1", ARN, "td-arn", now)
    failures.wait(5)
    return failures


def test_failure_reason_gets_the_last_lines():
    output = FakeOutput(LogRead(["one", "two"], source="CloudWatch Logs group /g, stream s"))
    failures = held(output)
    ((key, reason),) = failures.release(now=0.0)
    assert key == "key"
    assert reason == "exit 1\nLast 2 lines of output (CloudWatch Logs group /g, stream s):\none\ntwo"
    assert output.calls == [(ARN, "td-arn", 5)]
    assert len(failures) == 0


@pytest.mark.parametrize(
    ("result", "suffix"),
    [
        (LogRead([], "no output yet in somewhere"), "(no output yet in somewhere)"),
        (LogRead([]), "(the task printed nothing)"),
        (RuntimeError("boom"), "(task output unavailable: RuntimeError: boom)"),
    ],
)
def test_failure_is_released_without_output_when_there_is_none(result, suffix):
    ((_, reason),) = held(FakeOutput(result)).release(now=0.0)
    assert reason == f"exit 1 {suffix}"


def test_slow_fetch_releases_the_bare_reason_after_the_wait():
    failures = FailureOutput(FakeOutput(None), wait_seconds=10)  # type: ignore[arg-type]
    never: Future[LogRead] = Future()
    failures._pool.submit = lambda *a, **k: never  # type: ignore[method-assign]
    failures.hold("key", "exit 1", ARN, None, now=100.0)
    assert failures.release(now=105.0) == []
    assert failures.release(now=110.0) == [("key", "exit 1 (task output not fetched in time)")]


def test_shutdown_releases_everything():
    failures = FailureOutput(FakeOutput(None), wait_seconds=10)  # type: ignore[arg-type]
    never: Future[LogRead] = Future()
    failures._pool.submit = lambda *a, **k: never  # type: ignore[method-assign]
    failures.hold("key", "exit 1", ARN, None, now=100.0)
    failures.shutdown(wait_seconds=0.01)
    assert failures.release(now=100.0, everything=True) == [("key", "exit 1 (task output not fetched in time)")]


# ---- through the executor ----------------------------------------------------------------------------


def test_failed_task_reason_ends_with_its_output(executor, ecs):
    key, arn = launched_running(executor, ecs)
    ecs.print(arn, "starting", "Traceback (most recent call last):", "ValueError: bad input")
    ecs.set_state(arn, "STOPPED", exit_codes={CONTAINER: 1}, stop_code="EssentialContainerExited")
    beat(executor)
    state, reason = events(executor)[key]
    assert state == TaskInstanceState.FAILED
    assert "exit 1" in reason
    assert reason.endswith("ValueError: bad input")
    assert f"stream {LOG_PREFIX}/{CONTAINER}/{arn.rsplit('/', 1)[-1]}" in reason


def test_failed_task_without_output_still_fails_with_its_reason(executor, ecs):
    key, arn = launched_running(executor, ecs)
    ecs.set_state(arn, "STOPPED", exit_codes={CONTAINER: 137}, stop_code="EssentialContainerExited")
    beat(executor)
    state, reason = events(executor)[key]
    assert state == TaskInstanceState.FAILED
    assert "137" in reason and "no output yet" in reason


def test_get_task_log_shows_the_running_containers_output(executor, ecs):
    key, arn = launched_running(executor, ecs)
    ecs.print(arn, "hello from the container", "still working")
    ti = SimpleNamespace(key=key, try_number=key.try_number, external_executor_id=arn)
    messages, logs = executor.get_task_log(ti, key.try_number)
    assert messages == [
        f"Output of ECS task {arn} from CloudWatch Logs group {LOG_GROUP}, stream "
        f"{LOG_PREFIX}/{CONTAINER}/{arn.rsplit('/', 1)[-1]}"
    ]
    assert "hello from the container" in logs[0] and logs[0].rstrip().endswith("still working")


def test_get_task_log_explains_when_there_is_nothing_to_show(executor, ecs):
    key, arn = launched_running(executor, ecs)
    ti = SimpleNamespace(key=key, try_number=key.try_number, external_executor_id=arn)
    messages, logs = executor.get_task_log(ti, key.try_number)
    assert logs == [] and "no output yet" in messages[0]
    assert executor.get_task_log(ti, key.try_number - 1) == ([], [])  # an older try: not this ARN
    assert executor.get_task_log(SimpleNamespace(external_executor_id=None, try_number=1), 1) == ([], [])


def test_get_task_log_works_in_a_process_that_never_started_the_executor(executor, ecs):
    """The api-server loads executors only to read logs: it never calls start()."""
    from airflow_fargate.executor import FargateExecutor

    key, arn = launched_running(executor, ecs)
    ecs.print(arn, "seen from the api-server")
    ti = SimpleNamespace(key=key, try_number=key.try_number, external_executor_id=arn)
    reader = FargateExecutor()
    messages, logs = reader.get_task_log(ti, key.try_number)
    assert "seen from the api-server" in logs[0], messages
    reader.end()  # nothing was started, nothing to wait for or stop


def test_get_task_log_never_raises(executor, ecs, monkeypatch):
    key, arn = launched_running(executor, ecs)

    def broken(arns):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "DescribeTasks")

    monkeypatch.setattr(executor.ecs, "describe_tasks", broken)
    ti = SimpleNamespace(key=key, try_number=key.try_number, external_executor_id=arn)
    messages, logs = executor.get_task_log(ti, key.try_number)
    assert logs == [] and "AccessDeniedException" in messages[0]


def test_a_failures_last_lines_render_the_task_sdks_structured_lines_for_a_person(executor, ecs):
    """The reason lands in the callback's output, the audit log and the scheduler log: never the
    raw `[ts] {json}` of a Task SDK line, but its time, level, event and logger."""
    key, arn = launched_running(executor, ecs)
    structured = {"timestamp": "2026-12-08T01:02:03.456Z", "level": "error", "event": "Task failed", "logger": "task"}
    ecs.print(arn, json.dumps(structured), "plain text")
    ecs.set_state(arn, "STOPPED", exit_codes={CONTAINER: 1}, stop_code="EssentialContainerExited")
    beat(executor)
    _, reason = events(executor)[key]
    assert "[2026-12-08T01:02:03.456Z] ERROR - Task failed (task)" in reason
    assert '{"' not in reason and reason.endswith("plain text")
