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

import copy
from collections.abc import Callable, Sequence
from typing import Any


def make_builder() -> Callable[[Sequence[str]], dict[str, Any]]:
    """Read configuration once (both sections, as the executor does); return the per-task builder.

    The builder's result replaces the kwargs the executor would build from the section values,
    so it starts from exactly those (the executor warns at start about any a builder drops) and
    adds to them."""
    from airflow_fargate.run_task import config_layer
    from airflow_fargate.settings import load_settings

    base = config_layer(load_settings())  # cluster, task definition, launch type, network, ...

    def build(command: Sequence[str]) -> dict[str, Any]:
        kwargs = copy.deepcopy(base)
        kwargs["propagateTags"] = "TASK_DEFINITION"
        # The executor adds startedBy and tags naming the try (airflow-fargate:dag_id, ...);
        # never tag with the command: on Airflow 3 it is the workload JSON with its token.
        kwargs["tags"] = [{"key": "managed-by", "value": "airflow"}]
        return kwargs

    return build
