"""Which tracked ECS tasks a describe round asks about (``PollSchedule``), and when rounds run so
that they end just before a heartbeat (``HeartbeatClock``). Pure: callers pass the time."""

from __future__ import annotations

import itertools
import math
import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_fargate.ecs import DESCRIBE_BATCH, DescribeResult
from airflow_fargate.try_reports import Report

QUIET_FRACTION = 0.05  # a task quiet for 100 s is asked about every 5 s
RUNNING_INTERVAL = 60.0  # a try that reports running: ECS is asked only for a container that died silently
MIN_ROUND_SECONDS = 1.0  # never more than one round per second, however fast the scheduler loops
ROUND_MARGIN_SECONDS = 0.1  # finish a round this long before the expected heartbeat


@dataclass
class _Watch:
    key: Any  # the work key (its try's row is read once a round)
    status: str | None
    changed_at: float
    polled_at: float
    report: Report | None = None
    rows_read: bool = False  # a read of the tries' rows has happened since it was tracked


def _has_ended(report: Report | None) -> bool:
    """The row said the try ended: its task is never described again."""
    return report is not None and report.ended


class PollSchedule:
    """Which tracked ARNs a round describes. Pure: the caller passes the time."""

    def __init__(
        self,
        max_interval: float,
        min_interval: float = MIN_ROUND_SECONDS,
        running_interval: float = RUNNING_INTERVAL,
        rows_first: bool = False,
    ) -> None:
        self.rows_first = rows_first  # a new task is not described before its try's row was read once
        self.max_interval = max(max_interval, min_interval)
        self.min_interval = min_interval
        self.running_interval = max(running_interval, min_interval)
        self._watches: dict[str, _Watch] = {}

    def __len__(self) -> int:
        return len(self._watches)

    def track(self, keys_by_arn: Mapping[str, Any], now: float) -> None:
        """The ARNs to watch from now on, with their work keys; others are dropped. A new one is
        first due a round later: by then its try has usually said whether it started."""
        watches = self._watches
        for arn in [arn for arn in watches if arn not in keys_by_arn]:
            del watches[arn]
        if len(watches) != len(keys_by_arn):
            for arn, key in keys_by_arn.items():
                if arn not in watches:
                    watches[arn] = _Watch(key, None, now, polled_at=now)

    def keys(self) -> dict[str, Any]:
        """ARN -> work key of every watched task (whose rows a round reads)."""
        return {arn: watch.key for arn, watch in self._watches.items()}

    def note_reports(self, reports: Mapping[str, Report]) -> None:
        """What the tries' rows said this round (a try that says nothing keeps no report)."""
        for arn, watch in self._watches.items():
            watch.report = reports.get(arn)
            watch.rows_read = True

    def interval(self, arn: str, now: float) -> float:
        watch = self._watches[arn]
        if watch.report is Report.RUNNING:
            return self.running_interval
        if watch.report is Report.FAILED:
            return self.min_interval
        if _has_ended(watch.report):
            return math.inf
        quiet = now - watch.changed_at
        return min(self.max_interval, max(self.min_interval, quiet * QUIET_FRACTION))

    def plan(self, now: float, everything: bool = False) -> list[list[str]]:
        """Batches of at most 100 ARNs, every due one (or every one). Marks them polled at ``now``."""
        watches = self._watches
        if everything:
            chosen = list(watches)
        else:
            slack = 0.15 * self.min_interval  # as HeartbeatClock's: a round may come a little early
            chosen = [
                arn
                for arn, w in watches.items()
                if (w.rows_read or not self.rows_first) and now - w.polled_at >= self.interval(arn, now) - slack
            ]
        for arn in chosen:
            watches[arn].polled_at = now
        return [chosen[i : i + DESCRIBE_BATCH] for i in range(0, len(chosen), DESCRIBE_BATCH)]

    def unpolled(self, arns: Sequence[str]) -> None:
        """The call for these failed: they are due again next round."""
        for arn in arns:
            if (watch := self._watches.get(arn)) is not None:
                watch.polled_at = -math.inf

    def observe(self, result: DescribeResult, now: float) -> None:
        """Statuses just read: a change (or no readable answer) keeps the task due every round."""
        for arn, state in result.tasks.items():
            watch = self._watches.get(arn)
            if watch is not None and watch.status != state.last_status:
                watch.status = state.last_status
                watch.changed_at = now
        for arn in [*result.missing, *result.unreadable]:
            if (watch := self._watches.get(arn)) is not None:
                watch.changed_at = now


class HeartbeatClock:
    """When the scheduler's next heartbeat is expected, from the last few (pure)."""

    def __init__(self, keep: int = 9) -> None:
        self._beats: deque[float] = deque(maxlen=keep)

    def beat(self, now: float) -> None:
        self._beats.append(now)

    def period(self) -> float | None:
        beats = list(self._beats)
        if len(beats) < 2:
            return None
        return min(30.0, max(0.05, statistics.median(b - a for a, b in itertools.pairwise(beats))))

    def next_round_start(self, last_start: float, round_seconds: float, now: float) -> float:
        """Start the next round so it ends just before a heartbeat, about MIN_ROUND_SECONDS or more
        after the last one started (and not before ``now``). The slack keeps a round that is a
        little early for its heartbeat from being pushed a whole heartbeat later."""
        earliest = last_start + MIN_ROUND_SECONDS * 0.9
        period = self.period()
        if period is None:
            return max(now, earliest)
        start = self._beats[-1] + period - round_seconds - ROUND_MARGIN_SECONDS
        if start < earliest:
            start += math.ceil((earliest - start) / period) * period
        return max(now, start)
