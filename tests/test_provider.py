"""Provider metadata: schema-valid, and `airflow config list` shows both sections with defaults."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.docs import render
from airflow_fargate.provider import get_provider_info

ROOT = Path(__file__).resolve().parents[1]


def test_provider_info_matches_airflows_schema():
    schema = json.loads(resources.files("airflow").joinpath("provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert set(info["config"]) == {"aws_ecs_executor", "fargate"}
    assert info["executors"] == ["airflow_fargate.FargateExecutor"]


PROVIDER_INSTALLED = importlib.util.find_spec("airflow.providers.amazon") is not None


def test_entry_point_is_registered():
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="apache_airflow_provider") if e.module.startswith("airflow_fargate")]
    assert entry.load() is get_provider_info


def config_list(section: str) -> str:
    env = {**os.environ, "AIRFLOW__AWS_ECS_EXECUTOR__CLUSTER": "from-env"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow",
            "config",
            "list",
            "--section",
            section,
            "--include-descriptions",
            *(["--show-values"] if AIRFLOW_V3 else []),  # Airflow 2 always shows values
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout


def test_airflow_config_list_shows_every_option_of_ours_in_the_fargate_section():
    from airflow_fargate.catalogue import options

    out = config_list("fargate")
    for opt in options():
        if opt.section == "fargate":
            assert f"{opt.name} =" in out, opt.name
    assert "Same as [aws_ecs_executor] run_task_rate: Sustained run_task calls per second" in out


def test_airflow_config_list_shows_the_aws_ecs_executor_section_of_whichever_package_declares_it():
    out = config_list("aws_ecs_executor")
    assert "cluster = from-env" in out
    if PROVIDER_INSTALLED:  # Airflow lists the Amazon provider's declaration of the shared section
        assert "AwsEcsExecutor" in out
    else:
        assert "How many times one try of an Airflow task may be launched" in out
        assert "aws_conn_id = aws_default" in out


def test_readme_config_table_is_generated_from_the_catalogue():
    readme = (ROOT / "README.md").read_text()
    assert render(readme) == readme, "README.md is stale: run `make docs`"


def test_example_airflow_cfg_only_uses_catalogued_options():
    from airflow_fargate.catalogue import options

    known = {(o.section, o.name) for o in options()} | {("aws_ecs_executor", "conn_id")}
    section = None
    for line in (ROOT / "config" / "airflow.cfg.example").read_text().splitlines():
        stripped = line.lstrip("# ").strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
        elif "=" in stripped and section in ("aws_ecs_executor", "fargate"):
            assert (section, stripped.split("=")[0].strip()) in known, line


def test_troubleshooting_table_covers_what_the_tracker_acts_on():
    from airflow_fargate.tracker import RELAUNCH_STOP_CODES

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Troubleshooting") :]
    for text in [*RELAUNCH_STOP_CODES, "manifest unknown", "pull access denied", "OutOfMemoryError", "MISSING"]:
        assert text in table, f"troubleshooting table does not mention {text!r}"
