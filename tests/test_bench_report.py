"""The benchmark's report: medians over alternating pairs, ratios, and an honest verdict (no timing here)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import dag_bench
import executor_bench


def run(kind: str, **values: float) -> dict:
    base = {
        "executor": kind,
        "n": 500,
        "start_seconds": 0.3,
        "launch_seconds": 20.0,
        "all_finished_seconds": 40.0,
        "median_finish_lag_s": 0.8,
        "p99_finish_lag_s": 1.5,
        "longest_heartbeat_s": 0.02,
        "p99_heartbeat_s": 0.01,
        "cpu_seconds": 3.0,
        "peak_rss_mb": 180.0,
        "describe_calls": 60,
        "run_task_calls": 500,
        "describe_throttled": 0,
        "run_task_throttled": 0,
    }
    return base | values


ARGS = argparse.Namespace(n=[500], burst=100, rate=20.0, latency_ms=80.0)


def test_medians_ratios_and_verdict():
    results = [
        run("ours", launch_seconds=20.0),
        run("provider", launch_seconds=60.0, describe_calls=50, longest_heartbeat_s=55.0),
        run("provider", launch_seconds=58.0, describe_calls=52, longest_heartbeat_s=54.0),
        run("ours", launch_seconds=21.0),
    ]
    summary = executor_bench.summarize(results, ARGS)
    assert summary[(500, "ours")]["launch_seconds"] == 20.5
    assert summary[(500, "provider")]["describe_calls"] == 51
    lines = executor_bench.table(summary)
    assert any(line.split()[0] == "ours/prov" for line in lines)
    verdict = dict(executor_bench.verdict(summary))
    assert verdict["N=500 DescribeTasks calls <= provider's: 60.000 vs 51.000"] is False
    assert verdict["N=500 longest heartbeat < 0.2 s: 0.020 vs 0.200"] is True
    assert verdict["N=500 p99 heartbeat < 0.05 s: 0.010 vs 0.050"] is True
    assert verdict["N=500 CPU <= 0.8x provider's: 3.000 vs 2.400"] is False  # parity is not enough
    assert verdict["N=500 RSS <= 1.05x provider's: 180.000 vs 189.000"] is True


def test_a_run_that_never_finished_is_not_measured_rather_than_met():
    summary = executor_bench.summarize([run("ours", all_finished_seconds=None, median_finish_lag_s=None)], ARGS)
    verdict = executor_bench.verdict(summary)
    assert ("N=500 median finish lag <= one heartbeat: not measured", None) in verdict
    assert not all(met for _, met in verdict)


def dag_run(kind: str, setting: str, **values: float) -> dict:
    base = {
        "executor": kind,
        "setting": setting,
        "wall_seconds": 40.0,
        "scheduler_cpu_seconds": 6.0,
        "succeeded": 300,
        "containers": 300,
        "describe_calls": 40,
        "run_task_calls": 300,
        "slot_gap_p50": 0.3,
        "slot_gap_p90": 0.5,
        "spread": 0.0,
    }
    return base | values


def test_dag_bench_medians_ratios_and_verdict():
    results = [
        dag_run("ours", "default", wall_seconds=35.0),
        dag_run("provider", "default", wall_seconds=43.0),
        dag_run("provider", "default", wall_seconds=45.0),
        dag_run("ours", "default", wall_seconds=39.0),
        dag_run("ours", "raised", wall_seconds=16.0, containers=301),  # one try started twice
        dag_run("provider", "raised", wall_seconds=29.0),
        dag_run("ours", "default-ecs", wall_seconds=40.0, spread=1.0),
        dag_run("provider", "default-ecs", wall_seconds=44.0, spread=1.0),
    ]
    summary = dag_bench.summarize(results)
    assert summary[("default", 0.0, "ours")]["wall_seconds"] == 37.0
    assert summary[("default", 0.0, "provider")]["runs"] == 2
    assert any(line.split()[0] == "ours/prov" for line in dag_bench.table(summary))
    verdict = dict(dag_bench.verdict(summary, n=300))
    label = "concurrency, spread {}: DAG run wall time <= {}x provider's: {}"
    assert verdict["default " + label.format(0, 0.85, "37.0 s vs 44.0 s (0.84x)")] is True
    assert verdict["raised " + label.format(0, 0.5, "16.0 s vs 29.0 s (0.55x)")] is False  # 0.5x is the target
    assert verdict["default-ecs " + label.format(1, 0.85, "40.0 s vs 44.0 s (0.91x)")] is False
    assert verdict["raised spread 0 ours: 300/300 succeeded, 301 containers"] is False  # a second container fails
    only_ours = {("default", 0.0, "ours"): summary[("default", 0.0, "ours")]}
    assert dag_bench.verdict(only_ours, n=300)[-1][1] is None


def test_the_slot_gap_is_queued_time_minus_the_end_that_freed_the_slot():
    import datetime

    t0 = datetime.datetime(2026, 1, 1)
    at = [t0 + datetime.timedelta(seconds=s) for s in range(10)]
    # two slots; tasks end at 2, 3 and 6, 7; the next ones are queued 0.5 s and 1 s later
    times = [(at[0], at[2]), (at[0], at[3]), (at[2] + datetime.timedelta(seconds=0.5), at[6]), (at[4], at[7])]
    assert dag_bench.slot_gaps(times, limit=2) == [0.5, 1.0]


def test_the_slow_api_case_judges_ours_only_and_fails_on_any_failed_try_or_extra_container():
    runs = [
        run("ours", failed=0, containers=500),
        run("provider", failed=40, containers=530),
    ]
    assert executor_bench.slow_api_verdict(runs, 500) == [
        ("slow API ours: 0 failed, 500 containers for 500 tries", True)
    ]
    assert executor_bench.slow_api_verdict([run("ours", failed=1, containers=500)], 500)[0][1] is False
    assert executor_bench.slow_api_verdict([run("ours", failed=0, containers=501)], 500)[0][1] is False
