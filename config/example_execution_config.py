"""Example ``execution_config_function`` (AIP-29) for airflow-fargate.

Point the executor at it with::

    [fargate]
    execution_config_function = airflow_fargate.config.example_execution_config.make_builder

Airflow calls ``make_builder()`` once at scheduler start; the returned ``build(command)`` is
called for every task and its result replaces the built-in kwargs as the base layer.
``run_task_kwargs`` and each task's ``executor_config`` are still merged on top, and the executor
always puts ``command`` into the container named by ``container_name``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any


def _option(key: str, legacy_key: str | None = None) -> str | None:
    from airflow.configuration import conf

    value = conf.get("aws_ecs_executor", key, fallback=None)
    return value or conf.get("fargate", legacy_key or key, fallback=None)


def make_builder() -> Callable[[Sequence[str]], dict[str, Any]]:
    """Read configuration once; return the per-task builder."""
    cluster = _option("cluster")
    task_definition = _option("task_definition")
    container_name = _option("container_name")

    def build(command: Sequence[str]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "cluster": cluster,
            "count": 1,
            "propagateTags": "TASK_DEFINITION",
            # The executor adds startedBy and tags naming the try (airflow-fargate:dag_id, ...);
            # never tag with the command: on Airflow 3 it is the workload JSON with its token.
            "tags": [{"key": "managed-by", "value": "airflow"}],
            "overrides": {"containerOverrides": [{"name": container_name, "command": list(command)}]},
        }
        if task_definition:
            kwargs["taskDefinition"] = task_definition
        return kwargs

    return build
