"""Launch failure classification, back-off, and concurrent batches."""

from __future__ import annotations

import random
import threading
import time

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, ReadTimeoutError

from airflow_fargate.api_errors import (
    LaunchError,
    backoff_seconds,
    classify_exception,
    is_credentials_error,
    is_throttling,
)
from airflow_fargate.ecs_types import EcsTaskState, LaunchFailure, LaunchResult
from airflow_fargate.launch_requests import LaunchRequest
from airflow_fargate.launcher import LOOKAHEAD_SECONDS, Launcher
from airflow_fargate.rate_limit import HEADROOM, AdaptiveRateLimiter


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


@pytest.mark.parametrize(
    "err",
    [
        client_error("ExpiredTokenException", "The security token included in the request is expired"),
        client_error("UnrecognizedClientException", "The security token included in the request is invalid"),
        NoCredentialsError(),
    ],
)
def test_credential_errors_are_flagged(err):
    assert classify_exception(err).credentials
    assert is_credentials_error(err)
    assert not is_credentials_error(client_error("AccessDeniedException", "not authorized"))


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


class FakeClock:
    """Time that only moves when the code under test 'sleeps'."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def settle(launcher: Launcher, expected: int, timeout: float = 10) -> list:
    done: list = []
    deadline = time.monotonic() + timeout
    while len(done) < expected and time.monotonic() < deadline:
        done.extend(launcher.drain())
        time.sleep(0.001)
    assert len(done) == expected, done
    return done


# ---- the rate limiter --------------------------------------------------------------------------


def test_limiter_allows_the_burst_then_paces_at_the_rate():
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(rate=20, burst=100, clock=clock)
    assert limiter.available() == 100
    for _ in range(100):
        limiter.acquire(clock.sleep)
    assert clock.sleeps == [] and limiter.available() == 0  # the burst at once
    limiter.acquire(clock.sleep)
    assert clock.sleeps == [pytest.approx(1 / 20)]  # then one token every 1/20 s
    clock.now += 1.0
    assert limiter.available() == 20  # a second refills 20 (the slept 1/20 s paid the 101st)


def test_limiter_halves_on_throttle_and_recovers_additively():
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(rate=20, burst=5, clock=clock, increase=1.0)
    limiter.on_throttle()
    assert limiter.rate == 10
    limiter.acquire(clock.sleep)
    assert clock.sleeps == [pytest.approx(1 / 10)]  # bucket emptied: wait for a fresh token
    limiter.on_throttle()
    limiter.on_throttle()
    assert limiter.rate == 2.5
    for _ in range(100):
        limiter.on_success()
    assert limiter.rate == 20  # never above the configured quota
    for _ in range(50):
        limiter.on_throttle()
    assert limiter.rate == 0.5  # floor: keeps trying


@pytest.mark.timeout(10)
def test_waiting_callers_book_slots_and_each_sleeps_once():
    """Thirty launch threads waiting on an empty bucket: each books the next free slot and sleeps
    once until it, instead of all waking for every token (the clock here never moves: a caller
    that re-checked after its sleep would wait forever)."""
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(rate=20, burst=1, clock=clock)
    slept: list[float] = []
    for _ in range(4):
        limiter.acquire(slept.append)
    assert slept == pytest.approx([1 / 20, 2 / 20, 3 / 20])  # the first had the one token


@pytest.mark.timeout(10)
def test_a_throttle_cancels_the_bookings_and_sleepers_book_again_at_the_new_rate():
    clock = FakeClock()
    limiter = AdaptiveRateLimiter(rate=20, burst=1, clock=clock)
    limiter.acquire(lambda seconds: None)  # the one token
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) == 1:
            limiter.on_throttle()  # while this caller sleeps: rate 10/s, bookings void
        clock.now += seconds

    limiter.acquire(sleep)
    assert slept[0] == pytest.approx(1 / 20)
    assert slept[1:] == pytest.approx([1 / 20])  # re-booked: 0.05 s of the new 10/s had refilled half a token


# ---- the worker pool ----------------------------------------------------------------------------


def test_requests_are_sent_in_order_paced_by_the_bucket_without_real_sleeps():
    clock = FakeClock()
    order: list[str] = []

    def run_task(kwargs, token):
        order.append(token)
        return task("arn-" + token)

    launcher = Launcher(run_task, rate=2, burst=2, max_workers=1, clock=clock, sleep=clock.sleep)
    launcher.submit([LaunchRequest(key=i, build=dict, client_token=str(i)) for i in range(6)])
    done = settle(launcher, 6)
    launcher.shutdown()
    assert order == [str(i) for i in range(6)]  # FIFO: first queued, first launched
    assert [r.key for r, _ in done] == list(range(6))
    assert clock.now == pytest.approx(4 / (2 * HEADROOM))  # 2 from the burst, then 4 more at 2/s less headroom
    assert all(0 < s <= 0.5 / HEADROOM for s in clock.sleeps)


def test_throttled_request_keeps_its_place_and_costs_no_attempt():
    clock = FakeClock()
    calls: list[str] = []
    throttle = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "RunTask")

    def run_task(kwargs, token):
        calls.append(token)
        if calls.count(token) == 1 and token == "b":
            raise throttle
        return task("arn-" + token)

    launcher = Launcher(run_task, rate=10, burst=10, max_workers=1, clock=clock, sleep=clock.sleep)
    launcher.submit([LaunchRequest(k, dict, k) for k in ("a", "b", "c")])
    done = settle(launcher, 3)
    launcher.shutdown()
    assert calls == ["a", "b", "b", "c"]  # b retried before c
    assert all(isinstance(o, LaunchResult) for _, o in done)
    assert launcher.throttled == 1
    # halved by the throttle (10 less headroom, / 2), then +0.5 for each of the two answers after it
    assert launcher.limiter.rate == pytest.approx(10 * HEADROOM / 2 + 2 * 0.5)


def test_run_task_is_one_attempt_so_the_launcher_sees_every_throttle():
    """botocore's retries would resend a throttled RunTask unpaced and hide the throttle from
    the launcher's bucket: the launching client makes exactly one attempt per call."""
    from airflow_fargate.ecs import EcsClient
    from tests.fake_transport import EcsTransport, FakeTarget

    def started(request):
        return {"tasks": [{"taskArn": "arn:aws:ecs:us-east-1:1:task/c/t", "lastStatus": "PROVISIONING"}]}

    client = EcsClient(FakeTarget, "c", describe_rate=10)
    transport = EcsTransport(throttled=1, answer=started)
    client.launch_client.meta.events.register("before-send.ecs.RunTask", transport)
    with pytest.raises(ClientError) as raised:
        client.run_task({"cluster": "c", "taskDefinition": "td"}, "token-1")
    assert is_throttling(raised.value) and len(transport.attempts) == 1
    result = client.run_task({"cluster": "c", "taskDefinition": "td"}, "token-1")  # the launcher's retry
    assert result.task is not None and result.task.last_status == "PROVISIONING"
    assert [a["clientToken"] for a in transport.attempts] == ["token-1", "token-1"]
    client.close()


