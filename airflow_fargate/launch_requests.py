"""One launch to make: the request the executor hands the launcher, and the kwargs memo that
keeps every retry under one clientToken sending the same parameters."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class BuildOnce:
    """Memoizes one launch's kwargs: every retry under one clientToken sends the same parameters,
    even if an execution_config_function would answer differently the second time."""

    def __init__(self, build: Callable[[], dict[str, Any]]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._kwargs: dict[str, Any] | None = None

    def __call__(self) -> dict[str, Any]:
        with self._lock:
            if self._kwargs is None:
                self._kwargs = self._build()
            return self._kwargs


@dataclass(frozen=True)
class LaunchRequest:
    """One run_task call to make; ``build`` makes its kwargs on the worker thread. A ``find``
    request makes no RunTask: it looks for the ECS task an earlier call of this queueing may
    have started (its outcome stayed unknown past the deadline)."""

    key: Any
    build: Callable[[], dict[str, Any]]
    client_token: str
    queueing_id: str = ""  # which queueing of ``key`` asked (a later one may supersede it)
    find: bool = False


NOT_FOUND = "no ECS task of this launch exists (looked up by its tags after its RunTask outcome stayed unknown)"
