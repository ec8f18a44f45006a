"""Every difference between Airflow 2.10/2.11 and Airflow 3.x lives here."""

from __future__ import annotations

import importlib
from typing import Any

from airflow import __version__ as AIRFLOW_VERSION
from packaging.version import Version

AIRFLOW_V3 = Version(AIRFLOW_VERSION).major >= 3


def import_string(dotted_path: str) -> Any:
    """Airflow's own import_string (ImportError naming the path and what is missing)."""
    module = "airflow.sdk.module_loading" if AIRFLOW_V3 else "airflow.utils.module_loading"
    return importlib.import_module(module).import_string(dotted_path)


WORKLOAD_MODULE = "airflow.sdk.execution_time.execute_workload"


def workload_command(workload: Any) -> list[str]:
    """The container command that runs an Airflow 3 ExecuteTask workload through the Task SDK."""
    return ["python", "-m", WORKLOAD_MODULE, "--json-string", workload.model_dump_json()]


def command_for_adopted(ti: Any) -> list[str]:
    """Rebuild the command of an adopted task instance (needed only if it must be relaunched)."""
    if AIRFLOW_V3:
        from airflow.executors.workloads import ExecuteTask

        return workload_command(ExecuteTask.make(ti))
    return list(ti.command_as_list())  # pragma: no cover - Airflow 2


try:  # Airflow 3.1+: module-level incr/gauge/timer/timing
    from airflow.observability import stats as _stats_impl
except ImportError:  # pragma: no cover - Airflow 2
    from airflow.stats import Stats as _stats_impl  # type: ignore[no-redef]

stats: Any = _stats_impl
"""Airflow's metrics facade (StatsD/OTel as configured); exposes incr, gauge, timer, timing."""
