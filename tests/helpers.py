"""Builders shared by the tests: config env, queued work for Airflow 3 or 2, a moto ECS world."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import boto3
import pytest

from airflow_fargate.compat import AIRFLOW_V3

SECTION_PREFIXES = ("AIRFLOW__FARGATE__", "AIRFLOW__AWS_ECS_EXECUTOR__")
REGION = "us-east-1"
CLUSTER = "airflow-tasks"
FAMILY = "airflow-worker"
CONTAINER = "base"
SIDECAR = "log-router"
LOG_GROUP = "/ecs/airflow"
LOG_PREFIX = "airflow"


def set_config(monkeypatch: pytest.MonkeyPatch, section: str, **values: Any) -> None:
    """Set options as AIRFLOW__SECTION__KEY env vars (what most deployments use)."""
    for key, value in values.items():
        monkeypatch.setenv(f"AIRFLOW__{section.upper()}__{key.upper()}", str(value))


def minimal_config(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> None:
    values = {
        "region_name": REGION,
        "cluster": CLUSTER,
        "container_name": CONTAINER,
        "task_definition": FAMILY,
        "check_health_on_startup": "False",
    }
    values.update(extra)
    set_config(monkeypatch, "aws_ecs_executor", **values)


@dataclass
class Airflow2Task:
    """What Airflow 2's BaseExecutor hands to execute_async: a key, a command list and the TI."""

    ti: Any
    command: list[str]


def make_workload(
    task_id: str = "t1",
    *,
    dag_id: str = "dag",
    run_id: str = "run1",
    try_number: int = 1,
    map_index: int = -1,
    executor_config: dict[str, Any] | None = None,
    queue: str = "default",
) -> Any:
    """One queued try: an ExecuteTask workload on Airflow 3, an ``airflow tasks run`` task on 2."""
    if not AIRFLOW_V3:
        from airflow.models.taskinstancekey import TaskInstanceKey

        key = TaskInstanceKey(dag_id, task_id, run_id, try_number, map_index)
        command = ["airflow", "tasks", "run", dag_id, task_id, run_id, "--local", "--subdir", "DAGS_FOLDER/x.py"]
        if map_index >= 0:
            command += ["--map-index", str(map_index)]
        ti = SimpleNamespace(key=key, task_id=task_id, executor_config=executor_config, queue=queue)
        return Airflow2Task(ti, command)

    from airflow.executors.workloads import ExecuteTask
    from airflow.executors.workloads.base import BundleInfo
    from airflow.executors.workloads.task import TaskInstanceDTO

    ti = TaskInstanceDTO(
        id=uuid.uuid4(),
        dag_version_id=uuid.uuid4(),
        task_id=task_id,
        dag_id=dag_id,
        run_id=run_id,
        try_number=try_number,
        map_index=map_index,
        pool_slots=1,
        priority_weight=1,
        queue=queue,
        executor_config=executor_config,
    )
    return ExecuteTask(
        ti=ti,
        dag_rel_path="dags/example.py",
        token="token",
        log_path=f"dag_id={dag_id}/{task_id}.log",
        bundle_info=BundleInfo(name="dags-folder"),
    )


def submit(executor: Any, work: Any) -> None:
    """Hand one try to the executor the way the scheduler's BaseExecutor does on this Airflow."""
    if AIRFLOW_V3:
        executor.queue_workload(work, session=None)
        return
    executor.execute_async(
        key=work.ti.key, command=work.command, queue=work.ti.queue, executor_config=work.ti.executor_config
    )
    executor.running.add(work.ti.key)


def command_of(work: Any) -> list[str]:
    """The container command the executor sends for this try."""
    from airflow_fargate.work import container_command

    return work.command if isinstance(work, Airflow2Task) else container_command(work)


@dataclass
class MotoEcs:
    """A moto account with a cluster and a task definition, plus handles to steer task state."""

    client: Any
    subnets: list[str]
    security_group: str

    def backend(self) -> Any:
        from airflow_fargate.local.moto_tasks import ecs_backend

        return ecs_backend(REGION)

    def task(self, arn: str) -> Any:
        from airflow_fargate.local.moto_tasks import find_task, freeze

        task = find_task(self.backend(), arn)
        assert task is not None, arn
        if task._transitions:
            freeze(task)
        return task

    def set_state(self, arn: str, status: str, **kwargs: Any) -> None:
        from airflow_fargate.local.moto_tasks import set_state

        set_state(self.task(arn), status, **kwargs)

    def print(self, arn: str, *lines: str) -> None:
        """Write lines to the task's awslogs stream, as the container would."""
        logs = boto3.client("logs", region_name=REGION)
        stream = f"{LOG_PREFIX}/{CONTAINER}/{arn.rsplit('/', 1)[-1]}"
        logs.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
        now = int(time.time() * 1000)
        events = [{"timestamp": now + i, "message": line} for i, line in enumerate(lines)]
        logs.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)

    def all_task_arns(self) -> list[str]:
        return [arn for tasks in self.backend().tasks.values() for arn in tasks]


