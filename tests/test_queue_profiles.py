"""Queue profiles: routing by Airflow queue, their place in the precedence, start-up validation."""

from __future__ import annotations

import json
import logging

import pytest

from airflow_fargate.errors import FargateConfigError, TaskConfigError
from airflow_fargate.run_task import RunTaskKwargsBuilder
from airflow_fargate.settings import load_settings
from tests import fixtures_execution_config as fx
from tests.helpers import minimal_config, set_config

CMD = ["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string", '{"a": "b c"}']
SPOT = [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
PROFILES = {
    "large": {"taskDefinition": "airflow-large:2", "cpu": 4096, "memory": 16384},
    "spot": {"capacityProviderStrategy": SPOT},
    "default": {"tags": [{"key": "tier", "value": "standard"}]},
}


def builder(monkeypatch, profiles=PROFILES, **config) -> RunTaskKwargsBuilder:
    minimal_config(monkeypatch, queue_profiles=json.dumps(profiles), **config)
    return RunTaskKwargsBuilder(load_settings())


def container(kwargs, name="base"):
    return next(c for c in kwargs["overrides"]["containerOverrides"] if c["name"] == name)


def user_tags(kwargs):
    return {t["key"]: t["value"] for t in kwargs.get("tags", []) if not t["key"].startswith("airflow-fargate:")}


def test_queue_selects_its_profile(monkeypatch):
    b = builder(monkeypatch)
    large = b.build(CMD, None, queue="large")
    assert large["taskDefinition"] == "airflow-large:2"
    assert (large["overrides"]["cpu"], large["overrides"]["memory"]) == ("4096", "16384")
    assert (container(large)["cpu"], container(large)["memory"]) == (4096, 16384)
    assert container(large)["command"] == CMD
    spot = b.build(CMD, None, queue="spot")
    assert spot["capacityProviderStrategy"] == SPOT and "launchType" not in spot
    assert spot["taskDefinition"] == "airflow-worker"
    assert "platformVersion" not in spot  # a FARGATE default only


def test_unknown_queue_gets_the_default_queues_profile_with_one_warning_per_name(monkeypatch, caplog):
    b = builder(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="airflow_fargate"):
        for _ in range(3):
            assert user_tags(b.build(CMD, None, queue="lagre")) == {"tier": "standard"}
        b.check_executor_config({"tags": []}, "lagre")
        b.build(CMD, None, queue="other")
        assert user_tags(b.build(CMD, None, queue=None)) == {"tier": "standard"}  # callbacks carry no queue
        assert user_tags(b.build(CMD, None, queue="default")) == {"tier": "standard"}
    warnings = [r.getMessage() for r in caplog.records if "has no profile" in r.getMessage()]
    assert len(warnings) == 2
    assert "'lagre'" in warnings[0] and "default, large, spot" in warnings[0] and "'default''s profile" in warnings[0]
    assert "'other'" in warnings[1]


def test_default_queue_is_airflows_operators_default_queue(monkeypatch):
    set_config(monkeypatch, "operators", default_queue="standard")
    profiles = {"standard": {"tags": [{"key": "tier", "value": "standard"}]}, "large": PROFILES["large"]}
    b = builder(monkeypatch, profiles)
    assert user_tags(b.build(CMD, None, queue="default")) == {"tier": "standard"}
    assert b.build(CMD, None, queue="large")["taskDefinition"] == "airflow-large:2"


def test_without_a_default_queue_profile_unknown_queues_get_the_configured_layers(monkeypatch):
    b = builder(monkeypatch, {"large": PROFILES["large"]})
    kwargs = b.build(CMD, None, queue="default")
    assert kwargs["taskDefinition"] == "airflow-worker" and "cpu" not in kwargs["overrides"]


def test_without_profiles_the_queue_changes_nothing_and_warns_nothing(monkeypatch, caplog):
    minimal_config(monkeypatch)
    b = RunTaskKwargsBuilder(load_settings())
    with caplog.at_level(logging.WARNING, logger="airflow_fargate"):
        assert b.build(CMD, None, queue="anything") == b.build(CMD, None)
    assert not caplog.records


def test_precedence_config_then_run_task_kwargs_then_profile_then_executor_config(monkeypatch):
    """One key set in all four layers, and keys set in only some: the highest layer wins each."""
    env = lambda value: {"overrides": {"containerOverrides": [{"name": "base", "environment": [{"name": "LAYER", "value": value}]}]}}  # noqa: E731  # fmt: skip
    run_task_kwargs = {**env("run_task_kwargs"), "platformVersion": "1.4.0", "enableExecuteCommand": True,
                       "tags": [{"key": "from", "value": "run_task_kwargs"}]}  # fmt: skip
    profile = {**env("profile"), "platformVersion": "1.3.0", "propagateTags": "TASK_DEFINITION"}
    b = builder(
        monkeypatch, {"p": profile}, run_task_kwargs=json.dumps(run_task_kwargs), platform_version="1.2.0",
        subnets="subnet-config",
    )  # fmt: skip

    def layer(kwargs):
        return next(e["value"] for e in container(kwargs)["environment"] if e["name"] == "LAYER")

    plain = b.build(CMD, None, queue="p")
    assert layer(plain) == "profile" and plain["platformVersion"] == "1.3.0"
    assert plain["enableExecuteCommand"] is True  # run_task_kwargs, not overridden
    assert plain["propagateTags"] == "TASK_DEFINITION"  # profile only
    assert plain["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == ["subnet-config"]  # config only
    assert user_tags(plain) == {"from": "run_task_kwargs"}
    task = b.build(CMD, {**env("executor_config"), "platformVersion": "1.4.0"}, queue="p")
    assert layer(task) == "executor_config" and task["platformVersion"] == "1.4.0"
    assert task["propagateTags"] == "TASK_DEFINITION"


def test_profile_layer_sits_over_an_execution_config_function(monkeypatch):
    set_config(monkeypatch, "fargate", execution_config_function=f"{fx.__name__}.good_factory")
    b = builder(monkeypatch, {"spot": {"capacityProviderStrategy": SPOT}}, cluster="from-function")
    kwargs = b.build(CMD, None, queue="spot")
    assert kwargs["capacityProviderStrategy"] == SPOT and "launchType" not in kwargs
    assert kwargs["taskDefinition"] == "fn-td"


def test_profile_launch_type_replaces_a_configured_strategy_and_back(monkeypatch):
    strategy = json.dumps([{"capacityProvider": "FARGATE", "weight": 1}])
    b = builder(monkeypatch, {"ec2": {"launchType": "EC2"}}, capacity_provider_strategy=strategy)
    kwargs = b.build(CMD, None, queue="ec2")
    assert kwargs["launchType"] == "EC2" and "capacityProviderStrategy" not in kwargs
    assert b.build(CMD, {"capacityProviderStrategy": SPOT}, queue="ec2")["capacityProviderStrategy"] == SPOT


def test_snake_case_profiles_are_accepted(monkeypatch):
    b = builder(monkeypatch, {"p": {"platform_version": "1.4.0", "network_configuration": {"awsvpc_configuration": {"subnets": ["s"]}}}})  # fmt: skip
    kwargs = b.build(CMD, None, queue="p")
    assert kwargs["platformVersion"] == "1.4.0"
    assert kwargs["networkConfiguration"]["awsvpcConfiguration"]["subnets"] == ["s"]


@pytest.mark.parametrize(
    ("profiles", "message"),
    [
        ({"large": {"cpus": 4096}}, r"queue profile 'large' of .*queue_profiles.*Unknown parameter in input: \"cpus\""),
        (
            {"large": {"count": 2}},
            r"profile 'large' of \[aws_ecs_executor\] queue_profiles \(env AIRFLOW__AWS_ECS_EXECUTOR__QUEUE_PROFILES\) sets count=2",
        ),
        ({"large": "4096"}, r"queue_profiles.*: profile 'large' must be an object of run_task kwargs"),
        (
            {"large": {"cpu": 1024, "memory": 1000}},
            r"profile 'large'.*with cpu 1024 Fargate accepts memory 2048, 3072, 4096, 5120, 6144, 7168, 8192 \(MiB\)",
        ),
        (
            {"large": {"overrides": {"cpu": "3000"}}},
            r"profile 'large'.*Fargate accepts cpu 256, 512, 1024, 2048, 4096, 8192, 16384",
        ),
        (
            {"large": {"clientToken": "x"}},
            r"profile 'large' of \[aws_ecs_executor\] queue_profiles \(env AIRFLOW__AWS_ECS_EXECUTOR__QUEUE_PROFILES\) may not set clientToken",
        ),
        (
            {"large": {"launchType": "EC2", "capacityProviderStrategy": SPOT}},
            r"profile 'large' of \[aws_ecs_executor\] queue_profiles \(env AIRFLOW__AWS_ECS_EXECUTOR__QUEUE_PROFILES\) sets both launchType",
        ),
        (
            {"large": {"cluster": "other"}},
            r"profile 'large' of \[aws_ecs_executor\] queue_profiles \(env AIRFLOW__AWS_ECS_EXECUTOR__QUEUE_PROFILES\) launches in cluster 'other'",
        ),
        (
            {"x": {"overrides": {"containerOverrides": [{"name": "base", "command": ["x"]}]}}},
            r"profile 'x' of \[aws_ecs_executor\] queue_profiles \(env AIRFLOW__AWS_ECS_EXECUTOR__QUEUE_PROFILES\) overrides.containerOverrides\[0\].command",
        ),
        ({" ": {}}, r"queue_profiles.*' ' is not a queue name"),
        ([{"large": {}}], r"queue_profiles.*must be a JSON object, got list"),
        ({"p": {"tags": [{"key": "a", "value": "b"}] * 51}}, r"profile 'p'.*51 tags"),
    ],
)
def test_an_invalid_profile_stops_the_scheduler_at_start_naming_it(monkeypatch, profiles, message):
    with pytest.raises(FargateConfigError, match=message):
        builder(monkeypatch, profiles)


def test_an_executor_config_is_checked_with_its_queues_profile(monkeypatch):
    b = builder(monkeypatch)
    b.check_executor_config({"memory": 8192}, "large")  # 4096 CPU from the profile: valid either way
    b.check_executor_config({"cpu": 256, "memory": 512})  # the default profile has no size
    with pytest.raises(TaskConfigError, match=r"executor_config \(with the profile of queue 'large'\).*with cpu 4096"):
        b.build(CMD, {"memory": 2048}, queue="large")
    with pytest.raises(TaskConfigError, match="with cpu 4096"):
        b.check_executor_config({"memory": 2048}, "large")


def test_the_check_cache_tells_profiles_apart(monkeypatch):
    b = builder(monkeypatch)
    b.check_executor_config({"memory": 2048})  # valid under the default profile (the definition's cpu)
    with pytest.raises(TaskConfigError):
        b.check_executor_config({"memory": 2048}, "large")


def test_show_config_layers_name_the_profile(monkeypatch):
    from airflow_fargate.provenance import value_sources

    b = builder(monkeypatch)
    settings = load_settings()
    kwargs = b.build(CMD, {"memory": 30720}, queue="large")
    sources = value_sources(kwargs, b.layers(CMD, "large", {"memory": 30720}), settings)
    assert sources["taskDefinition"].startswith("queue profile 'large': [aws_ecs_executor] queue_profiles (env ")
    assert sources["overrides.cpu"].startswith("queue profile 'large'")
    assert sources["overrides.memory"] == "executor_config"
    assert sources["cluster"].startswith("[aws_ecs_executor] cluster")


# ---- through the executor (Airflow 3's queue_workload, Airflow 2's execute_async) ----------------


@pytest.fixture
def routed_executor(monkeypatch, ecs):
    from airflow_fargate.executor import FargateExecutor
    from tests.executor_harness import FakeClock

    ecs.client.register_task_definition(
        family="airflow-large", cpu="4096", memory="16384", networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"], containerDefinitions=[{"name": "base", "image": "apache/airflow", "cpu": 4096, "memory": 16384}],
    )  # fmt: skip
    profiles = {"large": {"taskDefinition": "airflow-large", "cpu": 4096, "memory": 16384}}
    minimal_config(
        monkeypatch, queue_profiles=json.dumps(profiles), check_health_on_startup="True",
        subnets=",".join(ecs.subnets), security_groups=ecs.security_group,
    )  # fmt: skip
    executor = FargateExecutor()
    executor._clock = FakeClock()
    executor.start()
    yield executor
    executor.end()


def test_the_executor_launches_each_task_with_its_queues_profile(routed_executor):
    from airflow.utils.state import TaskInstanceState

    from tests.executor_harness import beat, calls, events, queue
    from tests.helpers import make_workload

    sent = calls(routed_executor, "RunTask")
    large, plain, typo = queue(
        routed_executor,
        make_workload("large", queue="large"),
        make_workload("plain"),
        make_workload("typo", queue="lrage", executor_config={"cpu": 512, "memory": 1024}),
    )
    bad = queue(routed_executor, make_workload("bad", queue="large", executor_config={"memory": 4096}))[0]
    beat(routed_executor)
    by_task = {next(t["value"] for t in call["tags"] if t["key"] == "airflow-fargate:task_id"): call for call in sent}
    assert set(by_task) == {"large", "plain", "typo"}  # "bad" never reached RunTask
    assert by_task["large"]["taskDefinition"] == "airflow-large"
    assert by_task["large"]["overrides"]["memory"] == "16384"
    assert by_task["plain"]["taskDefinition"] == "airflow-worker" and "cpu" not in by_task["plain"]["overrides"]
    assert by_task["typo"]["overrides"]["cpu"] == "512"
    buffered = events(routed_executor)
    assert all(buffered[key][0] == TaskInstanceState.RUNNING for key in (large, plain, typo))
    assert buffered[bad][0] == TaskInstanceState.FAILED


def test_the_readmes_routing_example_is_valid(monkeypatch):
    """The airflow.cfg snippet under "Routing tasks by queue" loads and every profile builds."""
    import configparser
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Routing tasks by queue", 1)[1]
    snippet = re.search(r"```ini\n(.*?)```", section, re.S).group(1)
    parser = configparser.ConfigParser()
    parser.read_string(snippet)
    profiles = json.loads(parser.get("aws_ecs_executor", "queue_profiles"))
    assert set(profiles) == {"default", "large", "spot", "gpu"}
    b = builder(monkeypatch, profiles, container_name="airflow-worker")
    assert b.build(CMD, None, queue="gpu", owner_tags=None)["launchType"] == "EC2"
    assert b.build(CMD, {"memory": 30720}, queue="large")["overrides"]["memory"] == "30720"


def test_the_fargate_section_spelling_works_too(monkeypatch):
    minimal_config(monkeypatch)
    set_config(monkeypatch, "fargate", queue_profiles=json.dumps({"large": {"cpu": 2048, "memory": 4096}}))
    b = RunTaskKwargsBuilder(load_settings())
    assert b.build(CMD, None, queue="large")["overrides"]["cpu"] == "2048"
    with pytest.raises(FargateConfigError, match=r"queue profile 'large' of \[fargate\] queue_profiles \(env "):
        set_config(monkeypatch, "fargate", queue_profiles=json.dumps({"large": {"cpu": 2048, "memory": 2048}}))
        RunTaskKwargsBuilder(load_settings())


def test_a_wrong_fargate_size_in_run_task_kwargs_stops_the_scheduler_at_start(monkeypatch):
    minimal_config(monkeypatch, run_task_kwargs=json.dumps({"overrides": {"cpu": "2048", "memory": "2048"}}))
    with pytest.raises(FargateConfigError, match=r"run_task_kwargs.*with cpu 2048 Fargate accepts memory 4096, 5120"):
        RunTaskKwargsBuilder(load_settings())
