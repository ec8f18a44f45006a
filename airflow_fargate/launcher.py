"""Launch tasks on ECS and decide what a failed launch means (the one place for retry policy).

run_task calls for one heartbeat are made concurrently by a small thread pool (boto3 clients are
thread-safe), so N queued tasks cost about N / workers API round trips instead of N.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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

from airflow_fargate.ecs_types import LaunchFailure, LaunchResult

# AWS error codes that another attempt can fix (after a pause).
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "ExpiredTokenException",
        "ExpiredToken",
        "RequestExpired",
    }
)
# Errors after which ECS may already have started the task: retry with the same clientToken.
OUTCOME_UNKNOWN_CODES = frozenset(
    {"ServerException", "ServiceUnavailable", "ServiceUnavailableException", "InternalFailure", "InternalError"}
)
BACKOFF_BASE_SECONDS = 2.0
BACKOFF_CAP_SECONDS = 120.0


@dataclass(frozen=True)
class LaunchError:
    """A run_task attempt that did not start a task, classified."""

    reason: str
    retryable: bool
    outcome_unknown: bool = False  # the call may have started a task: keep the clientToken


def backoff_seconds(attempt: int, rng: random.Random | None = None) -> float:
    """Exponential back-off with jitter before launch attempt ``attempt + 1`` (attempt >= 1)."""
    draw = rng.random() if rng is not None else random.random()
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
        if "throttl" in message.lower() or "rate exceeded" in message.lower():
            return LaunchError(reason, retryable=True)
        if code in OUTCOME_UNKNOWN_CODES or status >= 500:
            return LaunchError(reason, retryable=True, outcome_unknown=True)
        return LaunchError(reason, retryable=code in RETRYABLE_CODES)
    if isinstance(err, (NoCredentialsError, PartialCredentialsError)):
        return LaunchError(f"AWS credentials not available: {err}", retryable=True)
    if isinstance(err, NoRegionError):
        return LaunchError(str(err), retryable=False)
    if isinstance(err, BotoConnectionError):  # includes read/connect timeouts
        return LaunchError(f"{type(err).__name__}: {err}", retryable=True, outcome_unknown=True)
    if isinstance(err, BotoCoreError):
        return LaunchError(f"{type(err).__name__}: {err}", retryable=True, outcome_unknown=True)
    return LaunchError(f"{type(err).__name__}: {err}", retryable=False)


def classify_failures(failures: Sequence[LaunchFailure]) -> LaunchError:
    """run_task answered with ``failures`` (capacity, RESOURCE:*, AGENT, ...): nothing started,
    and ECS placement can succeed later, so these are retried (bounded by max_run_task_attempts)."""
    reason = "; ".join(f.reason + (f" ({f.detail})" if f.detail else "") for f in failures)
    return LaunchError(reason or "run_task returned no task and no failure", retryable=True)


@dataclass(frozen=True)
class LaunchRequest:
    key: Any
    kwargs: dict[str, Any]
    client_token: str


class Launcher:
    """Runs a batch of run_task calls concurrently and returns each outcome."""

    def __init__(self, run_task: Callable[[dict[str, Any], str], LaunchResult], max_workers: int = 10) -> None:
        self._run_task = run_task
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="fargate-launch")

    def _launch_one(self, request: LaunchRequest) -> LaunchResult | LaunchError:
        try:
            result = self._run_task(request.kwargs, request.client_token)
        except Exception as err:  # classified, never raised into the scheduler loop
            return classify_exception(err)
        if result.task is None:
            return classify_failures(result.failures)
        return result

    def launch(self, requests: Sequence[LaunchRequest]) -> list[tuple[LaunchRequest, LaunchResult | LaunchError]]:
        """Launch all requests; results come back in request order."""
        if len(requests) <= 1:
            return [(r, self._launch_one(r)) for r in requests]
        return list(zip(requests, self._pool.map(self._launch_one, requests), strict=True))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)
