"""A two-stage DAG for the scheduler-kill chaos test: 8 mapped tasks, then 8 more fed by them."""

from __future__ import annotations

import time

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, default_args={"retries": 0})
def e2e_chaos():
    @task
    def first(n: int) -> int:
        time.sleep(2)
        return n

    @task
    def second(n: int) -> int:
        time.sleep(2)
        return n * 2

    second.expand(n=first.expand(n=list(range(8))))


e2e_chaos()
