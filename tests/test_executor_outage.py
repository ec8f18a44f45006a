"""The API's trouble is not the task's: an outage pauses launching (circuit breaker), a launch
whose outcome stays unknown is looked up by its tags before its try fails, and a heartbeat
applies answers that arrive within its settle moment. Against moto ECS."""

from __future__ import annotations

import json
import logging
import time

import pytest
from airflow.utils.state import TaskInstanceState
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError

from airflow_fargate.breaker import OPEN_AFTER_FAILURES
from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.executor import LAUNCH_OUTCOME_DEADLINE_SECONDS
from tests.executor_harness import beat, events, queue
from tests.helpers import make_workload

DOWN = EndpointConnectionError(endpoint_url="https://ecs.us-east-1.amazonaws.com/")


def wait_for(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_an_outage_pauses_launches_fails_nothing_and_one_probe_resumes_them(executor, ecs, monkeypatch):
    real_run_task, real_probe = executor.ecs.run_task, executor.ecs.probe
    api = {"down": True, "run_task_calls": 0, "probes": 0}

    def run_task(kwargs, token):
        api["run_task_calls"] += 1
        if api["down"]:
            raise DOWN
        return real_run_task(kwargs, token)

    def probe():
        api["probes"] += 1
        if api["down"]:
            raise DOWN
        real_probe()

    monkeypatch.setattr(executor.ecs, "run_task", run_task)
    monkeypatch.setattr(executor.ecs, "probe", probe)
    keys = queue(executor, *[make_workload(f"t{i}") for i in range(8)])
    executor.heartbeat()
    wait_for(lambda: executor.breaker.is_open)
    beat(executor)
    calls_when_open = api["run_task_calls"]
    assert calls_when_open >= OPEN_AFTER_FAILURES
    for _ in range(5):  # the outage goes on for many heartbeats and back-offs
        executor._clock.now += 30
        beat(executor)
    wait_for(lambda: api["probes"] >= 1)
    assert api["run_task_calls"] == calls_when_open  # nothing but probes while the API is out
    assert all(executor.tracker.get(key).launches == 0 for key in keys)
    assert not any(state == TaskInstanceState.FAILED for state, _ in events(executor).values())
    api["down"] = False
    executor._clock.now += 10  # the next probe is due
    wait_for(lambda: not executor.breaker.is_open, timeout=30)
    seen: dict = {}
    for _ in range(5):
        executor._clock.now += 30
        beat(executor)
        for key, (state, _) in events(executor).items():
            seen.setdefault(key, []).append(state)
    assert {key: seen[key][0] for key in keys} == dict.fromkeys(keys, TaskInstanceState.RUNNING)
    assert not any(TaskInstanceState.FAILED in states for states in seen.values())
    assert len(ecs.all_task_arns()) == len(keys)  # one ECS task per try, retries included


def test_the_start_and_end_of_an_outage_are_logged_once(executor, ecs, capsys, caplog):
    """The executor logs through Airflow's logging (structlog on Airflow 3: standard output)."""
    caplog.set_level(logging.WARNING)
    executor.breaker.failed("EndpointConnectionError")
    for _ in range(OPEN_AFTER_FAILURES):
        executor.breaker.failed("EndpointConnectionError")
    executor.heartbeat()
    executor.heartbeat()
    executor.breaker.answered()
    executor.heartbeat()
    executor.heartbeat()
    # Airflow 3 logs through structlog (standard output), Airflow 2 through logging (both): one source
    records = "\n".join(record.getMessage() for record in caplog.records)
    text = records if "ECS API outage" in records else capsys.readouterr().out
    assert text.count("ECS API outage (EndpointConnectionError)") == 1
    assert text.count("The ECS API answers again") == 1


def test_a_launch_whose_outcome_stays_unknown_and_started_nothing_fails_with_that_reason(executor, ecs, monkeypatch):
    tokens: list[str] = []

    def run_task(kwargs, token):
        tokens.append(token)
        raise ReadTimeoutError(endpoint_url="x")

    monkeypatch.setattr(executor.ecs, "run_task", run_task)
    (key,) = queue(executor, make_workload())
    for _ in range(12):
        beat(executor)
        executor.breaker.answered()  # other calls answer: only RunTask's outcome is unknown
        executor._clock.now += LAUNCH_OUTCOME_DEADLINE_SECONDS / 4
        if key in (seen := events(executor)):
            break
    state, reason = seen[key]
    assert state == TaskInstanceState.FAILED
    assert "no ECS task of this launch exists" in reason and "ReadTimeoutError" in reason
    # a new clientToken only after a lookup by tags found nothing (a fresh execution token each time)
    assert len(set(tokens)) < len(tokens) and ecs.all_task_arns() == []


def test_a_launch_whose_answer_was_lost_is_found_by_its_tags_and_tracked(executor, ecs, monkeypatch):
    real_run_task = executor.ecs.run_task
    started: list[str] = []

    def run_task(kwargs, token):
        if not started:  # the first call starts the task, its answer is lost
            started.append(real_run_task(kwargs, token).task.arn)
        raise ReadTimeoutError(endpoint_url="x")

    monkeypatch.setattr(executor.ecs, "run_task", run_task)
    (key,) = queue(executor, make_workload())
    for _ in range(12):
        beat(executor)
        executor.breaker.answered()
        executor._clock.now += LAUNCH_OUTCOME_DEADLINE_SECONDS / 4
        if key in (seen := events(executor)):
            break
    assert seen[key] == (TaskInstanceState.RUNNING, started[0])
    assert ecs.all_task_arns() == started  # found, not launched again
    assert executor.tracker.get(key).arn == started[0]


def test_time_the_api_was_out_does_not_count_toward_the_unknown_outcome_deadline(executor, ecs, monkeypatch):
    monkeypatch.setattr(executor.ecs, "run_task", lambda kwargs, token: (_ for _ in ()).throw(DOWN))
    (key,) = queue(executor, make_workload())
    beat(executor)
    task = executor.tracker.get(key)
    assert task.unknown_since is not None and not task.find_next
    for _ in range(OPEN_AFTER_FAILURES):
        executor.breaker.failed("down")
    executor._clock.now += LAUNCH_OUTCOME_DEADLINE_SECONDS * 2  # all of it an outage
    executor.breaker.answered()
    task.accepted_at = executor._clock()  # a token fresh enough: only the deadline is at stake here
    executor._note_unknown_outcome(task, executor._clock())
    assert not task.find_next
    executor._clock.now += LAUNCH_OUTCOME_DEADLINE_SECONDS
    task.accepted_at = executor._clock()
    executor._note_unknown_outcome(task, executor._clock())
    assert task.find_next and not task.refresh_next  # the deadline: found or failed


@pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 3 workloads carry an execution-API token")
def test_a_try_waiting_out_an_outage_is_launched_with_a_fresh_execution_token(executor, ecs, monkeypatch):
    """The token minted when a try was queued lasts task_queued_timeout (600 s): a try that waited
    out a long outage, its RunTask outcome unknown, is looked up by its tags, and (nothing found)
    launched with a new clientToken and a freshly minted token, never with the stale one."""
    from airflow.api_fastapi.auth.tokens import JWTGenerator

    from airflow_fargate.executor import TOKEN_REFRESH_SECONDS

    executor.__dict__["jwt_generator"] = JWTGenerator(secret_key="s" * 64, valid_for=600, audience="test")
    real_run_task = executor.ecs.run_task
    sent: list[tuple[str, str]] = []  # (clientToken, the workload token in the command)

    def run_task(kwargs, token):
        command = kwargs["overrides"]["containerOverrides"][-1]["command"]
        sent.append((token, json.loads(command[-1])["token"]))
        if len(sent) == 1:
            raise ReadTimeoutError(endpoint_url="x")  # the outage began with this call
        return real_run_task(kwargs, token)

    monkeypatch.setattr(executor.ecs, "run_task", run_task)
    (workload,) = [make_workload()]
    original_token = "queued-long-ago"
    workload = workload.model_copy(update={"token": original_token})
    (key,) = queue(executor, workload)
    beat(executor)  # the first call: outcome unknown
    executor._clock.now += TOKEN_REFRESH_SECONDS + 1  # the outage lasted
    executor.breaker.answered()
    for _ in range(6):
        executor._clock.now += 5
        beat(executor)
        if key in (seen := events(executor)):
            break
    assert seen[key][0] == TaskInstanceState.RUNNING
    assert len(sent) == 2 and sent[0][0] != sent[1][0]  # a new clientToken: the first started nothing
    assert sent[0][1] == original_token and sent[1][1] not in ("", original_token)  # a fresh token
    assert len(ecs.all_task_arns()) == 1


def test_requests_held_through_an_outage_go_back_to_the_executor_to_be_decided_again():
    from airflow_fargate.launch_requests import LaunchRequest
    from airflow_fargate.launcher import HOLD_SECONDS, Launcher

    now = [0.0]
    launcher = Launcher(
        lambda kwargs, token: (_ for _ in ()).throw(DOWN),
        probe=lambda: (_ for _ in ()).throw(DOWN),
        clock=lambda: now[0],
    )
    for _ in range(OPEN_AFTER_FAILURES):
        launcher.breaker.failed("down")
    launcher.submit([LaunchRequest(key=i, build=dict, client_token=str(i)) for i in range(3)])
    time.sleep(0.2)
    assert launcher.drain() == [] and launcher.in_flight == 3  # held, nothing sent
    now[0] += HOLD_SECONDS + 1
    with launcher._cond:
        launcher._cond.notify_all()
    returned = wait_for(launcher.drain, timeout=20)
    launcher.shutdown()
    assert sorted(request.key for request, _ in returned) == [0, 1, 2]
    assert all(outcome.outcome_unknown and "held" in outcome.reason for _, outcome in returned)
