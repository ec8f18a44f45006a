"""run_task kwargs: the precedence table, execution_config_function, command injection, validation."""

from __future__ import annotations

import pytest

from airflow_fargate.errors import FargateConfigError, TaskConfigError
from airflow_fargate.run_task import RunTaskKwargsBuilder, apply_defaults, deep_merge
from airflow_fargate.settings import load_settings
from tests import fixtures_execution_config as fx
from tests.helpers import minimal_config, set_config

CMD = ["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string", '{"a": "b c"}']


def builder(monkeypatch, **config) -> RunTaskKwargsBuilder:
    minimal_config(monkeypatch, **config)
    return RunTaskKwargsBuilder(load_settings())


def container(kwargs, name="base"):
    return next(c for c in kwargs["overrides"]["containerOverrides"] if c["name"] == name)


# ---- defaults ---------------------------------------------------------------------------------


def test_defaults_only(monkeypatch):
    kwargs = builder(monkeypatch).build(CMD, None)
    assert kwargs["count"] == 1
    assert kwargs["launchType"] == "FARGATE"
    assert kwargs["platformVersion"] == "LATEST"
    assert kwargs["cluster"] == "airflow-tasks"
    assert kwargs["taskDefinition"] == "airflow-worker"
    assert "networkConfiguration" not in kwargs
    assert container(kwargs)["command"] == CMD
    assert {"name": "AIRFLOW_IS_EXECUTOR_CONTAINER", "value": "true"} in container(kwargs)["environment"]


def test_capacity_provider_strategy_suppresses_default_launch_type(monkeypatch):
    kwargs = builder(monkeypatch, capacity_provider_strategy='[{"capacityProvider": "FARGATE_SPOT"}]').build(CMD, None)
    assert "launchType" not in kwargs
    assert "platformVersion" not in kwargs
    assert kwargs["capacityProviderStrategy"] == [{"capacityProvider": "FARGATE_SPOT"}]


def test_ec2_drops_platform_version_and_has_no_network_unless_given(monkeypatch):
    kwargs = builder(monkeypatch, launch_type="EC2", platform_version="1.4.0").build(CMD, None)
    assert kwargs["launchType"] == "EC2"
    assert "platformVersion" not in kwargs
    assert "networkConfiguration" not in kwargs
    kwargs = builder(monkeypatch, launch_type="EC2", subnets="subnet-1").build(CMD, None)
    assert kwargs["networkConfiguration"] == {"awsvpcConfiguration": {"subnets": ["subnet-1"]}}


# ---- config values ----------------------------------------------------------------------------


def test_network_configuration_from_config(monkeypatch):
    kwargs = builder(monkeypatch, subnets="s-1,s-2", security_groups="sg-1", assign_public_ip="False").build(CMD, None)
    assert kwargs["networkConfiguration"] == {
        "awsvpcConfiguration": {"subnets": ["s-1", "s-2"], "securityGroups": ["sg-1"], "assignPublicIp": "DISABLED"}
    }


