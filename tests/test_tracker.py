"""ECS state -> Airflow state mapping, relaunch vs fail, clientToken stability (pure logic)."""

from __future__ import annotations

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_fargate.ecs_types import ContainerState, EcsTaskState
from airflow_fargate.tracker import Outcome, TrackedTask, Tracker, classify, client_token

KEY = TaskInstanceKey("dag", "task", "run", 1, -1)
ARN = "arn:aws:ecs:us-east-1:123456789012:task/c/abc"


def stopped(*containers: tuple[str, int | None, str | None], stop_code="EssentialContainerExited", reason="done"):
    return EcsTaskState(
        arn=ARN,
        last_status="STOPPED",
        stop_code=stop_code,
        stopped_reason=reason,
        containers=tuple(ContainerState(name=n, exit_code=code, reason=r) for n, code, r in containers),
    )


@pytest.mark.parametrize("status", ["PROVISIONING", "PENDING", "ACTIVATING"])
def test_waiting_statuses_are_queued(status):
    assert classify(EcsTaskState(ARN, status)).outcome is Outcome.QUEUED


@pytest.mark.parametrize("status", ["RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING"])
def test_started_statuses_are_running(status):
    assert classify(EcsTaskState(ARN, status)).outcome is Outcome.RUNNING


def test_all_essential_exit_zero_is_success():
    state = stopped(("base", 0, None), ("sidecar", 1, None))
    assert classify(state, frozenset({"base"})).outcome is Outcome.SUCCESS
    # with every container essential, the sidecar's exit 1 fails the task
    assert classify(state, None).outcome is Outcome.FAILED


def test_non_zero_exit_is_failed_with_code_and_reason():
    verdict = classify(stopped(("base", 2, "boom")), frozenset({"base"}))
    assert verdict.outcome is Outcome.FAILED
    assert "base exit 2 (boom)" in verdict.reason
    assert "stopCode=EssentialContainerExited" in verdict.reason
    assert ARN in verdict.reason


def test_out_of_memory_is_named():
    verdict = classify(stopped(("base", 137, "OutOfMemoryError: Container killed due to memory usage")))
    assert verdict.outcome is Outcome.FAILED
    assert verdict.reason.startswith("OutOfMemoryError")


@pytest.mark.parametrize("code", ["SpotInterruption", "TerminationNotice", "TaskFailedToStart"])
def test_platform_stops_relaunch(code):
    verdict = classify(stopped(("base", None, None), stop_code=code, reason="Your Spot Task was interrupted."))
    assert verdict.outcome is Outcome.RELAUNCH


def test_spot_interruption_after_the_command_finished_is_success():
    assert classify(stopped(("base", 0, None), stop_code="SpotInterruption")).outcome is Outcome.SUCCESS


@pytest.mark.parametrize("code", [143, 137])
def test_spot_interruption_killing_the_container_relaunches(code):
    assert classify(stopped(("base", code, None), stop_code="SpotInterruption")).outcome is Outcome.RELAUNCH


def test_permanent_start_failure_is_not_relaunched():
    state = stopped(
        ("base", None, "CannotPullContainerError: manifest unknown: tag 9.9 not found"),
        stop_code="TaskFailedToStart",
        reason="CannotPullContainerError",
    )
    verdict = classify(state)
    assert verdict.outcome is Outcome.FAILED
    assert "a relaunch would fail the same way" in verdict.reason


def test_transient_pull_failure_is_relaunched():
    state = stopped(
        ("base", None, "CannotPullContainerError: dial tcp: i/o timeout"),
        stop_code="TaskFailedToStart",
        reason="ResourceInitializationError: unable to pull secrets or registry auth",
    )
    assert classify(state).outcome is Outcome.RELAUNCH


def test_user_stop_without_exit_code_is_failed():
    verdict = classify(stopped(("base", None, None), stop_code="UserInitiated", reason="Stopped by operator"))
    assert verdict.outcome is Outcome.FAILED
    assert "no exit code" in verdict.reason


