"""FargateExecutor against moto's ECS in-process: launch, track, fail, adopt, terminate, revoke."""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.executors.executor_loader import ExecutorLoader
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.utils.state import TaskInstanceState
from botocore.exceptions import ClientError, ReadTimeoutError

from airflow_fargate import metadata_db
from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.errors import FargateConfigError
from airflow_fargate.executor import FargateExecutor
from airflow_fargate.launcher import Launcher
from tests.executor_harness import FakeClock, beat, calls, events, queue, wait_idle
from tests.helpers import CLUSTER, CONTAINER, FAMILY, MotoEcs, command_of, make_workload, minimal_config


def test_loaded_by_the_user_facing_string(monkeypatch, ecs):
    minimal_config(monkeypatch)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "airflow_fargate.FargateExecutor")
    executor = ExecutorLoader.load_executor("airflow_fargate.FargateExecutor")
    assert isinstance(executor, FargateExecutor)
    executor.start()
    assert executor.settings.cluster == CLUSTER


def test_start_fails_on_missing_config(monkeypatch):
    with pytest.raises(FargateConfigError, match=r"missing required configuration.*\[aws_ecs_executor\] cluster"):
        FargateExecutor().start()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"cluster": "nope"}, "cluster 'nope' not found or not ACTIVE"),
        ({"container_name": "worker"}, "has no container named 'worker' (it has: base, log-router)"),
        ({"task_definition": "ghost"}, "task definition 'ghost' not found"),
    ],
)
def test_health_check_fails_fast_with_a_readable_message(monkeypatch, ecs, config, message):
    minimal_config(monkeypatch, check_health_on_startup="True", **config)
    with pytest.raises(FargateConfigError, match="FargateExecutor health check failed") as err:
        FargateExecutor().start()
    assert message in str(err.value)


def test_end_and_terminate_after_a_failed_start_add_nothing_to_its_error(monkeypatch, capfd):
    """The scheduler calls end() in its finally block even when start() raised: the config error
    must stay the one message, with no 'error while waiting for ECS tasks' after it."""
    executor = FargateExecutor()
    with pytest.raises(FargateConfigError):
        executor.start()
    capfd.readouterr()
    executor.end()
    executor.terminate()
    assert capfd.readouterr() == ("", "")


def test_the_tagging_probe_warns_after_the_first_launches(monkeypatch, ecs, capfd):
    """The tagging probe (two round trips, and it can only warn) is neither in start()'s way nor in
    the first launches', and still says what is wrong; start()'s helper threads are gone once end() returns."""
    from botocore.exceptions import ClientError

    minimal_config(monkeypatch, check_health_on_startup="True")
    executor = FargateExecutor()
    denied = ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "TagResource")
    monkeypatch.setattr(executor, "_health_check", lambda settings: None)  # only the probe's fate here
    import airflow_fargate.executor as executor_module
    from airflow_fargate.checks import check_tagging_permission

    class Refusing:
        def describe_clusters(self, **kwargs):
            return {"clusters": [{"clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/tasks"}]}

        def tag_resource(self, **kwargs):
            raise denied

    monkeypatch.setattr(
        executor_module,
        "check_tagging_permission",
        lambda client, cluster: check_tagging_permission(Refusing(), cluster),
    )
    executor.start()
    assert not executor._tagging_probe.started  # not in start(): in the first heartbeat without launches
    executor.sync()
    executor._tagging_probe.join(10)
    assert "FargateExecutor health check: task tagging: ecs:TagResource was refused" in capfd.readouterr().out
    executor.end()
    assert not [t for t in threading.enumerate() if t.name.startswith(("fargate-start", "fargate-health"))]


def test_health_check_can_be_disabled(monkeypatch, ecs):
    minimal_config(monkeypatch, check_health_on_startup="False", cluster="nope")
    FargateExecutor().start()


# ---- launch and track -----------------------------------------------------------------------------


