"""Provider metadata for Airflow's ProvidersManager (entry point ``apache_airflow_provider``).

Declaring the config sections here is what makes ``airflow config list --section fargate`` and
``--section aws_ecs_executor`` show our options, descriptions and defaults.
"""

from __future__ import annotations

from typing import Any

from airflow_fargate import __version__
from airflow_fargate.catalogue import provider_config


def get_provider_info() -> dict[str, Any]:
    """Return provider info in the schema Airflow validates (provider_info.schema.json)."""
    return {
        "package-name": "airflow-fargate",
        "name": "Airflow Fargate Executor",
        "description": "Runs every Airflow task as its own AWS ECS (Fargate or EC2) task.",
        "versions": [__version__],
        "executors": ["airflow_fargate.FargateExecutor"],
        "config": provider_config(),
        "cli": ["airflow_fargate.cli.get_fargate_cli_commands"],  # Airflow 3; Airflow 2 asks the executor
    }
