"""Two independent quick tasks for a scheduler with one executor slot (test_e2e_slow_stop)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_one_slot():
    @task(priority_weight=10)
    def first() -> str:
        return "first"

    @task(priority_weight=1)
    def second() -> str:
        return "second"

    first()
    second()


e2e_one_slot()