def test_launches_the_workload_command_into_the_container(executor, ecs):
    workload = make_workload(
        "hello",
        executor_config={
            "overrides": {
                "containerOverrides": [{"name": CONTAINER, "environment": [{"name": "GREETING", "value": "hi"}]}]
            }
        },
    )
    (key,) = queue(executor, workload)
    run_calls = calls(executor, "RunTask")
    beat(executor)
    assert len(run_calls) == 1
    sent = run_calls[0]
    override = sent["overrides"]["containerOverrides"][0]
    assert override["name"] == CONTAINER
    assert override["command"] == command_of(workload)
    if AIRFLOW_V3:
        assert override["command"][:4] == [
            "python",
            "-m",
            "airflow.sdk.execution_time.execute_workload",
            "--json-string",
        ]
        assert workload.__class__.model_validate_json(override["command"][4]).ti.task_id == "hello"
    else:
        assert override["command"][:6] == ["airflow", "tasks", "run", "dag", "hello", "run1"]
    assert {"name": "GREETING", "value": "hi"} in override["environment"]
    assert sent["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == ecs.subnets
    assert len(sent["clientToken"]) == 64
    state, arn = events(executor)[key]
    assert state == TaskInstanceState.RUNNING
    assert arn == ecs.all_task_arns()[0]
    assert key in executor.running
    assert key not in executor.queued_tasks


@pytest.mark.parametrize(
    ("exit_codes", "stop_code", "expected"),
    [
        ({"base": 0, "log-router": None}, "EssentialContainerExited", TaskInstanceState.SUCCESS),
        ({"base": 0, "log-router": 1}, "EssentialContainerExited", TaskInstanceState.SUCCESS),  # non-essential
        ({"base": 3, "log-router": 0}, "EssentialContainerExited", TaskInstanceState.FAILED),
    ],
)
def test_final_states(executor, ecs, exit_codes, stop_code, expected):
    (key,) = queue(executor, make_workload())
    beat(executor)
    events(executor)
    (arn,) = ecs.all_task_arns()
    for status in ("PROVISIONING", "PENDING", "RUNNING"):
        ecs.set_state(arn, status)
        beat(executor)
        assert events(executor) == {}
        assert key in executor.running
    ecs.set_state(arn, "STOPPED", exit_codes=exit_codes, stop_code=stop_code)
    beat(executor)
    state, info = events(executor)[key]
    assert state == expected
    assert key not in executor.running
    if expected == TaskInstanceState.FAILED:
        assert "base exit 3" in info
        assert "fargate task failed" in [log.event for log in executor._task_event_logs]
    beat(executor)
    assert events(executor) == {}  # reported once, then forgotten


def test_describe_is_batched_by_100(executor, ecs):
    executor.parallelism = 500
    keys = queue(executor, *[make_workload(f"t{i}") for i in range(250)])
    beat(executor)
    assert len(ecs.all_task_arns()) == 250
    describe_calls = calls(executor, "DescribeTasks")
    beat(executor)
    # The kicked round describes all 250 in calls of 100, 100 and 50. The poller's own timed round
    # may come in between on a slow machine (a heartbeat apart); it batches the same way: calls of
    # 100 (filled up with the stalest), and one of 50 only when all 250 were due.
    sizes = sorted(len(c["tasks"]) for c in describe_calls)
    assert set(sizes) <= {50, 100} and sizes.count(50) >= 1 and sizes.count(100) >= 2, sizes
    assert all(len(set(c["tasks"])) == len(c["tasks"]) for c in describe_calls)
    assert set().union(*(c["tasks"] for c in describe_calls)) == set(ecs.all_task_arns())
    assert all(k in executor.running for k in keys)


def test_invalid_executor_config_fails_only_that_task(executor, ecs):
    good, bad = queue(
        executor,
        make_workload("good"),
        make_workload(
            "bad", executor_config={"overrides": {"containerOverrides": [{"name": CONTAINER, "cpu": "lots"}]}}
        ),
    )
    beat(executor)
    buffer = events(executor)
    assert buffer[good][0] == TaskInstanceState.RUNNING
    state, reason = buffer[bad]
    assert state == TaskInstanceState.FAILED
    assert "Invalid executor_config" in reason and "overrides.containerOverrides[name='base'].cpu" in reason
    assert len(ecs.all_task_arns()) == 1


def test_sync_survives_describe_errors(executor, ecs, monkeypatch, capfd):
    (key,) = queue(executor, make_workload())
    beat(executor)

    def broken(arns):
        raise ClientError({"Error": {"Code": "ServerException", "Message": "down"}}, "DescribeTasks")

    monkeypatch.setattr(executor.ecs, "describe_batch", broken)
    executor.heartbeat()
    executor.poller.kick()  # a describe in the background; it fails there
    wait_idle(executor)
    executor.heartbeat()  # the failure surfaces here, logged, not raised
    assert "describing ECS tasks failed" in capfd.readouterr().out
    assert key in executor.running


def corrupt_describe_answers(executor, corrupt) -> None:
    """Let ``corrupt(parsed)`` rewrite every DescribeTasks answer the executor receives."""

    def hook(parsed, **_):
        corrupt(parsed)

    executor.ecs.client.meta.events.register("after-call.ecs.DescribeTasks", hook)


def test_a_malformed_describe_entry_costs_only_that_task(executor, ecs, caplog):
    keys = queue(executor, *[make_workload(f"t{i}") for i in range(4)])
    beat(executor)
    arns = {key: arn for key, (_, arn) in events(executor).items()}
    for arn in arns.values():
        ecs.set_state(arn, "STOPPED", exit_codes={"base": 0})
    bad_code, no_arn = arns[keys[0]], arns[keys[1]]

    def corrupt(parsed):
        for entry in parsed["tasks"]:
            if entry["taskArn"] == bad_code:
                entry["containers"][0]["exitCode"] = "zero"
            elif entry["taskArn"] == no_arn:
                del entry["taskArn"]

    corrupt_describe_answers(executor, corrupt)
    beat(executor)
    beat(executor)
    # The two readable tasks are reported; the two unreadable ones are neither judged nor missing.
    assert {k: s for k, (s, _) in events(executor).items()} == {k: TaskInstanceState.SUCCESS for k in keys[2:]}
    assert {keys[0], keys[1]} <= executor.running and len(ecs.all_task_arns()) == 4  # nothing relaunched
    warnings = [r.getMessage() for r in caplog.records if "malformed describe_tasks entry" in r.getMessage()]
    assert len(warnings) == 2  # once each over two polls
    assert any("exitCode is a str" in w for w in warnings) and any("no taskArn" in w for w in warnings)


def test_task_definition_lookups_are_off_the_scheduler_thread_and_failures_cached(executor, ecs, monkeypatch):
    """Stopped tasks need their definition's essential containers; a definition that cannot be
    read (here a read timeout) costs one call, not one per task per sync, and none on the
    scheduler thread; its containers are then all judged essential."""
    executor.parallelism = 100
    keys = queue(executor, *[make_workload(f"t{i}") for i in range(30)])
    beat(executor)
    callers: list[str] = []
    real = executor.ecs.client.describe_task_definition

    def timing_out(**kwargs):
        callers.append(threading.current_thread().name)
        raise ReadTimeoutError(endpoint_url="https://ecs.us-east-1.amazonaws.com")

    monkeypatch.setattr(executor.ecs.client, "describe_task_definition", timing_out)
    executor.ecs._definition_cache.clear()
    for n, arn in enumerate(ecs.all_task_arns()):  # the sidecar exits 1: only essential if unreadable
        ecs.set_state(arn, "STOPPED", exit_codes={"base": 0, "log-router": 1 if n % 2 else 0})
    for _ in range(3):
        beat(executor)
    assert len(callers) == 1 and callers[0] != threading.main_thread().name
    buffer = events(executor)
    assert set(buffer) == set(keys), [str(k.task_id) for k in keys if k not in buffer]
    states = [state for state, _ in (buffer[k] for k in keys)]
    assert states.count(TaskInstanceState.FAILED) == 15  # the sidecar's exit counted: all essential
    monkeypatch.setattr(executor.ecs.client, "describe_task_definition", real)


# ---- launch retries and clientToken ------------------------------------------------------------------


def failing_run_task(executor, monkeypatch, errors: list[Exception]):
    real = executor.ecs.run_task
    tokens: list[str] = []

    def run_task(kwargs, client_token):
        tokens.append(client_token)
        if errors:
            raise errors.pop(0)
        return real(kwargs, client_token)

    monkeypatch.setattr(executor.ecs, "run_task", run_task)
    return tokens


def test_transient_failures_back_off_and_keep_the_token_when_outcome_unknown(executor, ecs, monkeypatch):
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "RunTask")
    tokens = failing_run_task(executor, monkeypatch, [ReadTimeoutError(endpoint_url="x"), throttled])
    (key,) = queue(executor, make_workload())
    beat(executor)  # read timeout: ECS may have started it
    assert events(executor) == {}
    assert executor.tracker.get(key).launches == 0  # the API's trouble, not one of the try's attempts
    beat(executor)  # still backing off: no call
    assert len(tokens) == 1
    executor._clock.now += 10
    beat(executor)  # throttled, retried by the launcher itself, then launched
    assert tokens == [tokens[0]] * 3  # same clientToken after an unknown outcome and a throttle
    assert events(executor)[key][0] == TaskInstanceState.RUNNING
    assert executor.tracker.get(key).launches == 1  # neither cost a launch attempt
    assert len(ecs.all_task_arns()) == 1


