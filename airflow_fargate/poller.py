"""describe_tasks off the heartbeat thread: one poll in flight at a time, results taken later.

The executor asks for a poll of the ARNs it tracks each heartbeat and applies the previous
poll's answer, so the scheduler never waits on DescribeTasks (which, at 2,000 running tasks, is
20 calls of up to 100 ARNs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from airflow_fargate.ecs import DescribeResult

Answer = DescribeResult | Exception


class Poller:
    """A single background thread running the describe callable on request."""

    def __init__(self, describe: Callable[[Sequence[str]], DescribeResult]) -> None:
        self._describe = describe
        self._cond = threading.Condition()
        self._wanted: list[str] | None = None
        self._answer: Answer | None = None
        self._busy = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, daemon=True, name="fargate-describe-poller")
        self._thread.start()

    def request(self, arns: Sequence[str]) -> bool:
        """Start a poll of ``arns`` unless one is already running or waiting to be taken."""
        with self._cond:
            if self._busy or self._wanted is not None or self._answer is not None or self._closing:
                return False
            self._wanted = list(arns)
            self._busy = True
            self._cond.notify_all()
            return True

    def take(self) -> Answer | None:
        """The finished poll's answer (a DescribeResult or the exception it raised), once."""
        with self._cond:
            answer, self._answer = self._answer, None
            return answer

    @property
    def busy(self) -> bool:
        with self._cond:
            return self._busy

    def shutdown(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._wanted is None and not self._closing:
                    self._cond.wait()
                if self._closing:
                    return
                arns, self._wanted = self._wanted, None
            answer: Answer
            try:
                answer = self._describe(arns or [])
            except Exception as err:  # handed to the scheduler thread, which logs it
                answer = err
            with self._cond:
                self._answer = answer
                self._busy = False
                self._cond.notify_all()
