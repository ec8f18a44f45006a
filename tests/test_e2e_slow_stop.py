"""A real scheduler with tasks that take seconds to report STOPPED after their container exits, as
on Fargate (ENIs detach, the task deprovisions).

- A try is reported as soon as its own task instance row says it ended, not when ECS stops its
  container: with one executor slot, the next try is queued while the first's container is
  still deprovisioning.
- Without those reads (read_task_states = False), a sensor poke's success reaches the scheduler
  after the task instance went back to SCHEDULED for its next poke. Airflow 3.3 reads that as a
  task killed externally and fails the sensor (apache/airflow#71172); the executor does not
  report such a poke.
Containers are counted per try from the endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.local.faults import Faults
from airflow_fargate.local.stack import AirflowStack
from tests.helpers import e2e_stack, epoch, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 3 stack; Airflow 2 has tests/test_e2e_airflow2.py"),
]
RACE_DAG, RACE_RUN = "e2e_sensor_race", "slow-stop"
SLOT_DAG, SLOT_RUN = "e2e_one_slot", "one-slot"
RACE_DEPROVISION_SECONDS = 4.0  # longer than the sensor's poke_interval (1 s)
SLOT_DEPROVISION_SECONDS = 30.0  # as Fargate's: tens of seconds between a container's exit and STOPPED


@pytest.fixture(scope="module")
def one_slot() -> Iterator[AirflowStack]:
    with e2e_stack(
        ["tests/e2e_dags/e2e_one_slot.py"],
        {SLOT_DAG: SLOT_RUN},
        {"AIRFLOW__CORE__PARALLELISM": "1"},
        faults=Faults(deprovision_delay_s=SLOT_DEPROVISION_SECONDS),
    ) as running:
        yield running


@pytest.fixture(scope="module")
def describes_only() -> Iterator[AirflowStack]:
    with e2e_stack(
        ["tests/e2e_dags/e2e_sensor_race.py"],
        {},
        {"AIRFLOW__AWS_ECS_EXECUTOR__READ_TASK_STATES": "False"},
        faults=Faults(deprovision_delay_s=RACE_DEPROVISION_SECONDS),
    ) as running:
        yield running


def test_a_tries_slot_is_free_when_it_reports_its_end_not_when_ecs_stops_its_container(one_slot):
    assert one_slot.wait_for_run(SLOT_DAG, SLOT_RUN, timeout=600) == "success"
    first, second = (f"{SLOT_DAG}|{task}|{SLOT_RUN}|-1|1" for task in ("first", "second"))
    stopped = wait_until(lambda: one_slot.stats()["stopped_at"].get(first), 120, "first container STOPPED")
    ((queued,),) = one_slot._query(
        "SELECT queued_dttm FROM task_instance WHERE dag_id = :d AND run_id = :r AND task_id = 'second'",
        d=SLOT_DAG,
        r=SLOT_RUN,
    )
    # The executor's one slot was the first try's until reported: the second try was queued
    # while ECS still deprovisioned the first's container (30 s), not after.
    assert epoch(queued) < stopped, (epoch(queued), stopped)
    created = one_slot.stats()["created_per_try"]
    assert (created.get(first), created.get(second)) == (1, 1)


def test_a_reschedule_sensor_survives_pokes_reported_after_its_next_poke_is_scheduled(describes_only):
    """The sensor's first poke ends, the hog takes the pool's one slot, the sensor waits
    SCHEDULED for it, and the first poke's STOPPED arrives meanwhile: the race, every time."""
    stack = describes_only
    stack.airflow("pools", "set", "e2e_race", "1", "one slot: the sensor waits for the hog")
    stack.trigger(RACE_DAG, RACE_RUN)
    assert stack.wait_for_run(RACE_DAG, RACE_RUN, timeout=600) == "success"
    rows = {row.task_id: row for row in stack.task_rows(RACE_DAG, RACE_RUN)}
    assert (rows["pokes_three_times"].state, rows["pokes_three_times"].try_number) == ("success", 1)
    created = stack.stats()["created_per_try"]
    assert created.get(f"{RACE_DAG}|pokes_three_times|{RACE_RUN}|-1|1") == 3  # one container per poke
    assert created.get(f"{RACE_DAG}|hog|{RACE_RUN}|-1|1") == 1
    scheduler_log = (stack.home / "logs" / "scheduler.log").read_text()
    assert "next poke is already scheduled; not reported" in scheduler_log  # the race did happen
    assert "state attribute is scheduled" not in scheduler_log