def test_capacity_failure_changes_the_token(executor, ecs, monkeypatch):
    from airflow_fargate.ecs_types import LaunchFailure, LaunchResult

    real = executor.ecs.run_task
    tokens: list[str] = []

    def run_task(kwargs, client_token):
        tokens.append(client_token)
        if len(tokens) == 1:  # ECS answered: nothing started, so the next call needs a new token
            return LaunchResult(None, (LaunchFailure("RESOURCE:MEMORY"),))
        return real(kwargs, client_token)

    monkeypatch.setattr(executor.ecs, "run_task", run_task)
    (key,) = queue(executor, make_workload())
    beat(executor)
    executor._clock.now += 10
    beat(executor)
    assert len(tokens) == 2
    assert tokens[0] != tokens[1]
    assert events(executor)[key][0] == TaskInstanceState.RUNNING


def test_launch_fails_after_max_run_task_attempts(executor, ecs, monkeypatch):
    """Only ECS's own answers count: three RunTask answers of failures[] (nothing started)."""
    from airflow_fargate.ecs_types import LaunchFailure, LaunchResult

    tokens: list[str] = []

    def run_task(kwargs, client_token):
        tokens.append(client_token)
        return LaunchResult(None, (LaunchFailure("Capacity is unavailable at this time"),))

    monkeypatch.setattr(executor.ecs, "run_task", run_task)
    (key,) = queue(executor, make_workload())
    for _ in range(3):
        beat(executor)
        executor._clock.now += 1000
    state, reason = events(executor)[key]
    assert state == TaskInstanceState.FAILED
    assert "3 attempts" in reason and "Capacity is unavailable" in reason
    assert len(tokens) == 3 and len(set(tokens)) == 3  # nothing started: each attempt a new token
    assert key not in executor.running


def test_unknown_outcomes_never_cost_an_attempt_and_keep_the_token(executor, ecs, monkeypatch):
    """5xx and timeouts, many more than max_run_task_attempts (3): the try is launched once the
    API answers, with the token of the first call, and only one ECS task exists."""
    unknown = [
        ClientError({"Error": {"Code": "ServerException", "Message": "Service unavailable"}}, "RunTask"),
        ReadTimeoutError(endpoint_url="x"),
    ] * 4
    tokens = failing_run_task(executor, monkeypatch, list(unknown))
    (key,) = queue(executor, make_workload())
    for _ in range(9):
        beat(executor)
        executor._clock.now += 10  # past every back-off; the token is under 2 minutes old (no refresh)
        executor.breaker.answered()  # other calls answer: the API is slow for RunTask only
    assert events(executor)[key][0] == TaskInstanceState.RUNNING
    assert len(tokens) == 9 and set(tokens) == {tokens[0]}
    assert executor.tracker.get(key).launches == 1
    assert len(ecs.all_task_arns()) == 1


