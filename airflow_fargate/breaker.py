"""The ECS API circuit breaker: an outage pauses launching instead of failing work.

A run of calls that all end in a connection error, a 5xx or (a longer run of) throttling means
the API, not the task, is in trouble. The breaker then opens: launches wait, one cheap probe
call at a time checks the API, and the first call that answers closes it again. The breaker
also keeps the total time the API was out, so a deadline on a task can count only the time the
API was reachable. Pure state with an injected clock; its owner makes the calls and logs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

# Consecutive outage answers (connection errors, timeouts, 5xx) that open the breaker: with 20%
# of calls timing out on a slow API, five in a row happen about once in 3,000 runs of five.
OPEN_AFTER_FAILURES = 5
# Throttling is ECS asking for a slower pace, which the token buckets give it; only a long run
# of throttles with no call answered at all is an outage of the quota ("throttling of everything").
OPEN_AFTER_THROTTLES = 20
PROBE_FIRST_SECONDS = 1.0  # the first probe after opening; then 1.5x as long each time
PROBE_MAX_SECONDS = 5.0  # so the end of an outage is noticed within this long


@dataclass(frozen=True)
class Change:
    """The breaker opened (``opened``) or closed; ``outage_seconds`` is how long it was open."""

    opened: bool
    reason: str
    outage_seconds: float = 0.0


class CircuitBreaker:
    """Closed (calls go out) or open (launches wait for a probe to answer). Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._throttles = 0
        self._opened_at: float | None = None
        self._next_probe = 0.0
        self._probe_wait = PROBE_FIRST_SECONDS
        self._closed_outages = 0.0  # seconds open, summed over the outages that ended
        self._changes: list[Change] = []

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._opened_at is not None

    def outage_seconds(self) -> float:
        """Total time open so far, the current outage included."""
        with self._lock:
            current = self._clock() - self._opened_at if self._opened_at is not None else 0.0
            return self._closed_outages + current

    def answered(self) -> None:
        """A call got an answer from ECS (success, or an error about the request itself)."""
        with self._lock:
            self._failures = self._throttles = 0
            if self._opened_at is not None:
                outage = self._clock() - self._opened_at
                self._closed_outages += outage
                self._opened_at = None
                self._changes.append(Change(False, "the ECS API answers again", outage))

    def failed(self, reason: str, *, throttled: bool = False) -> None:
        """A call got no usable answer: a connection error, a timeout, a 5xx (or a throttle)."""
        with self._lock:
            if throttled:
                self._throttles += 1
            else:
                self._failures += 1
            tripped = self._failures >= OPEN_AFTER_FAILURES or self._throttles >= OPEN_AFTER_THROTTLES
            if self._opened_at is None and tripped:
                self._opened_at = now = self._clock()
                self._probe_wait = PROBE_FIRST_SECONDS
                self._next_probe = now + self._probe_wait
                self._changes.append(Change(True, reason))

    def probe_due(self) -> float:
        """Seconds until the next probe may go out (0: now), while open; inf when closed."""
        with self._lock:
            if self._opened_at is None:
                return float("inf")
            return max(0.0, self._next_probe - self._clock())

    def probe_sent(self) -> None:
        """A probe went out: the next one waits longer (up to PROBE_MAX_SECONDS)."""
        with self._lock:
            self._probe_wait = min(PROBE_MAX_SECONDS, self._probe_wait * 1.5)
            self._next_probe = self._clock() + self._probe_wait

    def take_changes(self) -> list[Change]:
        """Openings and closings since the last call (the owner logs each once)."""
        with self._lock:
            changes, self._changes = self._changes, []
            return changes
