"""No input crashes the scheduler loop: fuzzed settings and executor_config give a clear error that
names the offending key, or valid kwargs (hypothesis)."""

from __future__ import annotations

import json

import pytest
from airflow.configuration import AirflowConfigParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_fargate.catalogue import options
from airflow_fargate.ecs_types import EcsTaskState, MalformedEntry
from airflow_fargate.errors import MAX_NESTING, FargateConfigError, TaskConfigError
from airflow_fargate.run_task import RunTaskKwargsBuilder, validation_errors
from airflow_fargate.settings import load_settings

FUZZED = [o for o in options() if not o.required and o.name != "execution_config_function"]
REQUIRED = {"region_name": "us-east-1", "cluster": "c", "container_name": "base"}
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r\n"), max_size=40)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=12,
)
raw_values = (
    text
    | json_values.map(json.dumps)
    | st.sampled_from(["True", "false", "ENABLED", "0", "-1", "1e9", "[]", "{}", "%"])
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FUZZED), raw_values, min_size=1, max_size=5))
def test_fuzzed_settings_give_settings_or_an_error_naming_the_option(chosen):
    # written as airflow.cfg text: raw values, including a bare % that interpolation rejects
    sections: dict[str, list[str]] = {"aws_ecs_executor": [f"{k} = {v}" for k, v in REQUIRED.items()], "fargate": []}
    for opt, value in chosen.items():
        sections[opt.section].append(f"{opt.name} = {value}")
    conf = AirflowConfigParser()
    conf.read_string("\n".join(f"[{name}]\n" + "\n".join(lines) for name, lines in sections.items()))
    try:
        loaded = load_settings(conf)
    except FargateConfigError as err:
        assert any(o.name in str(err) for o in chosen), str(err)
        return
    try:
        RunTaskKwargsBuilder(loaded)
    except FargateConfigError as err:  # the values parse but ECS would reject the kwargs
        assert "run_task" in str(err) or "launchType" in str(err) or "clientToken" in str(err), str(err)


executor_configs = st.dictionaries(
    st.sampled_from(["overrides", "tags", "count", "launchType", "platformVersion", "networkConfiguration", "bogus"])
    | text,
    json_values,
    max_size=4,
) | st.dictionaries(
    st.just("overrides"),
    st.fixed_dictionaries(
        {
            "containerOverrides": st.lists(
                st.dictionaries(
                    st.sampled_from(["name", "cpu", "memory", "environment", "command"]) | text, json_values, max_size=3
                ),
                max_size=3,
            )
        }
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(executor_configs, json_values))
def test_fuzzed_executor_config_fails_only_with_task_config_error(executor_config):
    builder = RunTaskKwargsBuilder(load_settings(_conf()))
    try:
        kwargs = builder.build(["python", "-m", "x"], executor_config)
    except TaskConfigError as err:
        message = str(err)
        assert message.startswith(("executor_config", "executor_config gives")), message
        return
    assert validation_errors(kwargs) is None
    overrides = kwargs["overrides"]["containerOverrides"]
    # the command always goes to the configured container, whatever else the config overrides
    ours = [o for o in overrides if o.get("name") == REQUIRED["container_name"]]
    assert len(ours) == 1 and ours[0]["command"] == ["python", "-m", "x"], overrides


def _conf() -> AirflowConfigParser:
    conf = AirflowConfigParser()
    conf.read_dict({"aws_ecs_executor": {**REQUIRED, "task_definition": "td"}})
    return conf


describe_entries = st.fixed_dictionaries(
    {"taskArn": st.just("arn:aws:ecs:us-east-1:1:task/c/t") | json_values},
    optional={
        "lastStatus": st.sampled_from(["RUNNING", "STOPPED"]) | json_values,
        "stopCode": json_values,
        "startedAt": json_values,
        "containers": st.lists(
            st.fixed_dictionaries({}, optional={"name": json_values, "exitCode": json_values, "reason": json_values}),
            max_size=3,
        )
        | json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(describe_entries, json_values))
def test_fuzzed_describe_entry_parses_or_is_malformed(entry):
    """Whatever an ECS answer holds, parsing one entry never raises anything else: the describe
    loop can skip exactly that entry."""
    try:
        state = EcsTaskState.from_api(entry)
    except MalformedEntry:
        return
    assert state.arn and isinstance(state.last_status, str)
    assert all(c.exit_code is None or isinstance(c.exit_code, int) for c in state.containers)


HOSTILE_EXAMPLES = {
    "a 5000-digit integer": '{"count": ' + "9" * 5000 + "}",
    "deep nesting (RecursionError in json)": "[" * 100_000 + "]" * 100_000,
    "nesting json parses but merging would not survive": '{"tags": ' + "[" * 500 + "]" * 500 + "}",
    "a 1 MB value": '{"tags": "' + "x" * 1_000_000 + '"}',
    "both launch styles in run_task_kwargs": '{"launchType": "EC2", "capacityProviderStrategy": []}',
}
hostile_values = st.one_of(
    st.sampled_from(sorted(HOSTILE_EXAMPLES.values())),
    st.integers(MAX_NESTING + 1, 60_000).map(lambda n: '{"overrides": ' + "[" * n + "]" * n + "}"),
    st.integers(4_301, 20_000).map(lambda n: '{"count": 1, "startedBy": ' + "7" * n + "}"),
    st.integers(10_000, 2_000_000).map(lambda n: '{"group": "' + "g" * n + '", "cluster": 1}'),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.sampled_from(["run_task_kwargs", "capacity_provider_strategy"]), hostile_values)
def test_hostile_config_values_give_a_short_error_naming_the_option(option, raw):
    """However malformed or large, a configured value ends as one FargateConfigError that names
    the option and quotes the value shortened (never a ValueError, RecursionError or SystemExit)."""
    conf = _conf()
    conf.set("aws_ecs_executor", option, raw.replace("%", "%%"))
    with pytest.raises(FargateConfigError) as err:
        RunTaskKwargsBuilder(load_settings(conf))
    assert option in str(err.value)
    assert len(str(err.value)) < 2_000


@pytest.mark.parametrize("path", ["builtins.exit", "sys.exit", "os.abort.__call__.missing"])
def test_an_execution_config_function_that_exits_is_a_config_error(path):
    conf = _conf()
    conf.read_dict({"fargate": {"execution_config_function": path}})
    with pytest.raises(FargateConfigError, match=r"\[fargate\] execution_config_function"):
        RunTaskKwargsBuilder(load_settings(conf))


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "executor_config",
    [
        {"overrides": {"containerOverrides": [{"name": "x", "environment": [[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]}]}},
        {"tags": [{"key": "k", "value": []}], "startedBy": 10**5000},
        {"tags": "t" * 2_000_000},
        {"overrides": _nested(5000)},
    ],
    ids=["nested", "huge-int", "huge-string", "deep"],
)
def test_hostile_executor_config_fails_only_that_task_with_a_short_message(executor_config):
    builder = RunTaskKwargsBuilder(load_settings(_conf()))
    with pytest.raises(TaskConfigError) as err:
        builder.check_executor_config(executor_config)
    assert str(err.value).startswith("executor_config") and len(str(err.value)) < 2_000
