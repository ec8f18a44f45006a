"""Read an ECS task's container output from CloudWatch Logs (the awslogs driver's stream).

The Airflow UI shows it for running tasks even without remote logging, and a failed task's
reason ends with its last lines. CloudWatch trouble (throttling, no stream yet, no permission)
becomes a readable message, never an exception in the caller.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from airflow_fargate.aws_session import AwsTarget
from airflow_fargate.ecs import EcsClient

log = logging.getLogger(__name__)

# CloudWatch GetLogEvents allows 25 calls/s per account and region: let botocore back off.
LOGS_CONFIG = Config(
    retries={"mode": "adaptive", "total_max_attempts": 5},
    connect_timeout=5,
    read_timeout=10,
    user_agent_extra="airflow-fargate",
)
MAX_PAGES = 20  # up to 20 x 10,000 events for the UI; older output stays in CloudWatch


@dataclass(frozen=True)
class LogStream:
    """Where the awslogs driver writes one container's output for one task."""

    group: str
    stream: str
    region: str | None = None
    create_group: bool = False  # awslogs-create-group: ECS creates the group on first use

    def __str__(self) -> str:
        return f"CloudWatch Logs group {self.group}, stream {self.stream}"


def awslogs_stream(task_definition: dict[str, Any], container_name: str, task_arn: str) -> LogStream | None:
    """The stream of ``container_name`` in a task of this definition, or None without awslogs.

    The awslogs driver names streams ``prefix/container-name/ecs-task-id``; without a prefix
    (possible on EC2 only) the stream is not predictable, so None."""
    for container in task_definition.get("containerDefinitions", []):
        if container.get("name") != container_name:
            continue
        config = container.get("logConfiguration") or {}
        options = config.get("options") or {}
        if config.get("logDriver") != "awslogs" or not options.get("awslogs-group"):
            return None
        prefix = options.get("awslogs-stream-prefix")
        if not prefix:
            return None
        task_id = task_arn.rsplit("/", 1)[-1]
        stream = f"{prefix}/{container_name}/{task_id}"
        create_group = str(options.get("awslogs-create-group", "")).lower() == "true"
        return LogStream(options["awslogs-group"], stream, options.get("awslogs-region"), create_group)
    return None


@dataclass(frozen=True)
class LogRead:
    """Lines read from a stream, or why there are none (``problem``)."""

    lines: list[str]
    problem: str | None = None
    source: str | None = None


def _timestamped(event: dict[str, Any]) -> str:
    when = datetime.fromtimestamp(event.get("timestamp", 0) / 1000, tz=timezone.utc)
    return f"[{when.isoformat(timespec='milliseconds')}] {event.get('message', '').rstrip()}"


def _structured(message: str) -> dict[str, Any] | None:
    """A Task SDK structured (JSON) log line, parsed; None for any other line."""
    if not (message.startswith("{") and message.endswith("}")):
        return None
    try:
        parsed = json.loads(message)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) and "event" in parsed else None


def readable_line(event: dict[str, Any]) -> str:
    """One CloudWatch event as a person reads it in a failure's reason (the callback's output, the
    audit log, the scheduler log): a structured line as ``[timestamp] LEVEL - event (logger)``,
    not its JSON; any other line as ``[timestamp] text``."""
    parsed = _structured(str(event.get("message", "")).rstrip())
    if parsed is None:
        return _timestamped(event)
    when = parsed.get("timestamp") or datetime.fromtimestamp(event.get("timestamp", 0) / 1000, tz=timezone.utc)
    level = str(parsed.get("level") or "").upper()
    logger = f" ({parsed['logger']})" if parsed.get("logger") else ""
    return f"[{when}] {level + ' - ' if level else ''}{parsed['event']}{logger}"


def log_view_line(event: dict[str, Any]) -> str:
    """One CloudWatch event as Airflow's log view reads a line: a structured (JSON) line of the
    Task SDK as it is, so the view shows its level, logger, timestamp and event like a native
    task log (CloudWatch's time is added when the line has none); any other line as
    ``[timestamp] text``, which the view parses the same way."""
    message = str(event.get("message", "")).rstrip()
    parsed = _structured(message)
    if parsed is None:
        return _timestamped(event)
    if "timestamp" not in parsed:
        when = datetime.fromtimestamp(event.get("timestamp", 0) / 1000, tz=timezone.utc)
        parsed["timestamp"] = when.isoformat()
        return json.dumps(parsed)
    return message


