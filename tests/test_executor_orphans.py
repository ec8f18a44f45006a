"""FargateExecutor with the orphan sweep: every launch says who owns it, and tasks nobody tracks
are adopted or stopped (the DB is a fake here; tests/test_e2e_chaos.py uses a real scheduler's)."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.utils.state import TaskInstanceState

from airflow_fargate.executor import FargateExecutor
from airflow_fargate.metadata_db import TryRow
from airflow_fargate.ownership import ownership_tags, read_owner
from tests.executor_harness import FakeClock, beat, calls, events, queue
from tests.helpers import CLUSTER, FAMILY, make_workload

JOB = 7
DEAD_JOB = "3"


class FakeDb:
    """The metadata DB as the sweep sees it: rows by (dag, task, run, map) and running jobs."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str, int], TryRow] = {}
        self.running = {str(JOB)}
        self.claims: list[tuple[Any, str]] = []

    def load_rows(self, identities):
        return {i[:4]: self.rows[i[:4]] for i in identities if i[:4] in self.rows}

    def running_jobs(self, job_ids):
        return {job for job in job_ids if job in self.running}

    def pokes_awaiting_their_next(self, keys):
        return set()

    def claim_try(self, identity, arn, previous_job, our_job):
        current = self.rows.get(identity[:4])
        if current is None or current.external_executor_id not in (None, arn):
            return False
        self.claims.append((identity, arn))
        self.rows[identity[:4]] = TryRow("queued", identity[4], arn, str(our_job))
        return True


@pytest.fixture(autouse=True)
def _sweep_debug_log(caplog: pytest.LogCaptureFixture) -> None:
    """A failing test shows what each sweep listed and decided (the skips are debug lines)."""
    caplog.set_level(logging.DEBUG, logger="airflow_fargate")


@pytest.fixture
def db(monkeypatch) -> FakeDb:
    fake = FakeDb()
    monkeypatch.setattr("airflow_fargate.executor.metadata_db", fake)
    return fake


@pytest.fixture
def scheduler_executor(executor: FargateExecutor) -> FargateExecutor:
    executor.job_id = JOB  # set by the scheduler before start(); the sweep needs it
    return executor


def sweep(executor: FargateExecutor) -> None:
    """One sweep round: request, let the sweep thread list and describe, apply, let stops finish."""
    executor._next_sweep_at = 0
    executor._sweep()
    wait_quiet(executor)
    executor._sweep()
    wait_quiet(executor)


def wait_quiet(executor: FargateExecutor) -> None:
    deadline = time.monotonic() + 30
    while executor.sweeper.busy:
        assert time.monotonic() < deadline, "sweep still busy"
        time.sleep(0.01)


def run_foreign(ecs: Any, key: TaskInstanceKey, executor: FargateExecutor, *, job: Any, queueing: str = "gone") -> str:
    """A task as another (or this) scheduler's launch would have left it on the cluster."""
    kwargs = executor.kwargs_builder.build(
        ["true"], None, ownership_tags(key, "task", queueing, job, executor.settings.deployment_id)
    )
    kwargs.pop("count", None)
    return str(ecs.client.run_task(**kwargs)["tasks"][0]["taskArn"])


def desired(ecs: Any, arn: str) -> str:
    return str(ecs.client.describe_tasks(cluster=CLUSTER, tasks=[arn])["tasks"][0]["desiredStatus"])


def test_every_launch_carries_the_deployments_started_by_and_tags_naming_its_try(scheduler_executor, ecs):
    sent = calls(scheduler_executor, "RunTask")
    (key,) = queue(scheduler_executor, make_workload("a", map_index=4, try_number=2))
    beat(scheduler_executor)
    (kwargs,) = sent
    assert kwargs["startedBy"] == f"airflow-fargate/{scheduler_executor.settings.deployment_id}"
    owner = read_owner(kwargs["tags"])
    assert owner is not None
    assert owner.try_identity == (key.dag_id, key.task_id, key.run_id, 4, 2)
    assert owner.job == str(JOB)
    assert owner.queueing == scheduler_executor.tracker.get(key).queueing_id
    (arn,) = ecs.all_task_arns()
    described = ecs.client.describe_tasks(cluster=CLUSTER, tasks=[arn], include=["TAGS"])["tasks"][0]
    assert read_owner(described["tags"]) == owner  # ECS keeps them with the task


