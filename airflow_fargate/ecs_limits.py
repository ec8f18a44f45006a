"""RunTask limits ECS enforces that botocore's model does not carry: checked before a launch so
that a task ECS would refuse fails with a message naming its container, not with ECS's answer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

OVERRIDES_MAX_CHARS = 8192  # the overrides JSON of one RunTask, formatting characters included
# What a try's command takes of them on Airflow 3 (the workload JSON with its token): reserved
# when the command is not known yet (executor_config checked at DAG parse time or when queued).
COMMAND_RESERVE_CHARS = 2048


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), default=str))


def overrides_problem(kwargs: Mapping[str, Any], command_reserve: int = 0) -> str | None:
    """None, or why ECS would refuse these overrides as too large (naming the largest container)."""
    overrides = kwargs.get("overrides")
    if not isinstance(overrides, Mapping):
        return None
    size = _size(overrides) + command_reserve
    if size <= OVERRIDES_MAX_CHARS:
        return None
    containers = overrides.get("containerOverrides")
    parts = [
        (_size(c), str(c.get("name")))
        for c in (containers if isinstance(containers, list) else [])
        if isinstance(c, Mapping)
    ]
    biggest = f" (container {max(parts)[1]!r}'s override is {max(parts)[0]:,} of them)" if parts else ""
    reserve = f", with {command_reserve:,} kept for the task's command" if command_reserve else ""
    return (
        f"overrides: {size:,} characters{reserve}; ECS allows {OVERRIDES_MAX_CHARS:,} per RunTask{biggest}. "
        "Put large values in the task definition, Secrets Manager or S3."
    )
