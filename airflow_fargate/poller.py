"""Watching tracked ECS tasks off the scheduler thread: timed to the heartbeat, paced to a budget.

Each heartbeat asks for the tries' rows in the metadata DB (``try_reports``; at most once per
ROWS_MIN_SECONDS, spending at most ROWS_SHARE of the time on it) and waits a moment for them (the
executor's settle step): a try that ended is reported in the heartbeat that read its row. Describe rounds run on the
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

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from airflow_fargate.ecs import DescribeResult
from airflow_fargate.poll_schedule import RUNNING_INTERVAL, HeartbeatClock, PollSchedule
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
# A busy scheduler loops several times a second: the rows are read at most every
# ROWS_MIN_SECONDS, and never more than ROWS_SHARE of the time (2,000 tries, 25 ms a read: 0.8 s).
ROWS_MIN_SECONDS = 0.2
ROWS_SHARE = 0.03


def rows_interval(last_read_seconds: float) -> float:
    """Seconds between two reads of the tries' rows, given how long the last one took."""
    return max(ROWS_MIN_SECONDS, last_read_seconds / ROWS_SHARE)


ReadReports = Callable[[Mapping[str, Any]], Mapping[str, Report]]
DESCRIBE_WORKERS = 4  # calls of one round in flight at once (the budget paces them)


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
        (see rows_interval); also how the poller learns the heartbeat's rhythm."""
        now = self._clock()
        with self._cond:
            self._heartbeats.beat(now)
            self._schedule.track(keys_by_arn, now)
            rows_due = now - self._rows_read_at >= rows_interval(self._rows_seconds)
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
