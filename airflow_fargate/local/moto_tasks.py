"""Set the lifecycle fields of tasks inside moto's ECS backend.

moto has no public API for this, so this module (and only this one) reaches into moto's model
objects; ruff's private-member rule is disabled for it in ruff.toml.

moto creates tasks already RUNNING, with one container and exit code 0, and never stops them.
The local runner (and unit tests) use these helpers to move a task through PROVISIONING..STOPPED
with real exit codes, stopCode and timestamps, so describe_tasks answers like ECS does.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from moto.core import DEFAULT_ACCOUNT_ID


@dataclass
class MotoContainer:
    """Attributes moto's serializer reads for one container of a task."""

    container_arn: str
    task_arn: str
    name: str
    image: str | None
    last_status: str = "PENDING"
    exitCode: int | None = None  # moto reads this exact (camelCase) attribute name
    reason: str | None = None
    health_status: str = "UNKNOWN"

    @property
    def network_interfaces(self) -> list[dict[str, Any]]:
        return []


def ecs_backend(region: str, account_id: str = DEFAULT_ACCOUNT_ID) -> Any:
    from moto.ecs.models import ecs_backends

    return ecs_backends[account_id][region]


def find_task(backend: Any, arn: str) -> Any | None:
    """The moto Task object for an ARN (any cluster), or None."""
    for tasks in backend.tasks.values():
        if arn in tasks:
            return tasks[arn]
        for task in tasks.values():
            if task.task_arn == arn:
                return task
    return None


def freeze(task: Any) -> None:
    """Stop moto's own state progression so only our calls change the status; give the task one
    container per container definition (moto models only the first)."""
    task._transitions = []
    definition = task._backend.describe_task_definition(task.task_definition_arn)
    task.containers = [
        MotoContainer(
            container_arn=f"{task.task_arn.replace(':task/', ':container/')}/{spec['name']}",
            task_arn=task.task_arn,
            name=spec["name"],
            image=spec.get("image"),
        )
        for spec in definition.container_definitions
    ]


def snapshot(task: Any) -> Any:
    """A copy of a task (and its containers) that later state changes do not touch."""
    copied = copy.copy(task)
    copied.containers = [copy.copy(c) for c in task.containers]
    return copied


# statuses from stopping on; the containers have exited from DEPROVISIONING on
STOPPING_STATUSES = ("DEACTIVATING", "STOPPING", "DEPROVISIONING", "STOPPED")


def set_state(
    task: Any,
    last_status: str,
    *,
    exit_codes: Mapping[str, int | None] | None = None,
    reasons: Mapping[str, str] | None = None,
    stop_code: str | None = None,
    stopped_reason: str | None = None,
    now: datetime | None = None,
) -> None:
    """Move a (frozen) moto task to ``last_status``, setting what ECS sets at that point.

    The status flips last: a describe_tasks served concurrently never sees STOPPED without the
    exit codes and stop code that go with it."""
    now = now or datetime.now(timezone.utc)
    if last_status == "RUNNING" and getattr(task, "started_at", None) is None:
        task.started_at = now
    for container in task.containers:
        container.last_status = "RUNNING" if last_status == "RUNNING" else container.last_status
        if exit_codes and container.name in exit_codes:
            container.exitCode = exit_codes[container.name]
        if reasons and container.name in reasons:
            container.reason = reasons[container.name]
    if last_status in STOPPING_STATUSES:  # as ECS: when stopping began, when the containers exited
        task.stopping_at = getattr(task, "stopping_at", None) or now
        if last_status in ("DEPROVISIONING", "STOPPED"):
            task.execution_stopped_at = getattr(task, "execution_stopped_at", None) or now
    if last_status == "STOPPED":
        task.desired_status = "STOPPED"
        task.stopped_at = now
        task.stop_code = stop_code or "EssentialContainerExited"
        task.stopped_reason = stopped_reason or task.stopped_reason or "Essential container in task exited"
        for container in task.containers:
            container.last_status = "STOPPED"
    task._status = last_status


def launch_record(task: Any) -> dict[str, Any]:
    """How a task was launched, for the endpoint's per-try records: the task definition
    (family:revision), the task size overrides, and the launch type or capacity provider."""
    overrides = task.overrides if isinstance(task.overrides, Mapping) else {}
    return {
        "taskDefinition": task.task_definition_arn.rsplit("/", 1)[-1],
        "cpu": overrides.get("cpu"),
        "memory": overrides.get("memory"),
        "launchType": task.launch_type or None,
        "capacityProvider": task.capacity_provider_name,
    }