def test_non_retryable_launch_error_fails_at_once(executor, ecs, monkeypatch):
    denied = ClientError(
        {"Error": {"Code": "AccessDeniedException", "Message": "not authorized to perform: ecs:RunTask"}}, "RunTask"
    )
    failing_run_task(executor, monkeypatch, [denied])
    (key,) = queue(executor, make_workload())
    beat(executor)
    state, reason = events(executor)[key]
    assert state == TaskInstanceState.FAILED
    assert "not authorized to perform: ecs:RunTask" in reason


def test_each_queueing_of_a_try_gets_its_own_token_and_its_own_container(executor, ecs):
    """A reschedule poke, a deferral resume or a cleared try queues the SAME try number again: each
    queueing must start a new container, not get the first (stopped) one back from ECS."""
    seen = calls(executor, "RunTask")
    (key,) = queue(executor, make_workload("sensor", try_number=1))
    beat(executor)
    first_arn = events(executor)[key][1]
    ecs.set_state(first_arn, "STOPPED", exit_codes={CONTAINER: 0})  # the poke ended: up_for_reschedule
    beat(executor)
    assert events(executor)[key][0] == TaskInstanceState.SUCCESS
    queue(executor, make_workload("sensor", try_number=1))  # the next poke: same key, same try
    beat(executor)
    state, second_arn = events(executor)[key]
    assert state == TaskInstanceState.RUNNING
    assert second_arn != first_arn
    assert len(ecs.all_task_arns()) == 2
    tokens = [c["clientToken"] for c in seen]
    assert len(tokens) == 2 and tokens[0] != tokens[1]


def test_a_conflicting_token_is_retried_with_a_new_one_and_logged(executor, ecs, monkeypatch, capfd):
    conflict = ClientError(
        {"Error": {"Code": "ConflictException", "Message": "The clientToken was used with other parameters"}},
        "RunTask",
    )
    tokens = failing_run_task(executor, monkeypatch, [conflict])
    (key,) = queue(executor, make_workload())
    beat(executor)
    assert events(executor) == {}  # not failed
    executor._clock.now += 1000
    beat(executor)
    assert events(executor)[key][0] == TaskInstanceState.RUNNING
    assert len(tokens) == 2 and tokens[0] != tokens[1]
    assert "launching again with a new clientToken" in capfd.readouterr().out


def test_retries_under_one_token_send_the_same_kwargs(executor, ecs, monkeypatch):
    """ECS answers ConflictException to one token with other parameters: kwargs are built once per token."""
    sent: list[dict[str, Any]] = []
    real = executor.ecs.run_task
    builds = iter(range(100))

    def run_task(kwargs, client_token):
        sent.append(kwargs)
        if len(sent) == 1:
            raise ReadTimeoutError(endpoint_url="x")
        return real(kwargs, client_token)

    monkeypatch.setattr(executor.ecs, "run_task", run_task)
    original = executor.kwargs_builder.build
    monkeypatch.setattr(
        executor.kwargs_builder,
        "build",
        lambda command, config, tags, queue: {
            **original(command, config, tags, queue),
            "referenceId": str(next(builds)),
        },
    )
    (key,) = queue(executor, make_workload())
    beat(executor)
    executor._clock.now += 10  # past the back-off, well within the unknown-outcome deadline
    beat(executor)
    assert events(executor)[key][0] == TaskInstanceState.RUNNING
    assert len(sent) == 2 and sent[0] is sent[1]


def test_executor_config_count_fails_only_that_task(executor, ecs):
    bad, good = make_workload("bad", executor_config={"count": 2}), make_workload("good")
    bad_key, good_key = queue(executor, bad, good)
    beat(executor)
    found = events(executor)
    assert found[bad_key][0] == TaskInstanceState.FAILED
    assert "executor_config sets count=2" in found[bad_key][1]
    assert found[good_key][0] == TaskInstanceState.RUNNING
    assert len(ecs.all_task_arns()) == 1


def test_extra_tasks_in_a_run_task_answer_are_stopped(executor, ecs, monkeypatch):
    real = executor.ecs.run_task

    def run_task(kwargs, client_token):  # an ECS that started two tasks anyway
        first = real(kwargs, client_token)
        second = real(kwargs, client_token + "x")
        return type(first)(first.task, first.failures, (second.task.arn,))

    monkeypatch.setattr(executor.ecs, "run_task", run_task)
    (key,) = queue(executor, make_workload())
    beat(executor)
    arn = events(executor)[key][1]
    (extra,) = [a for a in ecs.all_task_arns() if a != arn]
    assert ecs.task(extra).desired_status == "STOPPED"
    assert executor.tracker.active_arns() == [arn]


def test_adoption_keeps_tries_this_executor_already_runs(executor, ecs):
    (key,) = queue(executor, make_workload())
    beat(executor)
    arn = events(executor)[key][1]
    own = SimpleNamespace(key=key, external_executor_id=None, executor_config=None, queue="default")
    stranger = SimpleNamespace(
        key=key.with_try_number(5), external_executor_id=None, executor_config=None, queue="default"
    )
    assert executor.try_adopt_task_instances([own, stranger]) == [stranger]
    assert executor.tracker.get(key).arn == arn
    assert len(ecs.all_task_arns()) == 1


def launch_then_interrupt(executor: FargateExecutor, ecs: MotoEcs) -> tuple[TaskInstanceKey, str]:
    """Launch one task, Spot-interrupt it, and let the executor see that."""
    (key,) = queue(executor, make_workload())
    beat(executor)
    events(executor)
    (arn,) = ecs.all_task_arns()
    ecs.set_state(arn, "STOPPED", stop_code="SpotInterruption", stopped_reason="Your Spot Task was interrupted.")
    beat(executor)
    return key, arn


