"""Launch tasks on ECS and decide what a failed launch means (the one place for retry policy).

run_task calls never run on the scheduler's heartbeat thread: ``submit()`` hands requests to
worker threads (a burst's worth) paced by an adaptive token bucket (sized to the ECS quota; halved
on every ThrottlingException, growing back on success), and ``drain()`` returns finished
outcomes for the executor to apply on the scheduler thread. A throttled call is retried by the
launcher itself and never costs one of the task's launch attempts.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from airflow_fargate.ecs_types import LaunchFailure, LaunchResult, MalformedEntry
from airflow_fargate.rate_limit import HEADROOM, AdaptiveRateLimiter

# Credentials expired, rotated or not yet there: rebuild the client and try again later.
CREDENTIAL_CODES = frozenset(
    {"ExpiredTokenException", "ExpiredToken", "RequestExpired", "InvalidClientTokenId", "UnrecognizedClientException"}
)
THROTTLING_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"})
# Errors after which ECS may already have started the task: retry with the same clientToken.
OUTCOME_UNKNOWN_CODES = frozenset(
    {"ServerException", "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalError"}
)
# The clientToken was already used with other parameters. Never expected (one token per launch,
# one set of kwargs per token), so it is retried with a new token and logged, never fatal.
CONFLICT_CODES = frozenset({"ConflictException"})
# AWS error codes that another attempt can fix (after a pause).
RETRYABLE_CODES = THROTTLING_CODES | CREDENTIAL_CODES | OUTCOME_UNKNOWN_CODES | CONFLICT_CODES
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 120.0


@dataclass(frozen=True)
class LaunchError:
    """A run_task attempt that did not start a task, classified."""

    reason: str
    retryable: bool
    outcome_unknown: bool = False  # the call may have started a task: keep the clientToken
    credentials: bool = False  # missing/expired credentials: refresh the client; not the task's attempt
    conflict: bool = False  # ConflictException: the token is spent; the next attempt needs a new one


_JITTER = random.Random()  # its own generator: the launch threads never touch the global one


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential back-off with jitter before launch attempt ``attempt + 1`` (attempt >= 1)."""
    draw = (rng or _JITTER).random()
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempt - 1))
    return ceiling * (0.5 + draw / 2)


def classify_exception(err: BaseException) -> LaunchError:
    """Map an exception from run_task to retry / fail-now."""
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", err))
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        reason = f"{code}: {message}"
        if code in CONFLICT_CODES:
            return LaunchError(reason + " (clientToken already used with other parameters)", True, conflict=True)
        if "throttl" in message.lower() or "rate exceeded" in message.lower():
            return LaunchError(reason, retryable=True)
        if code in OUTCOME_UNKNOWN_CODES or status >= 500:
            return LaunchError(reason, retryable=True, outcome_unknown=True)
        if code in CREDENTIAL_CODES:
            return LaunchError(reason, retryable=True, credentials=True)
        return LaunchError(reason, retryable=code in RETRYABLE_CODES)
    if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
        return LaunchError(f"AWS credentials not available: {err}", retryable=True, credentials=True)
    if isinstance(err, NoRegionError):
        return LaunchError(str(err), retryable=False)
    if isinstance(err, BotoConnectionError):  # includes read/connect timeouts
        return LaunchError(f"{type(err).__name__}: {err}", retryable=True, outcome_unknown=True)
    if isinstance(err, BotoCoreError):
        return LaunchError(f"{type(err).__name__}: {err}", retryable=True, outcome_unknown=True)
    if isinstance(err, MalformedEntry):  # a task may have started: ask again with the same token
        return LaunchError(f"unreadable RunTask answer: {err}", retryable=True, outcome_unknown=True)
    return LaunchError(f"{type(err).__name__}: {err}", retryable=False)


def classify_failures(failures: Sequence[LaunchFailure]) -> LaunchError:
    """run_task answered with ``failures`` (capacity, RESOURCE:*, AGENT, ...): nothing started,
    and ECS placement can succeed later, so these are retried (bounded by max_run_task_attempts)."""
    reason = "; ".join(f.reason + (f" ({f.detail})" if f.detail else "") for f in failures)
    return LaunchError(reason or "run_task returned no task and no failure", retryable=True)


def is_credentials_error(err: BaseException) -> bool:
    """No, expired or rejected credentials (as opposed to a permission the identity lacks)."""
    if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
        return True
    return isinstance(err, ClientError) and err.response.get("Error", {}).get("Code") in CREDENTIAL_CODES


def is_throttling(err: BaseException) -> bool:
    """ThrottlingException and friends: ECS asks us to slow down; nothing was started."""
    return isinstance(err, ClientError) and is_throttling_answer(err.response)


