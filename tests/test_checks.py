"""The pre-flight checks and value provenance, one question at a time (no AWS needed)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from airflow_fargate.checks import (
    Status,
    check_awslogs,
    check_credentials,
    check_image,
    check_network,
    check_task_tagging,
)
from airflow_fargate.provenance import value_sources
from airflow_fargate.run_task import RunTaskKwargsBuilder
from airflow_fargate.settings import load_settings
from tests.helpers import minimal_config


def definition(image: str = "apache/airflow:3.1.0", **log_options: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "base", "image": image}
    if log_options:
        container["logConfiguration"] = {"logDriver": "awslogs", "options": log_options}
    return {"containerDefinitions": [container], "networkMode": "awsvpc"}


@pytest.mark.parametrize(
    ("image", "scheduler", "status"),
    [
        ("apache/airflow:3.1.0", "3.1.0", Status.PASS),
        ("123.dkr.ecr.us-east-1.amazonaws.com/airflow:3.1.0-python3.11", "3.1.0", Status.PASS),
        ("apache/airflow:3.1.2", "3.1.0", Status.WARN),  # patch differs: works, worth knowing
        ("apache/airflow:2.11.0", "3.1.0", Status.FAIL),
        ("apache/airflow:3.0.6-python3.12", "3.1.0", Status.FAIL),
        ("apache/airflow:latest", "3.1.0", Status.PASS),  # no version in the tag: nothing to compare
        ("registry:5000/airflow", "3.1.0", Status.PASS),  # the port is not a tag
        ("my-airflow@sha256:abc", "3.1.0", Status.PASS),
    ],
)
def test_image_tag_version_hint(image, scheduler, status):
    assert check_image(definition(image), "base", scheduler).status is status


def test_awsvpc_needs_subnets():
    assert check_network(definition(), {}).status is Status.FAIL
    vpc = {"networkConfiguration": {"awsvpcConfiguration": {"subnets": ["s-1"], "assignPublicIp": "ENABLED"}}}
    result = check_network(definition(), vpc)
    assert result.status is Status.PASS and "1 subnet(s)" in result.detail and "ENABLED" in result.detail
    assert check_network({"networkMode": "bridge"}, {}).status is Status.PASS


def no_logs_client(region):
    raise AssertionError("no call expected")


def test_awslogs_without_configuration_is_a_warning():
    result = check_awslogs(definition(), "base", no_logs_client)
    assert result.status is Status.WARN and "no awslogs log configuration" in result.detail


def test_awslogs_create_group_is_not_trusted_to_create_the_group():
    """awslogs-create-group needs logs:CreateLogGroup on the execution role, which the documented
    AmazonECSTaskExecutionRolePolicy lacks: a missing group is a warning that says so."""

    class Groups:
        def __init__(self, *names):
            self.names = names

        def describe_log_groups(self, **_):
            return {"logGroups": [{"logGroupName": name} for name in self.names]}

    found = definition(**{"awslogs-group": "/g", "awslogs-stream-prefix": "p", "awslogs-create-group": "true"})
    missing = check_awslogs(found, "base", lambda region: Groups())
    assert missing.status is Status.WARN and "logs:CreateLogGroup" in missing.detail
    assert check_awslogs(found, "base", lambda region: Groups("/g")).status is Status.PASS


@pytest.mark.parametrize("airflow_3", [True, False])
def test_scheduler_secrets_in_a_task_definition_are_refused_and_the_shipped_example_has_none(airflow_3):
    import json
    from pathlib import Path

    from airflow_fargate.secret_checks import secret_problems

    example = json.loads((Path(__file__).resolve().parents[1] / "config" / "task-definition.example.json").read_text())
    assert secret_problems(example, airflow_3) == []
    leaky = {
        "containerDefinitions": [
            {
                "name": "worker",
                "secrets": [{"name": "AIRFLOW__API_AUTH__JWT_SECRET", "valueFrom": "arn:aws:secretsmanager:x"}],
                "environment": [
                    {"name": "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "value": "postgresql://airflow:pw@db/airflow"}
                ],
            }
        ]
    }
    problems = "; ".join(secret_problems(leaky, airflow_3))
    assert ("AIRFLOW__API_AUTH__JWT_SECRET (secrets)" in problems) is airflow_3
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN in plain text with a password" in problems  # Airflow 2 too
    assert "pw@" not in problems  # never repeats the secret


def test_awslogs_lookup_errors_are_a_warning_not_a_failure():
    class Denied:
        def describe_log_groups(self, **_):
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "DescribeLogGroups")

    found = definition(**{"awslogs-group": "/g", "awslogs-stream-prefix": "p", "awslogs-region": "eu-west-1"})
    regions = []
    result = check_awslogs(found, "base", lambda region: regions.append(region) or Denied())
    assert result.status is Status.WARN and "cannot verify" in result.detail
    assert regions == ["eu-west-1"]  # the group's own region


class FakeSession:
    def __init__(self, credentials: Any, sts_error: Exception | None = None) -> None:
        self.credentials = credentials
        self.sts_error = sts_error

    def get_credentials(self) -> Any:
        return self.credentials

    def client(self, service: str) -> Any:
        def get_caller_identity():
            if self.sts_error:
                raise self.sts_error
            return {"Account": "1", "Arn": "arn:aws:iam::1:role/x"}

        return SimpleNamespace(get_caller_identity=get_caller_identity)


@pytest.mark.parametrize(
    ("session", "status", "text"),
    [
        (FakeSession(None), Status.FAIL, "no AWS credentials found"),
        (FakeSession(object()), Status.PASS, "account 1, arn:aws:iam::1:role/x"),
        (
            FakeSession(object(), ClientError({"Error": {"Code": "ExpiredToken", "Message": "x"}}, "Get")),
            Status.FAIL,
            "AWS rejects the credentials",
        ),
        (FakeSession(object(), EndpointConnectionError(endpoint_url="https://sts")), Status.WARN, "credentials found"),
    ],
)
def test_credentials(session, status, text):
    result = check_credentials(session)
    assert result.status is status and text in result.detail


def test_capacity_provider_strategy_and_public_ip_sources(monkeypatch):
    strategy = '[{"capacityProvider": "FARGATE_SPOT", "weight": 1}]'
    minimal_config(monkeypatch, capacity_provider_strategy=strategy, subnets="s-1", assign_public_ip="True")
    settings = load_settings()
    builder = RunTaskKwargsBuilder(settings)
    kwargs = builder.build(["x"], None)
    sources = value_sources(kwargs, builder.base_layers(["x"]), settings)
    assert sources["capacityProviderStrategy"].startswith("[aws_ecs_executor] capacity_provider_strategy (env")
    assert sources["networkConfiguration.awsvpcConfiguration.assignPublicIp"].startswith(
        "[aws_ecs_executor] assign_public_ip (env"
    )
    assert "launchType" not in sources


class TaggingEcs:
    """An ECS client answering the two questions of the tagging check."""

    def __init__(self, arn_format: str | None = "enabled", tag_error: Exception | None = None) -> None:
        self.arn_format = arn_format
        self.tag_error = tag_error
        self.tagged: list[str] = []

    def list_account_settings(self, **kwargs):
        assert kwargs == {"name": "taskLongArnFormat", "effectiveSettings": True}
        return {"settings": [{"name": "taskLongArnFormat", "value": self.arn_format}] if self.arn_format else []}

    def describe_clusters(self, clusters):
        return {"clusters": [{"clusterArn": f"arn:aws:ecs:us-east-1:1:cluster/{clusters[0]}"}]}

    def tag_resource(self, resourceArn, tags):
        self.tagged.append(resourceArn)
        if self.tag_error:
            raise self.tag_error


def _client_error(code: str, message: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "TagResource")


@pytest.mark.parametrize(
    ("ecs", "statuses", "text"),
    [
        (TaggingEcs(), [Status.PASS, Status.PASS], "allowed"),
        (TaggingEcs(None, _client_error("InvalidParameterException", "task not found")), [Status.PASS] * 2, ""),
        (TaggingEcs("disabled"), [Status.FAIL, Status.PASS], "put-account-setting --name taskLongArnFormat"),
        (
            TaggingEcs(tag_error=_client_error("AccessDeniedException", "not authorized to perform ecs:TagResource")),
            [Status.PASS, Status.WARN],
            "ecs:TagResource on arn:aws:ecs:<region>:<account>:task/<cluster>/*",
        ),
    ],
)
def test_task_tagging_check(ecs, statuses, text):
    results = check_task_tagging(ecs, "tasks")
    assert [r.status for r in results] == statuses
    assert text in " ".join(r.detail for r in results)
    assert ecs.tagged == ["arn:aws:ecs:us-east-1:1:task/tasks/" + "0" * 32]  # a task that cannot exist


def test_startup_refuses_an_account_whose_tasks_cannot_carry_tags(monkeypatch, ecs):
    from airflow_fargate.errors import FargateConfigError
    from airflow_fargate.executor import FargateExecutor

    minimal_config(monkeypatch, check_health_on_startup="True")
    ecs.client.put_account_setting(name="taskLongArnFormat", value="disabled")
    with pytest.raises(FargateConfigError, match="taskLongArnFormat is disabled"):
        FargateExecutor().start()


def test_the_start_up_health_check_sends_its_calls_together():
    """Cluster, ARN format and task definition are asked at once (one round trip, not three):
    each stub call waits until all three are in flight, which a sequential check never reaches."""
    import threading

    from airflow_fargate.checks import startup_problems

    together = threading.Barrier(3, timeout=5)

    class Ecs:
        def describe_clusters(self, **kwargs):
            together.wait()
            return {"clusters": [{"clusterArn": "arn:aws:ecs:us-east-1:1:cluster/c", "status": "ACTIVE"}]}

        def list_account_settings(self, **kwargs):
            together.wait()
            return {"settings": [{"value": "enabled"}]}

        def describe_task_definition(self, **kwargs):
            together.wait()
            return {"taskDefinition": {"containerDefinitions": [{"name": "base"}]}}

    problems, warnings = startup_problems(Ecs(), "c", "airflow:1", "base")
    assert (problems, warnings) == ([], [])
