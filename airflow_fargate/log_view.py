"""The whole task log in the Airflow UI, from CloudWatch, with no remote logging to set up.

A task's log file lives inside its container, which is gone once the try ends. Airflow 3 reads
finished tries through a "remote log IO" (``REMOTE_TASK_LOG`` of ``[logging]
logging_config_class``, see log_config.py); FargateTaskLogIO is one that reads the try's
CloudWatch stream, found through its ECS task ARN (``external_executor_id``), and shows the
executor's reason for a try that failed before any container ran (its "fargate task failed"
audit-log event). Running tries are left to the executor's get_task_log, which Airflow asks too.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from typing import Any, TypeGuard

from airflow_fargate.logs import CloudWatchLogReader, TaskOutput

log = logging.getLogger(__name__)

EXECUTOR_EVENT = "fargate task failed"  # the executor's task event (executor.py, audit log)
_LIVE_STATES = frozenset({"running"})  # read by the executor's get_task_log instead


def is_ecs_task_arn(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and value.startswith("arn:") and ":task/" in value


def build_task_output(settings: Any) -> TaskOutput:
    """A TaskOutput for these settings: what the api-server, which never starts the executor,
    needs to read task output."""
    from airflow_fargate.aws_session import aws_target
    from airflow_fargate.ecs import EcsClient

    target = functools.partial(aws_target, settings.aws_conn_id, settings.region_name)
    reader = CloudWatchLogReader(target, settings.region_name)
    return TaskOutput(
        EcsClient(target, settings.cluster, settings.describe_tasks_rate), reader, settings.container_name
    )


def executor_reasons(ti: Any) -> list[tuple[Any, str]]:
    """(when, reason) of the executor's failure events for this try, oldest first."""
    from airflow.models.log import Log
    from airflow.utils.session import create_session
    from sqlalchemy import select

    query = (
        select(Log.dttm, Log.extra)
        .where(
            (Log.event == EXECUTOR_EVENT)
            & (Log.dag_id == ti.dag_id)
            & (Log.task_id == ti.task_id)
            & (Log.run_id == ti.run_id)
            & (Log.map_index == ti.map_index)
            & (Log.try_number == ti.try_number)
        )
        .order_by(Log.dttm)
    )
    with create_session() as session:
        return [(when, extra or "") for when, extra in session.execute(query)]


def _reason_line(when: Any, reason: str) -> str:
    """The reason as a structured log line: an error event in the log view."""
    timestamp = when.isoformat() if hasattr(when, "isoformat") else None
    return json.dumps({"timestamp": timestamp, "level": "error", "logger": "airflow_fargate.executor", "event": reason})


class FargateTaskLogIO:
    """Airflow 3 remote log IO that reads, never writes: the awslogs driver already shipped the
    container's output to CloudWatch, where this finds it again for the log view."""

    def __init__(
        self,
        output_factory: Callable[[], TaskOutput] | None = None,
        reasons: Callable[[Any], list[tuple[Any, str]]] = executor_reasons,
    ) -> None:
        self._output_factory = output_factory
        self._output: TaskOutput | None = None
        self._reasons = reasons
        self._settings: Any = None
        self._builder: Any = None

    @property
    def processors(self) -> tuple[Any, ...]:
        return ()

    def upload(self, path: os.PathLike[str] | str, ti: Any = None) -> None:
        """Nothing to upload: the container's output is in CloudWatch already."""

    def read(self, relative_path: str, ti: Any) -> tuple[list[str], list[str]]:
        """(sources, log text) of a finished (or waiting) try; never raises into the log view."""
        state = getattr(ti, "state", None)
        if str(getattr(state, "value", state) or "") in _LIVE_STATES:
            return [], []
        sources: list[str] = []
        lines: list[str] = []
        arn = getattr(ti, "external_executor_id", None)
        try:
            if is_ecs_task_arn(arn):
                result = self._task_output().read(
                    arn,
                    for_log_view=True,
                    fallback_task_definition=functools.partial(self._launched_task_definition, ti),
                )
                sources.append(
                    f"Output of ECS task {arn} from {result.source}"
                    if result.lines
                    else f"ECS task {arn}: {result.problem}"
                )
                lines.extend(result.lines)
            reasons = self._reasons(ti)
        except Exception as err:  # the log view gets a message, never a stack trace
            log.warning("Cannot read the log of %s", getattr(ti, "key", ti), exc_info=True)
            return [f"FargateExecutor could not read this try's log: {type(err).__name__}: {err}"], []
        if reasons:
            sources.append("FargateExecutor's reason for failing this try (audit log)")
            lines.extend(_reason_line(when, reason) for when, reason in reasons)
        if not lines:
            return sources, []
        return sources, ["\n".join(lines) + "\n"]

    def _task_output(self) -> TaskOutput:
        if self._output is None:
            self._output = self._output_factory() if self._output_factory else build_task_output(self._load_settings())
        return self._output

    def _load_settings(self) -> Any:
        if self._settings is None:
            from airflow_fargate.settings import load_settings

            self._settings = load_settings()
        return self._settings

    def _launched_task_definition(self, ti: Any) -> str | None:
        """The task definition this try was launched with, by configuration (its queue's profile
        and executor_config included), for when ECS no longer describes the task."""
        try:
            from airflow_fargate.run_task import RunTaskKwargsBuilder

            if self._builder is None:
                self._builder = RunTaskKwargsBuilder(self._load_settings())
            kwargs = self._builder.build(
                ["airflow", "version"], getattr(ti, "executor_config", None), queue=getattr(ti, "queue", None)
            )
            value = kwargs.get("taskDefinition")
            return value if isinstance(value, str) else None
        except Exception:
            return None
