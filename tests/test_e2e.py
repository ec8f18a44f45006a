"""End to end: a real Airflow 3 scheduler, api-server and dag-processor with FargateExecutor on the
local ECS endpoint, which really runs each task as a subprocess."""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Iterator

import pytest

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.local.stack import AirflowStack
from tests.helpers import adopted_command, e2e_stack, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 3 stack; Airflow 2 has tests/test_e2e_airflow2.py"),
]
RUNS = {"example_fargate": "e2e-example", "e2e_fail": "e2e-fail"}  # triggered at start, in parallel


@pytest.fixture(scope="module")
def stack() -> Iterator[AirflowStack]:
    files = ["config/dags/example_fargate.py", "config/dags/example_callbacks.py", "tests/e2e_dags/e2e_dags.py"]
    # The one line that shows finished tries' logs from CloudWatch (README: Task logs in the UI)
    extra = {
        "AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS": "airflow_fargate.log_config.LOGGING_CONFIG",
        # e2e_fail's never_launched (count 2) shows the executor failing one task at run time; the
        # parse-time check would refuse its DAG file instead (tests/test_e2e_dag_checks.py)
        "AIRFLOW__AWS_ECS_EXECUTOR__CHECK_DAGS_AT_PARSE_TIME": "False",
    }
    with e2e_stack(files, RUNS, extra_env=extra) as running:
        yield running


def log_view(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> list[dict]:
    """The UI's log view of one try: the api-server's REST log endpoint, as structured events."""
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}?full_content=true"
    content = stack.api_get(path)["content"]
    return [item for item in content if isinstance(item, dict)]


def events_of(view: list[dict]) -> list[str]:
    return [str(item.get("event")) for item in view]


def try_key(dag_id: str, run_id: str, task_id: str, map_index: int = -1, try_number: int = 1) -> str:
    return f"{dag_id}|{task_id}|{run_id}|{map_index}|{try_number}"


def test_example_dag_succeeds_and_executor_config_reaches_the_container(stack):
    assert stack.wait_for_run("example_fargate", RUNS["example_fargate"]) == "success"
    rows = stack.task_rows("example_fargate", RUNS["example_fargate"])
    assert {r.task_id for r in rows} == {"extract", "square", "total", "greet", "upstream_ready", "wait_in_triggerer"}
    assert len([r for r in rows if r.task_id == "square"]) == 4  # fan-out
    assert all(r.state == "success" and r.external_executor_id.startswith("arn:aws:ecs:") for r in rows)
    assert all(r.try_number == 1 for r in rows)
    created = stack.stats()["created_per_try"]
    per_row = {
        (r.task_id, r.map_index): created[try_key("example_fargate", RUNS["example_fargate"], r.task_id, r.map_index)]
        for r in rows
    }
    assert per_row.pop(("upstream_ready", -1)) == 3  # reschedule mode: a container per poke, the 3rd succeeds
    assert per_row.pop(("wait_in_triggerer", -1)) == 2  # deferred, then resumed after the triggerer fired
    assert set(per_row.values()) == {1}
    # task log files stay in each container's own home (removed with it), as on ECS
    assert not list(stack.task_log_dir("example_fargate", RUNS["example_fargate"]).glob("task_id=greet/**/*.log"))
    greet = next(r for r in rows if r.task_id == "greet")
    assert "FARGATE_GREETING=hello from executor_config" in stack.container_output(greet.external_executor_id)


def test_a_finished_tries_whole_log_is_in_the_ui_from_cloudwatch(stack):
    assert stack.wait_for_run("example_fargate", RUNS["example_fargate"]) == "success"
    view = log_view(stack, "example_fargate", RUNS["example_fargate"], "greet")
    events = events_of(view)
    assert any("FARGATE_GREETING=hello from executor_config" in event for event in events), events
    assert any("Output of ECS task arn:aws:ecs:" in event and "CloudWatch Logs group" in event for event in events)
    # the container's structured lines are events with their level and logger, not JSON text
    structured = [item for item in view if item.get("logger") and item.get("level")]
    assert structured and not any(event.lstrip().startswith("{") for event in events)