def epoch(value: Any) -> float:
    """A datetime column as SQLite returns it (UTC, naive text) in epoch seconds."""
    when = value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))
    return (when if when.tzinfo else when.replace(tzinfo=datetime.timezone.utc)).timestamp()


def slowdown() -> float:
    """How much slower than a quiet 2-core machine this one may be: every deadline a test waits
    on is scaled by AIRFLOW_FARGATE_TEST_SLOWDOWN (default 1; CI on a busy machine sets more)."""
    return max(1.0, float(os.environ.get("AIRFLOW_FARGATE_TEST_SLOWDOWN", "1")))


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned), or TimeoutError(what)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(what)


@contextmanager
def moto_ecs() -> Iterator[MotoEcs]:
    """A moto ECS world. Every FargateExecutor started in it is ended before the world goes, so
    no executor's threads outlive their test (they would keep calling an AWS that is gone)."""
    from moto import mock_aws

    from airflow_fargate.executor import FargateExecutor

    started: list[FargateExecutor] = []
    original_start = FargateExecutor.start

    def recording_start(self: FargateExecutor) -> None:
        started.append(self)
        original_start(self)

    with mock_aws(), mock.patch.object(FargateExecutor, "start", recording_start):
        try:
            yield _moto_world()
        finally:
            for executor in started:  # in whatever state the test left it (already ended, too)
                with suppress(Exception):
                    executor.end()


def _moto_world() -> MotoEcs:
    ecs = boto3.client("ecs", region_name=REGION)
    ec2 = boto3.client("ec2", region_name=REGION)
    subnets = [s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]][:2]
    group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    ecs.create_cluster(clusterName=CLUSTER)
    boto3.client("logs", region_name=REGION).create_log_group(logGroupName=LOG_GROUP)
    ecs.register_task_definition(
        family=FAMILY,
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": CONTAINER,
                "image": "apache/airflow:3.3.2",
                "essential": True,
                "memory": 256,
                "logConfiguration": {
                    "logDriver": "awslogs",
                    "options": {"awslogs-group": LOG_GROUP, "awslogs-stream-prefix": LOG_PREFIX},
                },
            },
            {"name": SIDECAR, "image": "fluent-bit", "essential": False, "memory": 64},
        ],
    )
    return MotoEcs(ecs, subnets, group)


# Rebuild an adopted try's command from its DB row, in a process configured like the scheduler.
ADOPTED_COMMAND_SCRIPT = """
import json, sys
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow_fargate.compat import command_for_adopted
from airflow_fargate.executor import FargateExecutor
print(json.dumps(command_for_adopted(TaskInstanceKey(*json.loads(sys.argv[1])), FargateExecutor())))
"""


def adopted_command(stack: Any, dag_id: str, run_id: str, row: Any) -> list[str]:
    key = [dag_id, row.task_id, run_id, row.try_number, row.map_index]
    out = stack.run([sys.executable, "-c", ADOPTED_COMMAND_SCRIPT, json.dumps(key)])
    return list(json.loads(out.strip().splitlines()[-1]))


ROOT = Path(__file__).resolve().parents[1]
# Where e2e stacks make their work directories: pytest's basetemp (conftest sets it), which pytest
# prunes to the last three sessions, so a failed test's logs stay a while and /tmp does not fill.
E2E_WORK_ROOT: pytest.TempPathFactory | None = None
FAILED_TESTS: list[str] = []  # node ids of failed tests of this process (tests/conftest.py records them)


@contextmanager
def e2e_stack(
    dag_files: list[str],
    runs: dict[str, str],
    extra_env: dict[str, str] | None = None,
    db_url: str | None = None,
    faults: Any = None,
    *,
    runtime: str = "process",
    simulate_duration: float = 1.0,
) -> Iterator[Any]:
    """A running AirflowStack with these DAG files (paths from the repo root), each run triggered."""
    from airflow_fargate.local.stack import AirflowStack

    assert E2E_WORK_ROOT is not None, "tests/conftest.py sets E2E_WORK_ROOT"
    work = E2E_WORK_ROOT.mktemp("airflow-fargate-e2e-")
    failed_before = len(FAILED_TESTS)
    dags = work / "dags"
    dags.mkdir()
    for name in dag_files:
        shutil.copy(ROOT / name, dags)
    from airflow_fargate.local.faults import Faults

    with AirflowStack(
        home=work / "airflow",
        dags_folder=dags,
        extra_env=extra_env or {},
        db_url=db_url,
        faults=faults or Faults(),
        runtime=runtime,
        simulate_duration=simulate_duration,
    ) as running:
        for dag_id, run_id in runs.items():  # independent runs go in parallel
            running.trigger(dag_id, run_id)
        try:
            yield running
        finally:
            print(f"e2e stack logs: {running.home / 'logs'}")
            print(f"local ECS stats: {running.stats()}")
    if len(FAILED_TESTS) == failed_before:  # its tests passed: nothing to look at (kept on failure)
        shutil.rmtree(work, ignore_errors=True)
