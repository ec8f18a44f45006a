"""What a user of apache-airflow-providers-amazon's AwsEcsExecutor can keep writing: snake_case
run_task_kwargs, the documented capacity_provider_strategy literal, EC2 without a public IP
setting, the cluster's default capacity provider strategy, and errors Airflow recognises."""

from __future__ import annotations

import importlib.util

import pytest
from airflow.exceptions import AirflowConfigException, AirflowException

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.errors import FargateConfigError, TaskConfigError
from airflow_fargate.executor import FargateExecutor
from airflow_fargate.run_task import RunTaskKwargsBuilder
from airflow_fargate.settings import load_settings
from tests.executor_harness import calls
from tests.helpers import CLUSTER, minimal_config, moto_ecs, set_config

CMD = ["airflow", "version"]


def build(monkeypatch, executor_config=None, **config):
    minimal_config(monkeypatch, **config)
    return RunTaskKwargsBuilder(load_settings()).build(CMD, executor_config)


def test_snake_case_run_task_kwargs_are_camelized_at_every_depth_the_run_task_shape_knows(monkeypatch):
    kwargs = build(
        monkeypatch,
        run_task_kwargs='{"platform_version": "1.4.0", "enable_execute_command": true, "propagate_tags": "TASK_DEFINITION",'
        ' "network_configuration": {"awsvpc_configuration": {"subnets": ["s-1"], "assign_public_ip": "ENABLED"}},'
        ' "overrides": {"container_overrides": [{"name": "base", "memory_reservation": 512}], "task_role_arn": "r"},'
        ' "tags": [{"key": "my_tag", "value": "keep_me"}]}',
    )
    assert kwargs["platformVersion"] == "1.4.0" and kwargs["enableExecuteCommand"] is True
    assert kwargs["propagateTags"] == "TASK_DEFINITION"
    assert kwargs["networkConfiguration"] == {"awsvpcConfiguration": {"subnets": ["s-1"], "assignPublicIp": "ENABLED"}}
    assert kwargs["overrides"]["taskRoleArn"] == "r"
    base = next(c for c in kwargs["overrides"]["containerOverrides"] if c["name"] == "base")
    assert base["memoryReservation"] == 512 and base["command"] == CMD
    assert {"key": "my_tag", "value": "keep_me"} in kwargs["tags"]  # tag keys and values are the user's


def test_snake_case_executor_config_is_camelized_too(monkeypatch):
    kwargs = build(monkeypatch, {"overrides": {"container_overrides": [{"name": "base", "cpu": 512}]}})
    assert next(c for c in kwargs["overrides"]["containerOverrides"] if c["name"] == "base")["cpu"] == 512


def test_both_spellings_of_one_key_are_refused_naming_both(monkeypatch):
    with pytest.raises(FargateConfigError, match="sets both platform_version and platformVersion"):
        build(monkeypatch, run_task_kwargs='{"platform_version": "1.4.0", "platformVersion": "1.3.0"}')
    with pytest.raises(TaskConfigError, match="executor_config sets both started_by and startedBy"):
        build(monkeypatch, {"started_by": "a", "startedBy": "b"}, run_task_kwargs="{}")


def test_unknown_snake_case_key_is_still_reported_by_validation(monkeypatch):
    with pytest.raises(FargateConfigError, match="no_such_key"):
        build(monkeypatch, run_task_kwargs='{"no_such_key": 1}')


def test_capacity_provider_strategy_in_the_providers_documented_python_form(monkeypatch):
    kwargs = build(
        monkeypatch,
        capacity_provider_strategy="[{'capacityProvider': 'cp1', 'weight': 5}, {'capacityProvider': 'cp2'}]",
    )
    assert kwargs["capacityProviderStrategy"] == [{"capacityProvider": "cp1", "weight": 5}, {"capacityProvider": "cp2"}]
    assert "launchType" not in kwargs


def test_capacity_provider_strategy_that_is_neither_json_nor_a_list_literal_names_the_option(monkeypatch):
    minimal_config(monkeypatch, capacity_provider_strategy="{'capacityProvider': 'cp1'")
    with pytest.raises(FargateConfigError, match=r"\[aws_ecs_executor\] capacity_provider_strategy"):
        load_settings()


def test_ec2_never_sends_assign_public_ip(monkeypatch):
    kwargs = build(monkeypatch, launch_type="EC2", subnets="s-1", assign_public_ip="True")
    assert kwargs["networkConfiguration"] == {"awsvpcConfiguration": {"subnets": ["s-1"]}}
    assert (
        build(monkeypatch, launch_type="FARGATE", subnets="s-1", assign_public_ip="True")["networkConfiguration"][
            "awsvpcConfiguration"
        ]["assignPublicIp"]
        == "ENABLED"
    )