def test_spot_interruption_relaunches_the_same_try(executor, ecs, monkeypatch):
    requeued: list[TaskInstanceKey] = []

    def requeue(key):
        requeued.append(key)  # returning None means "go ahead and relaunch"

    monkeypatch.setattr(executor, "_requeue_try", requeue)
    key, first = launch_then_interrupt(executor, ecs)
    assert events(executor) == {}
    executor._clock.now += 1000
    beat(executor)
    (second,) = set(ecs.all_task_arns()) - {first}
    assert events(executor)[key] == (TaskInstanceState.RUNNING, second)
    ecs.set_state(second, "STOPPED", exit_codes={"base": 0})
    beat(executor)
    assert events(executor)[key][0] == TaskInstanceState.SUCCESS
    assert requeued == [key]


def test_no_relaunch_when_the_try_already_ended(executor, ecs, monkeypatch):
    monkeypatch.setattr(executor, "_requeue_try", lambda key: "task instance is failed")
    key, arn = launch_then_interrupt(executor, ecs)
    state, reason = events(executor)[key]
    assert state == TaskInstanceState.FAILED
    assert "not relaunched: task instance is failed" in reason
    assert ecs.all_task_arns() == [arn]


def test_requeue_without_a_task_instance_row_refuses(airflow_db):
    from airflow_fargate.compat import requeue_try_for_relaunch

    assert requeue_try_for_relaunch(TaskInstanceKey("nodag", "t", "r", 1, -1)) == "task instance try not found"


# ---- adoption, revoke, terminate, end ----------------------------------------------------------------


def test_adopts_tasks_by_external_executor_id(executor, ecs):
    keys = queue(executor, make_workload("a"), make_workload("b"))
    beat(executor)
    arns = {key: arn for key, (_, arn) in events(executor).items()}
    # the scheduler died; a new one gets the TIs from the DB
    new = FargateExecutor()
    new._clock = FakeClock()
    new.start()  # the scheduler starts its executor before offering it tasks to adopt
    tis = [SimpleNamespace(key=k, external_executor_id=arns[k], executor_config=None, queue="default") for k in keys]
    stranger = SimpleNamespace(
        key=TaskInstanceKey("d", "c", "r", 1, -1), external_executor_id=None, executor_config=None, queue="q"
    )
    gone = SimpleNamespace(
        key=TaskInstanceKey("d", "gone", "r", 1, -1),
        external_executor_id=f"arn:aws:ecs:us-east-1:123456789012:task/{CLUSTER}/0000",
        executor_config=None,
        queue="q",
    )
    not_adopted = new.try_adopt_task_instances([*tis, stranger, gone])
    assert {ti.key for ti in not_adopted} == {stranger.key, gone.key}
    assert set(keys) <= new.running
    ecs.set_state(arns[keys[0]], "STOPPED", exit_codes={"base": 0})
    ecs.set_state(arns[keys[1]], "RUNNING")
    beat(new)
    assert events(new) == {keys[0]: (TaskInstanceState.SUCCESS, arns[keys[0]])}
    assert len(ecs.all_task_arns()) == 2  # nothing relaunched


def test_revoke_stops_the_task_and_forgets_it(executor, ecs):
    (key,) = queue(executor, make_workload())
    beat(executor)
    events(executor)
    (arn,) = ecs.all_task_arns()
    ecs.task(arn)
    executor.revoke_task(ti=SimpleNamespace(key=key))
    assert key not in executor.running
    assert ecs.task(arn).last_status == "STOPPED"
    assert "Revoked by Airflow" in ecs.task(arn).stopped_reason
    beat(executor)
    assert events(executor) == {}  # revoke adds no event
    executor.revoke_task(ti=SimpleNamespace(key=key))  # twice is harmless


def test_terminate_stops_everything_with_a_reason(executor, ecs):
    keys = queue(executor, make_workload("a"), make_workload("b"))
    beat(executor)
    events(executor)
    for arn in ecs.all_task_arns():
        ecs.task(arn)  # freeze: moto would otherwise report exit code 0
    executor.terminate()
    for arn in ecs.all_task_arns():
        assert ecs.task(arn).last_status == "STOPPED"
        assert "SIGTERM" in ecs.task(arn).stopped_reason
    assert {k: s for k, (s, _) in events(executor).items()} == {k: TaskInstanceState.FAILED for k in keys}


def test_no_executor_thread_outlives_end(monkeypatch, ecs):
    """Launch workers, the describe poller, the describe pool (over 100 ARNs) and the failure
    output fetchers are all joined by end()."""
    before = set(threading.enumerate())  # other tests' executors may still have theirs
    minimal_config(monkeypatch, subnets=",".join(ecs.subnets), security_groups=ecs.security_group)
    executor = FargateExecutor()
    executor.start()
    keys = queue(executor, *[make_workload(f"t{i}") for i in range(3)])
    beat(executor)
    arns = ecs.all_task_arns()
    executor.ecs.describe_tasks([*arns, *(f"{arns[0]}-{i}" for i in range(150))])  # two batches: pool threads
    ecs.set_state(arns[0], "STOPPED", exit_codes={"base": 1})  # a failure: its output is fetched
    for arn in arns[1:]:
        ecs.set_state(arn, "STOPPED", exit_codes={"base": 0})
    beat(executor)
    assert len(events(executor)) == len(keys)
    executor.end(heartbeat_interval=0.01)
    assert [t.name for t in set(threading.enumerate()) - before if t.name.startswith("fargate-")] == []


