"""The describe poller: which tasks a round describes, when rounds run, answers handed over per call."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from airflow_fargate.ecs import DescribeResult, EcsClient
from airflow_fargate.ecs_types import EcsTaskState
from airflow_fargate.poll_schedule import MIN_ROUND_SECONDS, ROUND_MARGIN_SECONDS, HeartbeatClock, PollSchedule
from airflow_fargate.poller import Ended, Poller
from airflow_fargate.try_reports import Report
from tests.fake_transport import EcsTransport, FakeTarget


def state(arn: str, status: str) -> EcsTaskState:
    return EcsTaskState(arn=arn, last_status=status, desired_status="RUNNING")


def described(statuses: dict[str, str]) -> DescribeResult:
    return DescribeResult(tasks={arn: state(arn, status) for arn, status in statuses.items()})


def planned(schedule: PollSchedule, now: float) -> list[str]:
    return [arn for batch in schedule.plan(now) for arn in batch]


def unkeyed(arns) -> dict[str, None]:
    """ARNs whose work has no task instance row to read (as callbacks)."""
    return dict.fromkeys(arns)


# ---- PollSchedule -------------------------------------------------------------------------------


def test_new_tasks_are_due_a_round_later_and_calls_hold_at_most_100():
    schedule = PollSchedule(max_interval=10)
    arns = [f"arn-{i}" for i in range(250)]
    schedule.track(unkeyed(arns), now=0)
    assert schedule.plan(0.5) == []  # launched just now: its try says first whether it started
    batches = schedule.plan(1)
    assert [len(b) for b in batches] == [100, 100, 50]
    assert sorted(a for b in batches for a in b) == sorted(arns)
    assert schedule.plan(1.5) == []  # polled just now: nothing is due


def test_a_task_that_changed_is_due_every_round_and_a_quiet_one_less_and_less_often():
    schedule = PollSchedule(max_interval=10)
    schedule.track(unkeyed(["busy", "quiet"]), now=0)
    schedule.plan(0)
    schedule.observe(described({"busy": "RUNNING", "quiet": "RUNNING"}), now=0)
    assert schedule.interval("busy", now=1) == MIN_ROUND_SECONDS
    schedule.observe(described({"busy": "STOPPED"}), now=100)
    assert schedule.interval("busy", now=101) == MIN_ROUND_SECONDS  # just changed
    assert schedule.interval("quiet", now=100) == pytest.approx(5.0)  # quiet 100 s: every 5 s
    assert schedule.interval("quiet", now=10_000) == 10  # capped by max_interval


def test_more_than_100_quiet_tasks_cost_fewer_calls_and_carry_only_what_is_due():
    schedule = PollSchedule(max_interval=10)
    quiet = [f"q{i}" for i in range(300)]
    schedule.track(unkeyed([*quiet, "hot"]), now=0)
    schedule.plan(0)
    schedule.observe(described(dict.fromkeys(quiet, "RUNNING")), now=0)
    schedule.observe(described({"hot": "PENDING"}), now=0)
    asked_late = 0
    for now in range(1, 200):  # quiet tasks never change; "hot" changes every second
        schedule.observe(described({"hot": "PENDING" if now % 2 else "RUNNING"}), now=now)
        batches = schedule.plan(now)
        assert "hot" in {arn for batch in batches for arn in batch}
        assert all(len(batch) <= 100 for batch in batches)
        if now > 100:  # quiet for 100 s+: each quiet task every 10 s, "hot" every round
            asked_late += sum(len(batch) for batch in batches)
    # each quiet task is due every 5% of its quiet time (5-10 s here): about 300 * 20 * ln(2) asks;
    # calls topped up to 100 with tasks not yet due would ask 99 * 100
    assert asked_late <= 99 + len(quiet) * 20 * 0.7
    stalest = max(now - w.polled_at for w in schedule._watches.values())
    assert stalest <= 10  # no task goes unasked for longer than max_interval


def test_tasks_no_longer_tracked_are_dropped_and_a_failed_call_is_due_again():
    schedule = PollSchedule(max_interval=10)
    schedule.track(unkeyed(["a", "b"]), now=0)
    assert sorted(planned(schedule, 1)) == ["a", "b"]
    schedule.track(unkeyed(["b"]), now=1.2)
    assert len(schedule) == 1
    assert planned(schedule, 1.5) == []
    schedule.unpolled(["b"])
    assert planned(schedule, 1.5) == ["b"]


def test_missing_and_unreadable_answers_keep_a_task_due_every_round():
    schedule = PollSchedule(max_interval=10)
    schedule.track(unkeyed(["new"]), now=0)
    schedule.observe(described({"new": "RUNNING"}), now=0)
    schedule.observe(DescribeResult(missing={"new": "MISSING"}), now=500)
    assert schedule.interval("new", now=501) == MIN_ROUND_SECONDS


def test_what_a_try_reports_sets_how_often_ecs_is_asked_about_it():
    schedule = PollSchedule(max_interval=10, running_interval=60)
    schedule.track(unkeyed(["starting", "running", "failed", "ended", "silent"]), now=0)
    reports = {
        "starting": Report.STARTING,
        "running": Report.RUNNING,
        "failed": Report.FAILED,
        "ended": Report.ENDED,
    }
    schedule.note_reports(reports)
    assert schedule.interval("running", now=1) == 60  # only for a container that died silently
    assert schedule.interval("failed", now=1) == MIN_ROUND_SECONDS  # its exit says how: every round
    assert schedule.interval("ended", now=1) == float("inf")  # reported from its row
    assert schedule.interval("starting", now=1) == schedule.interval("silent", now=1) == MIN_ROUND_SECONDS
    schedule.note_reports({})  # the row says nothing any more (the DB did not answer, say)
    assert schedule.interval("running", now=1) == MIN_ROUND_SECONDS


def test_running_tries_cost_no_call_and_calls_carry_only_due_tasks():
    """Only due ARNs are described: an answer's parsing costs CPU even when the call is free."""
    schedule = PollSchedule(max_interval=10, running_interval=60)
    running = [f"r{i}" for i in range(150)]
    schedule.track(unkeyed([*running, "new", "done"]), now=0)
    schedule.note_reports({**dict.fromkeys(running, Report.RUNNING), "done": Report.ENDED})
    for now in range(1, 60):
        if now == 30:
            schedule.observe(described({"new": "PENDING"}), now=now)  # only "new" is ever due
        batches = schedule.plan(now)
        chosen = {arn for batch in batches for arn in batch}
        assert chosen <= {"new"}
        assert len(batches) <= 1 and ("new" in chosen or not batches)
    schedule.note_reports({**dict.fromkeys(running, Report.RUNNING), "done": Report.ENDED, "new": Report.RUNNING})
    assert planned(schedule, 59) == []  # every try reports running: asked about once a minute
    assert sorted(planned(schedule, 60.5)) == sorted(running)