def test_sweep_stops_this_schedulers_task_of_a_queueing_it_no_longer_tracks(scheduler_executor, ecs, db):
    stray = run_foreign(ecs, TaskInstanceKey("d", "t", "r", 1, -1), scheduler_executor, job=JOB)
    (key,) = queue(scheduler_executor, make_workload("kept"))
    beat(scheduler_executor)
    sweep(scheduler_executor)
    assert desired(ecs, stray) == "STOPPED"
    assert "FargateExecutor orphan sweep" in ecs.task(stray).stopped_reason
    assert desired(ecs, scheduler_executor.tracker.get(key).arn) == "RUNNING"


def test_sweep_never_stops_a_launch_whose_answer_has_not_arrived(scheduler_executor, ecs, db, monkeypatch):
    held: list[Any] = []
    monkeypatch.setattr(scheduler_executor.launcher, "submit", held.extend)  # the call is on the wire
    (key,) = queue(scheduler_executor, make_workload("inflight"))
    scheduler_executor.heartbeat()
    task = scheduler_executor.tracker.get(key)
    assert held and task.launching
    # RunTask reached ECS, its answer has not reached the executor: same queueing, ARN unknown
    arn = run_foreign(ecs, key, scheduler_executor, job=JOB, queueing=task.queueing_id)
    sweep(scheduler_executor)
    assert desired(ecs, arn) == "RUNNING"


def test_sweep_adopts_an_unrecorded_try_of_a_dead_scheduler_and_reports_its_end(scheduler_executor, ecs, db):
    key = TaskInstanceKey("d", "t", "r", 1, -1)
    db.rows[("d", "t", "r", -1)] = TryRow("running", 1, None, DEAD_JOB)
    arn = run_foreign(ecs, key, scheduler_executor, job=DEAD_JOB)
    sweep(scheduler_executor)
    assert db.claims == [(("d", "t", "r", -1, 1), arn)]
    assert key in scheduler_executor.running and desired(ecs, arn) == "RUNNING"
    ecs.set_state(arn, "STOPPED", exit_codes={"base": 0})
    beat(scheduler_executor)
    assert events(scheduler_executor)[key] == (TaskInstanceState.SUCCESS, arn)


def test_sweep_stops_a_dead_schedulers_task_whose_try_was_reset(scheduler_executor, ecs, db):
    db.rows[("d", "t", "r", -1)] = TryRow(None, 2, None, None)
    arn = run_foreign(ecs, TaskInstanceKey("d", "t", "r", 1, -1), scheduler_executor, job=DEAD_JOB)
    sweep(scheduler_executor)
    assert desired(ecs, arn) == "STOPPED"
    assert "orphan of d.t run_id=r try 1; try 2 is reset" in ecs.task(arn).stopped_reason
    assert db.claims == []


def test_sweep_leaves_other_deployments_and_live_schedulers_alone(scheduler_executor, ecs, db):
    db.running.add("30")
    db.rows[("d", "t", "r", -1)] = TryRow(None, 2, None, None)
    live = run_foreign(ecs, TaskInstanceKey("d", "t", "r", 1, -1), scheduler_executor, job="30")
    other = ecs.client.run_task(
        cluster=CLUSTER,
        taskDefinition=FAMILY,
        launchType="FARGATE",
        startedBy="airflow-fargate/another-deployment",
        tags=ownership_tags(TaskInstanceKey("d", "t", "r", 1, -1), "task", "q", DEAD_JOB, "another-deployment"),
        networkConfiguration={"awsvpcConfiguration": {"subnets": ecs.subnets, "securityGroups": [ecs.security_group]}},
    )["tasks"][0]["taskArn"]
    sweep(scheduler_executor)
    assert desired(ecs, live) == desired(ecs, other) == "RUNNING"


