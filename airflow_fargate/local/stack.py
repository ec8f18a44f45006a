"""A whole Airflow deployment on one machine, using FargateExecutor on the local ECS endpoint.

Used by ``make demo`` and the end-to-end tests: metadata DB (SQLite by default), api-server,
dag-processor, triggerer and scheduler as subprocesses on Airflow 3 (just the scheduler, which parses DAGs
itself, on Airflow 2), the local ECS endpoint in this process (so the scheduler can be killed and
restarted while tasks keep running).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.local.faults import Faults
from airflow_fargate.local.server import LocalEcs

AIRFLOW = [sys.executable, "-m", "airflow"]
TERMINAL_RUN_STATES = frozenset({"success", "failed"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TaskRow:
    task_id: str
    map_index: int
    state: str | None
    try_number: int
    external_executor_id: str | None


@dataclass(frozen=True)
class CallbackRow:
    """An Airflow 3.3 executor callback (e.g. a deadline alert's) and how it ended."""

    id: str  # as the local endpoint keys it: 'callback|<id>'
    path: str
    state: str | None
    output: str | None


@dataclass
class AirflowStack:
    """Start with ``start()``, always ``stop()`` (or use as a context manager)."""

    home: Path
    dags_folder: Path
    db_url: str | None = None
    faults: Faults = field(default_factory=Faults)
    runtime: str = "process"
    simulate_duration: float = 1.0  # how long a task "runs" with the simulate runtimes
    extra_env: Mapping[str, str] = field(default_factory=dict)
    ecs: LocalEcs | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    api_port: int = 0

    def __enter__(self) -> AirflowStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- environment ----------------------------------------------------------------------------

    @property
    def sql_alchemy_conn(self) -> str:
        return self.db_url or f"sqlite:///{self.home / 'airflow.db'}"

    def env(self) -> dict[str, str]:
        assert self.ecs is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW__", "AIRFLOW_CONN_"))}
        base_url = f"http://127.0.0.1:{self.api_port}"
        env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sql_alchemy_conn,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__BASE_URL": base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base_url}/execution/",
                "AIRFLOW__API_AUTH__JWT_SECRET": "local-demo-jwt-secret-not-for-production",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__AWS_ECS_EXECUTOR__CHECK_HEALTH_ON_STARTUP": "True",
                "AIRFLOW__AWS_ECS_EXECUTOR__MAX_RUN_TASK_ATTEMPTS": "5",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if not AIRFLOW_V3 and self.sql_alchemy_conn.startswith("sqlite"):
            # Airflow 2 refuses remote executors on SQLite outside its own tests; one small DAG
            # at a time is fine (production on Airflow 2 needs PostgreSQL or MySQL anyway).
            env["_AIRFLOW__SKIP_DATABASE_EXECUTOR_COMPATIBILITY_CHECK"] = "1"
        env.update(self.ecs.scheduler_env())
        env.update(self.extra_env)
        return env

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> AirflowStack:
        if self.home.exists():
            shutil.rmtree(self.home)
        (self.home / "logs").mkdir(parents=True)
        self.api_port = free_port()
        self.ecs = LocalEcs(
            runtime=self.runtime,
            faults=self.faults,
            simulate_duration=self.simulate_duration,
            stop_grace_seconds=5,
        ).start()
        env = self.env()
        assert self.ecs.runner is not None
        self.ecs.runner.base_env = env  # task containers see the deployment's Airflow settings
        self.airflow("db", "migrate", timeout=300)
        if AIRFLOW_V3:
            self.start_process("api-server", "api-server")
            self.start_process("dag-processor", "dag-processor")
            self.start_process("triggerer", "triggerer")  # deferrable operators resume through it
        self.start_process("scheduler", "scheduler")
        if AIRFLOW_V3:
            self.wait_for_api()
        return self

    def start_process(self, name: str, *args: str) -> None:
        log = (self.home / "logs" / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [*AIRFLOW, *args], env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one component (its whole process group), as a crash would."""
        proc = self.procs.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        proc.wait(timeout=60)

    def stop(self) -> None:
        for name in list(self.procs):
            proc = self.procs[name]
            try:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                self.kill(name)
            self.procs.pop(name, None)
        if self.ecs is not None:
            self.ecs.stop()

    def airflow(self, *args: str, timeout: float = 120) -> str:
        """Run an ``airflow`` CLI command against this deployment; its stdout."""
        return self.run([*AIRFLOW, *args], timeout=timeout)

    def run(self, command: list[str], timeout: float = 120) -> str:
        """Run a command with this deployment's environment (config, DB, endpoint); its stdout."""
        result = subprocess.run(command, env=self.env(), capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return result.stdout

    def wait_for_api(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.api_port}/api/v2/monitor/health"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(1)
        raise TimeoutError(f"api-server did not answer at {url} within {timeout}s; see {self.home / 'logs'}")

    def api_get(self, path: str, timeout: float = 30) -> Any:
        """GET an Airflow 3 REST API path (the local stack's simple auth manager makes everyone admin)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.api_port}{path}", headers={"Accept": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.home / "logs" / f"{name}.log").read_text(errors="replace")[-4000:]
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}:\n{tail}")

    # -- DAG runs -------------------------------------------------------------------------------

    def _query(self, sql: str, **params: Any) -> list[Any]:
        from sqlalchemy import create_engine, text

        engine = create_engine(self.sql_alchemy_conn)
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(sql), params))
        finally:
            engine.dispose()

    def container_output(self, task_arn: str) -> str:
        """What one ECS task's Airflow container printed (its awslogs stream on the local endpoint):
        task log files stay inside the container, as on ECS."""
        assert self.ecs is not None
        cfg = self.ecs.config
        stream = f"{cfg.log_stream_prefix}/{cfg.container_name}/{task_arn.rsplit('/', 1)[-1]}"
        events = self.ecs.client("logs").get_log_events(logGroupName=cfg.log_group, logStreamName=stream)["events"]
        return "\n".join(str(event["message"]) for event in events)

    def task_events(self, dag_id: str, run_id: str) -> list[tuple[str, str, str | None]]:
        """(task_id, event, extra) of every audit-log row of this run: the executor's task events."""
        rows = self._query(
            "SELECT task_id, event, extra FROM log WHERE dag_id = :d AND run_id = :r ORDER BY id", d=dag_id, r=run_id
        )
        return [(row[0], row[1], row[2]) for row in rows]

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if self._query("SELECT dag_id FROM serialized_dag WHERE dag_id = :d", d=dag_id):
                    return
            except Exception:  # tables may not be visible yet
                pass
            time.sleep(1)
        raise TimeoutError(f"DAG {dag_id} was not parsed within {timeout}s; see {self.home / 'logs'}")

    def trigger(self, dag_id: str, run_id: str) -> None:
        self.wait_for_dag(dag_id)
        self.airflow("dags", "trigger", dag_id, "--run-id", run_id)

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self._query("SELECT state FROM dag_run WHERE dag_id = :d AND run_id = :r", d=dag_id, r=run_id)
        return rows[0][0] if rows else None

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            state = self.run_state(dag_id, run_id)
            if state in TERMINAL_RUN_STATES:
                return state
            time.sleep(2)
        raise TimeoutError(f"{dag_id}/{run_id} did not finish in {timeout}s: {self.task_rows(dag_id, run_id)}")

    def run_dates(self, dag_id: str, run_id: str) -> tuple[Any, Any]:
        """The run's start_date and end_date as the database returns them."""
        ((started, ended),) = self._query(
            "SELECT start_date, end_date FROM dag_run WHERE dag_id = :d AND run_id = :r", d=dag_id, r=run_id
        )
        return started, ended

    def task_rows(self, dag_id: str, run_id: str) -> list[TaskRow]:
        rows = self._query(
            "SELECT task_id, map_index, state, try_number, external_executor_id FROM task_instance "
            "WHERE dag_id = :d AND run_id = :r ORDER BY task_id, map_index",
            d=dag_id,
            r=run_id,
        )
        return [TaskRow(*row) for row in rows]

    def task_times(self, dag_id: str, run_id: str) -> list[tuple[Any, Any]]:
        """(queued_dttm, end_date) of every task instance of a run, as the database returns them."""
        rows = self._query(
            "SELECT queued_dttm, end_date FROM task_instance WHERE dag_id = :d AND run_id = :r", d=dag_id, r=run_id
        )
        return [(row[0], row[1]) for row in rows]

    def callback_rows(self, dag_id: str) -> list[CallbackRow]:
        """The executor callbacks of this DAG's runs (the table exists from Airflow 3.3)."""
        rows = []
        for raw_id, state, output, raw in self._query("SELECT id, state, output, data FROM callback"):
            data = json.loads(raw) if isinstance(raw, str) else raw
            data = data.get("__var", data)  # Airflow's serialized form
            if data.get("dag_id") == dag_id:
                rows.append(CallbackRow(str(uuid.UUID(hex=str(raw_id))), data.get("path", ""), state, output))
        return sorted(rows, key=lambda row: row.path)

    def wait_for_callbacks(self, dag_id: str, count: int, timeout: float = 120) -> list[CallbackRow]:
        """Wait until `count` callbacks of this DAG have ended (success or failed)."""
        deadline = time.monotonic() + timeout
        rows: list[CallbackRow] = []
        while time.monotonic() < deadline:
            self._check_alive()
            rows = self.callback_rows(dag_id)
            if len(rows) >= count and all(row.state in TERMINAL_RUN_STATES for row in rows):
                return rows
            time.sleep(1)
        raise TimeoutError(f"{count} callbacks of {dag_id} did not end within {timeout}s: {rows}")

    def task_log_dir(self, dag_id: str, run_id: str) -> Path:
        return self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"

    def stats(self) -> dict[str, Any]:
        assert self.ecs is not None and self.ecs.runner is not None
        return self.ecs.runner.snapshot_stats()