def test_legacy_config_values(monkeypatch):
    set_config(
        monkeypatch,
        "fargate",
        region="us-east-1",
        cluster="legacy",
        container_name="base",
        task_definition="td:2",
        assign_public_ip="ENABLED",
        subnets="s-1",
        platform_version="1.4.0",
    )
    kwargs = RunTaskKwargsBuilder(load_settings()).build(CMD, None)
    assert kwargs["cluster"] == "legacy"
    assert kwargs["platformVersion"] == "1.4.0"
    assert kwargs["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "ENABLED"


# ---- precedence table ---------------------------------------------------------------------------

RTK = (
    '{"platformVersion": "1.3.0", "tags": [{"key": "layer", "value": "rtk"}], '
    '"overrides": {"containerOverrides": [{"name": "base", "memory": 1024, '
    '"environment": [{"name": "A", "value": "rtk"}, {"name": "B", "value": "rtk"}]}]}}'
)


@pytest.mark.parametrize(
    ("layers", "field", "expected"),
    [
        # field set only by defaults
        ({}, "platformVersion", "LATEST"),
        # config beats defaults
        ({"config": {"platform_version": "1.4.0"}}, "platformVersion", "1.4.0"),
        # run_task_kwargs beats config
        ({"config": {"platform_version": "1.4.0"}, "rtk": RTK}, "platformVersion", "1.3.0"),
        # executor_config beats run_task_kwargs
        ({"rtk": RTK, "exec": {"platformVersion": "1.2.0"}}, "platformVersion", "1.2.0"),
        # executor_config beats config when run_task_kwargs is silent
        ({"config": {"task_definition": "td:1"}, "exec": {"taskDefinition": "td:2"}}, "taskDefinition", "td:2"),
        # lists that are not name-keyed are replaced, not appended
        (
            {"rtk": RTK, "exec": {"tags": [{"key": "layer", "value": "exec"}]}},
            "tags",
            [{"key": "layer", "value": "exec"}],
        ),
    ],
)
def test_precedence(monkeypatch, layers, field, expected):
    config = dict(layers.get("config", {}))
    if "rtk" in layers:
        config["run_task_kwargs"] = layers["rtk"]
    kwargs = builder(monkeypatch, **config).build(CMD, layers.get("exec"))
    assert kwargs[field] == expected


def test_recursive_merge_of_container_overrides_by_name(monkeypatch):
    b = builder(monkeypatch, run_task_kwargs=RTK)
    kwargs = b.build(
        CMD,
        {
            "overrides": {
                "containerOverrides": [
                    {"name": "base", "cpu": 512, "environment": [{"name": "A", "value": "exec"}]},
                    {"name": "log-router", "memory": 64},
                ],
                "taskRoleArn": "arn:aws:iam::123456789012:role/task",
            }
        },
    )
    base = container(kwargs)
    assert base["memory"] == 1024  # from run_task_kwargs, kept
    assert base["cpu"] == 512  # from executor_config, added
    env = {e["name"]: e["value"] for e in base["environment"]}
    assert env == {"A": "exec", "B": "rtk", "AIRFLOW_IS_EXECUTOR_CONTAINER": "true"}
    assert container(kwargs, "log-router") == {"name": "log-router", "memory": 64}
    assert kwargs["overrides"]["taskRoleArn"].endswith("role/task")
    assert base["command"] == CMD


def test_executor_config_capacity_provider_replaces_configured_launch_type(monkeypatch):
    kwargs = builder(monkeypatch, launch_type="FARGATE").build(
        CMD, {"capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]}
    )
    assert "launchType" not in kwargs
    assert kwargs["capacityProviderStrategy"][0]["capacityProvider"] == "FARGATE_SPOT"


def test_executor_config_cannot_set_both_launch_type_and_strategy(monkeypatch):
    b = builder(monkeypatch)
    with pytest.raises(TaskConfigError, match="executor_config sets both launchType and capacityProviderStrategy"):
        b.build(CMD, {"launchType": "EC2", "capacityProviderStrategy": [{"capacityProvider": "X"}]})


def test_builds_do_not_leak_into_each_other(monkeypatch):
    b = builder(monkeypatch, run_task_kwargs=RTK)
    first = b.build(CMD, {"overrides": {"containerOverrides": [{"name": "base", "cpu": 1}]}})
    first["overrides"]["containerOverrides"][0]["memory"] = 1
    second = b.build(["other"], None)
    assert "cpu" not in container(second)
    assert container(second)["memory"] == 1024
    assert container(second)["command"] == ["other"]


def test_launches_sharing_the_configured_layers_do_not_share_their_kwargs(monkeypatch):
    """The configured layers are merged once per queue profile; every launch still gets kwargs of
    its own, so a launch (or botocore) changing one cannot change the next."""
    b = builder(monkeypatch, run_task_kwargs=RTK, queue_profiles='{"large": {"cpu": 4096, "memory": 16384}}')
    first = b.build(CMD, None, OWNER_TAGS, "large")
    container(first)["memory"] = 1
    first["overrides"]["containerOverrides"].append({"name": "sidecar"})
    first["tags"].clear()
    second = b.build(["other"], None, OWNER_TAGS, "large")
    assert container(second)["memory"] == 16384 and container(second)["command"] == ["other"]
    assert [c["name"] for c in second["overrides"]["containerOverrides"]] == ["base"]
    assert second["tags"]
    assert container(b.build(CMD, None, OWNER_TAGS))["memory"] == 1024  # the default queue's own base


def test_deep_merge_is_pure():
    base = {"a": {"b": [1]}, "c": [{"name": "x", "v": 1}]}
    overlay = {"a": {"d": 2}, "c": [{"name": "x", "w": 2}, {"name": "y"}]}
    merged = deep_merge(base, overlay)
    assert merged == {"a": {"b": [1], "d": 2}, "c": [{"name": "x", "v": 1, "w": 2}, {"name": "y"}]}
    assert base == {"a": {"b": [1]}, "c": [{"name": "x", "v": 1}]}
    assert apply_defaults({"launchType": "EXTERNAL", "platformVersion": "x"}) == {"launchType": "EXTERNAL", "count": 1}


# ---- command injection ----------------------------------------------------------------------------


def test_command_goes_to_container_even_if_config_names_other_containers(monkeypatch):
    rtk = '{"overrides": {"containerOverrides": [{"name": "log-router", "memory": 32}]}}'
    kwargs = builder(monkeypatch, run_task_kwargs=rtk).build(CMD, None)
    assert container(kwargs)["command"] == CMD
    assert "command" not in container(kwargs, "log-router")


def test_executor_config_cannot_override_the_airflow_command(monkeypatch):
    b = builder(monkeypatch)
    with pytest.raises(TaskConfigError, match=r"containerOverrides\[0\].command.*cannot be overridden"):
        b.build(CMD, {"overrides": {"containerOverrides": [{"name": "base", "command": ["rm", "-rf"]}]}})
    # another container's command is the user's business
    kwargs = b.build(CMD, {"overrides": {"containerOverrides": [{"name": "log-router", "command": ["x"]}]}})
    assert container(kwargs, "log-router")["command"] == ["x"]


def test_client_token_is_reserved(monkeypatch):
    with pytest.raises(TaskConfigError, match="clientToken"):
        builder(monkeypatch).build(CMD, {"clientToken": "mine"})
    minimal_config(monkeypatch, run_task_kwargs='{"clientToken": "mine"}')
    with pytest.raises(FargateConfigError, match="clientToken"):
        RunTaskKwargsBuilder(load_settings())


# ---- validation -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("executor_config", "message"),
    [
        ({"overridez": {}}, r'Unknown parameter in input: "overridez"'),
        (
            {"overrides": {"containerOverrides": [{"name": "base", "cpu": "lots"}]}},
            r"overrides.containerOverrides\[name='base'\].cpu",
        ),
        (
            {"overrides": {"containerOverrides": [{"name": "base", "memroy": 1}]}},
            r"overrides.containerOverrides\[name='base'\]: \"memroy\"",
        ),
        (
            {"count": "one"},
            r"executor_config sets count='one': FargateExecutor runs every Airflow task try as exactly one",
        ),
        ({"count": 2}, r"executor_config sets count=2"),
        ({"count": 0}, r"executor_config sets count=0"),
        ({"count": True}, r"executor_config sets count=True"),
        (
            {"networkConfiguration": {"awsvpcConfiguration": {}}},
            r"networkConfiguration.awsvpcConfiguration: \"subnets\"",
        ),
        ("not a dict", r"executor_config must be a dict of ECS run_task kwargs, got str"),
        # airflow-aws-executors' ContainerOverride shape (README migration guide): cpu and memory
        # are the size shorthand now, anything else is named
        ({"cpu": 256, "memory": 512, "environment": []}, r'Unknown parameter in input: "environment"'),
        ({"cpu": 256, "memory": 4096}, r"with cpu 256 Fargate accepts memory 512, 1024, 2048 \(MiB\)"),
    ],
)
def test_bad_executor_config_fails_the_task_with_key_path(monkeypatch, executor_config, message):
    b = builder(monkeypatch)
    with pytest.raises(TaskConfigError, match=message):
        b.build(CMD, executor_config)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"run_task_kwargs": '{"lauchType": "EC2"}'}, r'Unknown parameter in input: "lauchType"'),
        (
            {"run_task_kwargs": '{"overrides": {"containerOverrides": {"name": "base"}}}'},
            r"overrides.containerOverrides",
        ),
        ({"security_groups": "sg-1"}, r"networkConfiguration.awsvpcConfiguration: \"subnets\""),
        (
            {"run_task_kwargs": '{"launchType": "EC2", "capacityProviderStrategy": [{"capacityProvider": "X"}]}'},
            "both launchType",
        ),
    ],
)
def test_bad_configuration_fails_at_start(monkeypatch, config, message):
    minimal_config(monkeypatch, **config)
    with pytest.raises(FargateConfigError, match=message):
        RunTaskKwargsBuilder(load_settings())


