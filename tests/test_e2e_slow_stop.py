"""A real scheduler with tasks that take seconds to report STOPPED after their container exits, as
on Fargate (ENIs detach, the task deprovisions): the executor's success for a sensor's poke then
reaches the scheduler after the task instance went back to SCHEDULED for its next poke.

Airflow 3.3 reads that as a task killed externally and fails the sensor (apache/airflow#71172);
the executor does not report such a poke. Containers are counted per try from the endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.local.faults import Faults
from airflow_fargate.local.stack import AirflowStack
from tests.helpers import e2e_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 2's scheduler does not fail a SCHEDULED try on a late success"),
]
DAG_ID, RUN_ID = "e2e_sensor_race", "slow-stop"
DEPROVISION_SECONDS = 4.0  # longer than the sensor's poke_interval (1 s)


@pytest.fixture(scope="module")
def stack() -> Iterator[AirflowStack]:
    with e2e_stack(
        ["tests/e2e_dags/e2e_sensor_race.py"], {}, faults=Faults(deprovision_delay_s=DEPROVISION_SECONDS)
    ) as running:
        yield running


def test_a_reschedule_sensor_survives_pokes_reported_after_its_next_poke_is_scheduled(stack):
    """The sensor's first poke ends, the hog takes the pool's one slot, the sensor waits
    SCHEDULED for it, and the first poke's STOPPED arrives meanwhile: the race, every time."""
    stack.airflow("pools", "set", "e2e_race", "1", "one slot: the sensor waits for the hog")
    stack.trigger(DAG_ID, RUN_ID)
    assert stack.wait_for_run(DAG_ID, RUN_ID, timeout=600) == "success"
    rows = {row.task_id: row for row in stack.task_rows(DAG_ID, RUN_ID)}
    assert (rows["pokes_three_times"].state, rows["pokes_three_times"].try_number) == ("success", 1)
    created = stack.stats()["created_per_try"]
    assert created.get(f"{DAG_ID}|pokes_three_times|{RUN_ID}|-1|1") == 3  # one container per poke
    assert created.get(f"{DAG_ID}|hog|{RUN_ID}|-1|1") == 1
    scheduler_log = (stack.home / "logs" / "scheduler.log").read_text()
    assert "next poke is already scheduled; not reported" in scheduler_log  # the race did happen
    assert "state attribute is scheduled" not in scheduler_log
