"""``make demo``: run config/dags/example_fargate.py through a real scheduler with FargateExecutor.

Everything runs on this machine: the local ECS endpoint really runs each task as a subprocess.
Exits 0 only if the DAG run and its deadline callback succeeded; stops every process it started.
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
    parser.add_argument("--callbacks", type=int, default=1, help="deadline callbacks the run must trigger")
    args = parser.parse_args(argv)

    db_url = os.environ.get("AIRFLOW_DEMO_DB_URL") or None
    # The one line that shows finished tries' logs in the UI from CloudWatch (README: Task logs in the UI)
    extra_env = {"AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS": "airflow_fargate.log_config.LOGGING_CONFIG"}
    stack = AirflowStack(
        home=args.home.resolve(), dags_folder=args.dags_folder.resolve(), db_url=db_url, extra_env=extra_env
    )
    run_id = f"demo__{int(time.time())}"
    started = time.monotonic()
    print(
        f"demo: starting local ECS endpoint, {db_url or 'SQLite'} metadata DB, "
        "api-server, dag-processor, triggerer, scheduler"
    )
    with stack:
        assert stack.ecs is not None
        print(f"demo: local ECS endpoint {stack.ecs.endpoint_url}, AIRFLOW_HOME={stack.home}")
        print("demo: airflow fargate check")
        print(stack.airflow("fargate", "check").rstrip())
        stack.trigger(args.dag_id, run_id)
        print(f"demo: triggered {args.dag_id} run {run_id}; waiting for it to finish")
        state = stack.wait_for_run(args.dag_id, run_id, timeout=args.timeout)
        print(f"\ndemo: DAG run {run_id} finished {state.upper()} in {time.monotonic() - started:.0f}s")
        created = stack.stats()["created_per_try"]
        # A reschedule sensor starts one container per poke; a deferred task one more to resume.
        print(f"{'task':<18} {'map':>4} {'state':<10} {'try':>3} {'containers':>10}  last ECS task ARN")
        for row in stack.task_rows(args.dag_id, run_id):
            count = created.get(f"{args.dag_id}|{row.task_id}|{run_id}|{row.map_index}|{row.try_number}", 0)
            print(
                f"{row.task_id:<18} {row.map_index:>4} {row.state or '-':<10} {row.try_number:>3} {count:>10}"
                f"  {row.external_executor_id}"
            )
        callbacks = stack.wait_for_callbacks(args.dag_id, args.callbacks) if args.callbacks else []
        for callback in callbacks:
            containers = created.get(f"callback|{callback.id}", 0)
            print(f"deadline callback {callback.path}: {callback.state} ({containers} container)")
        task_ids = [row.task_id for row in stack.task_rows(args.dag_id, run_id)]
        print_log_view(stack, args.dag_id, run_id, "greet" if "greet" in task_ids else task_ids[-1])
        print("\ntask logs: each container writes its own, in its own AIRFLOW_HOME (gone with it, as on ECS)")
        print(f"container output: CloudWatch Logs group {stack.ecs.config.log_group} on {stack.ecs.endpoint_url}")
        print(f"component logs: {stack.home / 'logs'}/{{scheduler,api-server,dag-processor,triggerer}}.log")
        stats = stack.stats()
        print(f"local ECS: {stats['run_task_calls']} run_task calls, {stats['containers_started']} containers started")
    return 0 if state == "success" and all(c.state == "success" for c in callbacks) else 1


def print_log_view(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> None:
    """What the UI's log view shows for one finished try (the api-server's REST log endpoint)."""
    path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/1?full_content=true"
    print(f"\nlog view of {task_id} (UI: http://127.0.0.1:{stack.api_port}/dags/{dag_id}/runs/{run_id}/tasks/"
          f"{task_id}?try_number=1, REST: GET {path}), read from CloudWatch after its container exited:")  # fmt: skip
    try:
        content = stack.api_get(path)["content"]
    except Exception as err:
        print(f"  cannot read it: {err}")
        return
    for item in [i for i in content if isinstance(i, dict) and not str(i.get("event", "")).startswith("::")][:12]:
        print(f"  {str(item.get('timestamp') or '')[:19]:<19} {item.get('level') or ''!s:<7} {item.get('event')}")


if __name__ == "__main__":
    sys.exit(main())
