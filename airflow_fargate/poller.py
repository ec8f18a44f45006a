"""Watching tracked ECS tasks off the scheduler thread: timed to the heartbeat, paced to a budget.

A poll round first reads what the tries themselves report in the metadata DB (``try_reports``):
a try that ended is handed over at once, without asking ECS. Then it describes the ARNs that
are due (``PollSchedule``), one call per 100, each call paced by the DescribeTasks budget
(``rate_limit``) and handed over as soon as it answers, so the next heartbeat applies it.
Rounds are timed to end just before the heartbeat (``HeartbeatClock``): a try that ended is
reported within about one heartbeat, at one round per heartbeat, not two.

How often ECS is asked about a task depends on what its try reports:
- running (the try reports to Airflow itself): every ``running_interval``, for a container that
  died without reporting;
- failed: every round until its container has stopped (exit code, output, Spot interruption);
- ended: never (it is reported from its row);
- not started, or nothing to read (callbacks, connection tests, the DB not answering): a task
  whose status changed recently is due every round; one quiet for a while every
  ``QUIET_FRACTION`` of its quiet time (at most ``max_interval``).
Calls are always filled up to 100 ARNs with the stalest others (free); at 10,000 tasks not
started the budget, not the heartbeat, sets the pace.
"""

from __future__ import annotations

import itertools
import logging
import math
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from airflow_fargate.ecs import DESCRIBE_BATCH, DescribeResult
from airflow_fargate.try_reports import Report


@dataclass(frozen=True)
class Ended:
    """ARNs whose try's row says it ended (success, skipped, deferred, up_for_reschedule), and
    which of them were a sensor's poke (up_for_reschedule)."""

    arns: frozenset[str]
    pokes: frozenset[str] = frozenset()


log = logging.getLogger(__name__)

Answer = DescribeResult | Ended | Exception
ReadReports = Callable[[Mapping[str, Any]], Mapping[str, Report]]
QUIET_FRACTION = 0.05  # a task quiet for 100 s is asked about every 5 s
RUNNING_INTERVAL = 60.0  # a try that reports running: ECS is asked only for a container that died silently
MIN_ROUND_SECONDS = 1.0  # never more than one round per second, however fast the scheduler loops
ROUND_MARGIN_SECONDS = 0.1  # finish a round this long before the expected heartbeat
DESCRIBE_WORKERS = 4  # calls of one round in flight at once (the budget paces them)


@dataclass
class _Watch:
    key: Any  # the work key (its try's row is read once a round)
    status: str | None
    changed_at: float
    polled_at: float
    report: Report | None = None


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
    ) -> None:
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
        """Batches of at most 100 ARNs: every due one, the last batch topped up with the stalest
        of the rest. Marks them polled at ``now``."""
        watches = self._watches
        if everything:
            chosen = list(watches)
        else:
            slack = 0.15 * self.min_interval  # as HeartbeatClock's: a round may come a little early
            due = [arn for arn, w in watches.items() if now - w.polled_at >= self.interval(arn, now) - slack]
            if not due:
                return []
            room = -len(due) % DESCRIBE_BATCH
            if room:
                chosen_set = set(due)
                rest = sorted(
                    (w.polled_at, arn)
                    for arn, w in watches.items()
                    if arn not in chosen_set and not _has_ended(w.report)
                )
                due.extend(arn for _, arn in rest[:room])
            chosen = due
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


class Poller:
    """The watching thread: runs rounds on its own clock and hands answers over as they come."""

    def __init__(
        self,
        describe: Callable[[Sequence[str]], DescribeResult],
        *,
        read_reports: ReadReports | None = None,
        max_interval: float = 10.0,
        running_interval: float = RUNNING_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._describe = describe
        self._read_reports = read_reports
        self._clock = clock
        self._schedule = PollSchedule(max_interval, running_interval=running_interval)
        self._heartbeats = HeartbeatClock()
        self._cond = threading.Condition()
        self._answers: deque[Answer] = deque()
        self._next_start = clock()
        self._kicked = False
        self._busy = False
        self._closing = False
        self._pool = ThreadPoolExecutor(max_workers=DESCRIBE_WORKERS, thread_name_prefix="fargate-describe")
        self._thread = threading.Thread(target=self._run, daemon=True, name="fargate-describe-poller")
        self._thread.start()

    def track(self, keys_by_arn: Mapping[str, Any]) -> None:
        """Each heartbeat: the ARNs to watch, with their work keys. Also how the poller learns the
        heartbeat's rhythm."""
        now = self._clock()
        with self._cond:
            self._heartbeats.beat(now)
            self._schedule.track(keys_by_arn, now)
            self._cond.notify_all()

    def kick(self) -> None:
        """A round now that describes every tracked ARN (tests, and callers that must know at once)."""
        with self._cond:
            self._kicked = True
            self._cond.notify_all()

    def take(self) -> list[Answer]:
        """Every answer since the last take: the tries that ended, a DescribeResult per call, or
        the exception a call raised."""
        with self._cond:
            answers = list(self._answers)
            self._answers.clear()
        return answers

    @property
    def idle(self) -> bool:
        """No round running or asked for."""
        with self._cond:
            return not self._busy and not self._kicked

    def shutdown(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _next_round(self) -> tuple[bool, dict[str, Any]] | None:
        """Wait until a round is due: whether it describes everything, and the tracked work keys
        whose rows it reads (None: shutting down)."""
        with self._cond:
            while True:
                if self._closing:
                    return None
                now = self._clock()
                if self._kicked or (now >= self._next_start and len(self._schedule)):
                    everything, self._kicked = self._kicked, False
                    self._busy = True
                    return everything, self._schedule.keys() if self._read_reports is not None else {}
                timeout = self._next_start - now if len(self._schedule) else None
                self._cond.wait(timeout)

    def _run(self) -> None:
        recent: deque[float] = deque(maxlen=5)  # the last rounds' durations: plan for the slowest
        while (round_ := self._next_round()) is not None:
            everything, keys = round_
            started = self._clock()
            reports: Mapping[str, Report] = {}
            if self._read_reports is not None and keys:
                try:
                    reports = self._read_reports(keys)
                except Exception:  # TryReports does not raise; should a reader, ECS is asked instead
                    log.exception("FargateExecutor: reading the tries' task instance rows failed")
            with self._cond:
                self._schedule.note_reports(reports)
                ended = frozenset(arn for arn, report in reports.items() if report.ended)
                if ended:
                    pokes = frozenset(arn for arn in ended if reports[arn] is Report.RESCHEDULED)
                    self._answers.append(Ended(ended, pokes))
                batches = self._schedule.plan(self._clock(), everything=everything)
            try:
                wait([self._pool.submit(self._describe_one, batch) for batch in batches])
            except RuntimeError:  # the interpreter is exiting: no new threads
                return
            now = self._clock()
            recent.append(now - started)
            with self._cond:
                self._next_start = self._heartbeats.next_round_start(started, max(recent), now)
                self._busy = False
                self._cond.notify_all()

    def _describe_one(self, batch: list[str]) -> None:
        with self._cond:
            if self._closing:
                return
        answer: Answer
        try:
            answer = self._describe(batch)
        except Exception as err:  # handed to the scheduler thread, which logs it
            answer = err
        with self._cond:
            if isinstance(answer, DescribeResult):
                self._schedule.observe(answer, self._clock())
            else:
                self._schedule.unpolled(batch)
            self._answers.append(answer)
