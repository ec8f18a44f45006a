"""A real scheduler runs one DAG of N short mapped tasks: FargateExecutor vs the provider's AwsEcsExecutor.

Each run is a whole local deployment (airflow_fargate.local.stack: api-server, dag-processor,
triggerer, scheduler) on a fresh SQLite database, with the executor under test at its default
settings, against the local ECS endpoint with ECS's quotas (RunTask and DescribeTasks burst 100 +
20/s, 80 ms per call). Tasks run no Airflow: the ``simulate-api`` runtime reports each try to the
execution API as started, waits --task-seconds and reports success, as a quick task would, so the
run measures scheduler + executor, not how fast this machine starts Python processes.

Settings: Airflow's default concurrency (parallelism 32, max_active_tasks_per_dag 16,
max_tis_per_query 16, default pool 128) with tries that report their end through the execution
API ("default") or whose end only ECS knows ("default-ecs": ours reads no rows), and raised
concurrency (every limit at N). Each setting runs with task start spreads 0 and 1 s (--spreads).
Runs alternate (A/B, then B/A) in one invocation, both executors at WARNING logging; per
executor, setting and spread: DAG run wall time (the run's start_date to end_date), the
scheduler process's CPU while the run ran, the slot-free -> next-queued gap (p50, p90), medians
and ratios, then the targets verdict (wall time <= 0.85x the provider's at default concurrency,
<= 0.5x raised).

    python benchmarks/dag_bench.py                 # N = 300, 2 pairs per setting and spread
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import psutil
from executor_bench import (
    EXECUTORS,
    add_keep_argument,
    add_quota_arguments,
    compile_bytecode,
    discard,
    machine_name,
    print_targets,
    quota_faults,
    write_json,
)

from airflow_fargate.local.stack import AirflowStack

ROOT = Path(__file__).resolve().parents[1]
DAG_ID = "bench_mapped"
DAG_FILE = '''
import pendulum
from airflow.sdk import dag, task


@dag(schedule=None, start_date=pendulum.datetime(2024, 1, 1), catchup=False)
def {dag_id}():
    @task
    def quick(i: int) -> None:
        """The local endpoint's simulate-api runtime reports it; this body never runs."""

    quick.expand(i=list(range({n})))


