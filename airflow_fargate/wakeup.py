"""A signal the launch and describe threads raise when they hand a result back, so the
scheduler thread can wait a bounded moment for answers about to arrive instead of a heartbeat."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable


class Wakeup:
    """Condition with a generation count: ``wait`` returns at the next ``notify`` or its timeout."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait_while(
        self, busy: Callable[[], bool], deadline: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Wait while ``busy()`` says an answer is expected before ``deadline``; each result
        handed back re-checks it."""
        while True:
            with self._cond:
                generation = self._generation  # read first: a result handed back meanwhile counts
            remaining = deadline - clock()
            if remaining <= 0 or not busy():
                return
            with self._cond:
                self._cond.wait_for(functools.partial(self._moved_on, generation), remaining)

    def _moved_on(self, generation: int) -> bool:
        return self._generation != generation
