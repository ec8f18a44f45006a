"""[aws_ecs_executor] and legacy [fargate] -> ExecutorSettings: every key, both sections, env and file."""

from __future__ import annotations

import logging

import pytest
from airflow.configuration import AirflowConfigParser

from airflow_fargate.catalogue import options
from airflow_fargate.errors import FargateConfigError
from airflow_fargate.settings import load_settings, option_label
from tests.helpers import minimal_config, set_config

MODERN_VALUES = {
    "region_name": "eu-west-1",
    "cluster": "prod",
    "container_name": "worker",
    "task_definition": "airflow:7",
    "launch_type": "ec2",
    "platform_version": "1.4.0",
    "assign_public_ip": "True",
    "security_groups": "sg-1, sg-2",
    "subnets": "subnet-a,subnet-b,",
    "aws_conn_id": "my_aws",
    "run_task_kwargs": '{"tags": [{"key": "team", "value": "data"}]}',
    "max_run_task_attempts": "5",
    "run_task_rate": "7.5",
    "run_task_burst": "30",
    "describe_tasks_rate": "4",
    "max_poll_interval": "30",
    "running_check_interval": "45",
    "read_task_states": "False",
    "task_start_timeout": "120",
    "check_health_on_startup": "False",
    "check_dags_at_parse_time": "False",
    "deployment_id": "analytics-prod",
    "queue_profiles": '{"large": {"cpu": 4096, "memory": 16384}}',
}
LEGACY_VALUES = {
    "region": "eu-west-1",
    "cluster": "prod",
    "task_definition": "airflow:7",
    "container_name": "worker",
    "security_groups": "sg-1, sg-2",
    "subnets": "subnet-a,subnet-b,",
    "platform_version": "1.4.0",
    "launch_type": "EC2",
    "assign_public_ip": "ENABLED",
    "execution_config_function": "pkg.module.factory",
}


def _check_common(settings) -> None:
    assert settings.region_name == "eu-west-1"
    assert settings.cluster == "prod"
    assert settings.container_name == "worker"
    assert settings.task_definition == "airflow:7"
    assert settings.launch_type == "EC2"
    assert settings.platform_version == "1.4.0"
    assert settings.assign_public_ip is True
    assert settings.security_groups == ("sg-1", "sg-2")
    assert settings.subnets == ("subnet-a", "subnet-b")


def test_every_modern_key_from_env(monkeypatch):
    set_config(monkeypatch, "aws_ecs_executor", **MODERN_VALUES)
    settings = load_settings()
    _check_common(settings)
    assert settings.aws_conn_id == "my_aws"
    assert dict(settings.run_task_kwargs) == {"tags": [{"key": "team", "value": "data"}]}
    assert settings.max_run_task_attempts == 5
    assert (settings.run_task_rate, settings.run_task_burst) == (7.5, 30)
    assert (settings.describe_tasks_rate, settings.max_poll_interval) == (4.0, 30.0)
    assert (settings.running_check_interval, settings.read_task_states) == (45.0, False)
    assert settings.task_start_timeout == 120.0
    assert settings.check_health_on_startup is False
    assert settings.check_dags_at_parse_time is False
    assert settings.deployment_id == "analytics-prod"
    assert dict(settings.queue_profiles) == {"large": {"cpu": 4096, "memory": 16384}}
    assert settings.sources["cluster"] == "[aws_ecs_executor] cluster (env AIRFLOW__AWS_ECS_EXECUTOR__CLUSTER)"


def test_every_legacy_key_from_env(monkeypatch):
    set_config(monkeypatch, "fargate", **LEGACY_VALUES)
    settings = load_settings()
    _check_common(settings)
    assert settings.execution_config_function == "pkg.module.factory"
    assert settings.sources["region_name"] == "[fargate] region (env AIRFLOW__FARGATE__REGION)"
    # modern-only settings keep their catalogue defaults
    assert settings.max_run_task_attempts == 3
    assert settings.check_health_on_startup is True
    assert settings.aws_conn_id == "aws_default"
    assert settings.sources["max_run_task_attempts"] == "default"


@pytest.mark.parametrize(("section", "values"), [("aws_ecs_executor", MODERN_VALUES), ("fargate", LEGACY_VALUES)])
def test_every_key_from_airflow_cfg(section, values):
    conf = AirflowConfigParser()
    conf.read_string(f"[{section}]\n" + "\n".join(f"{k} = {v}" for k, v in values.items()))
    settings = load_settings(conf)
    _check_common(settings)
    assert settings.sources["cluster"] == f"[{section}] cluster (airflow.cfg)"


def test_catalogue_covers_every_key_the_tests_set():
    modern = {o.name for o in options() if o.section == "aws_ecs_executor"}
    legacy = {o.name for o in options() if o.section == "fargate"}
    assert modern == set(MODERN_VALUES) | {"capacity_provider_strategy"}
    assert set(LEGACY_VALUES) <= legacy


def test_fargate_section_has_every_setting_so_it_can_be_the_only_one():
    """With the Amazon provider installed, Airflow lists its [aws_ecs_executor] instead of ours."""
    settings_of = {section: {o.setting for o in options() if o.section == section} for section in ("aws_ecs_executor", "fargate")}  # fmt: skip
    assert settings_of["aws_ecs_executor"] <= settings_of["fargate"]


def test_modern_section_wins_with_one_warning(monkeypatch, caplog):
    minimal_config(monkeypatch, cluster="modern-cluster")
    set_config(monkeypatch, "fargate", cluster="legacy-cluster", subnets="subnet-legacy")
    with caplog.at_level(logging.WARNING, logger="airflow_fargate.settings"):
        settings = load_settings()
    assert settings.cluster == "modern-cluster"
    assert settings.subnets == ("subnet-legacy",)  # only in [fargate]: used
    warnings = [r.getMessage() for r in caplog.records if "both set" in r.getMessage()]
    assert len(warnings) == 1
    assert "[aws_ecs_executor] cluster='modern-cluster'" in warnings[0]
    assert "[fargate] cluster='legacy-cluster'" in warnings[0]