# ---- execution_config_function ---------------------------------------------------------------------


def legacy_builder(monkeypatch, path: str, **config) -> RunTaskKwargsBuilder:
    set_config(
        monkeypatch, "fargate", region="us-east-1", cluster="cfg", container_name="base", execution_config_function=path
    )
    if config:
        set_config(monkeypatch, "aws_ecs_executor", **config)
    return RunTaskKwargsBuilder(load_settings())


OWNER_TAGS = [{"key": "airflow-fargate:kind", "value": "task"}]


def test_launches_of_one_queue_without_executor_config_are_validated_once(monkeypatch):
    """They differ only in their command and owner tag values: botocore's validation (most of a
    build's CPU) runs for the first launch of each queue profile, not for every launch."""
    b = builder(monkeypatch, queue_profiles='{"large": {"cpu": 4096, "memory": 16384}}')
    validated = []
    real = b._problems
    monkeypatch.setattr(b, "_problems", lambda kwargs, *rest: validated.append(kwargs) or real(kwargs, *rest))
    for i in range(3):
        for queue in ("default", "large"):
            kwargs = b.build([*CMD, str(i)], None, OWNER_TAGS, queue)
            assert container(kwargs)["command"] == [*CMD, str(i)]
    assert len(validated) == 2  # once per profile
    b.build(CMD, {"overrides": {"containerOverrides": [{"name": "base", "memory": 1024}]}}, OWNER_TAGS)
    b.build(CMD, {"overrides": {"containerOverrides": [{"name": "base", "memory": 1024}]}}, OWNER_TAGS)
    assert len(validated) == 4  # a task's own executor_config: every launch


