"""Task answers (DescribeTasks, RunTask) read with json.loads give what botocore's parser gives, errors untouched."""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.parsers import create_parser

from airflow_fargate import task_answers
from airflow_fargate.ecs_types import EcsTaskState, MalformedEntry
from airflow_fargate.local.faults import Faults
from airflow_fargate.local.server import LocalEcs


@pytest.fixture
def local() -> Iterator[LocalEcs]:
    # each task "runs" 2 s: the 2 launched after the first 3 stopped are surely still running
    # when described, however busy the machine (wait_stopped waits out the first 3)
    ecs = LocalEcs(runtime="simulate", simulate_duration=2.0).start()
    try:
        yield ecs
    finally:
        ecs.stop()


def run_tasks(client: Any, ecs: LocalEcs, count: int) -> list[str]:
    response = client.run_task(
        cluster=ecs.config.cluster,
        taskDefinition=ecs.config.family,
        launchType="FARGATE",
        count=count,
        networkConfiguration={"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
        tags=[{"key": "team", "value": "data"}],
    )
    return [task["taskArn"] for task in response["tasks"]]


def botocores_answer(client: Any, operation: str) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Record each answer as botocore parses it (from a copy of the body, before the hook runs),
    and what the hook leaves botocore to parse."""
    parsed: list[dict[str, Any]] = []
    left: list[bytes] = []
    model = client.meta.service_model.operation_model(operation)

    def before(response_dict: Any, **_: Any) -> None:
        parsed.append(create_parser("json").parse(dict(response_dict), model.output_shape))

    client.meta.events.register(task_answers.event(operation), before)
    assert task_answers.install(client, operation)
    client.meta.events.register(
        task_answers.event(operation), lambda response_dict, **_: left.append(response_dict["body"])
    )
    return parsed, left


def wait_stopped(ecs: LocalEcs, arns: list[str], timeout: float = 30) -> None:
    """Until ECS reports every one of ``arns`` STOPPED (asked through a client of its own, so the
    answers recorded by the test's client stay the ones it asserts on)."""
    client = ecs.client("ecs")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = client.describe_tasks(cluster=ecs.config.cluster, tasks=arns)["tasks"]
        if len(tasks) == len(arns) and all(task["lastStatus"] == "STOPPED" for task in tasks):
            return
        time.sleep(0.05)
    raise TimeoutError(f"not all of {arns} stopped")


def without_metadata(answer: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in answer.items() if key != "ResponseMetadata"}


def test_the_fast_answers_equal_botocores(local):
    client = local.client("ecs")
    launched, launch_left = botocores_answer(client, "RunTask")
    described, describe_left = botocores_answer(client, "DescribeTasks")
    arns = run_tasks(client, local, 3)
    wait_stopped(local, arns)  # they stop: stoppedAt, stopCode, exit codes
    arns += run_tasks(client, local, 2)  # still running
    answer = client.describe_tasks(cluster=local.config.cluster, tasks=arns, include=["TAGS"])
    assert without_metadata(answer) == without_metadata(described[0])
    assert launch_left == [b"{}", b"{}"] and describe_left == [b"{}"]  # botocore parsed empty bodies
    assert len(launched) == 2 and all(len(a["tasks"]) in (2, 3) for a in launched)
    stopped = [task for task in answer["tasks"] if task["lastStatus"] == "STOPPED"]
    assert len(stopped) == 3 and all(isinstance(task["stoppedAt"], datetime.datetime) for task in stopped)
    assert {EcsTaskState.from_api(task).arn for task in answer["tasks"]} == set(arns)


def test_a_fast_run_task_answer_equals_botocores(local):
    client = local.client("ecs")
    launched, left = botocores_answer(client, "RunTask")
    response = client.run_task(
        cluster=local.config.cluster,
        taskDefinition=local.config.family,
        launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": ["subnet-1"]}},
    )
    assert left == [b"{}"]
    assert without_metadata(response) == without_metadata(launched[0])


def test_errors_are_left_to_botocore():
    ecs = LocalEcs(runtime="simulate", faults=Faults(describe_tasks_rate=0.01, describe_tasks_burst=1)).start()
    try:
        client = ecs.client("ecs")
        task_answers.install(client, "DescribeTasks")
        client.describe_tasks(cluster=ecs.config.cluster, tasks=["a"])  # the one token
        with pytest.raises(ClientError) as raised:
            client.describe_tasks(cluster=ecs.config.cluster, tasks=["a"])
        assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    finally:
        ecs.stop()


def parse(body: bytes, status: int = 200) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the hook the way botocore's endpoint does; (response_dict, customized_response_dict)."""
    import boto3

    client = boto3.session.Session().client("ecs", region_name="us-east-1")
    assert task_answers.install(client, "DescribeTasks")
    response_dict: dict[str, Any] = {"status_code": status, "body": body, "headers": {}}
    customized: dict[str, Any] = {}
    client.meta.events.emit(
        task_answers.event("DescribeTasks"),
        response_dict=response_dict,
        customized_response_dict=customized,
        operation_model=None,
    )
    return response_dict, customized


def test_a_timestamp_that_cannot_be_read_makes_only_its_entry_malformed():
    body = (
        b'{"tasks": [{"taskArn": "a", "lastStatus": "STOPPED", "stoppedAt": "not a time"},'
        b' {"taskArn": "b", "lastStatus": "STOPPED", "stoppedAt": 1700000000.5}], "failures": []}'
    )
    response_dict, customized = parse(body)
    assert response_dict["body"] == b"{}"  # botocore parses nothing
    assert customized["failures"] == []
    bad, good = customized["tasks"]
    with pytest.raises(MalformedEntry, match="stoppedAt"):
        EcsTaskState.from_api(bad)
    assert EcsTaskState.from_api(good).stopped_at == datetime.datetime.fromtimestamp(
        1700000000.5, datetime.timezone.utc
    )


@pytest.mark.parametrize(("body", "status"), [(b"not json", 200), (b"[1, 2]", 200), (b'{"__type": "X"}', 400)])
def test_anything_unusual_is_left_to_botocore(body, status):
    response_dict, customized = parse(body, status)
    assert response_dict["body"] == body
    assert customized == {}


def test_the_hook_knows_every_timestamp_of_the_model_nested_ones_too():
    import boto3

    client = boto3.session.Session().client("ecs", region_name="us-east-1")
    task = task_answers.timestamp_plan(client, "DescribeTasks")["tasks"][0]
    assert task.keys() >= {"createdAt", "startedAt", "stoppedAt", "stoppingAt", "containers"}
    assert task["containers"] == ({"managedAgents": ({"lastStartedAt": task_answers.TIMESTAMP},)},)
