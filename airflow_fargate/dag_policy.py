"""A DAG-parse-time check of executor_config: an Airflow cluster policy this package installs
through the ``airflow.policy`` entry point (``[aws_ecs_executor] check_dags_at_parse_time``).

Why at parse time: on Airflow 3.3 a task whose executor_config is not a dict stops the scheduler
before any executor sees it (the workload model refuses it), on every restart. Refused here, the
DAG fails to import instead, with a message naming the task (the UI's import errors), and every
other DAG keeps running. Tasks this executor runs also get the checks it makes when they are
queued (kwargs ECS would refuse), so their authors learn of them before a run.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from typing import Any

from airflow.policies import hookimpl  # pluggy's marker: Airflow imports this while it initializes

# Everything else is imported when a DAG is parsed: Airflow loads this module (through the
# airflow.policy entry point) while it is itself being imported.

log = logging.getLogger(__name__)


def _conf() -> Any:
    from airflow.configuration import conf

    return conf


def _is_ours(entry: str) -> bool:
    path = entry.rpartition(":")[2].strip()
    return path.startswith("airflow_fargate") and path.endswith("FargateExecutor")


def routed_here(task_executor: str | None, configured: str) -> bool:
    """Whether a task with this ``executor`` attribute runs on FargateExecutor, given
    ``[core] executor`` (a list, the first entry the default; entries "alias:module.Class")."""
    entries = [entry.strip() for entry in configured.split(",") if entry.strip()]
    if not entries:
        return False
    if not task_executor:
        return _is_ours(entries[0])
    for entry in entries:
        alias, _, path = entry.rpartition(":")
        if task_executor in {alias, path, path.rsplit(".", 1)[-1]}:
            return _is_ours(entry)
    return False


@functools.cache
def _builder() -> Any:
    """This process's kwargs builder, or None when the executor's configuration cannot be read
    here (a dag-processor configured without it): only the type check is made then."""
    from airflow_fargate.run_task import RunTaskKwargsBuilder
    from airflow_fargate.settings import load_settings

    try:
        return RunTaskKwargsBuilder(load_settings())
    except Exception as err:
        log.debug("FargateExecutor DAG check: executor configuration not readable here (%s)", err)
        return None


def problem(task: Any) -> str | None:
    """What is wrong with this task's executor_config for the scheduler, or None."""
    from airflow_fargate.compat import AIRFLOW_V3
    from airflow_fargate.errors import TaskConfigError, shorten

    config = getattr(task, "executor_config", None)
    if config is None:
        return None
    ours = routed_here(getattr(task, "executor", None), str(_conf().get("core", "executor", fallback="")))
    if not isinstance(config, Mapping):
        if not (AIRFLOW_V3 or ours):
            return None
        return (
            f"executor_config must be a dict (for FargateExecutor: ECS run_task kwargs), got "
            f"{type(config).__name__} {shorten(config)}"
        )
    if not ours or not config:
        return None
    builder = _builder()
    if builder is None:
        return None
    try:
        builder.check_executor_config(config, getattr(task, "queue", None))
    except TaskConfigError as err:
        return str(err)
    return None


def enabled() -> bool:
    return bool(_conf().getboolean("aws_ecs_executor", "check_dags_at_parse_time", fallback=True))


@hookimpl
def task_policy(task: Any) -> None:
    """Refuse a DAG one of whose tasks has an executor_config the scheduler cannot launch."""
    if not enabled():
        return
    found = problem(task)
    if found is not None:
        from airflow.exceptions import AirflowClusterPolicyViolation

        dag_id = getattr(getattr(task, "dag", None), "dag_id", None) or getattr(task, "dag_id", "?")
        raise AirflowClusterPolicyViolation(f"DAG {dag_id!r}, task {task.task_id!r}: {found}")
