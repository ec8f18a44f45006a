"""Callbacks for example_fargate's deadline alert, imported by dotted path inside the ECS task
that runs them (the DAGs folder is on the path there, as it is for tasks)."""

from __future__ import annotations

from typing import Any


def report_missed_deadline(team: str, context: dict[str, Any] | None = None, **_: Any) -> None:
    """A real deployment would page `team`; the example prints which run is late."""
    dag_run = (context or {}).get("dag_run") or {}
    print(f"deadline missed: run {dag_run.get('dag_run_id')} of {dag_run.get('dag_id')}; notifying {team}")