def is_throttling_answer(parsed: Any) -> bool:
    """The same, read from botocore's parsed answer to one attempt (its ``Error``, if any)."""
    error = parsed.get("Error") if isinstance(parsed, dict) else None
    if not isinstance(error, dict):
        return False
    code, message = str(error.get("Code", "")), str(error.get("Message", "")).lower()
    return code in THROTTLING_CODES or "throttl" in message or "rate exceeded" in message


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
    """One run_task call to make; ``build`` makes its kwargs on the worker thread."""

    key: Any
    build: Callable[[], dict[str, Any]]
    client_token: str
    queueing_id: str = ""  # which queueing of ``key`` asked (a later one may supersede it)


Outcome = LaunchResult | LaunchError


# RunTask calls in flight at once, at most: a whole burst of the bucket (ECS's is 100) goes out
# together, so 100 tasks queued at once are launched in about one RunTask latency (0.3-1 s on
# Fargate), not in five waves. The token bucket, not the threads, sets the pace after the burst.
LAUNCH_WORKERS = 100
# How far ahead of the bucket the launcher is fed: its burst plus this many seconds at its rate.
# More queued requests launch no sooner; they only cost the heartbeat that hands them over (and
# a scheduler that stops, which waits for every queued request to be sent).
LOOKAHEAD_SECONDS = 10.0


class Launcher:
    """Worker pool for run_task: FIFO, paced, never on the caller's thread."""

    def __init__(
        self,
        run_task: Callable[[dict[str, Any], str], LaunchResult],
        *,
        rate: float = 20.0,
        burst: int = 100,
        max_workers: int = LAUNCH_WORKERS,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._run_task = run_task
        self.limiter = AdaptiveRateLimiter(rate, burst, clock, headroom=HEADROOM)
        self._sleep = sleep
        self._max_workers = max(1, min(max_workers, burst))
        self._pending: deque[LaunchRequest] = deque()
        self._done: deque[tuple[LaunchRequest, Outcome]] = deque()
        self._busy = 0
        self._closing = False
        self._cond = threading.Condition()
        self._workers: list[threading.Thread] = []
        self._ahead = burst + math.ceil(rate * LOOKAHEAD_SECONDS)
        self.throttled = 0

    def submit(self, requests: Sequence[LaunchRequest]) -> None:
        """Queue requests (returns at once); outcomes come back through ``drain()``."""
        if not requests:
            return
        with self._cond:
            if self._closing:
                raise RuntimeError("launcher is shut down")
            self._pending.extend(requests)
            self._add_workers(min(self._max_workers, len(self._pending) + self._busy))
            self._cond.notify(len(requests))  # one idle worker per request, not all of them

    def start_workers(self) -> None:
        """Start every worker now (executor start): starting a hundred threads inside the first
        heartbeat that launches would cost that heartbeat and delay the first calls."""
        with self._cond:
            self._add_workers(self._max_workers)

    def _add_workers(self, wanted: int) -> None:
        while len(self._workers) < wanted:
            worker = threading.Thread(target=self._work, daemon=True, name=f"fargate-launch-{len(self._workers)}")
            self._workers.append(worker)
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

    def cancel_pending(self) -> list[LaunchRequest]:
        """Withdraw requests not yet sent (terminate); calls already on the wire still finish."""
        with self._cond:
            cancelled = list(self._pending)
            self._pending.clear()
        return cancelled

    def shutdown(self, wait: bool = True) -> None:
        """Stop accepting work; with ``wait``, let every queued request be sent first."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if wait:
            for worker in list(self._workers):
                worker.join()

    def _take(self) -> LaunchRequest | None:
        with self._cond:
            while not self._pending:
                if self._closing:
                    return None
                self._cond.wait()
            self._busy += 1
            return self._pending.popleft()

    def _work(self) -> None:
        while (request := self._take()) is not None:
            try:
                outcome = self._launch_paced(request)
            except Exception as err:  # never let a worker die with a request in hand
                outcome = classify_exception(err)
            with self._cond:
                self._busy -= 1
                if outcome is None:  # throttled: back to the front, it keeps its place
                    self._pending.appendleft(request)
                    self._cond.notify()  # one idle worker for it (this one takes the next anyway)
                else:
                    self._done.append((request, outcome))

    def _launch_paced(self, request: LaunchRequest) -> Outcome | None:
        try:
            kwargs = request.build()
        except Exception as err:  # e.g. TaskConfigError: this task's kwargs are invalid
            return LaunchError(f"Cannot build run_task kwargs: {err}", retryable=False)
        self.limiter.acquire(self._sleep)
        try:
            result = self._run_task(kwargs, request.client_token)
        except Exception as err:
            if is_throttling(err):
                self.throttled += 1
                self.limiter.on_throttle()
                return None
            return classify_exception(err)
        self.limiter.on_success()
        if result.task is None:
            return classify_failures(result.failures)
        return result
