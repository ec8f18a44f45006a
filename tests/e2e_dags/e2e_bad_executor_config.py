"""A DAG one of whose tasks has an executor_config that is not a dict: on Airflow 3.3 such a
task stops the scheduler once queued. The package's cluster policy refuses it at parse time."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule="@once", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def e2e_bad_executor_config():
    @task(executor_config="not-a-dict")
    def wrong() -> None:
        pass

    wrong()


e2e_bad_executor_config()