def test_client_token_is_scoped_to_one_launch_of_one_queueing():
    assert client_token("q1", 1) == client_token("q1", 1)
    assert len(client_token("q1", 1)) == 64
    assert len({client_token("q1", 1), client_token("q1", 2), client_token("q2", 1)}) == 3


def test_every_queueing_of_the_same_try_has_its_own_token():
    first, again = TrackedTask(key=KEY, command=["x"]), TrackedTask(key=KEY, command=["x"])
    assert first.queueing_id != again.queueing_id
    tokens = set()
    for task in (first, again):
        tracker = Tracker(max_launches=3)
        tracker.add(task)
        tokens.add(tracker.client_token(KEY))
    assert len(tokens) == 2


def new_tracker(max_launches=3) -> Tracker:
    tracker = Tracker(max_launches=max_launches, missing_grace_seconds=30)
    tracker.add(TrackedTask(key=KEY, command=["x"]))
    return tracker


def test_unknown_outcome_keeps_the_token_known_failure_changes_it():
    tracker = new_tracker(max_launches=5)
    first = tracker.client_token(KEY)
    tracker.record_launch_failure(KEY, "ReadTimeout", retry_at=1.0, outcome_unknown=True)
    assert tracker.client_token(KEY) == first
    tracker.record_launch_failure(KEY, "RESOURCE:MEMORY", retry_at=2.0)
    assert tracker.client_token(KEY) != first


def test_launch_failures_back_off_then_fail_at_limit():
    tracker = new_tracker(max_launches=3)
    assert tracker.record_launch_failure(KEY, "capacity", retry_at=10.0).outcome is Outcome.QUEUED
    assert tracker.due_for_launch(now=5.0, limit=10) == []
    assert [t.key for t in tracker.due_for_launch(now=10.0, limit=10)] == [KEY]
    assert tracker.record_launch_failure(KEY, "capacity", retry_at=20.0).outcome is Outcome.QUEUED
    verdict = tracker.record_launch_failure(KEY, "AGENT", retry_at=30.0)
    assert verdict.outcome is Outcome.FAILED
    assert "3 attempts" in verdict.reason and "AGENT" in verdict.reason


def test_non_retryable_launch_failure_fails_at_once():
    tracker = new_tracker()
    verdict = tracker.record_launch_failure(KEY, "ClusterNotFoundException: Cluster not found.", retry_at=None)
    assert verdict.outcome is Outcome.FAILED
    assert "ClusterNotFoundException" in verdict.reason


def test_relaunch_counts_against_the_limit_and_gets_a_new_token():
    tracker = new_tracker(max_launches=2)
    tracker.record_launch(KEY, ARN, now=0.0)
    token = tracker.client_token(KEY)
    spot = stopped(("base", None, None), stop_code="SpotInterruption")
    assert tracker.observe(spot).outcome is Outcome.RELAUNCH
    tracker.prepare_relaunch(KEY, retry_at=1.0)
    assert tracker.active_arns() == []
    assert tracker.client_token(KEY) != token
    tracker.record_launch(KEY, ARN + "2", now=2.0)
    verdict = tracker.observe(EcsTaskState(**{**spot.__dict__, "arn": ARN + "2"}))
    assert verdict.outcome is Outcome.FAILED
    assert "max_run_task_attempts" in verdict.reason


def test_missing_task_gets_a_grace_period_then_relaunches():
    tracker = new_tracker()
    tracker.record_launch(KEY, ARN, now=0.0)
    assert tracker.observe_missing(ARN, "MISSING", now=100.0).outcome is Outcome.QUEUED
    assert tracker.observe_missing(ARN, "MISSING", now=120.0).outcome is Outcome.QUEUED
    verdict = tracker.observe_missing(ARN, "MISSING", now=131.0)
    assert verdict.outcome is Outcome.RELAUNCH
    assert "not found by describe_tasks for 31s" in verdict.reason


def test_seen_again_resets_missing_clock():
    tracker = new_tracker()
    tracker.record_launch(KEY, ARN, now=0.0)
    tracker.observe_missing(ARN, "MISSING", now=0.0)
    tracker.observe(EcsTaskState(ARN, "RUNNING"))
    assert tracker.observe_missing(ARN, "MISSING", now=40.0).outcome is Outcome.QUEUED


