"""Example DAG for airflow-fargate: every task below runs as its own ECS task.

- a fan-out (dynamic task mapping) and a fan-in,
- a task whose container gets an env var through its executor_config (ECS run_task overrides),
- a reschedule-mode sensor: each poke is a short container; the worker slot is free in between,
- a deferrable sensor: its container exits while the triggerer waits, a new one resumes it,
- a deadline alert: if the run is not done 5 s after it was queued, a synchronous callback runs
  in an ECS task of its own (Airflow 3.3 executor callbacks).
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.providers.standard.sensors.date_time import DateTimeSensorAsync
from airflow.sdk import DeadlineAlert, DeadlineReference, SyncCallback, dag, get_current_context, task

CONTAINER_NAME = os.environ.get("AIRFLOW__AWS_ECS_EXECUTOR__CONTAINER_NAME", "airflow-worker")


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["fargate", "example"],
    deadline=DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=timedelta(seconds=5),
        callback=SyncCallback("example_callbacks.report_missed_deadline", kwargs={"team": "data-platform"}),
    ),
)
def example_fargate():
    @task
    def extract() -> list[int]:
        return [1, 2, 3, 4]

    @task
    def square(value: int) -> int:
        return value * value

    @task
    def total(values: list[int]) -> int:
        result = sum(values)
        print(f"sum of squares = {result}")
        assert result == 30
        return result

    @task(
        executor_config={
            "overrides": {
                "containerOverrides": [
                    {
                        "name": CONTAINER_NAME,
                        "environment": [{"name": "FARGATE_GREETING", "value": "hello from executor_config"}],
                    }
                ]
            }
        }
    )
    def greet() -> str:
        greeting = os.environ["FARGATE_GREETING"]
        print(f"FARGATE_GREETING={greeting}")
        assert greeting == "hello from executor_config"
        return greeting

    @task.sensor(poke_interval=2, mode="reschedule", timeout=300)
    def upstream_ready() -> bool:
        """Stands in for "is the partition there yet?": says yes on its third poke."""
        earlier_pokes = get_current_context()["task_reschedule_count"]
        print(f"poke {earlier_pokes + 1}")
        return earlier_pokes >= 2

    # Always defers (to 5 s after it started); a second container runs execute_complete.
    wait_in_triggerer = DateTimeSensorAsync(
        task_id="wait_in_triggerer", target_time="{{ ti.start_date + macros.timedelta(seconds=5) }}"
    )

    total(square.expand(value=extract())) >> greet()
    upstream_ready() >> wait_in_triggerer


example_fargate()