# ---- HeartbeatClock -----------------------------------------------------------------------------


def test_rounds_end_just_before_the_next_heartbeat():
    clock = HeartbeatClock()
    assert clock.next_round_start(last_start=0, round_seconds=0.1, now=0.2) == 0.9 * MIN_ROUND_SECONDS  # no rhythm yet
    for beat in (10.0, 11.0, 12.0, 13.0):
        clock.beat(beat)
    start = clock.next_round_start(last_start=12.85, round_seconds=0.1, now=12.95)
    assert start == pytest.approx(14.0 - 0.1 - ROUND_MARGIN_SECONDS)


def test_a_fast_scheduler_loop_gets_at_most_one_round_a_second():
    clock = HeartbeatClock()
    for i in range(9):
        clock.beat(i * 0.2)
    start = clock.next_round_start(last_start=1.5, round_seconds=0.05, now=1.6)
    assert start >= 1.5 + 0.9 * MIN_ROUND_SECONDS


def test_a_round_longer_than_the_heartbeat_is_followed_at_once():
    clock = HeartbeatClock()
    for beat in (0.0, 1.0, 2.0):
        clock.beat(beat)
    assert clock.next_round_start(last_start=0.0, round_seconds=8.0, now=8.0) == 8.0


# ---- Poller ---------------------------------------------------------------------------------------


def wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.005)


