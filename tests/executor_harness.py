"""Drive a FargateExecutor against moto ECS the way the scheduler does (shared by executor tests)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey

from airflow_fargate.executor import FargateExecutor
from tests.helpers import MotoEcs, make_workload, minimal_config, moto_ecs, submit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ecs():
    with moto_ecs() as world:
        yield world


def started_executor(monkeypatch, ecs: MotoEcs, **config: str) -> FargateExecutor:
    """A started executor on the moto world's network, its clock a FakeClock."""
    minimal_config(monkeypatch, subnets=",".join(ecs.subnets), security_groups=ecs.security_group, **config)
    ex = FargateExecutor()
    ex._clock = FakeClock()
    ex.start()
    return ex


@pytest.fixture
def executor(monkeypatch, ecs: MotoEcs) -> FargateExecutor:
    return started_executor(monkeypatch, ecs, check_health_on_startup="True")


def queue(executor: FargateExecutor, *workloads: Any) -> list[TaskInstanceKey]:
    for workload in workloads:
        submit(executor, workload)
    return [w.ti.key for w in workloads]


def calls(executor: FargateExecutor, operation: str) -> list[dict[str, Any]]:
    """Record the params of every ``operation`` call the executor's ECS client makes from now on."""
    seen: list[dict[str, Any]] = []

    def hook(params, **_):
        seen.append(dict(params))

    for client in (executor.ecs.client, executor.ecs.launch_client):
        client.meta.events.register(f"provide-client-params.ecs.{operation}", hook)
    return seen


def beat(executor: FargateExecutor) -> None:
    """One scheduler heartbeat, then (as the next heartbeat would) apply the launches it started."""
    executor.heartbeat()
    wait_idle(executor)
    executor._apply_launches()
    executor.poller.track(executor.tracker.watched())
    executor.poller.kick()  # describe everything now instead of at the poller's next round
    wait_idle(executor)
    executor._apply_answers()
    executor.failure_output.wait(30)  # failures wait for their output lines: fetch them now
    executor._release_failures()


def wait_idle(executor: FargateExecutor) -> None:
    """Until no run_task or describe_tasks call of the executor is in flight (requests held
    while the ECS API is out wait for it, not for a call)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        held = executor.launcher.breaker.is_open and not executor.launcher._on_wire
        if (held or not executor.launcher.in_flight) and executor.poller.idle:
            return
        time.sleep(0.005)
    raise TimeoutError("executor calls still in flight")


def events(executor: FargateExecutor) -> dict[TaskInstanceKey, tuple[Any, Any]]:
    return executor.get_event_buffer()


# ---- loading and start ----------------------------------------------------------------------------


def launched_running(executor: FargateExecutor, ecs: MotoEcs) -> tuple[Any, str]:
    """One try queued, launched and RUNNING on (moto) ECS: its key and task ARN."""
    (key,) = queue(executor, make_workload())
    beat(executor)
    (arn,) = ecs.all_task_arns()
    ecs.set_state(arn, "RUNNING")
    beat(executor)
    events(executor)
    return key, arn
