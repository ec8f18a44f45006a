"""`airflow fargate check` and `airflow fargate show-config`, invoked as an operator would: in a
subprocess, against the local ECS endpoint over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.local.server import LocalEcs

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def local() -> Iterator[LocalEcs]:
    ecs = LocalEcs(runtime="simulate").start()
    try:
        yield ecs
    finally:
        ecs.stop()


def airflow(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AWS_"))}
    clean.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # Airflow 2 offers executor CLI commands only for the configured executor
            "AIRFLOW__CORE__EXECUTOR": "airflow_fargate.FargateExecutor",
            **(env or {}),
        }
    )
    return subprocess.run(
        [sys.executable, "-m", "airflow", *args], env=clean, capture_output=True, text=True, timeout=150, check=False
    )


def lines_of(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """check name -> status of every PASS/WARN/FAIL line."""
    out = {}
    for line in result.stdout.splitlines():
        status, _, rest = line.partition("  ")
        if status.strip() in ("PASS", "WARN", "FAIL"):
            out[rest.split(":", 1)[0]] = status.strip()
    return out


def test_check_passes_against_a_healthy_deployment(local, tmp_path):
    result = airflow(tmp_path, "fargate", "check", env=local.scheduler_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_of(result) == {
        "configuration": "PASS",
        "credentials": "PASS",
        "cluster": "PASS",
        "task ARN format": "PASS",
        "task tagging": "PASS",  # the local endpoint answers the probe as ECS does: no such task
        "task definition": "PASS",
        "network": "PASS",
        "awslogs": "PASS",
        "image": "PASS",
        "task secrets": "PASS",
    }
    assert "account 123456789012" in result.stdout
    assert f"'{local.config.cluster}' is ACTIVE" in result.stdout
    assert "All checks passed." in result.stdout
    assert "missing 'cli' section" not in result.stderr  # Airflow 3 finds the commands in the provider info


def test_check_fails_with_exit_1_naming_what_to_fix(local, tmp_path):
    local.client("ecs").register_task_definition(
        family="broken",
        containerDefinitions=[
            {
                "name": local.config.container_name,
                "image": "apache/airflow:1.10.15",
                "memory": 512,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {"awslogs-group": "/ecs/missing", "awslogs-stream-prefix": "airflow"},
                },
            }
        ],
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
    )
    env = {**local.scheduler_env(), "AIRFLOW__AWS_ECS_EXECUTOR__TASK_DEFINITION": "broken"}
    result = airflow(tmp_path, "fargate", "check", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    found = lines_of(result)
    assert found["network"] == found["awslogs"] == found["image"] == "FAIL"
    assert found["cluster"] == found["task definition"] == "PASS"
    assert "no subnets are configured" in result.stdout
    assert "log group /ecs/missing does not exist" in result.stdout
    assert "looks like Airflow 1.10.15" in result.stdout
    assert "7 of 10 checks passed." in result.stdout


def test_check_reports_a_missing_container_and_stops_there(local, tmp_path):
    env = {**local.scheduler_env(), "AIRFLOW__AWS_ECS_EXECUTOR__CONTAINER_NAME": "worker"}
    result = airflow(tmp_path, "fargate", "check", env=env)
    assert result.returncode == 1
    assert lines_of(result)["task definition"] == "FAIL"
    assert "has no container named 'worker' (it has: airflow-worker)" in result.stdout
    assert "awslogs" not in lines_of(result)


def test_check_offline_reports_bad_configuration(tmp_path):
    env = {
        "AIRFLOW__FARGATE__REGION": "us-east-1",
        "AIRFLOW__FARGATE__CLUSTER": "c",
        "AIRFLOW__FARGATE__CONTAINER_NAME": "base",
        "AIRFLOW__FARGATE__LAUNCH_TYPE": "SPOT",
    }
    result = airflow(tmp_path, "fargate", "check", "--offline", env=env)
    assert result.returncode == 1
    assert lines_of(result) == {"configuration": "FAIL"}
    assert "[fargate] launch_type (AIRFLOW__FARGATE__LAUNCH_TYPE)" in result.stdout
    assert "must be one of FARGATE, EC2" in result.stdout


def test_show_config_names_the_source_of_every_value(tmp_path):
    (tmp_path / "airflow.cfg").write_text("[fargate]\nregion = eu-west-1\ncluster = from-cfg\nsubnets = subnet-a\n")
    env = {
        "AIRFLOW__AWS_ECS_EXECUTOR__CONTAINER_NAME": "base",
        "AIRFLOW__AWS_ECS_EXECUTOR__TASK_DEFINITION": "td",
        "AIRFLOW__AWS_ECS_EXECUTOR__RUN_TASK_KWARGS": json.dumps(
            {"propagateTags": "TASK_DEFINITION", "overrides": {"cpu": "512"}}
        ),
    }
    executor_config = {"overrides": {"containerOverrides": [{"name": "base", "memory": 2048}]}}
    result = airflow(
        tmp_path,
        "fargate",
        "show-config",
        "--output",
        "json",
        "--executor-config",
        json.dumps(executor_config),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    kwargs, sources = shown["run_task_kwargs"], shown["sources"]
    assert kwargs["cluster"] == "from-cfg"
    assert sources["cluster"] == "[fargate] cluster (airflow.cfg)"
    assert sources["networkConfiguration.awsvpcConfiguration.subnets"] == "[fargate] subnets (airflow.cfg)"
    assert sources["taskDefinition"] == (
        "[aws_ecs_executor] task_definition (env AIRFLOW__AWS_ECS_EXECUTOR__TASK_DEFINITION)"
    )
    assert sources["overrides.containerOverrides[base].name"].startswith("[aws_ecs_executor] container_name (env")
    assert sources["overrides.cpu"].startswith("run_task_kwargs: [aws_ecs_executor] run_task_kwargs (env")
    assert sources["propagateTags"].startswith("run_task_kwargs:")
    assert sources["overrides.containerOverrides[base].memory"] == "executor_config"
    assert sources["overrides.containerOverrides[base].command"].startswith("executor")
    assert sources["launchType"] == sources["platformVersion"] == sources["count"] == "default (built in)"
    assert set(sources) == {
        "cluster",
        "taskDefinition",
        "networkConfiguration.awsvpcConfiguration.subnets",
        "overrides.containerOverrides[base].name",
        "overrides.containerOverrides[base].memory",
        "overrides.containerOverrides[base].command",
        "overrides.containerOverrides[base].environment[AIRFLOW_IS_EXECUTOR_CONTAINER].name",
        "overrides.containerOverrides[base].environment[AIRFLOW_IS_EXECUTOR_CONTAINER].value",
        "overrides.cpu",
        "propagateTags",
        "launchType",
        "platformVersion",
        "count",
        "startedBy",
    }
    assert sources["startedBy"] == "executor (deployment_id: default)"


def test_show_config_with_an_execution_config_function_prints_a_table(tmp_path):
    env = {
        "AIRFLOW__FARGATE__REGION": "us-east-1",
        "AIRFLOW__FARGATE__CLUSTER": "c",
        "AIRFLOW__FARGATE__CONTAINER_NAME": "base",
        "AIRFLOW__FARGATE__TASK_DEFINITION": "td",
        "AIRFLOW__FARGATE__EXECUTION_CONFIG_FUNCTION": "airflow_fargate.config.example_execution_config.make_builder",
    }
    result = airflow(tmp_path, "fargate", "show-config", env=env)
    assert result.returncode == 0, result.stderr
    rows = {line.split(" = ")[0].strip(): line for line in result.stdout.splitlines() if " = " in line}
    assert rows["propagateTags"].endswith(
        "# execution_config_function: [fargate] execution_config_function (env AIRFLOW__FARGATE__EXECUTION_CONFIG_FUNCTION)"
    )
    assert rows["launchType"].endswith("# default (built in)")


def test_show_config_rejects_bad_executor_config_json(tmp_path):
    env = {
        "AIRFLOW__FARGATE__REGION": "us-east-1",
        "AIRFLOW__FARGATE__CLUSTER": "c",
        "AIRFLOW__FARGATE__CONTAINER_NAME": "base",
    }
    result = airflow(tmp_path, "fargate", "show-config", "--executor-config", "{not json", env=env)
    assert result.returncode == 1
    assert "--executor-config is not valid JSON" in result.stderr


@pytest.mark.skipif(not AIRFLOW_V3, reason="multi-team executors are Airflow 3.3")
def test_check_and_show_config_read_a_teams_configuration(local, tmp_path):
    """Airflow 3.3 multi-team: --team reads AIRFLOW__<TEAM>___AWS_ECS_EXECUTOR__*, as that team's
    executor instance does (no fallback to the global section, as in Airflow)."""
    env = {
        (k.replace("AIRFLOW__", "AIRFLOW__TEAM_A___", 1) if k.startswith("AIRFLOW__AWS_ECS_EXECUTOR__") else k): v
        for k, v in local.scheduler_env().items()
    }
    result = airflow(tmp_path, "fargate", "check", "--team", "team_a", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines_of(result)["cluster"] == "PASS"
    shown = airflow(tmp_path, "fargate", "show-config", "--team", "team_a", "--output", "json", env=env)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    sources = json.loads(shown.stdout)["sources"]
    assert sources["cluster"] == "[aws_ecs_executor] cluster (env AIRFLOW__TEAM_A___AWS_ECS_EXECUTOR__CLUSTER)"
    no_team = airflow(tmp_path, "fargate", "check", "--offline", env=env)
    assert no_team.returncode == 1 and "missing required configuration" in no_team.stdout


def test_local_endpoint_without_its_extra_says_which_extra_to_install():
    script = (
        "import sys; sys.modules['moto'] = None\n"
        "from airflow_fargate.local.__main__ import main\n"
        "sys.exit(main(['--help']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "pip install 'airflow-fargate[local]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_validates_every_queue_profile(local, tmp_path):
    local.client("ecs").register_task_definition(
        family="airflow-large", cpu="4096", memory="16384",
        containerDefinitions=[{"name": local.config.container_name, "image": local.config.image, "memory": 16384}],
    )  # fmt: skip
    profiles = {
        "large": {"taskDefinition": "airflow-large", "cpu": 4096, "memory": 16384},
        "spot": {"capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]},
        "ghost": {"taskDefinition": "no-such-family"},
    }
    env = {**local.scheduler_env(), "AIRFLOW__AWS_ECS_EXECUTOR__QUEUE_PROFILES": json.dumps(profiles)}
    result = airflow(tmp_path, "fargate", "check", env=env)
    found = lines_of(result)
    assert (found["queue profile 'large'"], found["queue profile 'spot'"]) == ("PASS", "PASS"), result.stdout
    assert found["queue profile 'ghost'"] == "FAIL" and result.returncode == 1
    assert "task definition 'airflow-large', FARGATE, cpu 4096 memory 16384; airflow-large:1 is ACTIVE" in result.stdout
    assert "task definition 'airflow-local-task', FARGATE_SPOT, the task definition's size" in result.stdout
    assert "task definition 'no-such-family' not found" in result.stdout

    env["AIRFLOW__AWS_ECS_EXECUTOR__QUEUE_PROFILES"] = json.dumps({"small": {"cpu": 512, "memory": 512}})
    result = airflow(tmp_path, "fargate", "check", "--offline", env=env)
    assert lines_of(result) == {"configuration": "FAIL"} and result.returncode == 1
    assert (
        "queue profile 'small' of [aws_ecs_executor] queue_profiles (env AIRFLOW__AWS_ECS_EXECUTOR__QUEUE_PROFILES)"
        in result.stdout
    )
    assert "with cpu 512 Fargate accepts memory 1024, 2048, 3072, 4096 (MiB)" in result.stdout


def test_show_config_for_a_queue_names_its_profile(tmp_path):
    env = {
        "AIRFLOW__AWS_ECS_EXECUTOR__REGION_NAME": "us-east-1",
        "AIRFLOW__AWS_ECS_EXECUTOR__CLUSTER": "c",
        "AIRFLOW__AWS_ECS_EXECUTOR__CONTAINER_NAME": "base",
        "AIRFLOW__AWS_ECS_EXECUTOR__TASK_DEFINITION": "td",
        "AIRFLOW__AWS_ECS_EXECUTOR__QUEUE_PROFILES": json.dumps({"large": {"cpu": 4096, "memory": 16384}}),
    }
    result = airflow(tmp_path, "fargate", "show-config", "--queue", "large", "--executor-config", '{"memory": 30720}', env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = {line.split(" = ")[0].strip(): line for line in result.stdout.splitlines() if " = " in line}
    assert "# queue profile 'large': [aws_ecs_executor] queue_profiles (env " in lines["overrides.cpu"]
    assert '"30720"' in lines["overrides.memory"] and lines["overrides.memory"].endswith("# executor_config")
    assert "# Queue 'large': its own profile." in result.stdout
    result = airflow(tmp_path, "fargate", "show-config", "--queue", "nightly", env=env)
    assert "# Queue 'nightly' has no profile (nor has the default queue): the configured layers only." in result.stdout
    assert "overrides.cpu" not in result.stdout