def test_adoption_round_claims_an_unrecorded_try_the_sweep_found_by_its_tags(scheduler_executor, ecs, db, capfd):
    key = TaskInstanceKey("d", "t", "r", 1, -1)
    db.running.add(DEAD_JOB)  # Airflow has not declared the old scheduler dead yet: the sweep waits
    arn = run_foreign(ecs, key, scheduler_executor, job=DEAD_JOB)
    sweep(scheduler_executor)
    assert key not in scheduler_executor.running
    # then Airflow's orphan check offers the try, with no ARN recorded
    ti = SimpleNamespace(key=key, external_executor_id=None, executor_config=None, queue="default")
    assert scheduler_executor.try_adopt_task_instances([ti]) == []
    assert ti.external_executor_id == arn  # saved by Airflow with the adoption
    assert scheduler_executor.tracker.get(key).arn == arn
    assert scheduler_executor.tracker.active_arns() == [arn]  # tracked once, not also as a superseded launch
    assert "Adopted 1 ECS tasks" in capfd.readouterr().out
    wait_quiet(scheduler_executor)  # the round also swept; nothing of it may stop the adopted task
    scheduler_executor._sweep()
    wait_quiet(scheduler_executor)
    assert desired(ecs, arn) == "RUNNING"


def test_an_ended_tries_container_is_left_to_exit_and_stopped_only_if_it_never_does(
    scheduler_executor, ecs, db, monkeypatch
):
    """A try reported ended from its row keeps its container (callbacks and the log upload run
    after the row is written): the sweep leaves it while it is young, stops it once it has been
    up RETIRED_GRACE_SECONDS, and forgets a retired container it no longer lists."""
    states: dict[tuple, str] = {}
    monkeypatch.setattr("airflow_fargate.metadata_db.try_states", lambda identities, row_ids=None: states)
    keys = queue(scheduler_executor, make_workload("stuck"), make_workload("exits"))
    beat(scheduler_executor)
    arns = {key: scheduler_executor.tracker.get(key).arn for key in keys}
    for key in keys:
        states[(key.dag_id, key.task_id, key.run_id, key.map_index, key.try_number)] = "success"
    deadline = time.monotonic() + 20
    ended: dict = events(scheduler_executor)  # (their launches' RUNNING events)
    while any(ended[key][0] != TaskInstanceState.SUCCESS for key in keys):  # the poller's own rounds read the rows
        scheduler_executor.heartbeat()
        ended.update(events(scheduler_executor))
        assert time.monotonic() < deadline, ended
        time.sleep(0.2)
    assert {key: ended[key] for key in keys} == {key: (TaskInstanceState.SUCCESS, arns[key]) for key in keys}
    stuck, exits = (arns[key] for key in keys)
    sweep(scheduler_executor)
    assert desired(ecs, stuck) == desired(ecs, exits) == "RUNNING"  # just ended: left to exit
    ecs.set_state(exits, "STOPPED", exit_codes={"base": 0})
    scheduler_executor._clock.now += 301
    sweep(scheduler_executor)
    assert desired(ecs, stuck) == "STOPPED"
    assert "ended long ago" in ecs.task(stuck).stopped_reason
    assert scheduler_executor.tracker.active_arns() == [stuck]  # the one that exited is forgotten
    ecs.set_state(stuck, "STOPPED", exit_codes={"base": 143})
    sweep(scheduler_executor)
    assert scheduler_executor.tracker.active_arns() == []


def test_no_sweep_without_a_scheduler_job(executor, ecs, db):
    listed = calls(executor, "ListTasks")
    executor._next_sweep_at = 0
    executor.sync()
    wait_quiet(executor)
    assert listed == []


def test_sweep_errors_never_reach_the_scheduler_loop(scheduler_executor, ecs, db, monkeypatch, capfd):
    def broken(*args):
        raise RuntimeError("ListTasks unavailable")

    monkeypatch.setattr(scheduler_executor.sweeper, "_list_arns", broken)
    sweep(scheduler_executor)
    assert "listing this deployment's ECS tasks failed: ListTasks unavailable" in capfd.readouterr().out


def test_executor_restart_sweeps_at_start(monkeypatch, ecs, db, executor):
    listed = calls(executor, "ListTasks")
    fresh = FargateExecutor()
    fresh._clock = FakeClock()
    fresh.job_id = JOB
    fresh.start()
    listed = calls(fresh, "ListTasks")
    fresh.sync()
    wait_quiet(fresh)
    assert len(listed) == 1