class CloudWatchLogReader:
    """GetLogEvents against the stream's region (clients cached per region)."""

    def __init__(self, target_factory: Callable[[], AwsTarget], default_region: str) -> None:
        self._target_factory = target_factory
        self._default_region = default_region
        self._clients: dict[str, Any] = {}

    def reset(self) -> None:
        """Drop the clients so the next read re-resolves credentials."""
        self._clients = {}

    def _client(self, region: str | None) -> Any:
        region = region or self._default_region
        if region not in self._clients:
            target = self._target_factory()
            self._clients[region] = target.client("logs", region_name=region, config=LOGS_CONFIG)
        return self._clients[region]

    def read(self, where: LogStream, *, tail: int | None = None, for_log_view: bool = False) -> LogRead:
        """All lines (oldest first, up to MAX_PAGES pages), or only the last ``tail`` lines;
        ``for_log_view``: structured lines kept as Airflow's log view reads them (log_view_line),
        else rendered for a person (readable_line)."""
        line = log_view_line if for_log_view else readable_line
        try:
            client = self._client(where.region)
            if tail is not None:
                response = client.get_log_events(
                    logGroupName=where.group, logStreamName=where.stream, startFromHead=False, limit=tail
                )
                return LogRead([line(e) for e in response.get("events", [])], source=str(where))
            lines: list[str] = []
            token: str | None = None
            for _ in range(MAX_PAGES):
                kwargs: dict[str, Any] = {"nextToken": token} if token else {}
                response = client.get_log_events(
                    logGroupName=where.group, logStreamName=where.stream, startFromHead=True, **kwargs
                )
                lines.extend(line(e) for e in response.get("events", []))
                if response.get("nextForwardToken") in (None, token):
                    break
                token = response["nextForwardToken"]
            return LogRead(lines, source=str(where))
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                return LogRead([], f"no output yet in {where} (the container may not have started)")
            return LogRead([], f"cannot read {where}: {code}: {err}")
        except BotoCoreError as err:
            return LogRead([], f"cannot read {where}: {err}")


class TaskOutput:
    """The output of our container (``container_name``) in one ECS task, wherever awslogs put it."""

    def __init__(self, ecs: EcsClient, reader: CloudWatchLogReader, container_name: str) -> None:
        self._ecs = ecs
        self._reader = reader
        self._container_name = container_name

    def read(
        self,
        task_arn: str,
        task_definition_arn: str | None = None,
        *,
        tail: int | None = None,
        for_log_view: bool = False,
        fallback_task_definition: Callable[[], str | None] | None = None,
    ) -> LogRead:
        """Lines of output (``problem`` says why there are none); ``source`` names the stream.
        ECS forgets a stopped task after about an hour: its stream is then found through the
        task definition ``fallback_task_definition()`` names (asked only then)."""
        if task_definition_arn is None:
            state = self._ecs.describe_tasks([task_arn]).tasks.get(task_arn)
            if state is not None:
                task_definition_arn = state.task_definition_arn
            elif fallback_task_definition is not None:
                task_definition_arn = fallback_task_definition()
            if task_definition_arn is None:
                return LogRead([], f"ECS task {task_arn} is no longer known to ECS")
        definition = self._ecs.task_definition(task_definition_arn) if task_definition_arn else None
        if definition is None:
            return LogRead([], f"cannot read task definition {task_definition_arn} of ECS task {task_arn}")
        where = awslogs_stream(definition, self._container_name, task_arn)
        if where is None:
            return LogRead(
                [],
                f"container {self._container_name!r} of {task_definition_arn} has no awslogs log configuration "
                "with awslogs-group and awslogs-stream-prefix, so its output cannot be shown",
            )
        return self._reader.read(where, tail=tail, for_log_view=for_log_view)


@dataclass
class _Held:
    reason: str
    deadline: float
    future: Future[LogRead]


class FailureOutput:
    """Holds a failed task's failure until the last lines of its output are fetched (in the
    background, so no heartbeat waits on CloudWatch), then hands back the reason with them.

    A fetch that takes longer than ``wait_seconds`` or fails releases the bare reason."""

    def __init__(self, output: TaskOutput, lines: int = 20, wait_seconds: float = 10.0) -> None:
        self._output = output
        self._lines = lines
        self._wait_seconds = wait_seconds
        self._held: dict[Any, _Held] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fargate-logs")

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, key: Any, reason: str, task_arn: str, task_definition_arn: str | None, now: float) -> None:
        future = self._pool.submit(self._output.read, task_arn, task_definition_arn, tail=self._lines)
        self._held[key] = _Held(reason, now + self._wait_seconds, future)

    def release(self, now: float, *, everything: bool = False) -> list[tuple[Any, str]]:
        """(key, reason) of every failure whose output arrived or whose wait is over."""
        released = []
        for key, held in list(self._held.items()):
            if held.future.done() or everything or now >= held.deadline:
                del self._held[key]
                released.append((key, self._with_output(held)))
        return released

    def _with_output(self, held: _Held) -> str:
        if not held.future.done():
            held.future.cancel()
            return f"{held.reason} (task output not fetched in time)"
        try:
            result = held.future.result()
        except Exception as err:  # a broken client must not lose the failure itself
            return f"{held.reason} (task output unavailable: {type(err).__name__}: {err})"
        if not result.lines:
            return f"{held.reason} ({result.problem or 'the task printed nothing'})"
        return f"{held.reason}\nLast {len(result.lines)} lines of output ({result.source}):\n" + "\n".join(result.lines)

    def wait(self, seconds: float) -> None:
        """Block until every fetch has finished or ``seconds`` passed (shutdown and tests only)."""
        futures = [held.future for held in self._held.values()]
        if futures:
            wait(futures, timeout=seconds)

    def shutdown(self, wait_seconds: float) -> None:
        """Give fetches already running up to ``wait_seconds`` to finish (scheduler shutdown)."""
        self.wait(wait_seconds)
        stuck = any(not held.future.done() for held in self._held.values())
        # Idle workers are joined (no thread outlives the executor); a stuck fetch is not waited for.
        self._pool.shutdown(wait=not stuck, cancel_futures=True)
