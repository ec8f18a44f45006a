"""What every scheduler-kill test asserts from the local endpoint's records, and its fault switches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from airflow_fargate.local.stack import AirflowStack
from tests.helpers import wait_until

# RunTask starts each task at once but answers late (a killed scheduler never learns the ARN), and
# tasks created meanwhile stay PROVISIONING long enough that an orphan nobody stops would start.
SLOW_ANSWERS = {"run_task_response_delay_s": 8.0, "provision_delay_s": 90.0}


def set_faults(stack: AirflowStack, **switches: Any) -> None:
    assert stack.ecs is not None
    stack.ecs.control("/_local/faults", switches)


def wait_for_run_task_calls(stack: AirflowStack, more_than: int) -> None:
    wait_until(lambda: stack.stats()["run_task_calls"] > more_than, 400, "the scheduler never launched")


def assert_no_try_lost_doubled_or_orphaned(stack: AirflowStack, dag_id: str, run_id: str, logs: list[Path]) -> str:
    """Every task succeeded; each final try ran in exactly one container and no try ever had two
    running; every try Airflow reset had its containers stopped by the orphan sweep before they
    started; nothing runs at the end. Returns a summary line."""
    rows = stack.task_rows(dag_id, run_id)
    assert rows and all(r.state == "success" for r in rows), rows
    stats = wait_until(
        lambda: (s := stack.stats())["running_tries"] == [] and s, 60, "containers still running at the end"
    )
    assert stats["doubly_run_tries"] == [] and stats["overlapping_tries"] == []
    final = {f"{dag_id}|{r.task_id}|{run_id}|{r.map_index}|{r.try_number}" for r in rows}
    ours = {key: n for key, n in stats["created_per_try"].items() if key.startswith(f"{dag_id}|")}
    for key in final:
        assert ours.get(key) == 1, (key, stats)
    reset = set(ours) - final
    for key in reset:
        assert stats["started_per_try"].get(key, 0) == 0, (key, stats)
        assert stats["stops_per_try"][key] and all("orphan sweep" in r for r in stats["stops_per_try"][key]), key
    text = "".join(log.read_text() for log in logs)
    adopted = text.count("Orphan sweep: adopted") + sum(
        line.count(f"run_id='{run_id}'") for line in text.splitlines() if "Adopted " in line
    )
    assert reset or adopted, "neither an orphan was stopped nor an unrecorded try adopted"
    return f"{len(rows)} tries succeeded; {len(reset)} reset tries' containers stopped; {adopted} adoptions"
