"""The orphan sweep: every rule of decide(), and the sweeper's AWS side against moto ECS."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey

from airflow_fargate.aws_session import AwsTarget
from airflow_fargate.ecs import EcsClient
from airflow_fargate.metadata_db import TryRow
from airflow_fargate.ownership import ownership_tags, read_owner, started_by
from airflow_fargate.sweep import FINISHED_TRY_GRACE_SECONDS, Action, Listed, Ownership, Snapshot, decide
from airflow_fargate.sweeper import OrphanSweeper
from tests.helpers import CLUSTER, FAMILY, moto_ecs

OURS = "20"
DEAD = "10"
ALIVE = "30"
DEPLOYMENT = "dep"


class FakeDb:
    def __init__(self, rows: dict[Any, TryRow] | None = None, running: set[str] | None = None) -> None:
        self.rows = rows or {}
        self.running = running if running is not None else {OURS, ALIVE}

    def load_rows(self, identities):
        return {identity[:4]: self.rows[identity[:4]] for identity in identities if identity[:4] in self.rows}

    def running_jobs(self, job_ids):
        return {job for job in job_ids if job in self.running}

    def claim_try(self, identity, arn, previous_job, our_job):
        raise AssertionError("decide() never writes")


def listed(arn: str, *, job: str = DEAD, try_number: int = 1, created: float = 0.0, deployment: str = DEPLOYMENT):
    key = TaskInstanceKey("d", "t", "r", try_number, -1)
    owner = read_owner(ownership_tags(key, "task", f"q-{arn}", job, deployment))
    return Listed(arn, owner, "RUNNING", created)


NOW = 1_800_000_000.0


def row(
    state: str | None = "queued",
    try_number: int = 1,
    arn: str | None = None,
    job: str | None = DEAD,
    ended_ago: float | None = None,
) -> TryRow:
    end_date = None if ended_ago is None else NOW - ended_ago
    return TryRow(state=state, try_number=try_number, external_executor_id=arn, queued_by_job_id=job, end_date=end_date)


def verdicts(tasks: list[Listed], db: FakeDb, **known: Any) -> dict[str, tuple[Action, str]]:
    ownership = Ownership(our_job=OURS, deployment=DEPLOYMENT, **known)
    decisions = decide(Snapshot(tuple(tasks), frozenset(t.arn for t in tasks)), ownership, db, now=NOW)
    return {d.task.arn: (d.action, d.reason) for d in decisions}


def test_tasks_this_scheduler_tracks_are_not_judged():
    tasks = [listed("a", job=OURS), listed("b", job=OURS)]
    assert verdicts(tasks, FakeDb(), tracked_arns={"a"}, tracked_queueings={"q-b"}) == {}


def test_own_task_of_a_queueing_no_longer_tracked_is_stopped():
    ((action, reason),) = verdicts([listed("a", job=OURS)], FakeDb()).values()
    assert action is Action.STOP and "launched by this scheduler for d.t run_id=r try 1" in reason


def test_task_of_a_running_scheduler_is_left_to_it():
    assert verdicts([listed("a", job=ALIVE)], FakeDb())["a"][0] is Action.SKIP


def test_tasks_of_other_deployments_or_without_tags_are_never_touched():
    untagged = Listed("u", None, "RUNNING", 0.0)
    result = verdicts([listed("o", job=OURS, deployment="other"), untagged], FakeDb())
    assert {arn: action for arn, (action, _) in result.items()} == {"o": Action.SKIP, "u": Action.SKIP}


def test_dead_schedulers_try_unknown_to_this_db_is_left_alone():
    assert verdicts([listed("a")], FakeDb())["a"][0] is Action.SKIP


@pytest.mark.parametrize(
    ("current", "expected_words"),
    [(row(state=None, try_number=2), "try 2 is reset"), (row(state="success"), "try 1 is success")],
)
def test_dead_schedulers_task_of_a_reset_or_finished_try_is_stopped(current, expected_words):
    action, reason = verdicts([listed("a")], FakeDb({("d", "t", "r", -1): current}))["a"]
    assert action is Action.STOP and expected_words in reason and "d.t run_id=r try 1" in reason


@pytest.mark.parametrize("state", ["success", "failed", "up_for_retry"])
def test_dead_schedulers_task_of_a_try_that_just_ended_is_left_to_exit(state):
    """The task reports its state before its container exits (remote log upload comes after):
    a container of a try that ended moments ago is not stopped, one still up past the grace is."""
    rows = {("d", "t", "r", -1): row(state=state, ended_ago=FINISHED_TRY_GRACE_SECONDS - 5)}
    action, reason = verdicts([listed("a")], FakeDb(rows))["a"]
    assert action is Action.SKIP and f"ended 295s ago ({state})" in reason
    rows = {("d", "t", "r", -1): row(state=state, ended_ago=FINISHED_TRY_GRACE_SECONDS + 5)}
    action, reason = verdicts([listed("a")], FakeDb(rows))["a"]
    assert action is Action.STOP and f"try 1 is {state}" in reason


@pytest.mark.parametrize(
    "current",
    [row(state=None, ended_ago=1), row(state="success", try_number=2, ended_ago=1), row(state="running", ended_ago=1)],
    ids=["reset", "a later try", "running"],
)
def test_grace_is_only_for_the_listed_try_itself_having_ended(current):
    """A reset try is queued again and a later try runs: the old container must not overlap it."""
    action, _ = verdicts([listed("a")], FakeDb({("d", "t", "r", -1): current}))["a"]
    assert action in (Action.STOP, Action.ADOPT)
    assert action is (Action.ADOPT if current.state == "running" else Action.STOP)


def test_dead_schedulers_task_recorded_in_the_db_is_left_to_airflows_adoption():
    assert verdicts([listed("a")], FakeDb({("d", "t", "r", -1): row(arn="a")}))["a"][0] is Action.SKIP


def test_dead_schedulers_task_beside_the_recorded_one_is_stopped():
    action, reason = verdicts([listed("a")], FakeDb({("d", "t", "r", -1): row(arn="other")}))["a"]
    assert action is Action.STOP and "runs as ECS task other" in reason


def test_unrecorded_try_of_a_dead_scheduler_is_adopted_newest_first_and_a_second_task_stopped():
    result = verdicts([listed("old", created=1.0), listed("new", created=2.0)], FakeDb({("d", "t", "r", -1): row()}))
    assert result["new"][0] is Action.ADOPT
    assert result["old"][0] is Action.STOP and "second ECS task" in result["old"][1]


def test_unrecorded_try_queued_by_a_running_scheduler_is_not_adopted():
    assert verdicts([listed("a")], FakeDb({("d", "t", "r", -1): row(job=ALIVE)}))["a"][0] is Action.SKIP


# ---- the AWS side -----------------------------------------------------------------------------


def run_tagged(world: Any, key: TaskInstanceKey, *, deployment: str = DEPLOYMENT, job: str = DEAD) -> str:
    response = world.client.run_task(
        cluster=CLUSTER,
        taskDefinition=FAMILY,
        launchType="FARGATE",
        networkConfiguration={
            "awsvpcConfiguration": {"subnets": world.subnets, "securityGroups": [world.security_group]}
        },
        startedBy=started_by(deployment),
        tags=ownership_tags(key, "task", "q", job, deployment),
    )
    return str(response["tasks"][0]["taskArn"])


def sweeper_for(world: Any) -> tuple[OrphanSweeper, EcsClient]:
    import boto3

    session = boto3.session.Session(region_name="us-east-1")
    client = EcsClient(lambda: AwsTarget(session), CLUSTER, describe_rate=10)
    sweeper = OrphanSweeper(
        lambda pace: client.list_running_arns(started_by(DEPLOYMENT), pace),
        client.describe_with_tags,
        client.stop_task,
        pacer=lambda: None,
    )
    return sweeper, client


def wait_for(sweeper: OrphanSweeper) -> Any:
    deadline = time.monotonic() + 30
    while sweeper.busy and time.monotonic() < deadline:
        time.sleep(0.01)
    return sweeper.take()


def test_sweeper_lists_only_this_deployments_running_tasks_and_describes_only_untracked_ones():
    with moto_ecs() as world:
        mine = run_tagged(world, TaskInstanceKey("d", "t", "r", 1, -1))
        tracked = run_tagged(world, TaskInstanceKey("d", "t", "r", 1, 0))
        run_tagged(world, TaskInstanceKey("d", "t", "r", 1, 1), deployment="other")
        stopped = run_tagged(world, TaskInstanceKey("d", "t", "r", 1, 2))
        world.client.stop_task(cluster=CLUSTER, task=stopped, reason="done")
        sweeper, _ = sweeper_for(world)
        try:
            sweeper.request([tracked])
            snapshot = wait_for(sweeper)
        finally:
            sweeper.shutdown()
    assert isinstance(snapshot, Snapshot)
    assert snapshot.listed == 2  # this deployment, desired status RUNNING
    assert [t.arn for t in snapshot.tasks] == [mine]
    assert snapshot.tasks[0].owner is not None and snapshot.tasks[0].owner.try_identity == ("d", "t", "r", -1, 1)


def test_sweeper_makes_decided_stops_even_while_shutting_down_and_leaves_no_thread():
    with moto_ecs() as world:
        arn = run_tagged(world, TaskInstanceKey("d", "t", "r", 1, -1))
        sweeper, _ = sweeper_for(world)
        sweeper.stop_task(arn, "orphan")
        sweeper.shutdown()
        (task,) = world.client.describe_tasks(cluster=CLUSTER, tasks=[arn])["tasks"]
    assert task["desiredStatus"] == "STOPPED"
    assert sweeper._thread not in threading.enumerate()


def test_list_running_arns_follows_every_page_and_paces_each_call():
    pages = {None: (["a", "b"], "t1"), "t1": (["c"], "t2"), "t2": ([], None)}
    seen: list[dict[str, Any]] = []

    class Client:
        def list_tasks(self, **kwargs):
            seen.append(kwargs)
            arns, token = pages[kwargs.get("nextToken")]
            return {"taskArns": arns, **({"nextToken": token} if token else {})}

    client = EcsClient(lambda: SimpleNamespace(session=None, endpoint_url=None), "c", describe_rate=10)
    client._client = Client()
    paced = []
    assert client.list_running_arns("sb", lambda: paced.append(1)) == ["a", "b", "c"]
    assert len(paced) == 3
    assert all(call["startedBy"] == "sb" and call["desiredStatus"] == "RUNNING" for call in seen)
    assert all(call["maxResults"] == 100 for call in seen)


def test_shutdown_abandons_a_long_listing_between_pages():
    started = threading.Event()
    pages: list[int] = []

    def list_arns(pace):
        started.set()
        while True:  # ECS keeps answering with another page
            pace()
            pages.append(1)
            time.sleep(0.01)

    sweeper = OrphanSweeper(list_arns, lambda arns, pace: [], lambda arn, reason: None, pacer=lambda: None)
    sweeper.request([])
    assert started.wait(10)
    sweeper.shutdown(timeout=5)
    assert sweeper._thread not in threading.enumerate()


def test_a_task_launched_for_a_queueing_tracked_at_the_request_is_never_stopped_whatever_became_of_it():
    """The race: the sweep is asked for while a launch is in flight (its queueing tracked, no ARN
    yet); the launch lands, the try finishes and is forgotten, and only then is the snapshot
    applied. Judged by tracking at apply time it looks like an orphan of this scheduler; judged by
    what the scheduler tracked when it asked, it was wanted. Likewise a task created after the
    request, whatever its queueing."""
    now = time.time()
    in_flight = listed("a", job=OURS, created=now - 60)  # its queueing q-a was tracked at the request
    later = listed("b", job=OURS, created=now + 1)  # launched after the request
    orphan = listed("c", job=OURS, created=now - 60)  # truly no longer wanted
    snapshot = Snapshot(
        (in_flight, later, orphan),
        frozenset({"a", "b", "c"}),
        requested_queueings=frozenset({"q-a"}),
        requested_at=now,
    )
    nothing_tracked_now = Ownership(our_job=OURS, deployment=DEPLOYMENT)
    decisions = {d.task.arn: d.action for d in decide(snapshot, nothing_tracked_now, FakeDb(), now=now)}
    assert decisions == {"c": Action.STOP}


def test_the_sweeper_hands_over_what_was_tracked_when_it_was_asked():
    with moto_ecs() as world:
        run_tagged(world, TaskInstanceKey("d", "t", "r", 1, -1))
        sweeper, _ = sweeper_for(world)
        try:
            before = time.time()
            sweeper.request([], ["q-in-flight"])
            sweeper.request([], ["q-other"])  # coalesced with the first
            snapshot = wait_for(sweeper)
        finally:
            sweeper.shutdown()
    assert isinstance(snapshot, Snapshot)
    assert snapshot.requested_queueings == {"q-in-flight", "q-other"}
    assert before - 10 <= snapshot.requested_at <= before