def test_a_failed_tries_log_shows_the_error_and_a_never_launched_try_the_executors_reason(stack):
    assert stack.wait_for_run("e2e_fail", RUNS["e2e_fail"]) == "failed"
    raises = log_view(stack, "e2e_fail", RUNS["e2e_fail"], "raises")
    assert "Output of ECS task arn:aws:ecs:" in json.dumps(raises)
    errors = [item for item in raises if item.get("level") == "error"]
    assert "this task fails on purpose" in json.dumps(errors), events_of(raises)  # in the event or its error_detail
    never = log_view(stack, "e2e_fail", RUNS["e2e_fail"], "never_launched")
    reasons = [item for item in never if "executor_config sets count=2" in str(item.get("event"))]
    assert reasons and reasons[0]["level"] == "error", events_of(never)
    assert stack.stats()["created_per_try"].get(try_key("e2e_fail", RUNS["e2e_fail"], "never_launched"), 0) == 0


def test_example_dag_deadline_callback_runs_in_its_own_container(stack):
    assert stack.wait_for_run("example_fargate", RUNS["example_fargate"]) == "success"
    (callback,) = stack.wait_for_callbacks("example_fargate", 1)
    assert (callback.path, callback.state) == ("example_callbacks.report_missed_deadline", "success")
    assert stack.stats()["created_per_try"][f"callback|{callback.id}"] == 1


def test_adopted_try_command_is_rebuilt_from_its_db_row(stack):
    """What a relaunch after adoption sends: a fresh workload with a valid execution-API token."""
    from airflow.executors.workloads import ExecuteTask

    stack.wait_for_run("example_fargate", RUNS["example_fargate"])
    (row,) = [r for r in stack.task_rows("example_fargate", RUNS["example_fargate"]) if r.task_id == "greet"]
    command = adopted_command(stack, "example_fargate", RUNS["example_fargate"], row)
    assert command[:4] == ["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string"]
    workload = ExecuteTask.model_validate_json(command[4])
    assert (workload.ti.task_id, workload.ti.try_number) == ("greet", row.try_number)
    assert workload.dag_rel_path.name == "example_fargate.py"
    assert workload.token.count(".") == 2  # a signed JWT, not the empty token of a generator-less make()


def test_failing_tasks_are_marked_failed_with_the_exit_code(stack):
    assert stack.wait_for_run("e2e_fail", RUNS["e2e_fail"]) == "failed"
    rows = {r.task_id: r for r in stack.task_rows("e2e_fail", RUNS["e2e_fail"])}
    assert rows["raises"].state == "failed"
    assert rows["dies"].state == "failed"
    ecs = stack.ecs.client("ecs")
    described = ecs.describe_tasks(cluster=stack.ecs.config.cluster, tasks=[rows["dies"].external_executor_id])
    (container,) = described["tasks"][0]["containers"]
    assert container["exitCode"] == 137
    scheduler_log = (stack.home / "logs" / "scheduler.log").read_text()
    assert "airflow-worker exit 137" in scheduler_log


def test_spot_interruption_relaunches_the_same_try_and_succeeds(stack):
    dag_id, run_id = "e2e_spot", "e2e-spot"
    stack.trigger(dag_id, run_id)  # now, so its first container is surely still running when polled

    def running_arn():
        rows = stack.task_rows(dag_id, run_id)
        return rows and rows[0].state == "running" and rows[0].external_executor_id

    arn = wait_until(running_arn, 180, "spot task never started running")
    time.sleep(2)
    # The UI's log view of the running task asks FargateExecutor.get_task_log in the api-server.
    view = log_view(stack, dag_id, run_id, "interrupted_once")
    assert f"ECS task {arn}" in json.dumps(view)
    # the running container's structured lines are events (level, logger), not JSON text
    assert [item for item in view if item.get("logger") and item.get("level")], view
    assert not any(event.lstrip().startswith("{") for event in events_of(view))
    assert stack.ecs.runner.interrupt(arn)
    assert stack.wait_for_run(dag_id, run_id) == "success"
    (row,) = stack.task_rows(dag_id, run_id)
    assert row.try_number == 1  # the relaunch did not cost an Airflow try
    assert row.external_executor_id != arn
    stats = stack.stats()
    key = try_key(dag_id, run_id, "interrupted_once")
    assert stats["created_per_try"][key] == 2
    assert stats["spot_interruptions"] >= 1
    assert key not in stats["overlapping_tries"]


