"""ECS's RunTask rules that moto does not enforce, so that a launch the local endpoint accepts is
one ECS would accept: overrides of at most 8,192 characters, overrides only for containers the
task definition has, at most 50 tags, count 1-10, a clientToken reused with other parameters
refused (ConflictException, remembered 24 hours per cluster), and stopped tasks forgotten after
a retention (ECS keeps them about an hour)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from moto.core.exceptions import JsonRESTError
from moto.ecs.exceptions import InvalidParameterException

from airflow_fargate.ecs_limits import OVERRIDES_MAX_CHARS

MAX_TAGS = 50
MAX_COUNT = 10
TOKEN_MEMORY_SECONDS = 24 * 3600.0
STOPPED_RETENTION_SECONDS = 3600.0


class ConflictException(JsonRESTError):
    code = 400

    def __init__(self, message: str) -> None:
        super().__init__("ConflictException", message)


def check_run_task(params: Mapping[str, Any], container_names: set[str] | None) -> None:
    """Raise ECS's error for a RunTask ECS would refuse (``params`` as the request sent them)."""
    overrides = params.get("overrides")
    if isinstance(overrides, Mapping):
        size = len(json.dumps(overrides, separators=(",", ":")))
        if size > OVERRIDES_MAX_CHARS:
            raise InvalidParameterException(
                f"Container Overrides length must be at most {OVERRIDES_MAX_CHARS} (got {size})."
            )
        for override in overrides.get("containerOverrides") or []:
            name = override.get("name") if isinstance(override, Mapping) else None
            if container_names is not None and name not in container_names:
                raise InvalidParameterException(
                    f"Override for container named {name} is not a container in the TaskDefinition."
                )
    tags = params.get("tags") or []
    if len(tags) > MAX_TAGS:
        raise InvalidParameterException(f"Tags: the maximum number of tags is {MAX_TAGS} (got {len(tags)}).")
    count = params.get("count", 1)
    if not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
        raise InvalidParameterException(f"count must be between 1 and {MAX_COUNT}.")


class TokenMemory:
    """clientToken -> the parameters it was first used with and the tasks it started, per cluster."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[tuple[str, str], tuple[str, list[str], float]] = {}

    @staticmethod
    def digest(params: Mapping[str, Any]) -> str:
        rest = {k: v for k, v in params.items() if k != "clientToken"}
        return hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()

    def replay(self, cluster: str, token: str, params: Mapping[str, Any]) -> list[str] | None:
        """The ARNs this token started (a replay), None if unused; ConflictException if it was
        used with other parameters."""
        self._forget_old()
        known = self._tokens.get((cluster, token))
        if known is None:
            return None
        if known[0] != self.digest(params):
            raise ConflictException(
                "The clientToken was already used with different parameters; use a new token for a new request."
            )
        return known[1]

    def remember(self, cluster: str, token: str, params: Mapping[str, Any], arns: list[str]) -> None:
        self._tokens[(cluster, token)] = (self.digest(params), arns, self._clock())

    def _forget_old(self) -> None:
        cutoff = self._clock() - TOKEN_MEMORY_SECONDS
        for key in [key for key, (_, _, at) in self._tokens.items() if at < cutoff]:
            del self._tokens[key]


def forgotten(task: Any, retention_seconds: float) -> bool:
    """A task STOPPED longer ago than the retention: describe_tasks no longer finds it."""
    stopped = getattr(task, "stopped_at", None)
    if task.last_status != "STOPPED" or not isinstance(stopped, datetime):
        return False
    return (datetime.now(timezone.utc) - stopped).total_seconds() > retention_seconds
