"""The executor's task events (audit-log rows), kept alive until the scheduler has saved them."""

from __future__ import annotations

import itertools
from typing import Any


class TaskEventKeeper:
    """Keeps the executor's task events (audit-log ``Log`` rows) alive until the scheduler saved them.

    The scheduler saves them with ``session.bulk_save_objects`` over a generator that pops the
    executor's deque. SQLAlchemy 2 (Airflow 3) tracks those objects through weak references, so a
    row whose only reference was the deque is collected before the insert, the insert fails ("NOT NULL
    constraint failed: log.event") and every event of that heartbeat is lost, the executor's
    failure reasons included. One more reference until the deque has been emptied avoids it."""

    def __init__(self, events: Any) -> None:
        self._events = events  # BaseExecutor._task_event_logs (a deque the scheduler drains)
        self._kept: list[Any] = []

    def keep_added_since(self, length: int) -> None:
        """Keep the rows appended since the deque had ``length`` rows."""
        self._kept.extend(itertools.islice(self._events, length, None))

    def release_saved(self) -> None:
        """Forget the rows the scheduler has taken (it saves on its own thread, between heartbeats)."""
        if self._kept:
            pending = {id(event) for event in self._events}
            self._kept = [event for event in self._kept if id(event) in pending]
