"""The ECS API's error taxonomy: what an exception or a RunTask answer says about the request
(retry it, with or without its clientToken, or fail), and about the API itself (the circuit
breaker's input). The one place that reads error codes."""

from __future__ import annotations

import random
from collections.abc import Sequence
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

from airflow_fargate.breaker import CircuitBreaker
from airflow_fargate.ecs_types import LaunchFailure, MalformedEntry

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
    not_found: bool = False  # a find request found no task: every call of this token started nothing


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


def record_api_error(breaker: CircuitBreaker, err: BaseException) -> None:
    """Tell the breaker what an exception from any ECS call says about the API."""
    if is_throttling(err):
        breaker.failed(str(err), throttled=True)
    elif classify_exception(err).outcome_unknown:
        breaker.failed(f"{type(err).__name__}: {err}")
    else:
        breaker.answered()  # an error about the request itself: the API answers