def test_end_leaves_adoptable_tasks_running_and_stops_unsaved_ones(executor, ecs, capfd):
    """Scheduler SIGTERM: tasks whose ARN the scheduler saved keep running for the next scheduler;
    one whose RUNNING event it never fetched (ARN not saved, so never adoptable) is stopped."""
    (saved,) = queue(executor, make_workload("saved"))
    beat(executor)
    events(executor)  # the scheduler fetched the RUNNING event: external_executor_id is saved
    (unsaved,) = queue(executor, make_workload("unsaved"))
    beat(executor)
    arns = {k: executor.tracker.get(k).arn for k in (saved, unsaved)}
    for arn in arns.values():
        ecs.set_state(arn, "RUNNING")
    executor.end()
    assert ecs.task(arns[saved]).last_status == "RUNNING"
    assert ecs.task(arns[unsaved]).last_status == "STOPPED"
    assert "before it saved this task's ARN" in ecs.task(arns[unsaved]).stopped_reason
    out = capfd.readouterr().out
    assert "1 ECS task(s) keep running for the next scheduler to adopt" in out
    assert "1 stopped because the scheduler had not saved their ARN yet" in out


def test_family_is_registered(ecs):
    assert ecs.client.describe_task_definition(taskDefinition=FAMILY)["taskDefinition"]["family"] == FAMILY


# ---- launches off the heartbeat thread ------------------------------------------------------------


def blocking_run_task(executor, monkeypatch, on_wire: threading.Semaphore | None = None):
    """run_task that waits until released: a launch 'on the wire' for as long as the test wants
    (``on_wire`` is released as each call gets there)."""
    release = threading.Event()
    real = executor.ecs.run_task

    def run_task(kwargs, client_token):
        if on_wire is not None:
            on_wire.release()
        assert release.wait(30)
        return real(kwargs, client_token)

    monkeypatch.setattr(executor.ecs, "run_task", run_task)
    return release


def test_heartbeat_never_waits_for_run_task(executor, ecs, monkeypatch):
    release = blocking_run_task(executor, monkeypatch)
    keys = queue(executor, *[make_workload(f"t{i}") for i in range(5)])
    executor.heartbeat()  # returns although every run_task call is still blocked
    executor.heartbeat()
    assert executor.launcher.in_flight == 5
    assert events(executor) == {}
    assert all(executor.tracker.get(k).launching for k in keys)
    release.set()
    beat(executor)
    assert {k: s for k, (s, _) in events(executor).items()} == {k: TaskInstanceState.RUNNING for k in keys}
    assert len(ecs.all_task_arns()) == 5  # launched once each, although heartbeats kept coming


def test_a_heartbeat_hands_the_launcher_only_its_room_and_later_ones_the_rest(monkeypatch, ecs):
    """10,000 tasks queued in one heartbeat must not cost that heartbeat 10,000 launch requests:
    only what the bucket can launch soon is handed over, oldest first, and each task is launched
    once when its turn comes."""
    import airflow_fargate.launcher

    monkeypatch.setattr(airflow_fargate.launcher, "LOOKAHEAD_SECONDS", 0.0)  # room = the burst
    minimal_config(monkeypatch, subnets=",".join(ecs.subnets), security_groups=ecs.security_group, run_task_burst="3")
    executor = FargateExecutor()
    executor._clock = FakeClock()
    executor.start()
    release = blocking_run_task(executor, monkeypatch)
    keys = queue(executor, *[make_workload(f"t{i}") for i in range(8)])
    executor.heartbeat()
    executor.heartbeat()
    assert executor.launcher.in_flight == 3
    assert [k for k in keys if executor.tracker.get(k).launching] == keys[:3]
    assert set(keys) <= executor.running  # every task is the executor's, launched or not
    release.set()
    reported: dict = {}
    for _ in range(4):
        beat(executor)
        reported.update(events(executor))  # RUNNING with the ARN, then (moto) SUCCESS
    assert set(reported) == set(keys)
    assert len(ecs.all_task_arns()) == 8  # once each
    executor.end()


def test_end_finishes_in_flight_launches_and_stops_what_cannot_be_adopted(executor, ecs, monkeypatch):
    release = blocking_run_task(executor, monkeypatch)
    (key,) = queue(executor, make_workload())
    executor.heartbeat()
    threading.Timer(0.3, release.set).start()
    executor.end()
    (arn,) = ecs.all_task_arns()  # the call on the wire completed...
    assert ecs.task(arn).last_status == "STOPPED"  # ...and, its ARN never saved, was stopped
    assert events(executor)[key] == (TaskInstanceState.RUNNING, arn)


