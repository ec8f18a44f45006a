"""Watching tracked ECS tasks off the scheduler thread: timed to the heartbeat, paced to a budget.

Each heartbeat asks for the tries' rows in the metadata DB (``try_reports``; at most once per
MIN_ROUND_SECONDS) and waits a moment for them (the executor's settle step): a try that ended
is reported in the heartbeat that read its row, without asking ECS. Describe rounds run on the
poller's own clock, timed to end just before a heartbeat (``HeartbeatClock``); each DescribeTasks
call (one per 100 due ARNs, paced by the budget in ``rate_limit``) is handed over as it answers.

How often ECS is asked about a task depends on what its try reports:
- running (the try reports to Airflow itself): every ``running_interval``, for a container that
  died without reporting;
- failed: every round until its container has stopped (exit code, output, Spot interruption);
- ended: never (it is reported from its row);
- not started, or nothing to read (callbacks, connection tests, the DB not answering): a task
  whose status changed recently is due every round; one quiet for a while every
  ``QUIET_FRACTION`` of its quiet time (at most ``max_interval``).
Only due ARNs are described (parsing an answer costs CPU even when the call is free); at 10,000
tasks not started the budget, not the heartbeat, sets the pace.
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from airflow_fargate.ecs import DESCRIBE_BATCH, DescribeResult
from airflow_fargate.try_reports import Report
from airflow_fargate.wakeup import Wakeup


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


class Poller:
    """The watching thread: reads the tries' rows when a heartbeat asks (the heartbeat waits a
    moment for them, ``expected_by``), describes what is due on its own clock (rounds timed to
    end just before a heartbeat) and hands answers over as they come."""

    def __init__(
        self,
        describe: Callable[[Sequence[str]], DescribeResult],
        *,
        read_reports: ReadReports | None = None,
        max_interval: float = 10.0,
        running_interval: float = RUNNING_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        wakeup: Wakeup | None = None,
    ) -> None:
        self._describe = describe
        self._read_reports = read_reports
        self._clock = clock
        self._wakeup = wakeup or Wakeup()
        self._schedule = PollSchedule(
            max_interval, running_interval=running_interval, rows_first=read_reports is not None
        )
        self._heartbeats = HeartbeatClock()
        self._cond = threading.Condition()
        self._answers: deque[Answer] = deque()
        self._next_start = clock()
        self._rows_asked_at: float | None = None  # a heartbeat asked for the rows, not read yet
        self._rows_read_at = -math.inf
        self._rows_seconds = 0.0  # how long the last read took
        self._describing: dict[int, float] = {}  # calls of the current round -> when sent
        self._describe_seconds = 0.0  # EWMA of a call's latency
        self._round_started = 0.0
        self._recent: deque[float] = deque(maxlen=5)  # the last rounds' durations: plan for the slowest
        self._kicked = False
        self._closing = False
        self._pool = ThreadPoolExecutor(max_workers=DESCRIBE_WORKERS, thread_name_prefix="fargate-describe-round")
        self._thread = threading.Thread(target=self._run, daemon=True, name="fargate-poller")
        self._thread.start()

    def track(self, keys_by_arn: Mapping[str, Any]) -> None:
        """Each heartbeat: the ARNs to watch, with their work keys. Asks for the tries' rows
        (at most once per MIN_ROUND_SECONDS); also how the poller learns the heartbeat's rhythm."""
        now = self._clock()
        with self._cond:
            self._heartbeats.beat(now)
            self._schedule.track(keys_by_arn, now)
            rows_due = now - self._rows_read_at >= MIN_ROUND_SECONDS * 0.9
            if self._read_reports is not None and len(self._schedule) and rows_due and self._rows_asked_at is None:
                self._rows_asked_at = now
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

    def expected_by(self) -> float | None:
        """When the earliest answer in the works is expected (the rows asked for, a describe
        call on the wire); None when nothing is."""
        with self._cond:
            times = [sent + self._describe_seconds for sent in self._describing.values()]
            if self._rows_asked_at is not None:
                times.append(self._rows_asked_at + self._rows_seconds)
            return min(times) if times else None

    @property
    def idle(self) -> bool:
        """No round running or asked for."""
        with self._cond:
            return not self._describing and not self._kicked and self._rows_asked_at is None

    def shutdown(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _next_job(self) -> str | None:
        """Wait for work: "rows", "round" or "everything" (None: shutting down)."""
        with self._cond:
            while True:
                if self._closing:
                    return None
                if self._rows_asked_at is not None:
                    return "rows"
                now = self._clock()
                round_due = not self._describing and now >= self._next_start and len(self._schedule)
                if self._kicked and not self._describing:
                    self._kicked = False
                    return "everything"
                if round_due:
                    return "round"
                timeout = self._next_start - now if len(self._schedule) and not self._describing else None
                self._cond.wait(timeout)

    def _run(self) -> None:
        while (job := self._next_job()) is not None:
            if job == "rows":
                self._read_rows()
            else:
                self._start_round(everything=job == "everything")

    def _read_rows(self) -> None:
        with self._cond:
            keys = self._schedule.keys()
        started = self._clock()
        reports: Mapping[str, Report] = {}
        try:
            reports = self._read_reports(keys) if self._read_reports is not None and keys else {}
        except Exception:  # TryReports does not raise; should a reader, ECS is asked instead
            log.exception("FargateExecutor: reading the tries' task instance rows failed")
        with self._cond:
            self._schedule.note_reports(reports)
            ended = frozenset(arn for arn, report in reports.items() if report.ended)
            if ended:
                pokes = frozenset(arn for arn in ended if reports[arn] is Report.RESCHEDULED)
                self._answers.append(Ended(ended, pokes))
            self._rows_read_at = self._clock()
            self._rows_seconds = self._rows_read_at - started
            self._rows_asked_at = None
        self._wakeup.notify()

    def _start_round(self, everything: bool) -> None:
        with self._cond:
            self._round_started = self._clock()
            batches = self._schedule.plan(self._round_started, everything=everything)
            for index in range(len(batches)):
                self._describing[index] = self._round_started
        if not batches:
            self._end_call(None)
            return
        try:
            for index, batch in enumerate(batches):
                self._pool.submit(self._describe_one, index, batch)
        except RuntimeError:  # the interpreter is exiting: no new threads
            with self._cond:
                self._closing = True

    def _describe_one(self, index: int, batch: list[str]) -> None:
        with self._cond:
            if self._closing:
                return
        started = self._clock()
        answer: Answer
        try:
            answer = self._describe(batch)
        except Exception as err:  # handed to the scheduler thread, which logs it
            answer = err
        with self._cond:
            if isinstance(answer, DescribeResult):
                self._schedule.observe(answer, self._clock())
                elapsed = self._clock() - started
                seconds = self._describe_seconds
                self._describe_seconds = elapsed if not seconds else 0.8 * seconds + 0.2 * elapsed
            else:
                self._schedule.unpolled(batch)
            self._answers.append(answer)
        self._end_call(index)
        self._wakeup.notify()

    def _end_call(self, index: int | None) -> None:
        """One call of the round answered (None: a round without calls); the last one plans
        the next round."""
        with self._cond:
            self._describing.pop(index, None) if index is not None else None
            if self._describing:
                return
            now = self._clock()
            self._recent.append(now - self._round_started)
            self._next_start = self._heartbeats.next_round_start(self._round_started, max(self._recent), now)
            self._cond.notify_all()
