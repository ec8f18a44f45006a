"""airflow-fargate: an Airflow executor that runs each task instance as its own ECS task.

``FargateExecutor`` is imported lazily so that reading provider metadata (which Airflow does in
every process) does not import the executor and boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.4.0"  # the one place the version is written (setup.cfg reads it)
__all__ = ["FargateExecutor", "__version__"]

if TYPE_CHECKING:
    from airflow_fargate.executor import FargateExecutor


def __getattr__(name: str) -> Any:
    if name == "FargateExecutor":
        from airflow_fargate.executor import FargateExecutor

        return FargateExecutor
    raise AttributeError(f"module 'airflow_fargate' has no attribute {name!r}")
