"""A reschedule-mode sensor whose next poke waits for a pool slot another task holds (test_e2e_slow_stop)."""

from __future__ import annotations

import time

import pendulum
from airflow.sdk import dag, get_current_context, task

POOL = "e2e_race"  # 1 slot, created by the test


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def e2e_sensor_race():
    @task.sensor(poke_interval=1, mode="reschedule", timeout=300, pool=POOL, priority_weight=10)
    def pokes_three_times() -> bool:
        """Takes the slot first; between pokes the hog holds it, so the sensor waits SCHEDULED."""
        from airflow.sdk import Variable

        key = f"race_pokes_{get_current_context()['run_id']}"
        pokes = int(Variable.get(key, default="0")) + 1
        Variable.set(key, str(pokes))
        return pokes >= 3

    @task(pool=POOL, priority_weight=1)
    def hog() -> None:
        time.sleep(12)

    pokes_three_times()
    hog()


e2e_sensor_race()
