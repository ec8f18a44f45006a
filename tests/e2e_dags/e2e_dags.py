"""DAGs for the end-to-end tests (run by a real scheduler with FargateExecutor on local ECS)."""

from __future__ import annotations

import os
import signal
import time

import pendulum
from airflow.sdk import Variable, dag, get_current_context, task

START = pendulum.datetime(2026, 1, 1, tz="UTC")


@dag(schedule=None, start_date=START, catchup=False)
def e2e_fail():
    @task
    def raises():
        raise ValueError("this task fails on purpose")

    @task
    def dies():
        # Kill the container's main process (the task supervisor): ECS reports exit code 137.
        os.kill(os.getppid(), signal.SIGKILL)
        os._exit(1)

    @task(executor_config={"count": 2})
    def never_launched():
        """Fails before any container runs: its log view shows the executor's reason."""

    raises()
    dies()
    never_launched()


@dag(schedule=None, start_date=START, catchup=False)
def e2e_slow():
    @task
    def slow(n: int) -> int:
        """Runs until the test sets Variable release_<run_id>: the tests restart the scheduler
        meanwhile, and however long that takes on a busy machine, the try is still running."""
        key = f"release_{get_current_context()['run_id']}"
        deadline = time.monotonic() + 300
        while Variable.get(key, default=None) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"Variable {key} was never set")
            time.sleep(1)
        return n

    slow.expand(n=[1, 2, 3])


@dag(schedule=None, start_date=START, catchup=False)
def e2e_spot():
    @task
    def interrupted_once() -> str:
        time.sleep(40)  # outlives SIGTERM + the local endpoint's 5 s grace: the SIGKILL interrupts it
        return "done"

    interrupted_once()


e2e_fail()
e2e_slow()
e2e_spot()
