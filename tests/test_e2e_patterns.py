"""End to end: everyday Airflow 3.3 task patterns through a real scheduler (plus triggerer) with
FargateExecutor next to LocalExecutor. Every test checks the final states AND how many containers
the local ECS endpoint started for each try (created_per_try), and that no try ever had two
containers running at once."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.local.stack import AirflowStack
from tests.helpers import e2e_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 3.3 patterns (deferral, deadline callbacks, executor=)"),
]
RUNS = {
    "e2e_reschedule": "e2e-reschedule",
    "e2e_deferral": "e2e-deferral",
    "e2e_mapped": "e2e-mapped",
    "e2e_retry": "e2e-retry",
    "e2e_deadline": "e2e-deadline",
    "e2e_mixed_executors": "e2e-mixed",
    "e2e_queues": "e2e-queues",
}
# FargateExecutor is the default; LocalExecutor beside it (tasks pick one with executor=...).
EXECUTORS = "airflow_fargate.FargateExecutor,LocalExecutor"
SPOT = [{"capacityProvider": "FARGATE_SPOT", "weight": 1}]
# Three queues with their own profile, and the default queue's (which every other task gets too).
QUEUE_PROFILES = {
    "small": {"cpu": 512, "memory": 1024},
    "large": {"taskDefinition": "airflow-local-task-large", "cpu": 4096, "memory": 16384},
    "spot": {"capacityProviderStrategy": SPOT},
    "default": {"tags": [{"key": "profile", "value": "default"}]},
}


@pytest.fixture(scope="module")
def stack() -> Iterator[AirflowStack]:
    files = ["tests/e2e_dags/e2e_patterns.py", "tests/e2e_dags/e2e_callbacks.py"]
    extra = {
        "AIRFLOW__CORE__EXECUTOR": EXECUTORS,
        "AIRFLOW__CORE__PARALLELISM": "64",
        "AIRFLOW__AWS_ECS_EXECUTOR__QUEUE_PROFILES": json.dumps(QUEUE_PROFILES),
        # e2e_queues has a task whose size Fargate refuses, to show the executor fails that task
        # alone at run time; the parse-time check would refuse its DAG file (test_e2e_dag_checks)
        "AIRFLOW__AWS_ECS_EXECUTOR__CHECK_DAGS_AT_PARSE_TIME": "False",
    }
    with e2e_stack(files, RUNS, extra_env=extra) as running:
        yield running
        assert running.stats()["overlapping_tries"] == []  # no queueing of a try ever had two containers


def containers(stack: AirflowStack, dag_id: str, task_id: str, try_number: int = 1, map_index: int = -1) -> int:
    key = f"{dag_id}|{task_id}|{RUNS[dag_id]}|{map_index}|{try_number}"
    return int(stack.stats()["created_per_try"].get(key, 0))


def finished(stack: AirflowStack, dag_id: str) -> dict[tuple[str, int], object]:
    assert stack.wait_for_run(dag_id, RUNS[dag_id], timeout=600) in ("success", "failed")
    return {(r.task_id, r.map_index): r for r in stack.task_rows(dag_id, RUNS[dag_id])}


def test_reschedule_sensor_succeeds_on_its_third_poke_one_container_per_poke(stack):
    rows = finished(stack, "e2e_reschedule")
    assert stack.run_state("e2e_reschedule", RUNS["e2e_reschedule"]) == "success"
    row = rows[("third_poke_succeeds", -1)]
    assert (row.state, row.try_number) == ("success", 1)  # pokes do not cost tries
    assert containers(stack, "e2e_reschedule", "third_poke_succeeds") == 3


def test_deferrable_operator_resumes_after_the_triggerer_in_a_new_container(stack):
    rows = finished(stack, "e2e_deferral")
    assert stack.run_state("e2e_deferral", RUNS["e2e_deferral"]) == "success"
    row = rows[("deferred", -1)]
    assert (row.state, row.try_number) == ("success", 1)
    assert containers(stack, "e2e_deferral", "deferred") == 2  # before deferral, and the resume


def test_mapped_task_over_21_items_with_a_reduce(stack):
    rows = finished(stack, "e2e_mapped")
    assert stack.run_state("e2e_mapped", RUNS["e2e_mapped"]) == "success"
    mapped = [r for (task_id, _), r in rows.items() if task_id == "double"]
    assert len(mapped) == 21 and all(r.state == "success" for r in mapped)
    assert [containers(stack, "e2e_mapped", "double", map_index=i) for i in range(21)] == [1] * 21
    assert rows[("reduce", -1)].state == "success"
    assert containers(stack, "e2e_mapped", "reduce") == 1


def test_retry_runs_exactly_one_container_per_try_and_execution_timeout_fails_the_task(stack):
    rows = finished(stack, "e2e_retry")
    assert stack.run_state("e2e_retry", RUNS["e2e_retry"]) == "failed"  # times_out has no retries
    retried = rows[("fails_first_try", -1)]
    assert (retried.state, retried.try_number) == ("success", 2)
    assert containers(stack, "e2e_retry", "fails_first_try", try_number=1) == 1
    assert containers(stack, "e2e_retry", "fails_first_try", try_number=2) == 1
    timed_out = rows[("times_out", -1)]
    assert (timed_out.state, timed_out.try_number) == ("failed", 1)
    assert containers(stack, "e2e_retry", "times_out") == 1


def test_deadline_alert_callbacks_run_as_ecs_tasks_and_report_success_and_failure(stack):
    finished(stack, "e2e_deadline")
    callbacks = {row.path: row for row in stack.wait_for_callbacks("e2e_deadline", 2)}
    assert callbacks["e2e_callbacks.record_deadline"].state == "success"
    failed = callbacks["e2e_callbacks.failing_deadline"]
    assert failed.state == "failed" and "exit 1" in (failed.output or "")
    created = stack.stats()["created_per_try"]
    assert [created.get(f"callback|{row.id}") for row in callbacks.values()] == [1, 1]


def test_tasks_choose_fargate_or_local_executor(stack):
    rows = finished(stack, "e2e_mixed_executors")
    assert stack.run_state("e2e_mixed_executors", RUNS["e2e_mixed_executors"]) == "success"
    assert rows[("on_local", -1)].state == "success"
    assert containers(stack, "e2e_mixed_executors", "on_local") == 0  # LocalExecutor: no ECS task
    fargate = rows[("on_fargate", -1)]
    assert fargate.state == "success" and fargate.external_executor_id.startswith("arn:aws:ecs:")
    assert containers(stack, "e2e_mixed_executors", "on_fargate") == 1


def test_each_queue_runs_on_its_profile_and_a_wrong_fargate_size_fails_before_launch(stack):
    rows = finished(stack, "e2e_queues")
    launches = stack.stats()["launches_per_try"]

    def launch(task_id: str) -> dict[str, object]:
        (only,) = launches[f"e2e_queues|{task_id}|{RUNS['e2e_queues']}|-1|1"]  # one container per try
        return only

    assert all(rows[(t, -1)].state == "success" for t, _ in rows if t != "wrong_fargate_size")
    base, large = "airflow-local-task:1", "airflow-local-task-large:1"
    assert launch("on_small") == {"taskDefinition": base, "cpu": "512", "memory": "1024", "launchType": "FARGATE", "capacityProvider": None}  # fmt: skip
    assert launch("on_large") == {"taskDefinition": large, "cpu": "4096", "memory": "16384", "launchType": "FARGATE", "capacityProvider": None}  # fmt: skip
    assert launch("on_spot") == {"taskDefinition": base, "cpu": None, "memory": None, "launchType": None, "capacityProvider": "FARGATE_SPOT"}  # fmt: skip
    assert (launch("on_small_with_more_memory")["cpu"], launch("on_small_with_more_memory")["memory"]) == (
        "512",
        "2048",
    )
    for task_id in ("on_the_default_queue", "on_a_queue_without_profile"):  # the default queue's profile
        assert launch(task_id) == {"taskDefinition": base, "cpu": None, "memory": None, "launchType": "FARGATE", "capacityProvider": None}  # fmt: skip
    wrong = rows[("wrong_fargate_size", -1)]
    assert wrong.state == "failed" and containers(stack, "e2e_queues", "wrong_fargate_size") == 0
    # the reason is saved with the executor's task event (lost on SQLAlchemy 2.1: config/constraints-airflow3.txt)
    events = [(event, extra) for task_id, event, extra in stack.task_events("e2e_queues", RUNS["e2e_queues"])
              if task_id == "wrong_fargate_size"]  # fmt: skip
    ours = [extra or "" for event, extra in events if event == "fargate task failed"]
    assert len(ours) == 1 and "with cpu 4096 Fargate accepts memory 8192, 9216, 10240" in ours[0], events
    scheduler_log = (stack.home / "logs" / "scheduler.log").read_text()
    assert "with cpu 4096 Fargate accepts memory 8192, 9216, 10240" in scheduler_log
    assert scheduler_log.count("Queue 'nightly' has no profile") == 1