def test_missing_task_definition_names_the_option(monkeypatch):
    minimal_config(monkeypatch)
    set_config(monkeypatch, "aws_ecs_executor", task_definition="")
    with pytest.raises(FargateConfigError, match=r"Set \[aws_ecs_executor\] task_definition .*or \[fargate\] task_def"):
        RunTaskKwargsBuilder(load_settings())


def test_start_up_errors_are_airflow_exceptions_and_airflows_config_exception():
    assert issubclass(FargateConfigError, AirflowException)
    assert issubclass(FargateConfigError, AirflowConfigException)


@pytest.mark.parametrize(
    ("default_strategy", "config", "expected_launch_type"),
    [
        ([{"capacityProvider": "FARGATE_SPOT", "weight": 1}], {}, None),  # the cluster decides
        ([], {}, "FARGATE"),
        ([{"capacityProvider": "FARGATE_SPOT", "weight": 1}], {"launch_type": "FARGATE"}, "FARGATE"),
    ],
)
def test_neither_launch_type_nor_strategy_uses_the_clusters_default(
    monkeypatch, default_strategy, config, expected_launch_type
):
    with moto_ecs() as world:
        if default_strategy:
            world.client.put_cluster_capacity_providers(
                cluster=CLUSTER,
                capacityProviders=["FARGATE", "FARGATE_SPOT"],
                defaultCapacityProviderStrategy=default_strategy,
            )
        minimal_config(monkeypatch, subnets=",".join(world.subnets), security_groups=world.security_group, **config)
        executor = FargateExecutor()
        executor.start()
        described = calls(executor, "DescribeClusters")
        try:
            kwargs = executor.kwargs_builder.build(CMD, None)
        finally:
            executor.end()
    assert kwargs.get("launchType") == expected_launch_type
    assert "capacityProviderStrategy" not in kwargs  # ECS applies the default itself
    assert described == []  # asked once, at start


# ---- examples and execution_config_functions that would fail on real ECS -----------------------


def legacy(monkeypatch, function: str, **options):
    from tests.helpers import set_config

    values = {"region": "us-east-1", "cluster": "c", "container_name": "base", "task_definition": "td"}
    set_config(monkeypatch, "fargate", **{**values, "execution_config_function": function, **options})
    return load_settings()


def test_the_shipped_example_gives_valid_kwargs_for_a_real_workload_and_keeps_the_section_values(monkeypatch):
    from airflow_fargate.checks import Status, check_execution_config_function
    from airflow_fargate.compat import AIRFLOW_V3
    from airflow_fargate.run_task import tag_problems, token_copies
    from airflow_fargate.work import sample_command

    settings = legacy(
        monkeypatch,
        "airflow_fargate.config.example_execution_config.make_builder",
        subnets="subnet-1",
        security_groups="sg-1",
        assign_public_ip="ENABLED",
    )
    builder = RunTaskKwargsBuilder(settings)
    command = sample_command(AIRFLOW_V3)
    kwargs = builder.build(command, None)
    assert tag_problems(kwargs) is None and token_copies(kwargs, command) == []
    assert kwargs["networkConfiguration"]["awsvpcConfiguration"] == {
        "subnets": ["subnet-1"],
        "securityGroups": ["sg-1"],
        "assignPublicIp": "ENABLED",
    }
    check = check_execution_config_function(settings, builder)
    assert check is not None and check.status is Status.PASS


AIRFLOW3_COMMAND = pytest.mark.skipif(
    not AIRFLOW_V3, reason="Airflow 2's command (airflow tasks run ...) carries no token and fits in a tag"
)


@AIRFLOW3_COMMAND
def test_a_function_that_tags_tasks_with_their_command_is_refused_at_start(monkeypatch):
    settings = legacy(monkeypatch, "tests.fixtures_execution_config.command_tag_factory")
    with pytest.raises(FargateConfigError, match=r"tags\[0\]\.value .*not a valid tag value|copy the task's command"):
        RunTaskKwargsBuilder(settings)


@AIRFLOW3_COMMAND
def test_a_function_that_copies_the_token_elsewhere_is_refused_naming_where(monkeypatch):
    settings = legacy(monkeypatch, "tests.fixtures_execution_config.token_env_factory")
    with pytest.raises(FargateConfigError, match=r"execution-API token, into overrides\.containerOverrides"):
        RunTaskKwargsBuilder(settings)


