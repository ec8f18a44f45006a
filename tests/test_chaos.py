"""Chaos: 300 tasks through FargateExecutor on the local ECS endpoint (over HTTP) with injected
run_task failures, throttling, start failures, Spot interruptions, MISSING delays, and a scheduler
"killed" mid-run whose successor adopts its tasks. Every task must succeed; no try may ever have
two containers running at once."""

from __future__ import annotations

import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.utils.state import TaskInstanceState

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.executor import FargateExecutor
from airflow_fargate.local.faults import Faults
from airflow_fargate.local.server import LocalEcs
from tests.helpers import command_of, make_workload, set_config, submit

N_TASKS = 300
FAULTS = Faults(
    latency_ms=5,
    # ECS's own RunTask quota for Fargate, with a small burst: the executor's first burst of launches
    # (10 workers) outruns it however slow the machine, so throttling is always part of the chaos.
    run_task_rate=20,
    run_task_burst=5,
    run_task_failure_rate=0.10,
    start_failure_rate=0.05,
    spot_interruption_rate=0.05,
    describe_delay_s=0.5,
    seed=20261122,
)
pytestmark = [
    pytest.mark.timeout(420),
    # The endpoint tells tries apart by the Airflow 3 workload; Airflow 2 commands carry no try
    # number, so a reset try and its successor would look like one try. The logic is the same.
    pytest.mark.skipif(not AIRFLOW_V3, reason="needs Airflow 3 workloads to tell tries apart"),
]


def new_executor() -> FargateExecutor:
    executor = FargateExecutor(parallelism=2 * N_TASKS)
    executor._requeue_try = lambda key: None  # type: ignore[method-assign] # no metadata DB here; e2e covers it
    executor.start()
    return executor


def drive(executor: FargateExecutor, final: dict[Any, Any], latest: dict[str, Any], until, timeout: float) -> None:
    """Heartbeat like a scheduler until ``until()`` holds; record every event."""
    deadline = time.monotonic() + timeout
    while not until() and time.monotonic() < deadline:
        executor.heartbeat()
        for key, (state, info) in executor.get_event_buffer().items():
            final[key] = (state, info)
        time.sleep(0.1)


@pytest.fixture
def local_ecs(monkeypatch):
    ecs = LocalEcs(runtime="simulate", simulate_duration=1.0, faults=FAULTS, stop_grace_seconds=0.2).start()
    for name, value in ecs.scheduler_env().items():
        monkeypatch.setenv(name, value)
    set_config(
        monkeypatch,
        "aws_ecs_executor",
        max_run_task_attempts=8,
        run_task_rate=200,  # more than the endpoint allows: ECS throttles, the launcher adapts
        run_task_burst=100,
        check_health_on_startup="True",
        aws_conn_id="",
    )
    monkeypatch.setattr("airflow_fargate.executor.backoff_seconds", lambda attempt, rng=None: 0.3)
    yield ecs
    ecs.stop()


def test_chaos_every_task_succeeds_and_no_try_runs_twice(local_ecs, monkeypatch):
    final: dict[Any, Any] = {}  # TaskInstanceKey -> last (state, info)
    latest: dict[str, Any] = {}  # task_id -> key of its current try
    workloads: dict[Any, Any] = {}
    # An adopted task that must be relaunched rebuilds its command from the DB row (ExecuteTask.make);
    # these stand-in TIs have no DB row, so hand back the workload the row would produce.
    monkeypatch.setattr(
        "airflow_fargate.executor.command_for_adopted", lambda key, executor: command_of(workloads[key])
    )
    first = new_executor()
    for i in range(N_TASKS):
        workload = make_workload(f"t{i}", dag_id="chaos")
        latest[workload.ti.task_id] = workload.ti.key
        workloads[workload.ti.key] = workload
        submit(first, workload)

    def done(fraction: float):
        return lambda: (
            sum(1 for k in latest.values() if final.get(k, (None,))[0] == TaskInstanceState.SUCCESS)
            >= fraction * N_TASKS
        )

    drive(first, final, latest, done(0.4), timeout=120)

    # The scheduler dies: nothing more of it is applied; calls already on the wire may still land.
    first.launcher.cancel_pending()
    first.launcher.shutdown(wait=True)
    first.poller.shutdown()

    # What the metadata DB would say: RUNNING events left an external_executor_id to adopt by;
    # tries that never reported one are reset by the new scheduler and run again as the next try.
    second = new_executor()
    to_adopt, to_reset = [], []
    for key in latest.values():
        state, info = final.get(key, (None, None))
        if state in (TaskInstanceState.SUCCESS, TaskInstanceState.FAILED):
            continue
        ti = SimpleNamespace(key=key, external_executor_id=info, executor_config=None, queue="default")
        (to_adopt if info else to_reset).append(ti)
    not_adopted = second.try_adopt_task_instances(to_adopt)
    for ti in [*to_reset, *not_adopted]:
        workload = make_workload(ti.key.task_id, dag_id="chaos", try_number=ti.key.try_number + 1)
        latest[ti.key.task_id] = workload.ti.key
        workloads[workload.ti.key] = workload
        submit(second, workload)
    drive(second, final, latest, done(1.0), timeout=240)
    second.end(heartbeat_interval=0.2)
    first.sweeper.shutdown()  # the dead scheduler's last threads (a dead process has none)
    first.failure_output.shutdown(wait_seconds=0)

    stats = local_ecs.runner.stats.as_dict()
    outcome = Counter(str(final.get(k, (None,))[0]) for k in latest.values())
    print(
        f"\nchaos: {N_TASKS} tasks -> {dict(outcome)}; adopted {len(to_adopt) - len(not_adopted)}, "
        f"reset {len(to_reset) + len(not_adopted)}; run_task calls {stats['run_task_calls']}, "
        f"throttled {stats['run_task_throttled']}, failures injected {stats['run_task_failures_injected']}, "
        f"start failures {stats['start_failures_injected']}, spot {stats['spot_interruptions']}, "
        f"containers started {stats['containers_started']}, idempotent replays {stats['idempotent_replays']}"
    )
    assert outcome == {str(TaskInstanceState.SUCCESS): N_TASKS}, outcome
    assert stats["overlapping_tries"] == []  # no try ever had two containers running
    assert stats["run_task_failures_injected"] > 0 and stats["start_failures_injected"] > 0
    assert stats["spot_interruptions"] > 0 and stats["run_task_throttled"] > 0
    assert len(to_adopt) > 0
    assert all(count <= 8 for count in stats["created_per_try"].values())
