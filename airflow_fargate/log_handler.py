"""Airflow 2's task log handler with the log view reader (log_view.py) as its remote source:
Airflow 2 has no remote log IO. airflow_fargate.log_config installs it as the "task" handler."""

from __future__ import annotations

from typing import Any

from airflow.utils.log.file_task_handler import FileTaskHandler

from airflow_fargate.log_view import FargateTaskLogIO


def try_row(ti: Any, try_number: int) -> Any | None:
    """The row of ``try_number``: ``ti`` itself, or its TaskInstanceHistory row for an older try."""
    if getattr(ti, "try_number", None) == try_number:
        return ti
    from airflow.models.taskinstancehistory import TaskInstanceHistory
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalar(
            select(TaskInstanceHistory).where(
                (TaskInstanceHistory.dag_id == ti.dag_id)
                & (TaskInstanceHistory.task_id == ti.task_id)
                & (TaskInstanceHistory.run_id == ti.run_id)
                & (TaskInstanceHistory.map_index == ti.map_index)
                & (TaskInstanceHistory.try_number == try_number)
            )
        )
        if row is not None:
            session.expunge(row)
        return row


class FargateTaskHandler(FileTaskHandler):
    """FileTaskHandler whose "remote" logs are the try's CloudWatch stream and the executor's
    reason for a try that never ran."""

    _io = FargateTaskLogIO()

    def _read_remote_logs(self, ti: Any, try_number: int, metadata: Any = None) -> tuple[list[str], list[str]]:
        row = try_row(ti, try_number)
        return self._io.read("", row) if row is not None else ([], [])