def test_options_a_function_drops_are_named_at_start_and_another_cluster_is_refused(monkeypatch, capfd):
    from airflow_fargate.checks import Status, check_execution_config_function

    settings = legacy(monkeypatch, "tests.fixtures_execution_config.good_factory", cluster="from-function",
                      subnets="subnet-1", security_groups="sg-1")  # fmt: skip
    check = check_execution_config_function(settings, RunTaskKwargsBuilder(settings))
    assert check is not None and check.status is Status.WARN
    assert "[fargate] security_groups" in check.detail and "[fargate] subnets" in check.detail
    settings = legacy(monkeypatch, "tests.fixtures_execution_config.good_factory", cluster="tracked")
    with pytest.raises(FargateConfigError, match=r"launches in cluster 'from-function' but .* in 'tracked'"):
        RunTaskKwargsBuilder(settings)


def test_invalid_tag_in_executor_config_fails_that_task_only(monkeypatch):
    with pytest.raises(TaskConfigError, match=r"tags\[0\]\.value"):
        build(monkeypatch, {"tags": [{"key": "cmd", "value": '{"json": "x"}'}]}, run_task_kwargs="{}")
    with pytest.raises(FargateConfigError, match=r"tags\[0\]\.key"):
        build(monkeypatch, run_task_kwargs='{"tags": [{"key": "aws:reserved", "value": "x"}]}')


# ---- beside apache-airflow-providers-amazon (installed in the Airflow 3 test venv, as in the apache/airflow image) --

PROVIDER_INSTALLED = importlib.util.find_spec("airflow.providers.amazon") is not None
with_provider = pytest.mark.skipif(not PROVIDER_INSTALLED, reason="apache-airflow-providers-amazon is not installed")


@with_provider
def test_the_providers_defaults_never_override_fargate_values(monkeypatch, caplog):
    from airflow.configuration import conf

    set_config(monkeypatch, "fargate", region="r", cluster="c", container_name="x", task_definition="td",
               assign_public_ip="True", platform_version="1.3.0")  # fmt: skip
    assert conf.get("aws_ecs_executor", "assign_public_ip") == "False"  # the provider's declared default
    with caplog.at_level("WARNING", logger="airflow_fargate.settings"):
        settings = load_settings()
    assert (settings.assign_public_ip, settings.platform_version) == (True, "1.3.0")
    assert settings.run_task_rate == 20.0 and settings.max_run_task_attempts == 3  # our defaults
    assert not [r for r in caplog.records if "both set" in r.getMessage()]


@with_provider
def test_an_explicit_aws_ecs_executor_value_still_wins_with_one_warning(monkeypatch, caplog):
    set_config(monkeypatch, "fargate", region="r", cluster="c", container_name="x", platform_version="1.3.0")
    set_config(monkeypatch, "aws_ecs_executor", platform_version="1.4.0")
    with caplog.at_level("WARNING", logger="airflow_fargate.settings"):
        assert load_settings().platform_version == "1.4.0"
    assert len([r for r in caplog.records if "both set" in r.getMessage()]) == 1


@with_provider
def test_fargate_executor_and_the_providers_executor_configured_side_by_side(monkeypatch):
    from airflow.configuration import conf
    from airflow.providers.amazon.aws.executors.ecs.ecs_executor_config import build_task_kwargs

    set_config(monkeypatch, "aws_ecs_executor", region_name="eu-west-1", cluster="provider-tasks",
               container_name="worker", task_definition="provider-td", launch_type="FARGATE", subnets="subnet-p")  # fmt: skip
    set_config(monkeypatch, "fargate", ignore_aws_ecs_executor_section="True", region="us-east-1",
               cluster="fargate-tasks", container_name="base", task_definition="fargate-td")  # fmt: skip
    ours = load_settings()
    assert (ours.cluster, ours.region_name, ours.task_definition, ours.subnets) == (
        "fargate-tasks", "us-east-1", "fargate-td", ()
    )  # fmt: skip
    theirs = build_task_kwargs(conf)
    assert (theirs["cluster"], theirs["taskDefinition"]) == ("provider-tasks", "provider-td")


def test_reading_only_the_fargate_section_says_so_when_it_lacks_a_required_key(monkeypatch):
    set_config(monkeypatch, "aws_ecs_executor", region_name="eu-west-1", cluster="c", container_name="w")
    set_config(monkeypatch, "fargate", ignore_aws_ecs_executor_section="True", region="us-east-1")
    with pytest.raises(FargateConfigError, match=r"only \[fargate\] is read.*set \[fargate\] cluster"):
        load_settings()