def test_terminate_cancels_queued_launches_and_stops_launched_ones(executor, ecs, monkeypatch):
    on_wire = threading.Semaphore(0)
    release = blocking_run_task(executor, monkeypatch, on_wire)
    executor.launcher.shutdown()
    executor.launcher = Launcher(executor._run_task, max_workers=1)  # one call on the wire, the rest queued
    keys = queue(executor, *[make_workload(f"t{i}") for i in range(3)])
    executor.heartbeat()
    # the worker has taken its request and is in run_task (in_flight counts requests no worker
    # has taken yet too: on a busy machine terminate() could come before the worker runs)
    assert on_wire.acquire(timeout=30)
    assert executor.launcher.in_flight == 3
    threading.Timer(0.3, release.set).start()
    executor.terminate()
    (arn,) = ecs.all_task_arns()  # only the call already on the wire created a task...
    assert ecs.task(arn).last_status == "STOPPED"  # ...and it was stopped
    assert "SIGTERM" in ecs.task(arn).stopped_reason
    buffer = events(executor)
    cancelled = [k for k in keys if "before the task was launched" in str(buffer[k][1])]
    assert len(cancelled) == 2
    assert {buffer[k][0] for k in cancelled} == {TaskInstanceState.FAILED}


def test_revoke_during_launch_stops_the_task_when_it_appears(executor, ecs, monkeypatch):
    release = blocking_run_task(executor, monkeypatch)
    (key,) = queue(executor, make_workload())
    executor.heartbeat()
    executor.revoke_task(ti=SimpleNamespace(key=key))
    release.set()
    beat(executor)
    (arn,) = ecs.all_task_arns()
    assert ecs.task(arn).last_status == "STOPPED"
    assert "revoked or requeued" in ecs.task(arn).stopped_reason
    assert events(executor) == {}


def test_a_try_queued_again_before_its_container_exit_was_seen(executor, ecs):
    """The try reported up_for_reschedule itself and Airflow queued it again at once: the old
    container's exit must not end the new queueing. The old container is no longer described;
    it is kept in mind (for the orphan sweep to settle) until it is listed no more."""
    (key,) = queue(executor, make_workload("sensor"))
    beat(executor)
    old_arn = events(executor)[key][1]
    queue(executor, make_workload("sensor"))  # the next poke, before the first container's exit was seen
    ecs.set_state(old_arn, "STOPPED", exit_codes={CONTAINER: 0})
    described = calls(executor, "DescribeTasks")
    beat(executor)
    state, new_arn = events(executor)[key]
    assert (state, new_arn != old_arn) == (TaskInstanceState.RUNNING, True)
    beat(executor)
    assert events(executor) == {}  # nothing is reported for the old container
    assert all(old_arn not in call["tasks"] for call in described)
    assert executor.tracker.watched() == {new_arn: key}
    assert sorted(executor.tracker.active_arns()) == sorted([new_arn, old_arn])
    ecs.set_state(new_arn, "STOPPED", exit_codes={CONTAINER: 0})
    beat(executor)
    assert events(executor)[key][0] == TaskInstanceState.SUCCESS


def test_a_launch_superseded_while_in_flight_is_stopped(executor, ecs, monkeypatch):
    release = blocking_run_task(executor, monkeypatch)
    (key,) = queue(executor, make_workload())
    executor.heartbeat()  # the first queueing's run_task is on the wire
    queue(executor, make_workload())  # cleared and queued again meanwhile
    release.set()
    beat(executor)
    beat(executor)
    arn = events(executor)[key][1]
    (other,) = [a for a in ecs.all_task_arns() if a != arn]
    assert ecs.task(other).desired_status == "STOPPED"
    assert ecs.task(arn).desired_status != "STOPPED"


# ---- credentials and stuck tasks ----------------------------------------------------------------


def test_expired_credentials_refresh_the_client_without_costing_attempts(executor, ecs, monkeypatch):
    expired = ClientError({"Error": {"Code": "ExpiredTokenException", "Message": "token expired"}}, "RunTask")
    tokens = failing_run_task(executor, monkeypatch, [expired, expired, expired, expired])
    (key,) = queue(executor, make_workload())
    old_client = executor.ecs.launch_client
    for _ in range(5):
        beat(executor)
        executor._clock.now += 1000
    assert len(tokens) == 5
    assert events(executor)[key][0] == TaskInstanceState.RUNNING  # 4 credential failures > 3 attempts, still fine
    assert executor.ecs.launch_client is not old_client  # rebuilt: credentials re-resolved


def test_no_credentials_while_polling_does_not_crash_sync(executor, ecs, monkeypatch, capfd):
    from botocore.exceptions import NoCredentialsError

    (key,) = queue(executor, make_workload())
    beat(executor)
    monkeypatch.setattr(executor.ecs, "describe_batch", lambda arns: (_ for _ in ()).throw(NoCredentialsError()))
    executor.heartbeat()
    executor.poller.kick()
    wait_idle(executor)
    executor.heartbeat()
    assert "re-resolving credentials" in capfd.readouterr().out
    assert key in executor.running


def test_task_stuck_in_pending_is_stopped_and_relaunched(monkeypatch, ecs):
    minimal_config(
        monkeypatch, task_start_timeout="60", subnets=",".join(ecs.subnets), security_groups=ecs.security_group
    )
    executor = FargateExecutor()
    executor._clock = FakeClock()
    executor.start()
    monkeypatch.setattr(executor, "_requeue_try", lambda key: None)
    (key,) = queue(executor, make_workload())
    beat(executor)
    (first,) = ecs.all_task_arns()
    ecs.set_state(first, "PENDING")
    executor._clock.now += 61
    beat(executor)
    assert ecs.task(first).last_status == "STOPPED"  # stopped before the relaunch
    assert "task_start_timeout=60s" in ecs.task(first).stopped_reason
    executor._clock.now += 1000
    beat(executor)
    (second,) = set(ecs.all_task_arns()) - {first}
    assert events(executor)[key] == (TaskInstanceState.RUNNING, second)


# ---- metrics ---------------------------------------------------------------------------------------


