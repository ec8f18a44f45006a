"""Launch failure classification, back-off, and concurrent batches."""

from __future__ import annotations

import random
import threading

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from airflow_fargate.ecs_types import EcsTaskState, LaunchFailure, LaunchResult
from airflow_fargate.launcher import Launcher, LaunchError, LaunchRequest, backoff_seconds, classify_exception


def client_error(code: str, message: str = "msg", status: int = 400) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, "RunTask"
    )


@pytest.mark.parametrize(
    ("err", "retryable", "unknown"),
    [
        (client_error("ThrottlingException", "Rate exceeded"), True, False),
        (client_error("InvalidParameterException", "Rate exceeded for RunTask"), True, False),
        (client_error("ServerException", "internal", 500), True, True),
        (client_error("SomethingNew", "?", 503), True, True),
        (client_error("ExpiredTokenException", "expired"), True, False),
        (client_error("InvalidParameterException", "No Container Instances were found in your cluster."), False, False),
        (client_error("AccessDeniedException", "not authorized to perform ecs:RunTask"), False, False),
        (client_error("ClusterNotFoundException", "Cluster not found."), False, False),
        (client_error("ClientException", "TaskDefinition is inactive"), False, False),
        (EndpointConnectionError(endpoint_url="https://ecs"), True, True),
        (ReadTimeoutError(endpoint_url="https://ecs"), True, True),
        (NoCredentialsError(), True, False),
        (ValueError("bug"), False, False),
    ],
)
def test_classify_exception(err, retryable, unknown):
    result = classify_exception(err)
    assert (result.retryable, result.outcome_unknown) == (retryable, unknown)


def test_classified_reason_keeps_the_aws_message():
    assert classify_exception(client_error("ClusterNotFoundException", "Cluster not found.")).reason == (
        "ClusterNotFoundException: Cluster not found."
    )


def test_backoff_grows_exponentially_with_jitter_and_a_cap():
    rng = random.Random(7)
    delays = [backoff_seconds(n, rng) for n in range(1, 10)]
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(120.0, 2.0 * 2 ** (attempt - 1))
        assert ceiling / 2 <= delay <= ceiling
    assert backoff_seconds(30, rng) <= 120.0


def task(arn: str) -> LaunchResult:
    return LaunchResult(EcsTaskState(arn=arn, last_status="PROVISIONING"))


def test_launch_batch_runs_concurrently_and_keeps_order():
    barrier = threading.Barrier(4, timeout=5)

    def run_task(kwargs, token):
        barrier.wait()  # deadlocks (and times out) unless 4 calls are in flight at once
        return task("arn-" + token)

    launcher = Launcher(run_task, max_workers=4)
    requests = [LaunchRequest(key=i, kwargs={}, client_token=str(i)) for i in range(4)]
    results = launcher.launch(requests)
    launcher.shutdown()
    assert [r.key for r, _ in results] == [0, 1, 2, 3]
    assert [o.task.arn for _, o in results] == ["arn-0", "arn-1", "arn-2", "arn-3"]


def test_launch_never_raises_and_classifies():
    def run_task(kwargs, token):
        if token == "boom":
            raise client_error("AccessDeniedException", "denied")
        if token == "full":
            return LaunchResult(None, (LaunchFailure("RESOURCE:MEMORY"), LaunchFailure("AGENT", detail="x")))
        return task("ok")

    launcher = Launcher(run_task)
    results = dict(
        (r.client_token, o) for r, o in launcher.launch([LaunchRequest(k, {}, k) for k in ("boom", "full", "fine")])
    )
    launcher.shutdown()
    assert results["boom"] == LaunchError("AccessDeniedException: denied", retryable=False)
    assert results["full"] == LaunchError("RESOURCE:MEMORY; AGENT (x)", retryable=True)
    assert isinstance(results["fine"], LaunchResult)