@pytest.mark.timeout(30)
def test_each_call_is_handed_over_as_soon_as_it_answers():
    """A round of three calls: the first answer is there while another call still waits."""
    held = threading.Event()

    def describe(arns):
        if "arn-150" in arns:
            held.wait(10)
        return described(dict.fromkeys(arns, "RUNNING"))

    poller = Poller(describe)
    poller.track(unkeyed(f"arn-{i}" for i in range(250)))
    poller.kick()
    answers: list = []
    wait_for(lambda: len(answers.extend(poller.take()) or answers) >= 2)
    assert not poller.idle  # the third call is still out
    held.set()
    wait_for(lambda: poller.idle)
    answers.extend(poller.take())
    assert sum(len(a.tasks) for a in answers) == 250
    poller.shutdown()


@pytest.mark.timeout(30)
def test_errors_are_handed_over_and_the_batch_is_asked_for_again():
    calls: list[list[str]] = []

    def describe(arns):
        calls.append(list(arns))
        if len(calls) == 1:
            raise RuntimeError("ecs down")
        return described(dict.fromkeys(arns, "RUNNING"))

    poller = Poller(describe)
    poller.track({"a": None})
    answers: list = []
    wait_for(lambda: answers.extend(poller.take()) or answers)  # (the next round may come before a late take)
    assert isinstance(answers[0], RuntimeError)
    poller.track({"a": None})  # the next round (about a second later) asks again
    wait_for(lambda: len(calls) >= 2)
    poller.shutdown()


@pytest.mark.timeout(30)
def test_rounds_follow_the_heartbeat_not_a_busy_loop():
    """With the scheduler beating every 0.3 s, the poller runs about one round a second, never more.

    Waits for three rounds instead of counting them in a fixed time: a loaded machine may run a
    round late, which is not what this test is about; running rounds too close together is."""
    calls: list[float] = []
    beats = 0

    def describe(arns):
        calls.append(time.monotonic())
        return described(dict.fromkeys(arns, "RUNNING"))

    poller = Poller(describe)
    deadline = time.monotonic() + 20
    while len(calls) < 3 and time.monotonic() < deadline:
        poller.track({"a": None})
        beats += 1
        time.sleep(0.3)
    poller.shutdown()
    assert len(calls) >= 3, f"{len(calls)} rounds in {beats} heartbeats"
    assert all(b - a >= 0.9 * MIN_ROUND_SECONDS - 0.05 for a, b in itertools.pairwise(calls)), calls


@pytest.mark.timeout(10)
def test_shutdown_while_idle_or_with_nothing_tracked_returns():
    Poller(lambda arns: DescribeResult()).shutdown()
    poller = Poller(lambda arns: DescribeResult())
    poller.track({})
    poller.shutdown()


@pytest.mark.timeout(30)
def test_a_round_hands_over_ended_tries_without_describing_them():
    """The round reads the tries' rows first: an ended try is an answer of its own, and only
    what the rows cannot tell is described."""
    described_arns: list[str] = []
    read: list[dict] = []

    def describe(arns):
        described_arns.extend(arns)
        return described(dict.fromkeys(arns, "RUNNING"))

    def read_reports(keys_by_arn):
        read.append(dict(keys_by_arn))
        return {"done": Report.ENDED, "poked": Report.RESCHEDULED, "busy": Report.RUNNING, "broke": Report.FAILED}

    poller = Poller(describe, read_reports=read_reports)
    poller.track({"done": "k1", "busy": "k2", "broke": "k3", "poked": "k4"})
    answers: list = []
    wait_for(lambda: any(isinstance(a, DescribeResult) for a in answers.extend(poller.take()) or answers))
    poller.shutdown()
    ended = [a for a in answers if isinstance(a, Ended)]
    assert ended and (ended[0].arns, ended[0].pokes) == ({"done", "poked"}, {"poked"})
    assert read[0] == {"done": "k1", "busy": "k2", "broke": "k3", "poked": "k4"}
    assert "broke" in described_arns and not {"done", "poked"} & set(described_arns)


