"""200 mapped tasks for the ECS API outage test (the local endpoint's simulate-api runtime
reports each try through the execution API; the body never runs)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, default_args={"retries": 0})
def e2e_outage():
    @task
    def work(i: int) -> None:
        """Reported by the local endpoint's simulate-api runtime."""

    work.expand(i=list(range(200)))


e2e_outage()