def test_task_stuck_pending_is_stopped_and_relaunched_then_failed_at_the_limit():
    tracker = Tracker(max_launches=2, start_timeout_seconds=100)
    tracker.add(TrackedTask(key=KEY, command=["x"]))
    tracker.record_launch(KEY, ARN, now=0.0)
    pending = EcsTaskState(ARN, "PENDING")
    assert tracker.observe(pending, now=99.0).outcome is Outcome.QUEUED
    verdict = tracker.observe(pending, now=101.0)
    assert (verdict.outcome, verdict.stop_first) == (Outcome.RELAUNCH, True)
    assert "still PENDING 101s after launch (task_start_timeout=100s)" in verdict.reason
    tracker.prepare_relaunch(KEY, retry_at=101.0)
    tracker.record_launch(KEY, ARN + "2", now=200.0)
    verdict = tracker.observe(EcsTaskState(ARN + "2", "PROVISIONING"), now=301.0)
    assert (verdict.outcome, verdict.stop_first) == (Outcome.FAILED, True)
    assert tracker.observe(EcsTaskState(ARN + "2", "RUNNING"), now=999.0).outcome is Outcome.RUNNING


def test_credential_failures_do_not_cost_attempts():
    tracker = new_tracker(max_launches=2)
    for _ in range(5):
        assert (
            tracker.record_launch_failure(KEY, "ExpiredTokenException", retry_at=1.0, counts=False).outcome
            is Outcome.QUEUED
        )
    assert tracker.get(KEY).launches == 0


def test_due_tasks_are_the_oldest_waiting_ones_up_to_the_limit_and_the_waiting_count_is_exact():
    """Each heartbeat takes only as many due tasks as the launcher has room for (from 10,000
    queued, about twenty), and counts the waiting ones for the pending gauge without visiting them."""
    tracker = Tracker(max_launches=3)
    keys = [KEY._replace(task_id=f"t{i}") for i in range(8)]
    for key in keys:
        tracker.add(TrackedTask(key=key, command=["x"]))
    tracker.record_launch(keys[0], "arn-0", now=0.0)  # launched
    tracker.get(keys[1]).launching = True  # on the wire
    tracker.record_launch_failure(keys[2], "capacity", retry_at=50.0)  # backing off
    tracker.add(TrackedTask(key=keys[3], command=["x"], arn="arn-3"))  # adopted
    assert [t.key for t in tracker.due_for_launch(now=10.0, limit=2)] == keys[4:6]
    assert [t.key for t in tracker.due_for_launch(now=60.0, limit=2)] == [keys[2], keys[4]]
    assert tracker.due_for_launch(now=60.0, limit=0) == []
    assert tracker.waiting_count == len(list(tracker.waiting_for_launch())) == 6


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["add", "adopt", "launch", "relaunch", "retire", "remove"]), st.integers(0, 4)))
)
def test_the_waiting_count_is_the_number_of_tasks_without_an_ecs_task_whatever_happens(steps):
    tracker = Tracker(max_launches=3)
    arns = iter(range(10**6))
    for action, i in steps:
        key = KEY._replace(task_id=f"t{i}")
        task = tracker.get(key)
        if action == "add":  # queued (again: it supersedes the key's earlier queueing)
            tracker.add(TrackedTask(key=key, command=["x"]))
        elif action == "adopt":
            tracker.add(TrackedTask(key=key, command=["x"], arn=f"arn-{next(arns)}"))
        elif action == "launch" and task is not None and task.arn is None:
            tracker.record_launch(key, f"arn-{next(arns)}", now=0.0)
        elif action == "relaunch" and task is not None:
            tracker.prepare_relaunch(key, retry_at=0.0)
        elif action == "retire":
            tracker.retire(key, now=0.0)
        elif action == "remove":
            tracker.remove(key)
        assert tracker.waiting_count == len(list(tracker.waiting_for_launch()))
