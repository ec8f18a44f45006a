"""Start-up work that can only warn (the tagging permission probe) waits for the first launches.

After a scheduler restart the first heartbeats launch what was queued meanwhile, and that burst
is what operators wait for; a probe's calls would share the CPU, the connection pool and the
ECS quotas with it. So the job starts, on its own thread, at the first heartbeat that finds the
launcher idle, or ``max_wait_seconds`` after start-up while launches never stop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

MAX_WAIT_SECONDS = 10.0


class AfterFirstLaunches:
    """Runs ``job`` once, on a daemon thread, when ``launching()`` is first False (or later)."""

    def __init__(
        self,
        job: Callable[[], None],
        name: str,
        launching: Callable[[], bool],
        *,
        clock: Callable[[], float] = time.monotonic,
        max_wait_seconds: float = MAX_WAIT_SECONDS,
    ) -> None:
        self._thread = threading.Thread(target=job, daemon=True, name=name)
        self._launching = launching
        self._clock = clock
        self._deadline = clock() + max_wait_seconds
        self.started = False

    def poll(self) -> None:
        """Called each heartbeat, after the heartbeat's launches were handed over."""
        if not self.started and (not self._launching() or self._clock() >= self._deadline):
            self.started = True
            self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the job if it started (end()); a job never started is skipped."""
        if self.started:
            self._thread.join(timeout)
