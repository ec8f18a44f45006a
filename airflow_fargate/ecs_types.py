"""Typed records parsed from ECS API responses (pure data, shared by ecs.py and tracker.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


class MalformedEntry(ValueError):
    """A describe_tasks entry this executor cannot read; it must not cost the other entries."""


def _text(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise MalformedEntry(f"{what} is a {type(value).__name__}, not a string")


@dataclass(frozen=True)
class ContainerState:
    """One container of an ECS task as describe_tasks reports it."""

    name: str
    last_status: str | None = None
    exit_code: int | None = None
    reason: str | None = None


@dataclass(frozen=True)
class EcsTaskState:
    """The fields of an ECS task that decide the Airflow state."""

    arn: str
    last_status: str
    desired_status: str | None = None
    stop_code: str | None = None
    stopped_reason: str | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    task_definition_arn: str | None = None
    containers: tuple[ContainerState, ...] = ()

    @classmethod
    def from_api(cls, task: Any) -> EcsTaskState:
        """Parse one describe_tasks/run_task entry; MalformedEntry if it is not what ECS documents."""
        if not isinstance(task, dict):
            raise MalformedEntry(f"entry is a {type(task).__name__}, not an object")
        arn = _text(task.get("taskArn"), "taskArn")
        if not arn:
            raise MalformedEntry("entry has no taskArn")
        containers = task.get("containers") or []
        if not isinstance(containers, list) or not all(isinstance(c, dict) for c in containers):
            raise MalformedEntry("containers is not a list of objects")
        for c in containers:
            exit_code = c.get("exitCode")
            if exit_code is not None and (not isinstance(exit_code, int) or isinstance(exit_code, bool)):
                raise MalformedEntry(f"exitCode is a {type(exit_code).__name__}, not an integer")
        started_at, stopped_at = task.get("startedAt"), task.get("stoppedAt")
        for name, value in (("startedAt", started_at), ("stoppedAt", stopped_at)):
            if value is not None and not isinstance(value, datetime):
                raise MalformedEntry(f"{name} is a {type(value).__name__}, not a timestamp")
        return cls(
            arn=arn,
            last_status=_text(task.get("lastStatus"), "lastStatus") or "UNKNOWN",
            desired_status=_text(task.get("desiredStatus"), "desiredStatus"),
            stop_code=_text(task.get("stopCode"), "stopCode"),
            stopped_reason=_text(task.get("stoppedReason"), "stoppedReason"),
            started_at=started_at,
            stopped_at=stopped_at,
            task_definition_arn=_text(task.get("taskDefinitionArn"), "taskDefinitionArn"),
            containers=tuple(
                ContainerState(
                    name=_text(c.get("name"), "container name") or "",
                    last_status=_text(c.get("lastStatus"), "container lastStatus"),
                    exit_code=c.get("exitCode"),
                    reason=_text(c.get("reason"), "container reason"),
                )
                for c in containers
            ),
        )


@dataclass(frozen=True)
class LaunchFailure:
    """Why one run_task call did not start a task: an API error or a ``failures`` entry."""

    reason: str
    code: str | None = None  # AWS error code, e.g. ThrottlingException; None for failures[]
    detail: str | None = None


@dataclass(frozen=True)
class LaunchResult:
    """Outcome of one run_task call: a task, or why not."""

    task: EcsTaskState | None
    failures: tuple[LaunchFailure, ...] = ()
    extra_arns: tuple[str, ...] = ()  # more tasks than the one asked for: never tracked, so stopped
