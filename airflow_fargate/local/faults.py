"""Fault injection for the local ECS endpoint: what to break, how often, seeded for repeatability."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

CAPACITY_REASONS = (
    "Capacity is unavailable at this time. Please try again later or in a different availability zone",
    "RESOURCE:MEMORY",
    "AGENT",
)
START_FAILURE_REASONS = (
    "CannotPullContainerError: pull image manifest has been retried 5 time(s): dial tcp 52.1.2.3:443: i/o timeout",
    "ResourceInitializationError: failed to configure ENI: timeout waiting for network interface provisioning",
)


OUTAGES = ("", "refuse", "5xx", "throttle")


@dataclass
class Faults:
    """Switches for the local endpoint. Rates are probabilities per call or per task (0..1)."""

    latency_ms: float = 0.0  # added to every ECS API call
    run_task_rate: float = 0.0  # sustained RunTask calls/s before ThrottlingException (0 = unlimited)
    run_task_burst: int = 100
    describe_tasks_rate: float = 0.0  # sustained DescribeTasks calls/s before ThrottlingException (0 = unlimited)
    describe_tasks_burst: int = 100
    run_task_failure_rate: float = 0.0  # run_task answers with failures[] (capacity, RESOURCE:*, AGENT)
    start_failure_rate: float = 0.0  # task stops with TaskFailedToStart before running
    spot_interruption_rate: float = 0.0  # running task is stopped with SpotInterruption
    describe_delay_s: float = 0.0  # a new task is MISSING from describe_tasks for this long
    run_task_response_delay_s: float = 0.0  # RunTask starts the task, then answers this much later
    provision_delay_s: float = 0.0  # tasks created meanwhile stay PROVISIONING this long (0 = default)
    provision_jitter_s: float = 0.0  # plus a random 0..this per task: ECS start times vary (ENI, image pull)
    deprovision_delay_s: float = 0.0  # after its container exits a task is DEPROVISIONING this long, then STOPPED
    # Every AWS call (ECS, CloudWatch Logs) fails this way: "refuse" (the connection is dropped
    # before any answer), "5xx" (503 ServiceUnavailable, nothing done), "throttle" (every call a
    # ThrottlingException). "" = the API is up.
    api_outage: str = ""
    timeout_rate: float = 0.0  # an ECS call is carried out, then its connection dropped unanswered
    timeout_s: float = 1.0  # ... this long after the call (the client's read timeout, as it sees it)
    stopped_retention_s: float = 3600.0  # a STOPPED task is forgotten (describe: MISSING) after this, as on ECS
    seed: int | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Faults:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(
                f"unknown fault switches: {', '.join(sorted(unknown))} (known: {', '.join(sorted(known))})"
            )
        if data.get("api_outage", "") not in OUTAGES:
            raise ValueError(f"api_outage must be one of {', '.join(repr(o) for o in OUTAGES)}")
        return cls(**data)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Dice:
    """A seeded, thread-safe random source for fault decisions."""

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def chance(self, rate: float) -> bool:
        with self._lock:
            return rate > 0 and self._rng.random() < rate

    def choice(self, options: tuple[str, ...]) -> str:
        with self._lock:
            return self._rng.choice(options)

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._rng.uniform(low, high)


class TokenBucket:
    """ECS-style rate limit: ``burst`` tokens, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        """Consume one token if available (always True when rate is 0 = unlimited)."""
        if self.rate <= 0:
            return True
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return True
            return False
