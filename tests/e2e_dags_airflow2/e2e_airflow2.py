"""The DAG the Airflow 2 end-to-end test runs (classic imports that Airflow 2.10/2.11 have)."""

from __future__ import annotations

import os

import pendulum
from airflow.decorators import dag, task

EXECUTOR_CONFIG = {
    "overrides": {
        "containerOverrides": [
            {"name": "airflow-worker", "environment": [{"name": "FARGATE_GREETING", "value": "hello from airflow 2"}]}
        ]
    }
}


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def e2e_airflow2():
    @task
    def numbers() -> list[int]:
        return [1, 2, 3]

    @task(executor_config=EXECUTOR_CONFIG)
    def total(values: list[int]) -> int:
        print(f"FARGATE_GREETING={os.environ.get('FARGATE_GREETING')}")
        return sum(values)

    @task
    def raises() -> None:
        raise ValueError("this task fails on purpose")

    total(numbers())
    raises()


e2e_airflow2()
