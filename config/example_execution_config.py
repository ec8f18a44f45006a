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


def make_builder() -> Callable[[Sequence[str]], dict[str, Any]]:
    """Read configuration once (both sections, as the executor does); return the per-task builder.

    The builder's result replaces the kwargs the executor would build from the section values,
    so it carries every one of them that is set (the executor warns at start about any it drops)."""
    from airflow_fargate.settings import load_settings

    settings = load_settings()
    network: dict[str, Any] = {}
    if settings.subnets:
        network["subnets"] = list(settings.subnets)
    if settings.security_groups:
        network["securityGroups"] = list(settings.security_groups)
    if settings.assign_public_ip is not None and (network or settings.assign_public_ip):
        network["assignPublicIp"] = "ENABLED" if settings.assign_public_ip else "DISABLED"

    def build(command: Sequence[str]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "cluster": settings.cluster,
            "propagateTags": "TASK_DEFINITION",
            # The executor adds startedBy and tags naming the try (airflow-fargate:dag_id, ...);
            # never tag with the command: on Airflow 3 it is the workload JSON with its token.
            "tags": [{"key": "managed-by", "value": "airflow"}],
            "overrides": {"containerOverrides": [{"name": settings.container_name, "command": list(command)}]},
        }
        if settings.task_definition:
            kwargs["taskDefinition"] = settings.task_definition
        if settings.launch_type:
            kwargs["launchType"] = settings.launch_type
        if settings.capacity_provider_strategy:
            kwargs["capacityProviderStrategy"] = [dict(item) for item in settings.capacity_provider_strategy]
        if settings.platform_version:
            kwargs["platformVersion"] = settings.platform_version
        if network:
            kwargs["networkConfiguration"] = {"awsvpcConfiguration": dict(network)}
        return kwargs

    return build
