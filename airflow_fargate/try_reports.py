"""What a try says about itself: the state its task instance row reports in the metadata DB.

Every Airflow task reports its own state (Airflow 3 through the execution API, Airflow 2 straight
to the DB), and it does so before its container exits: running when it starts, success,
deferred, up_for_reschedule... when it ends. Reading those rows tells the executor that a try
ended within a heartbeat of it ending, without a DescribeTasks call, and at any scale: 10,000
running tasks are 100 DescribeTasks calls a round (ten seconds of the account's whole read
quota), but a handful of indexed reads.

ECS is still asked about what the row cannot tell: tries that have not started (a start
failure), tries that failed (the exit code, the output, a Spot interruption), and, now and then,
running tries (a container that died without reporting: OOM kill, host failure).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from airflow_fargate import metadata_db
from airflow_fargate.errors import shorten_lines
from airflow_fargate.metadata_db import TryIdentity

log = logging.getLogger(__name__)

WARN_EVERY_SECONDS = 60.0


class Report(enum.Enum):
    """What a try's row says, as far as its container is concerned."""

    STARTING = "starting"  # queued: the container has not started the try yet
    RUNNING = "running"  # the try runs and reports to Airflow itself
    ENDED = "ended"  # ended without failing (success, skipped, deferred): report it now
    RESCHEDULED = "rescheduled"  # a reschedule-mode sensor's poke ended: report it now, as Airflow allows
    FAILED = "failed"  # failed or up for retry: the container's exit says how (exit code, output, Spot)

    @property
    def ended(self) -> bool:
        return self in (Report.ENDED, Report.RESCHEDULED)


_REPORTS = {
    "queued": Report.STARTING,
    "running": Report.RUNNING,
    "success": Report.ENDED,
    "skipped": Report.ENDED,
    "deferred": Report.ENDED,
    "up_for_reschedule": Report.RESCHEDULED,
    "failed": Report.FAILED,
    "up_for_retry": Report.FAILED,
    "upstream_failed": Report.FAILED,
}


def report_of(state: str | None) -> Report | None:
    """None: the row says nothing about this container (restarting, scheduled, removed, reset)."""
    return None if state is None else _REPORTS.get(state)


def identity_of(key: Any) -> TryIdentity | None:
    """The try a work key names; None for work without a task instance row (callbacks, connection tests)."""
    try_number = getattr(key, "try_number", None)
    map_index = getattr(key, "map_index", None)
    if not isinstance(try_number, int) or not isinstance(map_index, int):
        return None
    return (key.dag_id, key.task_id, key.run_id, map_index, try_number)


def _first_line(err: Exception) -> str:
    """SQLAlchemy's errors go on with the whole statement and its parameters: not for a log line."""
    lines = str(err).strip().splitlines()
    return shorten_lines(lines[0], limit=200) if lines else ""


ReadStates = Callable[[Collection[TryIdentity]], Mapping[TryIdentity, str | None]]


class TryReports:
    """Reads the rows of the tries behind tracked ECS tasks (on the poller's thread, once a round).

    A failed read is warned about once a minute and answers nothing: the tasks are then
    described as if no row had spoken, so nothing is lost, only more DescribeTasks calls made."""

    def __init__(self, read_states: ReadStates | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._read_states = read_states
        self._clock = clock
        self._quiet_until = 0.0
        self._row_ids: dict[tuple[str, str, str, int], Any] = {}  # the rows' primary keys (metadata_db.try_states)

    def __call__(self, keys_by_arn: Mapping[str, Any]) -> dict[str, Report]:
        """ARN -> what its try's row reports, for the ARNs whose row says something."""
        arns_by_try: dict[TryIdentity, str] = {}
        for arn, key in keys_by_arn.items():
            identity = identity_of(key)
            if identity is not None:
                arns_by_try[identity] = arn
        if not arns_by_try:
            return {}
        try:
            if self._read_states is not None:
                states = self._read_states(arns_by_try.keys())
            else:
                states = metadata_db.try_states(arns_by_try.keys(), self._row_ids)
        except Exception as err:  # the scheduler's own DB: rare, and describes cover meanwhile
            now = self._clock()
            if now >= self._quiet_until:
                self._quiet_until = now + WARN_EVERY_SECONDS
                log.warning(
                    "FargateExecutor: could not read the tries' task instance rows (%s: %s); ECS tasks are "
                    "described instead until the metadata DB answers.",
                    type(err).__name__,
                    _first_line(err),
                )
            return {}
        reports = {}
        for identity, state in states.items():
            report = report_of(state)
            if report is not None and identity in arns_by_try:
                reports[arns_by_try[identity]] = report
        return reports