@pytest.mark.timeout(30)
def test_a_reader_that_raises_costs_only_the_rows_and_ecs_is_asked_instead():
    described_arns: list[str] = []

    def describe(arns):
        described_arns.extend(arns)
        return described(dict.fromkeys(arns, "RUNNING"))

    def broken(keys_by_arn):
        raise RuntimeError("reader bug")

    poller = Poller(describe, read_reports=broken)
    poller.track({"a": "k"})
    wait_for(lambda: "a" in described_arns)
    poller.shutdown()


# ---- the describe budget --------------------------------------------------------------------------


class RecordingLimiter:
    def __init__(self) -> None:
        self.events: list[str] = []

    def acquire(self) -> None:
        self.events.append("acquire")

    def on_success(self) -> None:
        self.events.append("success")

    def on_throttle(self) -> None:
        self.events.append("throttle")


def ecs_client(limiter, transport):
    client = EcsClient(FakeTarget, "cluster", describe_rate=10)
    client.describe_limiter = limiter
    client.client.meta.events.register("before-send.ecs.DescribeTasks", transport)
    return client


def test_every_describe_tasks_call_takes_a_token_from_the_budget():
    """Polls, adoption (describe_tasks of any length) and the sweep (with tags) share one budget."""
    limiter, transport = RecordingLimiter(), EcsTransport()
    client = ecs_client(limiter, transport)
    client.describe_tasks([f"arn-{i}" for i in range(250)])
    client.describe_batch(["a"])
    client.describe_with_tags(["b"], pace=lambda: None)
    client.close()
    assert len(transport.attempts) == 5
    assert limiter.events.count("acquire") == 5 and limiter.events.count("success") == 5


def test_a_throttle_that_botocore_retried_away_still_slows_the_budget_and_the_retry_takes_a_token():
    """botocore retries a throttled DescribeTasks by itself; the budget must see that attempt
    (another tool may be using up the account's bucket) and pace the retry like any call."""
    limiter, transport = RecordingLimiter(), EcsTransport(throttled=1)
    result = ecs_client(limiter, transport).describe_batch(["a"])
    assert result.missing == {"a": "MISSING"}
    assert len(transport.attempts) == 2
    assert limiter.events == ["acquire", "throttle", "acquire", "success"]


def test_a_describe_throttled_on_every_attempt_slows_the_budget_once_per_attempt_and_raises():
    from botocore.exceptions import ClientError

    limiter, transport = RecordingLimiter(), EcsTransport(throttled=99)
    client = ecs_client(limiter, transport)
    with pytest.raises(ClientError, match="ThrottlingException"):
        client.describe_batch(["a"])
    attempts = client.client.meta.config.retries["total_max_attempts"]
    assert len(transport.attempts) == attempts == 4  # BOTO_CONFIG: 3 retries
    assert limiter.events == ["acquire", "throttle"] * attempts


def test_the_budget_paces_describe_calls_at_its_rate():
    """A budget of 10/s with a burst of 20: 100 calls (10,000 tasks) take 8 s, not 1."""
    from airflow_fargate.rate_limit import AdaptiveRateLimiter, describe_burst

    now = [0.0]
    limiter = AdaptiveRateLimiter(10, describe_burst(10), clock=lambda: now[0])
    for _ in range(100):
        limiter.acquire(sleep=lambda seconds: now.__setitem__(0, now[0] + seconds))
    assert now[0] == pytest.approx(8.0)


def test_the_sweeps_own_pace_runs_before_its_tagged_describe():
    """The sweep gives up at shutdown through its pace: a pace that raises means no call at all."""
    transport = EcsTransport()
    client = ecs_client(RecordingLimiter(), transport)

    def abandoned():
        raise RuntimeError("shutting down")

    with pytest.raises(RuntimeError, match="shutting down"):
        client.describe_with_tags(["a"], pace=abandoned)
    assert transport.attempts == []


def test_rows_are_read_often_when_cheap_and_never_more_than_a_small_share_of_the_time():
    from airflow_fargate.poller import ROWS_MIN_SECONDS, ROWS_SHARE, rows_interval

    assert rows_interval(0.001) == ROWS_MIN_SECONDS  # 16 tries: five reads a second at most
    assert rows_interval(0.025) == pytest.approx(0.025 / ROWS_SHARE)  # 2,000 tries: under a second apart
    assert 0.025 / rows_interval(0.025) <= ROWS_SHARE