def test_same_value_in_both_sections_is_not_a_conflict(monkeypatch, caplog):
    minimal_config(monkeypatch)
    set_config(monkeypatch, "fargate", cluster="airflow-tasks")
    with caplog.at_level(logging.WARNING, logger="airflow_fargate.settings"):
        load_settings()
    assert not [r for r in caplog.records if "both set" in r.getMessage()]


def test_file_and_env_mix_env_wins(monkeypatch):
    conf = AirflowConfigParser()
    conf.read_string("[fargate]\nregion = us-west-2\ncluster = from-file\ncontainer_name = c\n")
    set_config(monkeypatch, "fargate", cluster="from-env")
    settings = load_settings(conf)
    assert settings.cluster == "from-env"
    assert settings.region_name == "us-west-2"


@pytest.mark.parametrize(
    ("setting", "spellings"),
    [
        ("cluster", ["[aws_ecs_executor] cluster", "[fargate] cluster", "AIRFLOW__FARGATE__CLUSTER"]),
        ("container_name", ["[aws_ecs_executor] container_name", "[fargate] container_name"]),
        ("region_name", ["[aws_ecs_executor] region_name", "[fargate] region", "AIRFLOW__FARGATE__REGION"]),
    ],
)
def test_missing_required_option_names_both_spellings(monkeypatch, setting, spellings):
    values = {"region_name": "us-east-1", "cluster": "c", "container_name": "base"}
    del values[setting]
    set_config(monkeypatch, "aws_ecs_executor", **values)
    with pytest.raises(FargateConfigError) as err:
        load_settings()
    for spelling in spellings:
        assert spelling in str(err.value)


def test_all_missing_reports_all(monkeypatch):
    with pytest.raises(FargateConfigError, match=r"cluster.*container_name|region_name.*cluster"):
        load_settings()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("ENABLED", True), ("DISABLED", False), ("true", True), ("False", False), ("enabled", True)],
)
def test_assign_public_ip_forms(monkeypatch, raw, expected):
    minimal_config(monkeypatch, assign_public_ip=raw)
    assert load_settings().assign_public_ip is expected


@pytest.mark.parametrize(
    ("options_", "message"),
    [
        ({"assign_public_ip": "maybe"}, r"assign_public_ip .* must be True/False \(or ENABLED/DISABLED\), got 'maybe'"),
        ({"check_health_on_startup": "sure"}, r"check_health_on_startup .* must be True/False"),
        ({"launch_type": "LAMBDA"}, r"launch_type .* must be one of FARGATE, EC2, EXTERNAL, MANAGED_INSTANCES"),
        ({"max_run_task_attempts": "three"}, r"max_run_task_attempts .* must be an integer, got 'three'"),
        ({"max_run_task_attempts": "0"}, r"max_run_task_attempts .* must be at least 1, got 0"),
        ({"run_task_rate": "fast"}, r"run_task_rate .* must be a number, got 'fast'"),
        ({"run_task_rate": "0"}, r"run_task_rate .* must be greater than 0"),
        ({"run_task_burst": "-1"}, r"run_task_burst .* must be at least 1"),
        ({"task_start_timeout": "soon"}, r"task_start_timeout .* must be a number"),
        ({"run_task_kwargs": "{not json"}, r"run_task_kwargs .* is not valid JSON"),
        ({"run_task_kwargs": "[1, 2]"}, r"run_task_kwargs .* must be a JSON object, got list"),
        ({"capacity_provider_strategy": "FARGATE_SPOT"}, r"capacity_provider_strategy .* is not valid JSON"),
        ({"capacity_provider_strategy": '{"capacityProvider": "X"}'}, r"must be a JSON list, got dict"),
        ({"capacity_provider_strategy": '[{"weight": 1}]'}, r"item 0 must be an object with a \"capacityProvider\""),
        (
            {"launch_type": "FARGATE", "capacity_provider_strategy": '[{"capacityProvider": "FARGATE_SPOT"}]'},
            r"launch_type .* and .*capacity_provider_strategy .* are mutually exclusive",
        ),
    ],
)
def test_invalid_values_name_the_option(monkeypatch, options_, message):
    minimal_config(monkeypatch, **options_)
    with pytest.raises(FargateConfigError, match=message):
        load_settings()


def test_capacity_provider_strategy_is_parsed(monkeypatch):
    minimal_config(
        monkeypatch,
        capacity_provider_strategy='[{"capacityProvider": "FARGATE", "base": 1}, {"capacityProvider": "FARGATE_SPOT", "weight": 4}]',
    )
    strategy = load_settings().capacity_provider_strategy
    assert [dict(item) for item in strategy] == [
        {"capacityProvider": "FARGATE", "base": 1},
        {"capacityProvider": "FARGATE_SPOT", "weight": 4},
    ]


def test_conn_id_is_an_alias_of_aws_conn_id(monkeypatch):
    minimal_config(monkeypatch, conn_id="legacy_name")
    assert load_settings().aws_conn_id == "legacy_name"
    minimal_config(monkeypatch, aws_conn_id="new_name")
    assert load_settings().aws_conn_id == "new_name"


def test_option_label_lists_env_vars():
    label = option_label("region_name")
    assert "AIRFLOW__AWS_ECS_EXECUTOR__REGION_NAME" in label
    assert "AIRFLOW__FARGATE__REGION" in label
