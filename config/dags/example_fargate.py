"""Example DAG for airflow-fargate: every task below runs as its own ECS task.

- a fan-out (dynamic task mapping) and a fan-in,
- a task whose container gets an env var through its executor_config (ECS run_task overrides).
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag, task

CONTAINER_NAME = os.environ.get("AIRFLOW__AWS_ECS_EXECUTOR__CONTAINER_NAME", "airflow-worker")


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, tags=["fargate", "example"])
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

    total(square.expand(value=extract())) >> greet()


example_fargate()
