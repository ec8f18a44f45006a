"""No input crashes the scheduler loop: fuzzed settings and executor_config give a clear error that
names the offending key, or valid kwargs (hypothesis)."""

from __future__ import annotations

import json

from airflow.configuration import AirflowConfigParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_fargate.catalogue import options
from airflow_fargate.ecs_types import EcsTaskState, MalformedEntry
from airflow_fargate.errors import FargateConfigError, TaskConfigError
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
    assert kwargs["overrides"]["containerOverrides"][-1]["name"] or kwargs["overrides"]["containerOverrides"]


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
