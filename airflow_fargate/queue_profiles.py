"""Queue profiles: an Airflow task's ``queue`` picks a named run_task kwargs layer.

Teams route small steps, memory-hungry transforms, GPU work and cheap retryable work through
one executor, as Celery users do with queues, without repeating a full run_task-shaped
executor_config on every task. The layer sits between run_task_kwargs and the task's
executor_config (run_task.py merges it); this module only parses the option and routes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from airflow_fargate.errors import FargateConfigError, shorten

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 256  # Airflow's task_instance.queue column


def parse_queue_profiles(label: str, value: Any) -> Mapping[str, Mapping[str, Any]]:
    """The option's JSON (already parsed): queue name -> layer, each an object. ``label`` names
    the option in errors."""
    profiles: dict[str, Mapping[str, Any]] = {}
    for name, layer in value.items():
        if not name.strip() or len(name) > MAX_NAME_LENGTH:
            raise FargateConfigError(
                f"{label}: {shorten(name)} is not a queue name (1-{MAX_NAME_LENGTH} characters, as Airflow's)."
            )
        if not isinstance(layer, dict):
            raise FargateConfigError(
                f"{label}: profile {shorten(name)} must be an object of run_task kwargs "
                f'(e.g. {{"cpu": 2048, "memory": 8192}}), got {type(layer).__name__}.'
            )
        profiles[name] = MappingProxyType(layer)
    return MappingProxyType(profiles)


def profile_label(source: str, name: str) -> str:
    """How errors name one profile: ``source`` says where queue_profiles was set."""
    return f"queue profile {name!r} of {source}"


class QueueRouter:
    """Which profile a task's queue selects: its own, else the default queue's (Airflow's
    ``[operators] default_queue``), else none. A queue with no profile is named in one warning,
    once per queue name, so a typo in a DAG's ``queue=`` is seen without flooding the log."""

    def __init__(self, profiles: Mapping[str, Any], default_queue: str, option: str) -> None:
        self.names = frozenset(profiles)
        self.default_queue = default_queue
        self._option = option
        self._warned: set[str] = set()
        self._lock = threading.Lock()  # launcher threads and the scheduler thread both route

    def profile_for(self, queue: str | None) -> str | None:
        if not self.names:
            return None
        if queue in self.names:
            return queue
        fallback = self.default_queue if self.default_queue in self.names else None
        if queue is not None and queue != self.default_queue:
            with self._lock:
                first = queue not in self._warned
                self._warned.add(queue)
            if first:
                log.warning(
                    "Queue %s has no profile in %s (profiles: %s); its tasks use %s.",
                    shorten(queue),
                    self._option,
                    ", ".join(sorted(self.names)),
                    f"the default queue {fallback!r}'s profile" if fallback else "no profile",
                )
        return fallback
