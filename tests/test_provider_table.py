"""An `[aws_ecs_executor]` configuration of the Amazon provider's AwsEcsExecutor, row by row: the
run_task kwargs it gives here (or the start-up error naming the option), compared in the form ECS
sees (ECS defaults made explicit, the executor's own startedBy/tags/command left out).

The table needs nothing installed. Where apache-airflow-providers-amazon is installed (the
Airflow 3 test venv), each row marked "same" is also checked against the provider's own
build_task_kwargs, so the table states what the provider really does; a row marked "differs"
carries the reason, which the README's migration guide repeats (test below).
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from airflow_fargate.errors import FargateConfigError
from airflow_fargate.run_task import EXECUTOR_ENV, RunTaskKwargsBuilder
from airflow_fargate.settings import load_settings
from tests.helpers import set_config

README = Path(__file__).resolve().parents[1] / "README.md"
PROVIDER_INSTALLED = importlib.util.find_spec("airflow.providers.amazon") is not None
BASE = {"region_name": "us-east-1", "cluster": "tasks", "container_name": "worker", "task_definition": "worker:3"}
NET = {"subnets": "subnet-a,subnet-b", "security_groups": "sg-1"}


@dataclass(frozen=True)
class Row:
    name: str
    options: dict[str, str]
    expected: dict[str, Any] | None = None  # normalised kwargs; None: a start-up error
    error: str = ""  # text the start-up error must contain
    differs: str = ""  # why the provider does something else (README says so too)
    base: dict[str, str] = field(default_factory=lambda: dict(BASE))


def kwargs(**extra: Any) -> dict[str, Any]:
    """The normalised kwargs of BASE plus ``extra`` (FARGATE, LATEST unless overridden)."""
    out: dict[str, Any] = {
        "cluster": "tasks",
        "taskDefinition": "worker:3",
        "count": 1,
        "launchType": "FARGATE",
        "platformVersion": "LATEST",
        "overrides": {"containerOverrides": [{"name": "worker"}]},
    }
    for key, value in extra.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def vpc(assign: str | None = "DISABLED", subnets: tuple[str, ...] = ("subnet-a", "subnet-b"), **more: Any):
    config: dict[str, Any] = {"subnets": list(subnets), **more}
    if assign:
        config["assignPublicIp"] = assign
    return {"awsvpcConfiguration": config}


ROWS = [
    Row("only the required options", {}, kwargs()),
    Row("launch_type EC2: no platform version", {"launch_type": "EC2"}, kwargs(launchType="EC2", platformVersion=None)),
    Row(
        "EC2 drops a configured platform_version",
        {"launch_type": "EC2", "platform_version": "1.4.0"},
        kwargs(launchType="EC2", platformVersion=None),
    ),
    Row("FARGATE with platform_version", {"platform_version": "1.4.0"}, kwargs(platformVersion="1.4.0")),
    Row(
        "launch_type in lower case",
        {"launch_type": "fargate"},
        kwargs(),
        differs="the provider sends 'fargate', which ECS refuses; we upper-case it",
    ),
    Row("subnets and security groups", dict(NET), kwargs(networkConfiguration=vpc(securityGroups=["sg-1"]))),
    Row(
        "assign_public_ip True",
        {**NET, "assign_public_ip": "True"},
        kwargs(networkConfiguration=vpc("ENABLED", securityGroups=["sg-1"])),
    ),
    Row(
        "assign_public_ip False",
        {**NET, "assign_public_ip": "False"},
        kwargs(networkConfiguration=vpc(securityGroups=["sg-1"])),
    ),
    Row(
        "assign_public_ip ENABLED (AIP-29 spelling)",
        {**NET, "assign_public_ip": "ENABLED"},
        kwargs(networkConfiguration=vpc("ENABLED", securityGroups=["sg-1"])),
        differs="the provider reads only True as enabled (ENABLED becomes DISABLED); we accept the AIP-29 spelling",
    ),
    Row(
        "EC2 never sends assignPublicIp",
        {**NET, "launch_type": "EC2", "assign_public_ip": "True"},
        kwargs(launchType="EC2", platformVersion=None, networkConfiguration=vpc(None, securityGroups=["sg-1"])),
    ),
    Row("subnets alone", {"subnets": "subnet-a"}, kwargs(networkConfiguration=vpc(subnets=("subnet-a",)))),
    Row(
        "capacity_provider_strategy as JSON",
        {"capacity_provider_strategy": '[{"capacityProvider": "FARGATE_SPOT", "weight": 1}]'},
        kwargs(launchType=None, capacityProviderStrategy=[{"capacityProvider": "FARGATE_SPOT", "weight": 1}]),
        differs="the provider passes the option's text to RunTask as it is, which botocore refuses; we parse it",
    ),
    Row(
        "capacity_provider_strategy as the provider documents it",
        {
            "capacity_provider_strategy": "[{'capacityProvider': 'cp1', 'weight': 5}, {'capacityProvider': 'cp2', 'weight': 1}]"
        },
        kwargs(
            launchType=None,
            capacityProviderStrategy=[
                {"capacityProvider": "cp1", "weight": 5},
                {"capacityProvider": "cp2", "weight": 1},
            ],
        ),
        differs="the provider passes the option's text to RunTask as it is, which botocore refuses; we parse it",
    ),
    Row(
        "launch_type and capacity_provider_strategy",
        {"launch_type": "FARGATE", "capacity_provider_strategy": '[{"capacityProvider": "FARGATE_SPOT"}]'},
        error="mutually exclusive",
    ),
    Row(
        "run_task_kwargs platformVersion overrides the option",
        {"platform_version": "1.3.0", "run_task_kwargs": '{"platformVersion": "1.4.0"}'},
        kwargs(platformVersion="1.4.0"),
    ),
    Row(
        "run_task_kwargs in snake_case",
        {"run_task_kwargs": '{"platform_version": "1.4.0", "enable_execute_command": true}'},
        kwargs(platformVersion="1.4.0", enableExecuteCommand=True),
    ),
    Row(
        "run_task_kwargs launch_type EC2",
        {"run_task_kwargs": '{"launch_type": "EC2"}'},
        kwargs(launchType="EC2", platformVersion=None),
    ),
    Row(
        "run_task_kwargs cluster other than the option",
        {"run_task_kwargs": '{"cluster": "other"}'},
        error="launches in cluster 'other'",
        differs="the provider launches there but describes its tasks in the cluster option's cluster, where they are "
        "never found; we stop the scheduler",
    ),
    Row(
        "run_task_kwargs taskDefinition overrides the option",
        {"run_task_kwargs": '{"taskDefinition": "worker:4"}'},
        kwargs(taskDefinition="worker:4"),
    ),
    Row(
        "run_task_kwargs tags",
        {"run_task_kwargs": '{"tags": [{"key": "team", "value": "data"}]}'},
        kwargs(tags=[{"key": "team", "value": "data"}]),
    ),
    Row(
        "run_task_kwargs propagateTags",
        {"run_task_kwargs": '{"propagateTags": "TASK_DEFINITION"}'},
        kwargs(propagateTags="TASK_DEFINITION"),
    ),
    Row(
        "run_task_kwargs container override with memory",
        {"run_task_kwargs": '{"overrides": {"containerOverrides": [{"name": "worker", "memory": 4096}]}}'},
        kwargs(overrides={"containerOverrides": [{"name": "worker", "memory": 4096}]}),
    ),
    Row(
        "run_task_kwargs snake_case inside a list",
        {"run_task_kwargs": '{"overrides": {"container_overrides": [{"name": "worker", "memory_reservation": 512}]}}'},
        kwargs(overrides={"containerOverrides": [{"name": "worker", "memoryReservation": 512}]}),
        differs="the provider renames keys of objects only, not inside lists (botocore then refuses memory_reservation)",
    ),
    Row(
        "run_task_kwargs networkConfiguration beside the subnets option",
        {**NET, "run_task_kwargs": '{"networkConfiguration": {"awsvpcConfiguration": {"assignPublicIp": "ENABLED"}}}'},
        kwargs(networkConfiguration=vpc("ENABLED", securityGroups=["sg-1"])),
        differs="the provider rebuilds networkConfiguration from the options and drops run_task_kwargs' one; we merge them",
    ),
    Row(
        "run_task_kwargs count 2",
        {"run_task_kwargs": '{"count": 2}'},
        error="count=2",
        differs="the provider silently sends count 1; we stop the scheduler so the setting cannot mislead",
    ),
    Row(
        "run_task_kwargs startedBy",
        {"run_task_kwargs": '{"startedBy": "me"}'},
        kwargs(),
        differs="startedBy is replaced by the executor's own (the orphan sweep finds its tasks by it), with a warning",
    ),
    Row(
        "no task_definition",
        {},
        error="task_definition",
        base={k: v for k, v in BASE.items() if k != "task_definition"},
    ),
    Row("no cluster", {}, error="cluster", base={k: v for k, v in BASE.items() if k != "cluster"}),
    Row("security_groups without subnets", {"security_groups": "sg-1"}, error="subnets"),
    Row("run_task_kwargs that is not JSON", {"run_task_kwargs": "{not json"}, error="run_task_kwargs"),
]


def normalise(kwargs: dict[str, Any], container: str = "worker") -> dict[str, Any]:
    """The kwargs as ECS reads them: its defaults explicit, the executor's own additions out."""
    out = copy.deepcopy(kwargs)
    out.pop("startedBy", None)
    tags = [t for t in out.get("tags", []) if not str(t.get("key", "")).startswith("airflow-fargate:")]
    if tags:
        out["tags"] = tags
    else:
        out.pop("tags", None)
    for item in out.get("overrides", {}).get("containerOverrides", []):
        if item.get("name") == container:
            item.pop("command", None)
            env = [e for e in item.get("environment", []) if e.get("name") != EXECUTOR_ENV["name"]]
            if env:
                item["environment"] = env
            else:
                item.pop("environment", None)
    fargate_like = out.get("launchType") not in ("EC2", "EXTERNAL")
    if fargate_like:
        out.setdefault("platformVersion", "LATEST")  # ECS's default for Fargate
    awsvpc = out.get("networkConfiguration", {}).get("awsvpcConfiguration")
    if awsvpc is not None and fargate_like:
        awsvpc.setdefault("assignPublicIp", "DISABLED")  # ECS's default
    return out


