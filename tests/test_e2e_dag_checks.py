"""The parse-time check of executor_config on a real scheduler (Airflow 3.3): a DAG whose task's
executor_config is not a dict, which stops Airflow 3.3's scheduler once queued, is an import error
naming the task; another DAG file's runs go on, in one container per try, and the scheduler
stays up."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.local.stack import AirflowStack
from tests.helpers import e2e_stack, slowdown, wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not AIRFLOW_V3, reason="the crash it prevents is Airflow 3.3's"),
]
GOOD_DAG, GOOD_RUN = "e2e_one_slot", "checked"


@pytest.fixture(scope="module")
def stack() -> Iterator[AirflowStack]:
    files = ["tests/e2e_dags/e2e_bad_executor_config.py", "tests/e2e_dags/e2e_one_slot.py"]
    with e2e_stack(files, {GOOD_DAG: GOOD_RUN}) as running:
        yield running


def test_a_dag_whose_executor_config_is_not_a_dict_is_an_import_error_and_the_scheduler_keeps_running(stack):
    def bad_dags_errors() -> list[dict]:
        errors = stack.api_get("/api/v2/importErrors")["import_errors"]
        return [e for e in errors if "e2e_bad_executor_config" in e["filename"]]

    (error,) = wait_until(bad_dags_errors, 300 * slowdown(), "the import error of the bad DAG")
    text = error["stack_trace"]
    assert "task 'wrong'" in text and "executor_config must be a dict" in text and "'not-a-dict'" in text, text
    assert "e2e_bad_executor_config" not in {d["dag_id"] for d in stack.api_get("/api/v2/dags")["dags"]}
    assert stack.wait_for_run(GOOD_DAG, GOOD_RUN, timeout=600 * slowdown()) == "success"
    created = stack.stats()["created_per_try"]
    assert [created.get(f"{GOOD_DAG}|{task}|{GOOD_RUN}|-1|1") for task in ("first", "second")] == [1, 1]
    assert stack.procs["scheduler"].poll() is None  # the scheduler is still up