def adopted(stack: AirflowStack, run_id: str, log_offset: int) -> int:
    """Tries of this run the scheduler log says were adopted since ``log_offset``."""
    text = (stack.home / "logs" / "scheduler.log").read_text()[log_offset:]
    return sum(line.count(f"run_id='{run_id}'") for line in text.splitlines() if "Adopted " in line)


def release(stack: AirflowStack, run_id: str) -> None:
    """Let e2e_slow's tasks of this run finish (they wait for this Variable)."""
    stack.airflow("variables", "set", f"release_{run_id}", "1")


def test_scheduler_killed_mid_run_adopts_running_tasks_without_duplicates(stack):
    dag_id, run_id = "e2e_slow", "e2e-restart"
    stack.trigger(dag_id, run_id)

    def all_running():
        rows = stack.task_rows(dag_id, run_id)
        return len(rows) == 3 and all(r.state == "running" and r.external_executor_id for r in rows)

    wait_until(all_running, 240, "slow tasks never all ran")
    before = len((stack.home / "logs" / "scheduler.log").read_text())
    stack.kill("scheduler")
    time.sleep(2)
    stack.start_process("scheduler", "scheduler")
    wait_until(lambda: adopted(stack, run_id, before) == 3, 120, "the new scheduler never adopted the 3 tries")
    release(stack, run_id)
    assert stack.wait_for_run(dag_id, run_id, timeout=300) == "success"
    rows = stack.task_rows(dag_id, run_id)
    assert [r.try_number for r in rows] == [1, 1, 1]
    stats = stack.stats()
    for n in range(3):
        key = try_key(dag_id, run_id, "slow", map_index=n)
        assert stats["created_per_try"][key] == 1, (key, stats)
    assert stats["overlapping_tries"] == []


def test_scheduler_sigterm_leaves_tasks_running_for_its_successor_to_adopt(stack):
    """A rolling deploy: SIGTERM makes Airflow call end(), which must neither wait for the tasks
    nor stop them (their ARNs are saved); the next scheduler adopts them, one container per try."""
    dag_id, run_id = "e2e_slow", "e2e-sigterm"
    log = stack.home / "logs" / "scheduler.log"
    for other, other_run in RUNS.items():  # only this run's tasks in flight: every count below is exact
        stack.wait_for_run(other, other_run)
    stack.trigger(dag_id, run_id)

    def all_running():
        rows = stack.task_rows(dag_id, run_id)
        return len(rows) == 3 and all(r.state == "running" and r.external_executor_id for r in rows)

    wait_until(all_running, 240, "slow tasks never all ran")
    before = len(log.read_text())
    stops_before = stack.stats()["stops_requested"]
    stack.kill("scheduler", signal.SIGTERM)
    shutdown = re.findall(r"(\d+) ECS task\(s\) keep running for the next scheduler to adopt", log.read_text()[before:])
    assert shutdown == ["3"]
    assert stack.stats()["stops_requested"] == stops_before  # nothing was stopped: every ARN was saved
    stack.start_process("scheduler", "scheduler")
    wait_until(lambda: adopted(stack, run_id, before) == 3, 120, "the new scheduler never adopted the 3 tries")
    release(stack, run_id)
    assert stack.wait_for_run(dag_id, run_id, timeout=300) == "success"
    assert [r.try_number for r in stack.task_rows(dag_id, run_id)] == [1, 1, 1]
    created = stack.stats()["created_per_try"]
    assert [created[try_key(dag_id, run_id, "slow", map_index=n)] for n in range(3)] == [1, 1, 1]