def test_submit_returns_at_once_and_calls_run_concurrently():
    barrier = threading.Barrier(4, timeout=5)

    def run_task(kwargs, token):
        barrier.wait()  # deadlocks (and times out) unless 4 calls are in flight at once
        return task("arn-" + token)

    launcher = Launcher(run_task, max_workers=4)
    # A submit() that waited for its calls would break the barrier: no arn would come back.
    launcher.submit([LaunchRequest(key=i, build=dict, client_token=str(i)) for i in range(4)])
    done = settle(launcher, 4)
    launcher.shutdown()
    assert sorted(o.task.arn for _, o in done) == ["arn-0", "arn-1", "arn-2", "arn-3"]


@pytest.mark.timeout(30)
def test_a_whole_burst_goes_out_at_once_and_no_more():
    """The default launcher sends its bucket's whole burst together (100 tasks queued at once are
    launched in about one RunTask latency), with workers created for them, never more at once;
    after the burst the bucket, not a pile of threads, sets the pace."""
    on_wire, peak, lock = [0], [0], threading.Lock()
    barrier = threading.Barrier(100, timeout=10)

    def run_task(kwargs, token):
        with lock:
            on_wire[0] += 1
            peak[0] = max(peak[0], on_wire[0])
        if int(token) < 100:
            barrier.wait()  # breaks (and times out) unless all 100 calls are in flight at once
        with lock:
            on_wire[0] -= 1
        return task("arn-" + token)

    launcher = Launcher(run_task, rate=1000, burst=100)
    assert len(launcher._workers) == 0  # threads exist only while there is work
    launcher.submit([LaunchRequest(key=i, build=dict, client_token=str(i)) for i in range(150)])
    done = settle(launcher, 150)
    launcher.shutdown()
    assert len(done) == 150 and peak[0] == 100
    small = Launcher(lambda kwargs, token: task("arn-" + token), burst=3)
    small.submit([LaunchRequest(key=i, build=dict, client_token=str(i)) for i in range(10)])
    assert len(small._workers) <= 3  # never more threads than the burst
    assert len(settle(small, 10)) == 10
    small.shutdown()


