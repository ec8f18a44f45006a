"""Client-side token buckets for the ECS API quotas (RunTask, DescribeTasks), shared knowingly.

ECS meters each API per account and region with a token bucket (burst 100, 20/s sustained for
RunTask and DescribeTasks); every tool of the account draws from the same buckets. The executor
paces itself with buckets of its own so that it is the one waiting, not the one being throttled.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Our sustained pace stays this fraction under the configured rate: calls reach ECS with jitter
# (network, threads), and a bucket run exactly at ECS's rate is throttled whenever one call
# arrives early. The slack refills ECS's bucket a little faster than we drain it.
HEADROOM = 0.97


def describe_burst(rate: float) -> int:
    """The describe budget's burst: two seconds' worth, within ECS's burst of 100."""
    return max(1, min(100, round(2 * rate)))


class AdaptiveRateLimiter:
    """Token bucket (``burst`` tokens, ``rate`` per second) with AIMD: a throttle halves the rate
    and empties the bucket, each success adds ``increase`` back up to the configured rate.

    ``acquire()`` books the caller the next free slot and sleeps once until it comes: with 20
    launch threads waiting, each token wakes one thread, not all of them. A throttle cancels the
    bookings (their threads book again at the halved rate when they wake)."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        min_rate: float = 0.5,
        increase: float = 0.5,
        headroom: float = 1.0,
    ) -> None:
        self.max_rate = rate * headroom
        self.rate = self.max_rate
        self.burst = max(1, burst)
        self.min_rate = min(min_rate, self.max_rate)
        self.increase = increase
        self._clock = clock
        self._tokens = float(self.burst)
        self._last = clock()
        self._lock = threading.Lock()
        self._bookings = 0  # which bookings are valid: a throttle starts a new generation

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def available(self) -> int:
        """Whole tokens in the bucket now (bookings count against it)."""
        with self._lock:
            self._refill()
            return max(0, int(self._tokens))

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> None:
        """Wait (sleeping the calling thread, never the scheduler's) until a token is taken."""
        while True:
            with self._lock:
                self._refill()
                self._tokens -= 1  # taken now, or booked: the bucket owes it (tokens below zero)
                if self._tokens >= -1e-9:  # float rounding must not leave a caller waiting 1e-17 s
                    return
                delay, booking = -self._tokens / self.rate, self._bookings
            sleep(delay)
            with self._lock:
                if booking == self._bookings:
                    return  # the booked slot has come

    def on_throttle(self) -> None:
        with self._lock:
            self._refill()
            self.rate = max(self.min_rate, self.rate / 2)
            self._tokens = 0.0  # no saved burst, and no bookings: they are cancelled
            self._bookings += 1  # sleeping callers book again, at the new rate

    def restore(self) -> None:
        """Back to the configured rate (after an outage: its throttles said nothing of our pace)."""
        with self._lock:
            self._refill()
            self.rate = self.max_rate

    def on_success(self) -> None:
        with self._lock:
            self.rate = min(self.max_rate, self.rate + self.increase)
