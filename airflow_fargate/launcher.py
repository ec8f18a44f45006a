"""RunTask calls off the scheduler's thread: ``submit()`` hands requests to worker threads paced
by an adaptive token bucket (ECS's quota; halved on a throttle), ``drain()`` returns outcomes for
the scheduler thread to apply. A throttle is retried here and costs no launch attempt; an outage
(the circuit breaker) holds every request until a probe finds the API answering again."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from airflow_fargate.api_errors import (
    LaunchError,
    classify_exception,
    classify_failures,
    is_throttling,
    record_api_error,
)
from airflow_fargate.breaker import CircuitBreaker
from airflow_fargate.ecs import LAUNCH_CONNECTIONS
from airflow_fargate.ecs_types import LaunchResult
from airflow_fargate.launch_requests import NOT_FOUND, LaunchRequest
from airflow_fargate.rate_limit import HEADROOM, AdaptiveRateLimiter
from airflow_fargate.wakeup import Wakeup

Outcome = LaunchResult | LaunchError


LAUNCH_WORKERS = LAUNCH_CONNECTIONS  # at most: a whole burst of ECS's bucket at once (see _room)
# How far ahead of the bucket the launcher is fed: its burst plus this many seconds at its rate
# (more would launch no sooner, and a stopping scheduler sends every queued request first).
LOOKAHEAD_SECONDS = 10.0
IDLE_WORKER_SECONDS = 10.0  # a worker with nothing to do for this long ends
MIN_CONCURRENCY = 2  # the concurrency limit never falls below this (AIMD on unknown outcomes)
_PROBE = object()  # what _take hands a worker that is to probe the API (the breaker is open)
HOLD_SECONDS = 60.0  # requests waiting out an outage go back to the executor this often


class Launcher:
    """Worker pool for run_task: FIFO, paced, never on the caller's thread.

    Workers are created when requests wait and none is idle, up to a limit that follows the
    API (``_room``): the bucket's tokens plus the calls on the wire, within a concurrency that
    halves on each call whose outcome is unknown and grows by one per answer (AIMD). While the
    circuit breaker is open nothing is sent but one probe at a time; requests keep their place."""

    def __init__(
        self,
        run_task: Callable[[dict[str, Any], str], LaunchResult],
        *,
        rate: float = 20.0,
        burst: int = 100,
        max_workers: int = LAUNCH_WORKERS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        breaker: CircuitBreaker | None = None,
        probe: Callable[[], None] | None = None,  # the breaker's probe call (None: a request probes)
        find: Callable[[str], LaunchResult | None] | None = None,  # queueing -> its task, by tags
        wakeup: Wakeup | None = None,
    ) -> None:
        self._run_task = run_task
        self.limiter = AdaptiveRateLimiter(rate, burst, clock, headroom=HEADROOM)
        self._clock = clock
        self._sleep = sleep
        self.breaker = breaker or CircuitBreaker(clock)
        self._probe = probe
        self._find = find
        self._wakeup = wakeup or Wakeup()
        self._max_workers = max(1, min(max_workers, burst))
        self._concurrency = float(self._max_workers)  # AIMD: halved per unknown outcome
        self._latency = 0.0  # EWMA of RunTask's latency (0 until the first answer)
        self._pending: deque[LaunchRequest] = deque()
        self._done: deque[tuple[LaunchRequest, Outcome]] = deque()
        self._on_wire: dict[int, float] = {}  # worker id -> when its call went out
        self._submitted_at = -math.inf  # the last submit()
        self._held_since: float | None = None  # when requests began waiting out an outage
        self._busy = 0
        self._idle = 0
        self._probing = False
        self._closing = False
        self._cond = threading.Condition()
        self._workers: set[threading.Thread] = set()
        self._worker_ids = 0
        self._ahead = burst + math.ceil(rate * LOOKAHEAD_SECONDS)
        self.throttled = 0

    def submit(self, requests: Sequence[LaunchRequest]) -> None:
        """Queue requests (returns at once); outcomes come back through ``drain()``."""
        if not requests:
            return
        with self._cond:
            if self._closing:
                raise RuntimeError("launcher is shut down")
            self._submitted_at = self._clock()
            self._pending.extend(requests)
            self._cond.notify(len(requests))  # one idle worker per request, not all of them
            self._add_workers(at_most=1)  # the rest are started by workers, off the scheduler thread

    def _room(self) -> int:
        """How many more requests workers may take now (lock held): within the AIMD concurrency,
        and no more waiting at the token bucket than it has tokens (one, when it is empty). Calls
        on the wire hold their tokens already: at 2 s latency and 20/s, forty are on the wire,
        one waits for the next token, and no pile of threads sleeps in the bucket."""
        waiting = self._busy - len(self._on_wire)
        at_bucket = max(1, self.limiter.available()) - waiting
        return min(min(self._max_workers, int(self._concurrency)) - self._busy, at_bucket)

    def _add_workers(self, at_most: int = LAUNCH_WORKERS) -> None:
        """A worker per waiting request no idle worker will take, within the room (lock held).
        A worker that takes a request starts up to two more: a burst of 100 gets its threads in
        a few milliseconds, and none of that thread starting happens in a heartbeat."""
        wanted = min(len(self._pending) - self._idle, self._room(), self._max_workers - len(self._workers), at_most)
        for _ in range(max(0, wanted)):
            self._worker_ids += 1
            worker = threading.Thread(target=self._work, daemon=True, name=f"fargate-launch-{self._worker_ids}")
            self._workers.add(worker)
            worker.start()

    def drain(self) -> list[tuple[LaunchRequest, Outcome]]:
        """Finished launches since the last call, in completion order. Never blocks."""
        with self._cond:
            done = list(self._done)
            self._done.clear()
        return done

    def room(self) -> int:
        """How many more requests are worth submitting now (see LOOKAHEAD_SECONDS)."""
        with self._cond:
            return max(0, self._ahead - len(self._pending) - self._busy)

    @property
    def in_flight(self) -> int:
        """Requests queued or being sent."""
        with self._cond:
            return len(self._pending) + self._busy

    def expected_by(self, sent_since: float) -> float | None:
        """When the earliest call sent (or submitted with a token free) at or after ``sent_since``
        is expected back: its start plus the usual latency; None when there is none."""
        with self._cond:
            sent = [at for at in self._on_wire.values() if at >= sent_since]
            taken = self._busy > len(self._on_wire)  # a worker builds its kwargs or takes its token
            ready = (self._pending or taken) and self.limiter.available() and not self.breaker.is_open
            if ready and self._submitted_at >= sent_since:
                sent.append(self._submitted_at)  # submitted since, and a token waits for it
            return min(sent) + self._latency if sent else None

    def cancel_pending(self) -> list[LaunchRequest]:
        """Withdraw requests not yet sent (terminate); calls already on the wire still finish."""
        with self._cond:
            cancelled = list(self._pending)
            self._pending.clear()
        return cancelled

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting work; with ``wait``, let every queued request be sent first (while the
        API is out, they come back unsent instead: nothing waits on an outage)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if wait:
            for worker in list(self._workers):
                worker.join()

    def _take(self) -> tuple[LaunchRequest | object, bool] | None:
        """The next request (or _PROBE) for this worker, and whether it probes the API; None
        when the worker should end (idle, or not needed while the API is out)."""
        with self._cond:
            idle_since = self._clock()
            while True:
                if self._closing and (not self._pending or self.breaker.is_open):
                    self._give_back_unsent()
                    return None
                timeout: float | None = IDLE_WORKER_SECONDS
                if self._pending and self.breaker.is_open and self._held_too_long():
                    continue  # handed back: the executor re-decides them (a fresh token, say)
                if self._pending and self.breaker.is_open:
                    due = self.breaker.probe_due()
                    if due == 0 and not self._probing:
                        self._probing = True
                        self.breaker.probe_sent()
                        if self._probe is not None:
                            return _PROBE, True
                        self._busy += 1  # no probe call: this request goes out as the probe
                        return self._pending.popleft(), True
                    if len(self._workers) > 1:
                        return None  # one waiting worker is enough while the API is out
                    timeout = due if not self._probing else IDLE_WORKER_SECONDS
                elif self._pending and self._room() > 0:
                    self._held_since = None  # the API answers: no request is being held
                    self._busy += 1
                    request = self._pending.popleft()
                    self._add_workers(at_most=2)
                    return request, False
                elif not self._pending and self._clock() - idle_since >= IDLE_WORKER_SECONDS:
                    return None
                self._idle += 1
                self._cond.wait(timeout)
                self._idle -= 1

    def _held_too_long(self) -> bool:
        """While the API is out, requests wait here at most HOLD_SECONDS, then go back to the
        executor unsent, as calls whose outcome is unknown (lock held). True if it gave them back."""
        now = self._clock()
        if self._held_since is None:
            self._held_since = now  # first seen held (cleared when a request goes out again)
        if now - self._held_since < HOLD_SECONDS:
            return False
        while self._pending:
            reason = "not sent: held while the ECS API was out"
            self._done.append((self._pending.popleft(), LaunchError(reason, retryable=True, outcome_unknown=True)))
        self._held_since = None
        self._wakeup.notify()
        return True

    def _give_back_unsent(self) -> None:
        """Shutting down during an outage: queued requests return unsent (lock held)."""
        while self._pending:
            request = self._pending.popleft()
            reason = "not sent: the ECS API was unreachable when the scheduler shut down"
            self._done.append((request, LaunchError(reason, retryable=False)))

    def _work(self) -> None:
        me = threading.current_thread()
        try:
            while (taken := self._take()) is not None:
                request, probing = taken
                if request is _PROBE:
                    self._run_probe()
                    continue
                assert isinstance(request, LaunchRequest)
                try:
                    outcome = self._launch_paced(request)
                except Exception as err:  # never let a worker die with a request in hand
                    outcome = classify_exception(err)
                with self._cond:
                    self._busy -= 1
                    self._on_wire.pop(threading.get_ident(), None)
                    if outcome is None:  # throttled: back to the front, it keeps its place
                        self._pending.appendleft(request)
                        self._cond.notify()  # one idle worker for it (this one takes the next anyway)
                    else:
                        self._done.append((request, outcome))
                    if probing:
                        self._probing = False
                        self._cond.notify_all()
                        self._add_workers()
                self._wakeup.notify()
        finally:
            with self._cond:
                self._workers.discard(me)
                if self._pending and not self._closing:
                    self._add_workers()

    def _run_probe(self) -> None:
        assert self._probe is not None
        try:
            self._probe()
        except Exception as err:
            record_api_error(self.breaker, err)
        else:
            self.breaker.answered()
        with self._cond:
            self._probing = False
            self._cond.notify_all()  # open: the next probe's waiter; closed: every waiting request
            self._add_workers()

    def _launch_paced(self, request: LaunchRequest) -> Outcome | None:
        if request.find:
            return self._find_launched(request)
        try:
            kwargs = request.build()
        except Exception as err:  # e.g. TaskConfigError: this task's kwargs are invalid
            return LaunchError(f"Cannot build run_task kwargs: {err}", retryable=False)
        self.limiter.acquire(self._sleep)
        outcome = self._call(lambda: self._run_task(kwargs, request.client_token))
        if isinstance(outcome, LaunchResult) and outcome.task is None:
            return classify_failures(outcome.failures)
        return outcome

    def _find_launched(self, request: LaunchRequest) -> Outcome | None:
        """The task an unknown-outcome call of this queueing started, found by its tags."""
        find = self._find
        outcome = self._call(lambda: find(request.queueing_id) if find else None)
        if outcome is None or isinstance(outcome, LaunchError):
            return outcome
        return outcome if outcome.task is not None else LaunchError(NOT_FOUND, retryable=False, not_found=True)

    def _call(self, call: Callable[[], LaunchResult | None]) -> Any:
        """Make one call on the wire: its latency and what it says about the API are recorded;
        None when throttled (the request goes back in line)."""
        with self._cond:  # off the wire when its outcome is handed back (_work): no waiter misses it
            self._on_wire[threading.get_ident()] = started = self._clock()
            if self._pending:  # this worker left the bucket: another may wait there now
                self._cond.notify()
                self._add_workers()
        try:
            result = call()
        except Exception as err:
            record_api_error(self.breaker, err)
            if is_throttling(err):
                self.throttled += 1
                self.limiter.on_throttle()
                return None
            error = classify_exception(err)
            if error.outcome_unknown:
                with self._cond:
                    self._concurrency = max(MIN_CONCURRENCY, self._concurrency / 2)
            return error
        self.breaker.answered()
        self.limiter.on_success()
        with self._cond:
            elapsed = self._clock() - started
            self._latency = elapsed if not self._latency else 0.8 * self._latency + 0.2 * elapsed
            self._concurrency = min(self._max_workers, self._concurrency + 1)
        return result if result is not None else LaunchResult(None, (), ())