def test_launches_built_by_an_execution_config_function_are_validated_every_time(monkeypatch):
    b = legacy_builder(monkeypatch, "tests.fixtures_execution_config.good_factory", cluster="from-function")
    validated = []
    real = b._problems
    monkeypatch.setattr(b, "_problems", lambda kwargs, *rest: validated.append(kwargs) or real(kwargs, *rest))
    for i in range(3):
        b.build([*CMD, str(i)], None, OWNER_TAGS)
    assert len(validated) == 3  # the function may answer differently for every command


def test_execution_config_function_replaces_the_base_and_later_layers_apply(monkeypatch):
    fx.CALLS.clear()
    b = legacy_builder(
        monkeypatch,
        "tests.fixtures_execution_config.good_factory",
        cluster="from-function",  # the cluster the executor tracks must be the one the function launches in
        run_task_kwargs='{"startedBy": "rtk", "overrides": {"containerOverrides": [{"name": "base", "memory": 2048}]}}',
    )
    kwargs = b.build(
        CMD, {"overrides": {"containerOverrides": [{"name": "base", "environment": [{"name": "A", "value": "exec"}]}]}}
    )
    assert fx.CALLS[-1] == CMD  # the builder sees the task's command
    assert kwargs["cluster"] == "from-function"
    assert kwargs["taskDefinition"] == "fn-td"
    assert kwargs["startedBy"].startswith("airflow-fargate/db-")  # the executor's own, over every layer
    base = container(kwargs)
    assert (base["cpu"], base["memory"]) == (256, 2048)
    assert {"name": "A", "value": "exec"} in base["environment"]  # executor_config over both
    assert base["command"] == CMD
    assert kwargs["launchType"] == "FARGATE"  # defaults still fill gaps


