"""The kinds of work Airflow hands an executor, each turned into one ECS container command.

Airflow 3.3 queues three workload types: ExecuteTask (a task try), ExecuteCallback (e.g. a DAG
deadline alert's synchronous callback) and TestConnection (the UI's "test connection", which is
only meaningful with the worker's network and IAM role). All three go through the same launch ->
track -> report path; this module is the only place that knows how they differ. Airflow 2 hands
task commands (lists) instead, which need no translation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

TASK = "task"
CALLBACK = "callback"
CONNECTION_TEST = "connection_test"

# The Task SDK's own container entry point for task tries (the provider's and the images' choice).
WORKLOAD_MODULE = "airflow.sdk.execution_time.execute_workload"

# Callbacks report their outcome only through the process exit code (the scheduler sets the
# callback's state from the executor's event), but execute_workload's main() drops run_workload's
# return code and always exits 0. This runner, built from Airflow's own functions only (so any
# Airflow 3.3 image runs it), exits with that code.
EXIT_CODE_RUNNER = (
    "import sys\n"
    "from pydantic import TypeAdapter\n"
    "from airflow.executors import workloads\n"
    "from airflow.executors.base_executor import BaseExecutor\n"
    "from airflow.sdk.log import configure_logging\n"
    "configure_logging(output=sys.stdout.buffer, json_output=True)\n"
    "workload = TypeAdapter(workloads.All).validate_json(sys.argv[2])\n"
    "sys.exit(BaseExecutor.run_workload(workload, subprocess_logs_to_stdout=True))\n"
)


# What execution_config_functions and tag rules are validated with at scheduler start: a command
# shaped like a real task's, so a function that tags tasks with (parts of) their command fails
# there and not on every launch. The token is a recognisable non-secret.
SAMPLE_TOKEN = "eyJhbGciOiJIUzUxMiJ9.c2FtcGxlIHRva2VuLCBub3QgYSBzZWNyZXQ.c2FtcGxlLXNpZ25hdHVyZQ"
_SAMPLE_RUN_ID = "manual__2026-01-01T00:00:00+00:00"


def sample_command(airflow_v3: bool) -> list[str]:
    """A container command as real as a task try's (Airflow 3 workload JSON, or Airflow 2's CLI)."""
    if not airflow_v3:
        return ["airflow", "tasks", "run", "sample_dag", "sample_task", _SAMPLE_RUN_ID, "--local", "--subdir",
                "DAGS_FOLDER/sample.py"]  # fmt: skip
    payload = {
        "token": SAMPLE_TOKEN,
        "ti": {
            "id": "01936a4e-0000-7000-8000-000000000000",
            "dag_version_id": "01936a4e-0000-7000-8000-000000000001",
            "task_id": "sample_task",
            "dag_id": "sample_dag",
            "run_id": _SAMPLE_RUN_ID,
            "try_number": 1,
            "map_index": -1,
            "pool_slots": 1,
            "queue": "default",
            "priority_weight": 1,
            "executor_config": None,
        },
        "dag_rel_path": "dags/sample.py",
        "bundle_info": {"name": "dags-folder", "version": None},
        "log_path": f"dag_id=sample_dag/run_id={_SAMPLE_RUN_ID}/task_id=sample_task/attempt=1.log",
        "type": "ExecuteTask",
    }
    return ["python", "-m", WORKLOAD_MODULE, "--json-string", json.dumps(payload)]


class UnsupportedWorkload(TypeError):
    """A workload type this executor cannot run (a newer Airflow's); the scheduler loop must go on."""


@dataclass(frozen=True)
class WorkItem:
    """One piece of queued work: its Airflow key, kind and what its launch needs."""

    key: Any
    kind: str
    executor_config: Any
    queue: str | None
    workload: Any


def kind_of(workload: Any) -> str:
    """TASK, CALLBACK or CONNECTION_TEST; UnsupportedWorkload for anything else."""
    from airflow.executors import workloads

    if isinstance(workload, workloads.ExecuteTask):
        return TASK
    callback_type = getattr(workloads, "ExecuteCallback", None)  # Airflow 3.3+
    if callback_type is not None and isinstance(workload, callback_type):
        return CALLBACK
    test_type = getattr(workloads, "TestConnection", None)  # Airflow 3.3+
    if test_type is not None and isinstance(workload, test_type):
        return CONNECTION_TEST
    raise UnsupportedWorkload(f"FargateExecutor cannot run workloads of type {type(workload).__name__}")


def work_item(workload: Any) -> WorkItem:
    """The launchable description of an Airflow 3 workload."""
    kind = kind_of(workload)
    if kind == TASK:
        ti = workload.ti
        return WorkItem(ti.key, kind, ti.executor_config, ti.queue, workload)
    return WorkItem(workload.key, kind, None, getattr(workload, "queue", None), workload)


def with_fresh_token(workload: Any, generator: Any) -> Any:
    """An Airflow 3 task workload whose execution-API token is minted now: the one minted when it
    was queued expires (after [scheduler] task_queued_timeout) while ECS is out or slow, and a
    container started with it cannot report. Other workloads are returned as they are."""
    make = getattr(type(workload), "generate_token", None)
    ti_id = getattr(getattr(workload, "ti", None), "id", None)
    if make is None or ti_id is None or kind_of(workload) != TASK:
        return workload
    return workload.model_copy(update={"token": make(str(ti_id), generator)})


def container_command(workload: Any) -> list[str]:
    """The container command that runs one Airflow 3 workload through the Task SDK."""
    payload = workload.model_dump_json()
    if kind_of(workload) == TASK:
        return ["python", "-m", WORKLOAD_MODULE, "--json-string", payload]
    return ["python", "-c", EXIT_CODE_RUNNER, "--json-string", payload]


def is_connection_test(key: Any) -> bool:
    try:
        from airflow.models.connection_test import ConnectionTestKey
    except ImportError:  # before Airflow 3.3
        return False
    return isinstance(key, ConnectionTestKey)


def describe(key: Any) -> str:
    """A short human name for a work key, for log lines."""
    if hasattr(key, "try_number"):
        return str(key)
    return f"{type(key).__name__}({getattr(key, 'id', key)})"
