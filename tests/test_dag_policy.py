"""The parse-time check of executor_config (the package's Airflow cluster policy): a DAG whose
task the scheduler could not launch fails to import, naming the task; others parse as before."""

from __future__ import annotations

import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

from airflow_fargate import dag_policy
from airflow_fargate.compat import AIRFLOW_V3
from tests.helpers import CONTAINER, minimal_config, set_config


@pytest.fixture(autouse=True)
def configured(monkeypatch):
    minimal_config(monkeypatch)
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "airflow_fargate.FargateExecutor,LocalExecutor")
    dag_policy._builder.cache_clear()
    yield
    dag_policy._builder.cache_clear()


def task(executor_config, executor=None, queue="default"):
    return SimpleNamespace(
        task_id="t", dag_id="d", executor_config=executor_config, executor=executor, queue=queue, dag=None
    )


@pytest.mark.parametrize(
    ("task_executor", "configured", "ours"),
    [
        (None, "airflow_fargate.FargateExecutor", True),
        (None, "LocalExecutor,airflow_fargate.FargateExecutor", False),
        ("FargateExecutor", "LocalExecutor,airflow_fargate.FargateExecutor", True),
        ("fargate", "LocalExecutor,fargate:airflow_fargate.FargateExecutor", True),
        ("airflow_fargate.FargateExecutor", "LocalExecutor,airflow_fargate.FargateExecutor", True),
        ("LocalExecutor", "airflow_fargate.FargateExecutor,LocalExecutor", False),
        (None, "", False),
    ],
)
def test_which_tasks_run_on_this_executor(task_executor, configured, ours):
    assert dag_policy.routed_here(task_executor, configured) is ours


def test_a_config_that_is_not_a_dict_is_refused_naming_what_it_is():
    found = dag_policy.problem(task("not-a-dict"))
    assert found is not None and "executor_config must be a dict" in found and "'not-a-dict'" in found


@pytest.mark.skipif(not AIRFLOW_V3, reason="Airflow 2 launches other executors' tasks with any executor_config")
def test_on_airflow_3_a_non_dict_config_is_refused_whatever_the_executor():
    assert "must be a dict" in (dag_policy.problem(task(["x"], executor="LocalExecutor")) or "")


def test_kwargs_ecs_would_refuse_are_refused_for_this_executors_tasks_only():
    too_big = {
        "overrides": {"containerOverrides": [{"name": CONTAINER, "environment": [{"name": "X", "value": "y" * 9000}]}]}
    }
    found = dag_policy.problem(task(too_big))
    assert found is not None and "ECS allows 8,192" in found and f"container {CONTAINER!r}" in found
    assert "y" * 100 not in found  # never repeats the input
    assert "count" in (dag_policy.problem(task({"count": 2})) or "")
    assert dag_policy.problem(task({"notAKwarg": 1})) is not None
    assert dag_policy.problem(task({"notAKwarg": 1}, executor="LocalExecutor")) is None  # not ours to judge
    assert dag_policy.problem(task({"cpu": "512", "memory": "1024"})) is None
    assert dag_policy.problem(task(None)) is None and dag_policy.problem(task({})) is None


def test_without_the_executors_configuration_only_the_type_is_checked(monkeypatch):
    set_config(monkeypatch, "aws_ecs_executor", cluster="")  # a dag-processor configured without it
    dag_policy._builder.cache_clear()
    assert dag_policy.problem(task({"notAKwarg": 1})) is None
    assert dag_policy.problem(task("x")) is not None


def test_the_check_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("AIRFLOW__AWS_ECS_EXECUTOR__CHECK_DAGS_AT_PARSE_TIME", "False")
    dag_policy.task_policy(task("not-a-dict"))  # no exception


def test_a_dag_file_with_such_a_task_is_an_import_error_of_a_real_dagbag(tmp_path: Path):
    """Through Airflow's own DagBag: the policy comes from the package's airflow.policy entry point."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 2
        from airflow.models.dagbag import DagBag
    decorator = "from airflow.sdk import dag, task" if AIRFLOW_V3 else "from airflow.decorators import dag, task"
    (tmp_path / "bad.py").write_text(
        textwrap.dedent(
            f"""
            import pendulum
            {decorator}

            @dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
            def bad():
                @task(executor_config="not-a-dict")
                def wrong():
                    pass
                wrong()

            @dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
            def good():
                @task(executor_config={{"cpu": "512", "memory": "1024"}})
                def fine():
                    pass
                fine()

            bad()
            """
        )
    )
    (tmp_path / "good.py").write_text((tmp_path / "bad.py").read_text().replace("bad()", "good()"))
    bag = DagBag(dag_folder=str(tmp_path), **({} if AIRFLOW_V3 else {"include_examples": False}))
    assert set(bag.dag_ids) == {"good"}
    (error,) = bag.import_errors.values()
    assert "DAG 'bad', task 'wrong': executor_config must be a dict" in error, error