def test_example_execution_config_function_works(monkeypatch):
    b = legacy_builder(
        monkeypatch, "airflow_fargate.config.example_execution_config.make_builder", task_definition="td"
    )
    kwargs = b.build(CMD, None)
    assert kwargs["cluster"] == "cfg"
    assert kwargs["taskDefinition"] == "td"
    assert kwargs["startedBy"].startswith("airflow-fargate/")
    assert container(kwargs)["command"] == CMD


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("tests.no_such_module.factory", r"execution_config_function .*: cannot import 'tests.no_such_module.factory'"),
        ("tests.fixtures_execution_config.missing", r"cannot import 'tests.fixtures_execution_config.missing'"),
        ("tests.fixtures_execution_config.NOT_CALLABLE", r"is a int, not a zero-argument factory"),
        (
            "tests.fixtures_execution_config.raising_factory",
            r"calling .*raising_factory\(\) failed: RuntimeError: no credentials",
        ),
        (
            "tests.fixtures_execution_config.returns_non_callable_factory",
            r"must return a function f\(command\) -> run_task kwargs, got dict",
        ),
        (
            "tests.fixtures_execution_config.returns_list_factory",
            r"the builder must return a dict of run_task kwargs, got list",
        ),
        (
            "tests.fixtures_execution_config.builder_raises_factory",
            r"the builder raised ValueError: cannot build for (python|airflow)",
        ),
        (
            "tests.fixtures_execution_config.count_factory",
            r"the kwargs returned by \[fargate\] execution_config_function .* sets count=3",
        ),
    ],
)
def test_broken_execution_config_function_fails_at_start(monkeypatch, path, message):
    with pytest.raises(FargateConfigError, match=message):
        legacy_builder(monkeypatch, path)


def test_executor_config_check_is_cached_per_distinct_valid_config(monkeypatch):
    b = builder(monkeypatch)
    builds = []
    real_build = b._build
    monkeypatch.setattr(
        b, "_build", lambda command, profile, config: builds.append(config) or real_build(command, profile, config)
    )
    good = {"overrides": {"containerOverrides": [{"name": "base", "memory": 1024}]}}
    for _ in range(3):
        b.check_executor_config(dict(good))
        b.check_executor_config(None)
    assert len(builds) == 1  # one real check, then cache hits
    bad = {"overrides": {"containerOverrides": [{"name": "base", "memory": "lots"}]}}
    for _ in range(2):
        with pytest.raises(TaskConfigError, match="memory"):
            b.check_executor_config(bad)
    assert len(builds) == 3  # invalid configs are never cached as valid


def test_assign_public_ip_false_alone_adds_no_network_block(monkeypatch):
    # the amazon provider declares [aws_ecs_executor] assign_public_ip = False as a default
    assert "networkConfiguration" not in builder(monkeypatch, assign_public_ip="False").build(CMD, None)
    minimal_config(monkeypatch, assign_public_ip="True")
    with pytest.raises(FargateConfigError, match=r'networkConfiguration.awsvpcConfiguration: "subnets"'):
        RunTaskKwargsBuilder(load_settings())


def test_run_task_kwargs_count_other_than_one_fails_at_start_naming_the_option(monkeypatch):
    with pytest.raises(FargateConfigError, match=r"\[aws_ecs_executor\] run_task_kwargs .* sets count=4"):
        builder(monkeypatch, run_task_kwargs='{"count": 4}')


def test_count_of_one_is_accepted_in_every_layer(monkeypatch):
    kwargs = builder(monkeypatch, run_task_kwargs='{"count": 1}').build(CMD, {"count": 1})
    assert kwargs["count"] == 1


def test_huge_count_is_shortened_in_the_message(monkeypatch):
    with pytest.raises(TaskConfigError) as err:
        builder(monkeypatch).build(CMD, {"count": 10**5000})
    assert len(str(err.value)) < 300


def test_a_task_launched_in_another_cluster_than_the_tracked_one_is_refused(monkeypatch):
    b = builder(monkeypatch)
    with pytest.raises(TaskConfigError, match="executor_config launches in cluster 'elsewhere'"):
        b.build(CMD, {"cluster": "elsewhere"})
    assert b.build(CMD, {"cluster": "arn:aws:ecs:us-east-1:1:cluster/airflow-tasks"})["cluster"].endswith(
        "airflow-tasks"
    )


def test_a_bad_container_override_is_named_by_its_container_not_the_merged_lists_index():
    """The user wrote one item; the executor's command container makes the merged list longer,
    so an index would point at the wrong item: the error names the container."""
    from airflow_fargate.run_task import validation_errors

    kwargs = {
        "cluster": "c",
        "taskDefinition": "t",
        "overrides": {"containerOverrides": [{"name": "base", "command": ["x"]}, {"name": "sidecar", "cpu": "x"}]},
    }
    report = validation_errors(kwargs) or ""
    assert "containerOverrides[name='sidecar'].cpu" in report and "containerOverrides[1]" not in report