def configure(monkeypatch, row: Row) -> None:
    set_config(monkeypatch, "aws_ecs_executor", **row.base, **row.options)


def ours(monkeypatch, row: Row) -> dict[str, Any]:
    configure(monkeypatch, row)
    return RunTaskKwargsBuilder(load_settings()).build(["airflow", "version"], None)


def test_the_table_has_at_least_25_rows_each_named_once():
    assert len(ROWS) >= 25
    assert len({row.name for row in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=lambda row: row.name)
def test_provider_configuration_gives_these_kwargs_here(monkeypatch, row):
    if row.expected is None:
        with pytest.raises(FargateConfigError, match=row.error):
            ours(monkeypatch, row)
        return
    assert normalise(ours(monkeypatch, row)) == row.expected


@pytest.mark.skipif(not PROVIDER_INSTALLED, reason="apache-airflow-providers-amazon is not installed")
@pytest.mark.parametrize("row", [r for r in ROWS if r.expected is not None and not r.differs], ids=lambda row: row.name)
def test_the_provider_gives_the_same_kwargs_for_rows_marked_same(monkeypatch, row):
    from airflow.configuration import conf
    from airflow.providers.amazon.aws.executors.ecs.ecs_executor_config import build_task_kwargs

    configure(monkeypatch, row)
    with mock_aws():
        import boto3

        boto3.client("ecs", region_name="us-east-1").create_cluster(clusterName="tasks")
        theirs = build_task_kwargs(conf)
    assert normalise(theirs) == row.expected


def test_every_deliberate_difference_is_in_the_migration_guide():
    guide = README.read_text()
    guide = guide[guide.index("### Migrating from the provider's AwsEcsExecutor") :]
    guide = " ".join(guide[: guide.index("### Migrating from airflow-aws-executors")].split())
    for row in ROWS:
        if row.differs:
            assert row.differs in guide, f"README migration guide does not say: {row.differs}"


@pytest.mark.skipif(not PROVIDER_INSTALLED, reason="apache-airflow-providers-amazon is not installed")
@pytest.mark.parametrize("row", [r for r in ROWS if r.differs], ids=lambda row: row.name)
def test_the_provider_really_differs_on_rows_marked_differs(monkeypatch, row):
    """A row marked "differs" is shown to differ: the provider's kwargs are not ours (or it refuses
    what we accept, or accepts what we refuse)."""
    from airflow.configuration import conf
    from airflow.providers.amazon.aws.executors.ecs.ecs_executor_config import build_task_kwargs

    configure(monkeypatch, row)
    with mock_aws():
        import boto3

        for cluster in ("tasks", "other"):
            boto3.client("ecs", region_name="us-east-1").create_cluster(clusterName=cluster)
        try:
            raw: dict[str, Any] | None = build_task_kwargs(conf)
        except Exception:  # the provider refuses the configuration
            raw = None
    if row.expected is None:
        assert raw is not None, "we refuse it; so does the provider"
    elif "startedBy" in row.options.get("run_task_kwargs", ""):  # normalise() drops startedBy: compare it
        assert raw is not None and raw.get("startedBy") != ours(monkeypatch, row).get("startedBy")
    else:
        assert raw is None or normalise(raw) != row.expected, "the provider gives the same kwargs"
