"""Typed records parsed from ECS API responses (pure data, shared by ecs.py and tracker.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


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
    def from_api(cls, task: dict[str, Any]) -> EcsTaskState:
        return cls(
            arn=task["taskArn"],
            last_status=task.get("lastStatus", "UNKNOWN"),
            desired_status=task.get("desiredStatus"),
            stop_code=task.get("stopCode"),
            stopped_reason=task.get("stoppedReason"),
            started_at=task.get("startedAt"),
            stopped_at=task.get("stoppedAt"),
            task_definition_arn=task.get("taskDefinitionArn"),
            containers=tuple(
                ContainerState(
                    name=c.get("name", ""),
                    last_status=c.get("lastStatus"),
                    exit_code=c.get("exitCode"),
                    reason=c.get("reason"),
                )
                for c in task.get("containers", [])
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
