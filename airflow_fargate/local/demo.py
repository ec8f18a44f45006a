"""``make demo``: run config/dags/example_fargate.py through a real scheduler with FargateExecutor.

Everything runs on this machine: the local ECS endpoint really runs each task as a subprocess.
Exits 0 only if the DAG run succeeded; stops every process it started.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from airflow_fargate.local.stack import AirflowStack

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, default=ROOT / ".demo" / "airflow", help="AIRFLOW_HOME (recreated)")
    parser.add_argument("--dags-folder", type=Path, default=ROOT / "config" / "dags")
    parser.add_argument("--dag-id", default="example_fargate")
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args(argv)

    db_url = os.environ.get("AIRFLOW_DEMO_DB_URL") or None
    stack = AirflowStack(home=args.home.resolve(), dags_folder=args.dags_folder.resolve(), db_url=db_url)
    run_id = f"demo__{int(time.time())}"
    started = time.monotonic()
    print(f"demo: starting local ECS endpoint, {db_url or 'SQLite'} metadata DB, api-server, dag-processor, scheduler")
    with stack:
        assert stack.ecs is not None
        print(f"demo: local ECS endpoint {stack.ecs.endpoint_url}, AIRFLOW_HOME={stack.home}")
        print("demo: airflow fargate check")
        print(stack.airflow("fargate", "check").rstrip())
        stack.trigger(args.dag_id, run_id)
        print(f"demo: triggered {args.dag_id} run {run_id}; waiting for it to finish")
        state = stack.wait_for_run(args.dag_id, run_id, timeout=args.timeout)
        print(f"\ndemo: DAG run {run_id} finished {state.upper()} in {time.monotonic() - started:.0f}s")
        print(f"{'task':<12} {'map':>4} {'state':<10} {'try':>3}  ECS task ARN")
        for row in stack.task_rows(args.dag_id, run_id):
            state_text = row.state or "-"
            print(
                f"{row.task_id:<12} {row.map_index:>4} {state_text:<10} {row.try_number:>3}  {row.external_executor_id}"
            )
        print(f"\ntask logs: {stack.task_log_dir(args.dag_id, run_id)}")
        print(f"container output: CloudWatch Logs group {stack.ecs.config.log_group} on {stack.ecs.endpoint_url}")
        print(f"component logs: {stack.home / 'logs'}/{{scheduler,api-server,dag-processor}}.log")
        stats = stack.stats()
        print(f"local ECS: {stats['run_task_calls']} run_task calls, {stats['containers_started']} containers started")
    return 0 if state == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