{dag_id}()
'''


# Tasks of the DAG active at once: Airflow's default max_active_tasks_per_dag, or all of them (None).
ACTIVE_LIMIT: dict[str, int | None] = {"default": 16, "default-ecs": 16, "raised": None}
# DAG run wall time, ours / the provider's, at most (the targets).
WALL_TARGET = {"default": 0.85, "default-ecs": 0.85, "raised": 0.5}


def concurrency(setting: str, n: int) -> dict[str, str]:
    """Airflow's own defaults (parallelism 32, max_active_tasks_per_dag 16, max_tis_per_query 16)
    for "default" and "default-ecs"; every limit at N for "raised"."""
    if setting != "raised":
        return {}
    return {
        "AIRFLOW__CORE__PARALLELISM": str(n),
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(n),
        "AIRFLOW__CORE__DEFAULT_POOL_TASK_SLOT_COUNT": str(n),
        "AIRFLOW__SCHEDULER__MAX_TIS_PER_QUERY": str(n),
    }


def scheduler_cpu(stack: AirflowStack) -> float:
    times = psutil.Process(stack.procs["scheduler"].pid).cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def as_datetime(value: Any) -> datetime.datetime:
    return value if isinstance(value, datetime.datetime) else datetime.datetime.fromisoformat(str(value))


def slot_gaps(times: list[tuple[Any, Any]], limit: int) -> list[float]:
    """Seconds from a slot freeing to the next task instance being queued into it.

    With at most ``limit`` tasks active, the i-th task queued (i >= limit) waited for the
    (i - limit)-th task to end: its gap is its queued time minus that end. It counts what the
    scheduler and executor add between waves (an end reported late, an idle scheduler loop),
    not how long the tasks ran."""
    queued = sorted(as_datetime(q) for q, _ in times if q is not None)
    ended = sorted(as_datetime(e) for _, e in times if e is not None)
    return [(queued[i] - ended[i - limit]).total_seconds() for i in range(limit, min(len(queued), len(ended) + limit))]


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def end_path(setting: str, kind: str) -> dict[str, str]:
    """ "default-ecs": a try's end is what ECS says (its container stopped), as for tries that
    die without reporting; ours then reads no task instance rows. The provider always asks ECS."""
    if setting == "default-ecs" and kind == "ours":
        return {"AIRFLOW__AWS_ECS_EXECUTOR__READ_TASK_STATES": "False"}
    return {}


def run_one(kind: str, setting: str, spread: float, args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="dag-bench-"))
    dags = root / "dags"
    dags.mkdir()
    (dags / "bench_mapped.py").write_text(DAG_FILE.format(dag_id=DAG_ID, n=args.n))
    faults = quota_faults(argparse.Namespace(**{**vars(args), "provision_jitter": spread}))
    extra_env = {
        "AIRFLOW__CORE__EXECUTOR": EXECUTORS[kind],
        "AIRFLOW_CONN_AWS_DEFAULT": "aws://",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",  # the same for both: no executor pays for INFO lines
    }
    extra_env |= concurrency(setting, args.n) | end_path(setting, kind)
    stack = AirflowStack(
        home=root / "home",
        dags_folder=dags,
        faults=faults,
        runtime="simulate-api",
        simulate_duration=args.task_seconds,
        extra_env=extra_env,
    )
    try:
        with stack:
            stack.wait_for_dag(DAG_ID, timeout=300)
            cpu_before = scheduler_cpu(stack)
            stack.trigger(DAG_ID, "bench")
            state = stack.wait_for_run(DAG_ID, "bench", timeout=args.timeout)
            cpu = scheduler_cpu(stack) - cpu_before
            started, ended = stack.run_dates(DAG_ID, "bench")
            rows = stack.task_rows(DAG_ID, "bench")
            gaps = slot_gaps(stack.task_times(DAG_ID, "bench"), ACTIVE_LIMIT[setting] or args.n)
            stats = stack.stats()
    except BaseException:
        print(f"kept {root} (the failed run's deployment and logs)", file=sys.stderr)
        raise
    discard(root, args)
    tries = {f"{row.task_id}|{row.map_index}|{row.try_number}" for row in rows}
    return {
        "executor": kind,
        "setting": setting,
        "spread": spread,
        "state": state,
        "wall_seconds": (as_datetime(ended) - as_datetime(started)).total_seconds(),
        "scheduler_cpu_seconds": cpu,
        "slot_gap_p50": percentile(gaps, 0.5),
        "slot_gap_p90": percentile(gaps, 0.9),
        "succeeded": sum(row.state == "success" for row in rows),
        "tries": len(tries),
        "containers": stats["tasks_created"],
        "describe_calls": stats["api_calls"].get("DescribeTasks", 0),
        "run_task_calls": stats["api_calls"].get("RunTask", 0),
    }


METRICS = (  # name, column title, format
    ("wall_seconds", "wall s", "{:.1f}"),
    ("scheduler_cpu_seconds", "sched CPU s", "{:.1f}"),
    ("slot_gap_p50", "gap p50 s", "{:.2f}"),
    ("slot_gap_p90", "gap p90 s", "{:.2f}"),
    ("succeeded", "succeeded", "{:.0f}"),
    ("containers", "containers", "{:.0f}"),
    ("describe_calls", "Describe", "{:.0f}"),
    ("run_task_calls", "RunTask", "{:.0f}"),
)


Key = tuple[str, float, str]  # setting, start spread, executor


def summarize(results: list[dict[str, Any]]) -> dict[Key, dict[str, float]]:
    summary: dict[Key, dict[str, float]] = {}
    for r in results:
        key = (r["setting"], r.get("spread", 0.0), r["executor"])
        if key in summary:
            continue
        runs = [x for x in results if (x["setting"], x.get("spread", 0.0), x["executor"]) == key]
        summary[key] = {m: statistics.median(x[m] for x in runs) for m, _, _ in METRICS} | {"runs": len(runs)}
    return summary


def table(summary: dict[Key, dict[str, float]]) -> list[str]:
    lines = [f"{'setting':<12} {'spread':>6} {'executor':<9}" + "".join(f" {title:>11}" for _, title, _ in METRICS)]
    for (setting, spread, kind), row in summary.items():
        cells = "".join(f" {fmt.format(row[m]):>11}" for m, _, fmt in METRICS)
        lines.append(f"{setting:<12} {spread:>6g} {kind:<9}" + cells)
        theirs = summary.get((setting, spread, "provider"))
        if kind == "ours" and theirs:
            cells = "".join(f" {(row[m] / theirs[m] if theirs[m] else float('nan')):>11.2f}" for m, _, _ in METRICS)
            lines.append(f"{'':<12} {'':>6} {'ours/prov':<9}{cells}")
    return lines


def verdict(summary: dict[Key, dict[str, float]], n: int) -> list[tuple[str, bool | None]]:
    """Every try succeeded in exactly one container, and ours' wall time within its target
    ratio of the provider's (WALL_TARGET) for each setting and start spread."""
    checks: list[tuple[str, bool | None]] = []
    for (setting, spread, kind), row in summary.items():
        checks.append(
            (
                f"{setting} spread {spread:g} {kind}: {row['succeeded']:.0f}/{n} succeeded, "
                f"{row['containers']:.0f} containers",
                row["succeeded"] == n and row["containers"] == n,
            )
        )
        theirs = summary.get((setting, spread, "provider"))
        if kind == "ours":
            target = WALL_TARGET.get(setting, 1.0)
            label = f"{setting} concurrency, spread {spread:g}: DAG run wall time <= {target:g}x provider's"
            if theirs is None:
                checks.append((f"{label}: not measured", None))
            else:
                ratio = row["wall_seconds"] / theirs["wall_seconds"]
                text = f"{label}: {row['wall_seconds']:.1f} s vs {theirs['wall_seconds']:.1f} s ({ratio:.2f}x)"
                checks.append((text, ratio <= target))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300, help="mapped tasks in the DAG")
    parser.add_argument("--pairs", type=int, default=2, help="A/B pairs per setting (the order alternates)")
    parser.add_argument(
        "--settings",
        default="default,default-ecs,raised",
        help="default: Airflow's concurrency, tries report their end; default-ecs: the same, the end only ECS knows; "
        "raised: every limit at N",
    )
    parser.add_argument("--spreads", default="0,1", help="task start spreads to run (seconds after 0.2 s)")
    parser.add_argument("--executors", default="ours,provider")
    parser.add_argument("--task-seconds", type=float, default=1.0, help="how long each simulated task runs")
    add_quota_arguments(parser)
    add_keep_argument(parser)
    parser.add_argument("--timeout", type=float, default=1200, help="give up on one DAG run after this long")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "dag_bench.json")
    args = parser.parse_args(argv)

    compile_bytecode()
    kinds = args.executors.split(",")
    results: list[dict[str, Any]] = []
    spreads = [float(x) for x in args.spreads.split(",")]
    for setting in args.settings.split(","):
        for spread in spreads:
            for pair in range(args.pairs):
                for kind in kinds if pair % 2 == 0 else reversed(kinds):
                    label = f"{setting} spread {spread:g} pair {pair + 1}/{args.pairs}: {kind}"
                    print(f"{label} ...", file=sys.stderr, flush=True)
                    results.append(run_one(kind, setting, spread, args))

    machine = machine_name()
    summary = summarize(results)
    print(
        f"\nDAG of {args.n} mapped {args.task_seconds:g} s tasks on a real scheduler; medians of {args.pairs} "
        f"alternating pair(s); {args.latency_ms:.0f} ms/API call; RunTask and DescribeTasks each burst "
        f"{args.burst} + {args.rate:g}/s; tasks start 0.2 s plus a random 0..spread s after RunTask ({machine}, "
        f"load average {os.getloadavg()[0]:.2f} at the end)"
    )
    for line in table(summary):
        print(line)
    checks = verdict(summary, args.n)
    print_targets(checks)
    arguments = {k: v for k, v in vars(args).items() if k != "json"}
    rows = [{"setting": s, "spread": sp, "executor": k, **row} for (s, sp, k), row in summary.items()]
    write_json(args.json, machine=machine, arguments=arguments, summary=rows, checks=checks, results=results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