def test_room_is_the_burst_plus_the_lookahead_at_the_rate_less_what_is_queued():
    release = threading.Event()

    def run_task(kwargs, token):
        assert release.wait(30)
        return task("arn-" + token)

    launcher = Launcher(run_task, rate=2, burst=3, max_workers=2)
    assert launcher.room() == 3 + 2 * LOOKAHEAD_SECONDS
    launcher.submit([LaunchRequest(key=i, build=dict, client_token=str(i)) for i in range(5)])
    assert launcher.room() == 3 + 2 * LOOKAHEAD_SECONDS - 5  # two on the wire, three waiting
    launcher.submit([LaunchRequest(key=i, build=dict, client_token=str(i)) for i in range(5, 40)])
    assert launcher.room() == 0
    launcher.cancel_pending()
    release.set()
    launcher.shutdown()
    assert launcher.room() == 3 + 2 * LOOKAHEAD_SECONDS


def test_outcomes_are_classified_and_workers_never_die():
    def run_task(kwargs, token):
        if token == "boom":
            raise client_error("AccessDeniedException", "denied")
        if token == "full":
            return LaunchResult(None, (LaunchFailure("RESOURCE:MEMORY"), LaunchFailure("AGENT", detail="x")))
        if token == "bug":
            raise KeyError("unexpected")
        return task("ok")

    launcher = Launcher(run_task, max_workers=1)
    launcher.submit([LaunchRequest(k, dict, k) for k in ("boom", "full", "bug", "fine")])
    results = {r.client_token: o for r, o in settle(launcher, 4)}
    launcher.shutdown()
    assert results["boom"] == LaunchError("AccessDeniedException: denied", retryable=False)
    assert results["full"] == LaunchError("RESOURCE:MEMORY; AGENT (x)", retryable=True)
    assert results["bug"].retryable is False
    assert isinstance(results["fine"], LaunchResult)


def test_shutdown_waits_for_queued_and_in_flight_requests():
    release = threading.Event()

    def run_task(kwargs, token):
        release.wait(5)
        return task(token)

    launcher = Launcher(run_task, max_workers=2)
    launcher.submit([LaunchRequest(k, dict, str(k)) for k in range(5)])
    assert launcher.in_flight == 5
    threading.Timer(0.2, release.set).start()
    launcher.shutdown(wait=True)
    assert launcher.in_flight == 0
    assert len(launcher.drain()) == 5
    with pytest.raises(RuntimeError, match="shut down"):
        launcher.submit([LaunchRequest(9, dict, "9")])


def test_cancel_pending_withdraws_unsent_requests():
    started, release = threading.Event(), threading.Event()

    def run_task(kwargs, token):
        started.set()
        release.wait(5)
        return task(token)

    launcher = Launcher(run_task, max_workers=1)
    launcher.submit([LaunchRequest(k, dict, str(k)) for k in range(4)])
    assert started.wait(5)
    assert [r.key for r in launcher.cancel_pending()] == [1, 2, 3]
    release.set()
    launcher.shutdown()
    assert [r.key for r, _ in launcher.drain()] == [0]  # only the call already on the wire finished


def test_is_throttling():
    assert is_throttling(client_error("ThrottlingException", "Rate exceeded"))
    assert is_throttling(client_error("InvalidParameterException", "Rate exceeded"))
    assert not is_throttling(client_error("ClusterNotFoundException", "nope"))
    assert not is_throttling(ValueError("x"))


def test_a_request_whose_kwargs_cannot_be_built_fails_without_a_call():
    calls: list[str] = []

    def bad_build():
        raise ValueError("executor_config gives invalid ECS run_task kwargs: boom")

    launcher = Launcher(lambda kwargs, token: calls.append(token) or task(token), max_workers=1)
    launcher.submit([LaunchRequest("k", bad_build, "t")])
    ((_, outcome),) = settle(launcher, 1)
    launcher.shutdown()
    assert calls == []
    assert outcome == LaunchError(
        "Cannot build run_task kwargs: executor_config gives invalid ECS run_task kwargs: boom", retryable=False
    )
