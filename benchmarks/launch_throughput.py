"""Launch throughput: FargateExecutor vs apache-airflow-providers-amazon's AwsEcsExecutor.

Both executors get the same N queued Airflow 3 workloads and the same local ECS endpoint (moto,
tasks simulated, 100 ms per API call, RunTask throttled like ECS: burst 100, 20/s sustained) and
are driven the way the scheduler drives them: heartbeat() in a loop with 1 s idle sleeps. Each
run is a fresh subprocess (so peak RSS is the executor's own) against a fresh endpoint.

    python benchmarks/launch_throughput.py               # N = 100, 500, 2000
    python benchmarks/launch_throughput.py --n 100 --executors ours

Prints a table and writes JSON (default benchmarks/results/launch_throughput.json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXECUTORS = {
    "ours": "airflow_fargate.FargateExecutor",
    "provider": "airflow.providers.amazon.aws.executors.ecs.ecs_executor.AwsEcsExecutor",
}
IDLE_SLEEP = 1.0  # the scheduler's default scheduler_idle_sleep_time


# ---- worker: one executor, one N, in its own process --------------------------------------------


def make_workload(i: int) -> Any:
    from airflow.executors.workloads import ExecuteTask
    from airflow.executors.workloads.base import BundleInfo
    from airflow.executors.workloads.task import TaskInstanceDTO

    ti = TaskInstanceDTO(
        id=uuid.uuid4(),
        dag_version_id=uuid.uuid4(),
        task_id=f"task_{i}",
        dag_id="bench",
        run_id="run",
        try_number=1,
        map_index=-1,
        pool_slots=1,
        priority_weight=1,
        queue="default",
    )
    return ExecuteTask(ti=ti, dag_rel_path="bench.py", token="t", log_path=None, bundle_info=BundleInfo(name="b"))


def tasks_created(endpoint: str) -> int:
    from airflow_fargate.local.guard import LocalCredentials, control_request

    credentials = LocalCredentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"])
    return int(control_request(endpoint, "/_local/stats", credentials)["tasks_created"])


def worker(kind: str, n: int, endpoint: str, timeout: float) -> dict[str, Any]:
    from airflow.executors.executor_loader import ExecutorLoader

    executor = ExecutorLoader.load_executor(EXECUTORS[kind])
    executor.parallelism = n
    executor.start()
    for i in range(n):
        executor.queue_workload(make_workload(i), session=None)

    launched_at: list[float] = []
    stop = threading.Event()

    def watch() -> None:  # when did the N-th task appear in ECS (50 ms resolution)
        while not stop.is_set():
            if tasks_created(endpoint) >= n:
                launched_at.append(time.perf_counter())
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    started = time.perf_counter()
    watcher.start()
    heartbeats: list[float] = []
    while not launched_at and time.perf_counter() - started < timeout:
        t0 = time.perf_counter()
        executor.heartbeat()
        heartbeats.append(time.perf_counter() - t0)
        time.sleep(max(0.0, IDLE_SLEEP - heartbeats[-1]))
    watcher.join(timeout=1)
    stop.set()
    # keep the scheduler's rhythm a few more beats: describe costs count too
    for _ in range(3):
        t0 = time.perf_counter()
        executor.heartbeat()
        heartbeats.append(time.perf_counter() - t0)
        time.sleep(max(0.0, IDLE_SLEEP - heartbeats[-1]))
    return {
        "executor": kind,
        "n": n,
        "launch_seconds": (launched_at[0] - started) if launched_at else None,
        "timed_out": not launched_at,
        "longest_heartbeat_s": max(heartbeats),
        "heartbeats": len(heartbeats),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# ---- parent: one endpoint per run, table + JSON ---------------------------------------------------


def run_one(kind: str, n: int, args: argparse.Namespace) -> dict[str, Any]:
    from airflow_fargate.local.faults import Faults
    from airflow_fargate.local.server import LocalEcs

    faults = Faults(latency_ms=args.latency_ms, run_task_rate=args.rate, run_task_burst=args.burst, seed=1)
    ecs = LocalEcs(runtime="simulate", simulate_duration=3600, faults=faults).start()
    home = tempfile.mkdtemp(prefix="bench-airflow-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__")}
    env.update(ecs.scheduler_env())
    env.update(
        {
            "AIRFLOW_HOME": home,
            "AIRFLOW__CORE__EXECUTOR": EXECUTORS[kind],
            "AIRFLOW__CORE__PARALLELISM": str(n),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "AIRFLOW__AWS_ECS_EXECUTOR__LAUNCH_TYPE": "FARGATE",
            "AIRFLOW__AWS_ECS_EXECUTOR__CHECK_HEALTH_ON_STARTUP": "False",
            "AIRFLOW__AWS_ECS_EXECUTOR__RUN_TASK_RATE": str(args.rate),
            "AIRFLOW__AWS_ECS_EXECUTOR__RUN_TASK_BURST": str(args.burst),
            "AIRFLOW_CONN_AWS_DEFAULT": "aws://",
        }
    )
    try:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                kind,
                "--n",
                str(n),
                "--endpoint",
                ecs.endpoint_url,
                "--timeout",
                str(args.timeout),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=args.timeout + 300,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{kind} N={n} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        assert ecs.runner is not None
        calls = ecs.runner.stats.as_dict()["api_calls"]
        result["api_calls"] = calls
        result["api_calls_per_task"] = sum(calls.values()) / n
        result["run_task_calls_per_task"] = calls.get("RunTask", 0) / n
        return result
    finally:
        ecs.stop()


def floor_seconds(n: int, args: argparse.Namespace) -> float:
    """Fastest any client can launch N tasks under the quota: the burst at once, the rest at rate."""
    return max(0, n - args.burst) / args.rate + args.latency_ms / 1000


def describe_calls_expected(running: int) -> int:
    return math.ceil(running / 100)


def target_lines(results: list[dict[str, Any]]) -> list[str]:
    """Issue #5's targets, judged on this run: N=500 within 1/5 of the provider and 1.5x of the
    floor; the longest heartbeat under 0.5 s at every N."""
    lines = ["", "targets:"]
    ours = {r["n"]: r for r in results if r["executor"] == "ours"}
    at_500 = ours.get(500)
    if at_500 and at_500.get("launch_seconds"):
        ratio = at_500.get("ratio_to_provider")
        x_floor = at_500["launch_seconds"] / at_500["floor_seconds"] if at_500["floor_seconds"] else None
        if ratio is not None:
            lines.append(f"  N=500 ours/provider {ratio:.3f} <= 0.2: {'met' if ratio <= 0.2 else 'NOT met'}")
        if x_floor is not None:
            lines.append(f"  N=500 {x_floor:.2f}x floor <= 1.5: {'met' if x_floor <= 1.5 else 'NOT met'}")
    if ours:
        worst = max(r["longest_heartbeat_s"] for r in ours.values())
        lines.append(f"  longest heartbeat {worst:.2f} s < 0.5 s at every N: {'met' if worst < 0.5 else 'NOT met'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--executors", default="ours,provider")
    parser.add_argument("--latency-ms", type=float, default=100)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=900, help="give up on one run after this long")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "launch_throughput.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(args.worker, args.n[0], args.endpoint, args.timeout)))
        return 0

    kinds = args.executors.split(",")
    results: list[dict[str, Any]] = []
    for n in args.n:
        for kind in kinds:
            print(f"running {kind} with N={n} ...", file=sys.stderr, flush=True)
            results.append(run_one(kind, n, args))

    machine = f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    quota = f"RunTask burst {args.burst} + {args.rate:g}/s"
    print(f"\nlaunch throughput, {args.latency_ms:.0f} ms/API call, {quota} ({machine})")
    header = (
        f"{'N':>5} {'executor':<9} {'launch s':>9} {'floor s':>8} {'x floor':>8} {'max hb s':>9} "
        f"{'calls/task':>10} {'RSS MB':>7} {'ours/theirs':>11}"
    )
    print(header)
    by_key = {(r["n"], r["executor"]): r for r in results}
    for r in results:
        floor = floor_seconds(r["n"], args)
        r["floor_seconds"] = floor
        launch = r["launch_seconds"]
        ratio = ""
        theirs = by_key.get((r["n"], "provider"))
        if r["executor"] == "ours" and theirs and launch and theirs["launch_seconds"]:
            r["ratio_to_provider"] = launch / theirs["launch_seconds"]
            ratio = f"{r['ratio_to_provider']:.3f}"
        launch_text = f"{launch:9.1f}" if launch is not None else f"{'>' + str(int(args.timeout)):>9}"
        x_floor = f"{launch / floor:8.2f}" if launch and floor else f"{'-':>8}"
        print(
            f"{r['n']:>5} {r['executor']:<9} {launch_text} {floor:8.1f} {x_floor} "
            f"{r['longest_heartbeat_s']:9.2f} {r['api_calls_per_task']:10.2f} {r['peak_rss_mb']:7.0f} {ratio:>11}"
        )
    for line in target_lines(results):
        print(line)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {"machine": machine, "args": {k: v for k, v in vars(args).items() if k != "json"}, "results": results},
            indent=2,
            default=str,
        )
    )
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
