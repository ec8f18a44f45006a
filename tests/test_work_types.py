"""Airflow 3.3 work types beyond task tries: callbacks and connection tests run as ECS tasks through
the same launch -> track -> report path, and nothing a workload contains raises out of the loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.errors import FargateConfigError
from airflow_fargate.work import EXIT_CODE_RUNNER
from tests.executor_harness import beat, calls, events
from tests.helpers import CONTAINER

pytestmark = pytest.mark.skipif(not AIRFLOW_V3, reason="callbacks and connection tests are Airflow 3.3 workloads")


def callback_workload(path: str = "tests.e2e_dags.callbacks.record", **kwargs: Any) -> Any:
    from airflow.executors.workloads import BundleInfo, ExecuteCallback
    from airflow.executors.workloads.callback import CallbackDTO

    return ExecuteCallback(
        callback=CallbackDTO(id=str(uuid.uuid4()), fetch_method="import_path", data={"path": path, "kwargs": kwargs}),
        dag_rel_path="dags/example.py",
        token="token",
        log_path="executor_callbacks/dag/run/cb",
        bundle_info=BundleInfo(name="dags-folder"),
    )


def connection_test_workload() -> Any:
    from airflow.executors.workloads import TestConnection

    return TestConnection(connection_test_id=uuid.uuid4(), connection_id="aws_default", timeout=30, token="token")


def container_command(params: dict[str, Any]) -> list[str]:
    (override,) = [c for c in params["overrides"]["containerOverrides"] if c["name"] == CONTAINER]
    return list(override["command"])


@pytest.mark.parametrize(("exit_code", "expected"), [(0, "success"), (1, "failed")])
def test_callback_runs_as_an_ecs_task_and_reports_its_exit_code(executor, ecs, exit_code, expected):
    from airflow.utils.state import CallbackState

    seen = calls(executor, "RunTask")
    workload = callback_workload()
    executor.queue_workload(workload, session=None)
    beat(executor)
    (params,) = seen
    command = container_command(params)
    assert command[:2] == ["python", "-c"] and command[3] == "--json-string"
    assert json.loads(command[4])["callback"]["id"] == workload.callback.id
    state, arn = events(executor)[workload.key]
    assert state == CallbackState.RUNNING and arn.startswith("arn:aws:ecs:")
    assert workload.key in executor.running
    ecs.set_state(arn, "STOPPED", exit_codes={CONTAINER: exit_code})
    beat(executor)
    assert events(executor)[workload.key][0] == CallbackState(expected)
    assert workload.key not in executor.running


def test_connection_test_runs_as_an_ecs_task(executor, ecs):
    from airflow.models.connection_test import ConnectionTestState

    seen = calls(executor, "RunTask")
    workload = connection_test_workload()
    executor.queue_workload(workload, session=None)
    beat(executor)
    (params,) = seen
    assert json.loads(container_command(params)[4])["connection_id"] == "aws_default"
    state, arn = events(executor)[workload.key]
    assert state == ConnectionTestState.RUNNING
    assert not executor.queued_connection_tests
    executor.fail_connection_test(workload.key)  # Airflow's reaper gave up on it
    assert ecs.task(arn).desired_status == "STOPPED"
    assert workload.key not in executor.running


def test_connection_test_that_cannot_launch_records_the_reason(executor, ecs, monkeypatch, airflow_db):
    from airflow.models.connection_test import ConnectionTestRequest, ConnectionTestState
    from airflow.utils.session import create_session
    from botocore.exceptions import ClientError

    with create_session() as session:
        request = ConnectionTestRequest(connection_id="aws_default", conn_type="aws")
        request.state = ConnectionTestState.QUEUED
        session.add(request)
        session.flush()
        test_id = request.id

    def denied(kwargs, token):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no ecs:RunTask"}}, "RunTask")

    monkeypatch.setattr(executor.ecs, "run_task", denied)
    from airflow.executors.workloads import TestConnection

    workload = TestConnection(connection_test_id=test_id, connection_id="aws_default", timeout=30, token="t")
    executor.queue_workload(workload, session=None)
    beat(executor)
    assert events(executor)[workload.key][0] == ConnectionTestState.FAILED
    with create_session() as session:
        row = session.get(ConnectionTestRequest, test_id)
        assert row.state == ConnectionTestState.FAILED
        assert "FargateExecutor" in row.result_message and "no ecs:RunTask" in row.result_message


def test_unknown_workload_types_never_raise_out_of_the_scheduler_loop(executor, ecs, capfd):
    class FutureWorkload:
        key = "future"

    executor.queue_workload(FutureWorkload(), session=None)
    executor._process_workloads([FutureWorkload()])
    beat(executor)
    assert "cannot" in capfd.readouterr().out
    assert ecs.all_task_arns() == []


@pytest.mark.parametrize(("returns", "exit_code"), [("0", 0), ("3", 3)])
def test_the_callback_runner_exits_with_run_workloads_code(tmp_path, returns, exit_code):
    """execute_workload's main() always exits 0; callbacks need the supervisor's exit code."""
    fake = tmp_path / "airflow_fake_run.py"
    fake.write_text(
        "from airflow.executors.base_executor import BaseExecutor\n"
        f"BaseExecutor.run_workload = staticmethod(lambda workload, **kw: {returns})\n"
    )
    runner = "import airflow_fake_run\n" + EXIT_CODE_RUNNER
    payload = callback_workload().model_dump_json()
    result = subprocess.run(
        [sys.executable, "-c", runner, "--json-string", payload],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == exit_code, result.stderr[-2000:]


def test_one_executor_per_team_reads_its_own_team_config(monkeypatch, ecs):
    """Airflow 3.3 multi-team: each team's instance reads AIRFLOW__<TEAM>___AWS_ECS_EXECUTOR__*."""
    from airflow_fargate.executor import FargateExecutor
    from tests.helpers import FAMILY, minimal_config

    ecs.client.create_cluster(clusterName="team-b-cluster")
    for team, cluster in (("team_a", "airflow-tasks"), ("team_b", "team-b-cluster")):
        minimal_config(monkeypatch, cluster=cluster, subnets=",".join(ecs.subnets), security_groups=ecs.security_group)
        for name in [n for n in os.environ if n.startswith("AIRFLOW__AWS_ECS_EXECUTOR__")]:
            monkeypatch.setenv(name.replace("AIRFLOW__", f"AIRFLOW__{team.upper()}___", 1), os.environ[name])
    for name in [n for n in os.environ if n.startswith("AIRFLOW__AWS_ECS_EXECUTOR__")]:
        monkeypatch.delenv(name)  # only team values from here on
    with pytest.raises(FargateConfigError, match="FargateExecutor of team 'team_c'"):
        FargateExecutor(team_name="team_c").start()
    team_a, team_b = FargateExecutor(team_name="team_a"), FargateExecutor(team_name="team_b")
    for executor in (team_a, team_b):
        executor.start()
    assert FargateExecutor.supports_multi_team
    assert (team_a.settings.cluster, team_b.settings.cluster) == ("airflow-tasks", "team-b-cluster")
    assert team_b.settings.task_definition == FAMILY
    assert (
        team_b.settings.sources["cluster"]
        == "[aws_ecs_executor] cluster (env AIRFLOW__TEAM_B___AWS_ECS_EXECUTOR__CLUSTER)"
    )
    from tests.helpers import make_workload, submit

    submit(team_a, make_workload("a"))
    submit(team_b, make_workload("b"))
    for executor in (team_a, team_b):
        beat(executor)
    arns = {key.task_id: arn for ex in (team_a, team_b) for key, (_, arn) in events(ex).items()}
    assert ":cluster/" not in arns["a"]
    assert "/airflow-tasks/" in arns["a"] and "/team-b-cluster/" in arns["b"]
