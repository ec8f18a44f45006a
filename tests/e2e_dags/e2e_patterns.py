"""Everyday Airflow 3 task patterns, each run by a real scheduler with FargateExecutor."""

from __future__ import annotations

import time
from datetime import timedelta

import pendulum
from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger
from airflow.sdk import BaseOperator, Variable, dag, get_current_context, task
from airflow.sdk.definitions.callback import SyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

START = pendulum.datetime(2026, 1, 1, tz="UTC")


@dag(schedule=None, start_date=START, catchup=False)
def e2e_reschedule():
    @task.sensor(poke_interval=1, mode="reschedule", timeout=300)
    def third_poke_succeeds() -> bool:
        """Each poke is a new queueing of try 1, so a new container; the 3rd poke succeeds."""
        key = f"pokes_{get_current_context()['run_id']}"
        pokes = int(Variable.get(key, default="0")) + 1
        Variable.set(key, str(pokes))
        print(f"poke {pokes}")
        return pokes >= 3

    third_poke_succeeds()


class WaitInTriggerer(BaseOperator):
    """Defers to the triggerer, then resumes (a second container for the same try)."""

    def execute(self, context):
        self.defer(trigger=TimeDeltaTrigger(timedelta(seconds=2)), method_name="resume")

    def resume(self, context, event=None):
        print("resumed after deferral")
        return "resumed"


@dag(schedule=None, start_date=START, catchup=False)
def e2e_deferral():
    WaitInTriggerer(task_id="deferred")


@dag(schedule=None, start_date=START, catchup=False)
def e2e_mapped():
    @task
    def double(value: int) -> int:
        return value * 2

    @task
    def reduce(values: list[int]) -> int:
        result = sum(values)
        assert result == sum(range(21)) * 2, result
        return result

    reduce(double.expand(value=list(range(21))))


@dag(schedule=None, start_date=START, catchup=False)
def e2e_retry():
    @task(retries=1, retry_delay=timedelta(seconds=1))
    def fails_first_try() -> str:
        if get_current_context()["ti"].try_number == 1:
            raise RuntimeError("first try fails on purpose")
        return "second try"

    @task(execution_timeout=timedelta(seconds=3), retries=0)
    def times_out() -> None:
        time.sleep(120)

    fails_first_try()
    times_out()


@dag(
    schedule=None,
    start_date=START,
    catchup=False,
    deadline=[
        DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=timedelta(seconds=1),
            callback=SyncCallback("e2e_callbacks.record_deadline", kwargs={"alert": "late"}),
        ),
        DeadlineAlert(
            reference=DeadlineReference.DAGRUN_QUEUED_AT,
            interval=timedelta(seconds=2),
            callback=SyncCallback("e2e_callbacks.failing_deadline"),
        ),
    ],
)
def e2e_deadline():
    @task
    def outlives_the_deadline() -> None:
        time.sleep(20)

    outlives_the_deadline()


@dag(schedule=None, start_date=START, catchup=False)
def e2e_mixed_executors():
    @task(executor="LocalExecutor")
    def on_local() -> str:
        return "local"

    @task(executor="FargateExecutor")
    def on_fargate(value: str) -> str:
        return value + "+fargate"

    on_fargate(on_local())


@dag(schedule=None, start_date=START, catchup=False)
def e2e_queues():
    """Each queue names a profile in [aws_ecs_executor] queue_profiles (the test sets them)."""

    @task(queue="small")
    def on_small() -> str:
        return "small"

    @task(queue="large")
    def on_large() -> str:
        return "large"

    @task(queue="spot")
    def on_spot() -> str:
        return "spot"

    @task(queue="small", executor_config={"memory": 2048})
    def on_small_with_more_memory() -> str:
        return "small+"

    @task
    def on_the_default_queue() -> str:
        return "default"

    @task(queue="nightly")
    def on_a_queue_without_profile() -> str:
        return "nightly"

    @task(queue="large", executor_config={"memory": 1024})
    def wrong_fargate_size() -> str:
        return "never runs"

    on_small()
    on_large()
    on_spot()
    on_small_with_more_memory()
    on_the_default_queue()
    on_a_queue_without_profile()
    wrong_fargate_size()


e2e_reschedule()
e2e_deferral()
e2e_mapped()
e2e_retry()
e2e_deadline()
e2e_mixed_executors()
e2e_queues()