class RecordingStats:
    """Stands in for Airflow's Stats: remembers every metric the executor emits."""

    def __init__(self) -> None:
        self.seen: dict[str, list[float]] = {}

    def _record(self, name: str, value: float = 1) -> None:
        self.seen.setdefault(name, []).append(value)

    def incr(self, name: str, count: float = 1, **_: Any) -> None:
        self._record(name, count)

    def gauge(self, name: str, value: float, **_: Any) -> None:
        self._record(name, value)

    def timing(self, name: str, value: float, **_: Any) -> None:
        self._record(name, value)


def test_metrics_follow_the_documented_names(executor, ecs, monkeypatch):
    recorded = RecordingStats()
    monkeypatch.setattr("airflow_fargate.executor.stats", recorded)
    monkeypatch.setattr(executor, "_requeue_try", lambda key: None)
    key, _ = launch_then_interrupt(executor, ecs)
    assert recorded.seen["fargate.run_task.success"] == [1]
    assert recorded.seen["fargate.relaunch"] == [1]
    assert recorded.seen["fargate.relaunch.spot"] == [1]
    assert all(ms >= 0 for ms in recorded.seen["fargate.describe.latency"])
    executor.heartbeat()  # the interrupted task now waits out its back-off before the relaunch
    assert recorded.seen["fargate.tasks.running"][-1] == 0
    assert recorded.seen["fargate.tasks.pending"][-1] == 1
    new = FargateExecutor()
    new.start()
    (arn,) = ecs.all_task_arns()
    ti = SimpleNamespace(key=key, external_executor_id=arn, executor_config=None, queue="default")
    ecs.set_state(arn, "RUNNING")
    new.try_adopt_task_instances([ti])
    assert recorded.seen["fargate.adopt.count"] == [1]
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for name in recorded.seen:
        assert f"`{name}`" in readme, f"{name} is not documented in the README"


def finish_one(executor, ecs, clock_step: float = 0.0):
    """One try launched, RUNNING, then STOPPED with exit 0; the describe that sees it applied."""
    (key,) = queue(executor, make_workload())
    beat(executor)
    arn = [a for a in ecs.all_task_arns() if executor.tracker.by_arn(a) is not None][-1]
    ecs.set_state(arn, "RUNNING")
    beat(executor)
    events(executor)
    executor._clock.now += clock_step
    ecs.set_state(arn, "STOPPED", exit_codes={"base": 0}, stop_code="EssentialContainerExited")
    beat(executor)
    return key


@pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 2's scheduler does not fail a SCHEDULED try on a late success")
def test_a_sensor_poke_whose_next_poke_is_scheduled_is_not_reported(executor, ecs, monkeypatch):
    asked: list[list] = []

    def pokes(keys):
        keys = list(keys)
        asked.append(keys)
        return set(keys)  # the metadata DB says: a poke, its next one already SCHEDULED

    monkeypatch.setattr(metadata_db, "pokes_awaiting_their_next", pokes)
    key = finish_one(executor, ecs)
    assert asked == [[key]]
    assert key not in events(executor)  # Airflow would have failed the sensor on it
    assert key not in executor.running  # no longer ours: the next poke can be queued


@pytest.mark.skipif(not AIRFLOW_V3, reason="the poke check is Airflow 3 only")
def test_when_the_metadata_db_cannot_be_read_successes_are_reported_and_it_is_asked_again_a_minute_later(
    executor, ecs, monkeypatch, capfd
):
    asked: list[int] = []

    def unreadable(keys):
        asked.append(len(list(keys)))
        raise RuntimeError("database is locked")

    monkeypatch.setattr(metadata_db, "pokes_awaiting_their_next", unreadable)
    first = finish_one(executor, ecs)
    assert events(executor)[first][0] == TaskInstanceState.SUCCESS
    second = finish_one(executor, ecs, clock_step=30)
    assert events(executor)[second][0] == TaskInstanceState.SUCCESS
    assert asked == [1]  # not asked again within the minute
    finish_one(executor, ecs, clock_step=31)
    assert asked == [1, 1]
    out, err = capfd.readouterr()
    assert (out + err).count("could not read finished tries' states (RuntimeError: database is locked)") == 2


def test_metrics_carry_the_executor_and_its_team_so_two_teams_are_two_series(monkeypatch):
    """supports_multi_team: two teams' executors in one scheduler emit the same names; the team tag
    keeps their gauges apart (as the provider tags its metrics)."""
    series: dict[tuple[str, str | None], list[float]] = {}

    class TaggedStats:
        def gauge(self, name: str, value: float, *, tags: dict[str, str]) -> None:
            assert tags["executor"] == "FargateExecutor"
            series.setdefault((name, tags.get("team_name")), []).append(value)

    monkeypatch.setattr("airflow_fargate.executor.stats", TaggedStats())
    executors = {}
    for team, running in (("team_a", 3), ("team_b", 5), (None, 7)):
        executors[team] = FargateExecutor()
        executors[team].team_name = team
        executors[team]._stat("gauge", "fargate.tasks.running", running)
    assert series == {
        ("fargate.tasks.running", "team_a"): [3],
        ("fargate.tasks.running", "team_b"): [5],
        ("fargate.tasks.running", None): [7],
    }
    source = (Path(__file__).resolve().parents[1] / "airflow_fargate" / "executor.py").read_text()
    assert "stats.incr(" not in source and "stats.gauge(" not in source and "stats.timing(" not in source
