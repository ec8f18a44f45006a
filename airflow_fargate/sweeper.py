"""The orphan sweep's AWS side, on a thread of its own: listing and describing this deployment's
tasks on request (paced within the ECS read quota), and making the stops the scheduler thread
decided (sweep.decide). The snapshot it hands over carries what was tracked at the request."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from airflow_fargate.rate_limit import AdaptiveRateLimiter
from airflow_fargate.sweep import REQUEST_CLOCK_MARGIN_SECONDS, SWEEP_CALL_BURST, SWEEP_CALL_RATE, Snapshot, listed

log = logging.getLogger(__name__)


class Pacer:
    """At most ``rate`` calls per second after a burst; sleeps the calling (sweep) thread."""

    def __init__(self, rate: float = SWEEP_CALL_RATE, burst: int = SWEEP_CALL_BURST) -> None:
        self._limiter = AdaptiveRateLimiter(rate, burst)

    def __call__(self) -> None:
        self._limiter.acquire()


class _Abandoned(Exception):
    """The executor is shutting down: a listing in progress is not finished."""


class OrphanSweeper:
    """The sweep's AWS side on a thread of its own: listing and describing on request, and the
    stops the scheduler thread decided. ``take()`` hands the latest snapshot (or error) over."""

    def __init__(
        self,
        list_arns: Callable[[Callable[[], None]], list[str]],
        describe: Callable[[Sequence[str], Callable[[], None]], list[Any]],
        stop: Callable[[str, str], None],
        pacer: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._list_arns = list_arns
        self._clock = clock
        self._describe = describe
        self._stop = stop
        self._pace = pacer or Pacer()
        self._cond = threading.Condition()
        self._requested: frozenset[str] | None = None
        self._requested_queueings: frozenset[str] = frozenset()
        self._requested_at = float("inf")
        self._stops: list[tuple[str, str]] = []
        self._result: Snapshot | Exception | None = None
        self._closing = False
        self._working = False
        self._thread = threading.Thread(target=self._loop, daemon=True, name="fargate-orphan-sweep")
        self._thread.start()

    def request(self, tracked_arns: Iterable[str], tracked_queueings: Iterable[str] = ()) -> None:
        """Sweep soon; ARNs tracked now need no describe, and the snapshot remembers the
        queueings tracked now and when it was asked for. Requests made meanwhile coalesce."""
        with self._cond:
            if self._requested is None:
                self._requested_queueings = frozenset()
                self._requested_at = time.time() - REQUEST_CLOCK_MARGIN_SECONDS
            self._requested = frozenset(tracked_arns) | (self._requested or frozenset())
            self._requested_queueings |= frozenset(tracked_queueings)
            self._cond.notify_all()

    def stop_task(self, arn: str, reason: str) -> None:
        with self._cond:
            self._stops.append((arn, reason))
            self._cond.notify_all()

    def take(self) -> Snapshot | Exception | None:
        with self._cond:
            result, self._result = self._result, None
            return result

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._working or self._requested is not None or bool(self._stops)

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stops already decided are made (an orphan must not outlive its scheduler); a listing in
        progress is abandoned."""
        with self._cond:
            self._closing = True
            self._requested = None
            self._cond.notify_all()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closing and self._requested is None and not self._stops:
                    self._cond.wait()
                stops, self._stops = self._stops, []
                requested, self._requested = self._requested, None
                queueings, requested_at = self._requested_queueings, self._requested_at
                if self._closing and not stops:
                    return
                self._working = True
            for arn, reason in stops:
                self._stop_one(arn, reason)
            if requested is not None:
                try:
                    result: Snapshot | Exception = self._sweep(requested)
                    if isinstance(result, Snapshot):
                        result = replace(result, requested_queueings=queueings, requested_at=requested_at)
                except Exception as err:
                    result = err
                with self._cond:
                    self._result = result
            with self._cond:
                self._working = False

    def _paced(self) -> None:
        if self._closing:
            raise _Abandoned
        self._pace()

    def _stop_one(self, arn: str, reason: str) -> None:
        try:
            self._pace()
            self._stop(arn, reason)
        except Exception:
            log.exception("Orphan sweep: could not stop ECS task %s (%s)", arn, reason)

    def _sweep(self, tracked: frozenset[str]) -> Snapshot:
        started_at = self._clock()
        arns = self._list_arns(self._paced)
        untracked = [arn for arn in arns if arn not in tracked]
        tasks = []
        for start in range(0, len(untracked), 100):
            for entry in self._describe(untracked[start : start + 100], self._paced):
                task = listed(entry)
                if task is not None and task.last_status != "STOPPED":
                    tasks.append(task)
        return Snapshot(tuple(tasks), frozenset(arns), started_at)
