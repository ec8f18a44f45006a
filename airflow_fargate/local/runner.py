"""Moves every task the local ECS endpoint creates through its lifecycle, really running it.

PROVISIONING -> PENDING -> RUNNING (container started) -> STOPPED (exit code, stopCode, times),
with the container's output in moto CloudWatch Logs at the awslogs stream. Fault switches make
tasks fail to start or get Spot-interrupted. Counters per Airflow try let tests prove that no try
ever had two containers running for one queueing.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import json
import logging
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from airflow_fargate.local import moto_tasks
from airflow_fargate.local.faults import START_FAILURE_REASONS, Dice, Faults
from airflow_fargate.local.runtimes import ContainerSpec, Handle, Runtime

log = logging.getLogger(__name__)


def try_key(command: list[str]) -> str | None:
    """'dag|task|run|map|try' of the Airflow try a container command runs (Airflow 3), or
    'dag|task|run|map' for Airflow 2, whose ``airflow tasks run`` commands carry no try number.
    Callbacks and connection tests are keyed 'callback|<id>' and 'connection_test|<id>'."""
    if "--json-string" in command:
        try:
            workload = json.loads(command[command.index("--json-string") + 1])
        except (IndexError, ValueError):
            return None
        if not isinstance(workload, dict):
            return None
        if isinstance(workload.get("ti"), dict):
            ti = workload["ti"]
            return "|".join(str(ti.get(k)) for k in ("dag_id", "task_id", "run_id", "map_index", "try_number"))
        if isinstance(workload.get("callback"), dict):
            return f"callback|{workload['callback'].get('id')}"
        if workload.get("connection_test_id"):
            return f"connection_test|{workload['connection_test_id']}"
        return None
    if command[:3] == ["airflow", "tasks", "run"] and len(command) >= 6:
        map_index = command[command.index("--map-index") + 1] if "--map-index" in command[:-1] else "-1"
        return "|".join([*command[3:6], map_index])
    return None


def queueing_key(command: list[str], key: str | None) -> str | None:
    """The try key plus a digest of the workload's execution-API token, which Airflow 3 mints
    afresh each time it queues a try: a reschedule poke or a deferral resume may start while the
    previous queueing's container is still exiting (as on real ECS), and that is no overlap. Two
    containers of one queueing (a duplicate launch, or a relaunch before the old one stopped) are.
    Only a digest is kept: the token is a credential."""
    if key is None or "--json-string" not in command:
        return key
    try:
        token = json.loads(command[command.index("--json-string") + 1]).get("token")
    except (IndexError, ValueError, AttributeError):
        return key
    if not token:
        return key
    return f"{key}#{hashlib.sha256(str(token).encode()).hexdigest()[:12]}"


@dataclass
class Stats:
    """What the endpoint did; served as JSON at /_local/stats."""

    run_task_calls: int = 0
    run_task_throttled: int = 0
    describe_tasks_throttled: int = 0
    run_task_failures_injected: int = 0
    idempotent_replays: int = 0
    tasks_created: int = 0
    containers_started: int = 0
    start_failures_injected: int = 0
    spot_interruptions: int = 0
    stops_requested: int = 0
    requests_refused: int = 0  # not from the scheduler this endpoint was started for (guard.py)
    outage_answers: int = 0  # calls failed by an injected API outage (faults.api_outage)
    answers_lost: int = 0  # calls carried out whose answer was dropped (faults.timeout_rate)
    created_per_try: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    started_per_try: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    overlapping_tries: list[str] = field(default_factory=list)  # two containers of one queueing
    doubly_run_tries: list[str] = field(default_factory=list)  # two containers of one try, any queueings
    stops_per_try: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # StopTask reasons
    running_tries: list[str] = field(default_factory=list)  # containers not stopped yet (filled on read)
    # try -> how each of its tasks was launched: task definition, size, launch type / capacity provider
    launches_per_try: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    api_calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # ECS operation -> calls
    stopped_at: dict[str, float] = field(default_factory=dict)  # try (or ARN) -> when it last STOPPED (epoch s)

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["api_calls"] = dict(self.api_calls)
        data["stopped_at"] = dict(self.stopped_at)
        data["created_per_try"] = dict(self.created_per_try)
        data["started_per_try"] = dict(self.started_per_try)
        data["stops_per_try"] = {key: list(reasons) for key, reasons in self.stops_per_try.items()}
        data["launches_per_try"] = {key: list(launches) for key, launches in self.launches_per_try.items()}
        return data


@dataclass
class _Running:
    arn: str
    try_key: str | None
    queueing_key: str | None
    handle: Handle | None = None
    stop_code: str | None = None
    stop_reason: str | None = None
    done: bool = False


class LocalRunner:
    """Drives moto's ECS tasks in a timer thread; all moto mutations happen under one lock."""

    def __init__(
        self,
        region: str,
        runtime: Runtime,
        faults: Faults,
        *,
        provision_seconds: float = 0.2,
        stop_grace_seconds: float = 10.0,
        base_env: dict[str, str] | None = None,
    ) -> None:
        self.region = region
        self.runtime = runtime
        self.faults = faults
        self.dice = Dice(faults.seed)
        self.provision_seconds = provision_seconds
        self.stop_grace_seconds = stop_grace_seconds
        self.base_env = dict(os.environ if base_env is None else base_env)
        self.stats = Stats()
        self.lock = threading.RLock()
        self._created_at: dict[str, float] = {}
        self._running: dict[str, _Running] = {}
        self._live_by_queueing: dict[str, int] = defaultdict(int)
        self._live_by_try: dict[str, int] = defaultdict(int)
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._wake = threading.Condition(self.lock)
        self._closed = False
        self._thread = threading.Thread(target=self._loop, daemon=True, name="local-ecs-runner")
        self._thread.start()

    # -- scheduling ------------------------------------------------------------------------------

    def _at(self, delay: float, fn: Callable[[], None]) -> None:
        with self._wake:
            heapq.heappush(self._queue, (time.monotonic() + delay, next(self._seq), fn))
            self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closed and (not self._queue or self._queue[0][0] > time.monotonic()):
                    timeout = self._queue[0][0] - time.monotonic() if self._queue else None
                    self._wake.wait(timeout)
                if self._closed:
                    return
                _, _, fn = heapq.heappop(self._queue)
            try:
                fn()
            except Exception:
                log.exception("local ECS runner step failed")

    def close(self) -> None:
        """Stop every running container and the runner thread."""
        with self._wake:
            self._closed = True
            self._wake.notify()
            running = [r for r in self._running.values() if not r.done and r.handle]
        for item in running:
            item.handle.stop(min(self.stop_grace_seconds, 2.0))  # type: ignore[union-attr]

    # -- called by the patched ECS API (server threads) --------------------------------------------

    def submit(self, task: Any) -> None:
        """A new task exists in moto: take over its lifecycle."""
        with self.lock:
            moto_tasks.freeze(task)
            moto_tasks.set_state(task, "PROVISIONING")
            command = self._command(task)
            key = try_key(command)
            self._created_at[task.task_arn] = time.monotonic()
            self._running[task.task_arn] = _Running(task.task_arn, key, queueing_key(command, key))
            self.stats.tasks_created += 1
            if key:
                self.stats.created_per_try[key] += 1
                self.stats.launches_per_try[key].append(moto_tasks.launch_record(task))
        provision = self.faults.provision_delay_s or self.provision_seconds
        if self.faults.provision_jitter_s > 0:
            provision += self.dice.uniform(0, self.faults.provision_jitter_s)
        self._at(provision / 2, lambda: self._set(task, "PENDING"))
        self._at(provision, lambda: self._start(task))

    def visible(self, arn: str) -> bool:
        """False while a new task is hidden from describe_tasks (eventual-consistency fault)."""
        created = self._created_at.get(arn)
        return created is None or time.monotonic() - created >= self.faults.describe_delay_s

    def request_stop(self, task: Any, reason: str) -> None:
        """stop_task: desired STOPPED now; last status follows when the container is gone."""
        with self.lock:
            self.stats.stops_requested += 1
            known = self._running.get(task.task_arn)
            if known is not None and known.try_key:
                self.stats.stops_per_try[known.try_key].append(reason[:300])
            task.desired_status = "STOPPED"
            task.stopped_reason = reason
            running = self._running.get(task.task_arn)
            if running is None or running.done:
                return
            running.stop_code = running.stop_code or "UserInitiated"
            running.stop_reason = running.stop_reason or reason
            handle = running.handle
            if task._status == "RUNNING":  # noqa: SLF001 - moto model
                moto_tasks.set_state(task, "DEACTIVATING")
        if handle is not None:
            handle.stop(self.stop_grace_seconds)
        else:  # not started yet: it never will be
            self._finish(task, None)

    # -- lifecycle steps (runner thread) -------------------------------------------------------------

    def _set(self, task: Any, status: str) -> None:
        with self.lock:
            running = self._running.get(task.task_arn)
            if running and not running.done and task.desired_status != "STOPPED":
                moto_tasks.set_state(task, status)

    def _command(self, task: Any) -> list[str]:
        override = self._override(task)
        definition = self._container_definition(task)
        return list(override.get("command") or definition.get("command") or [])

    def _override(self, task: Any) -> dict[str, Any]:
        name = self._container_definition(task).get("name")
        for item in (task.overrides or {}).get("containerOverrides", []) or []:
            if item.get("name") == name:
                return dict(item)
        return {}

    def _container_definition(self, task: Any) -> dict[str, Any]:
        definition = task._backend.describe_task_definition(task.task_definition_arn)  # noqa: SLF001
        essential = [c for c in definition.container_definitions if c.get("essential", True)]
        return dict((essential or definition.container_definitions)[0])

    def _spec(self, task: Any) -> ContainerSpec:
        definition = self._container_definition(task)
        ecs_env = {e["name"]: e["value"] for e in definition.get("environment") or []}
        ecs_env.update({e["name"]: e["value"] for e in self._override(task).get("environment") or []})
        ecs_env["ECS_CONTAINER_METADATA_URI_V4"] = f"http://127.0.0.1/v4/{task.task_arn.rsplit('/', 1)[-1]}"
        ecs_env["AWS_EXECUTION_ENV"] = "AWS_ECS_FARGATE"
        env = {**self.base_env, **ecs_env}
        # `python` in the command means this virtualenv's interpreter, as it would in the image.
        env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
        return ContainerSpec(
            command=self._command(task), environment=env, image=definition.get("image"), ecs_environment=ecs_env
        )

    def _start(self, task: Any) -> None:
        with self.lock:
            running = self._running[task.task_arn]
            if running.done or task.desired_status == "STOPPED":
                if not running.done:
                    self._finish(task, None)
                return
            if self.dice.chance(self.faults.start_failure_rate):
                self.stats.start_failures_injected += 1
                running.stop_code = "TaskFailedToStart"
                running.stop_reason = self.dice.choice(START_FAILURE_REASONS)
                self._finish(task, None, container_reason=running.stop_reason)
                return
            spec = self._spec(task)
            key, live_key = running.try_key, running.queueing_key
            if key and live_key:
                self._live_by_queueing[live_key] += 1
                self._live_by_try[key] += 1
                self.stats.started_per_try[key] += 1
                if self._live_by_queueing[live_key] > 1:
                    self.stats.overlapping_tries.append(key)
                if self._live_by_try[key] > 1:
                    self.stats.doubly_run_tries.append(key)
            self.stats.containers_started += 1
            moto_tasks.set_state(task, "RUNNING", now=datetime.now(timezone.utc))
            writer = self._log_writer(task)
            running.handle = self.runtime.start(spec, writer, lambda code: self._finish(task, code))
            if self.dice.chance(self.faults.spot_interruption_rate):
                self._at(self.dice.uniform(0.2, 2.0), lambda: self._interrupt(task))

    def interrupt(self, arn: str) -> bool:
        """Spot-interrupt a running task now (tests); False if it is not running."""
        with self.lock:
            running = self._running.get(arn)
            if running is None or running.done or running.handle is None:
                return False
            task = moto_tasks.find_task(moto_tasks.ecs_backend(self.region), arn)
        if task is None:
            return False
        self._interrupt(task)
        return True

    def _interrupt(self, task: Any) -> None:
        with self.lock:
            running = self._running.get(task.task_arn)
            if running is None or running.done or running.handle is None:
                return
            self.stats.spot_interruptions += 1
            running.stop_code = "SpotInterruption"
            running.stop_reason = "Your Spot Task was interrupted."
            task.desired_status = "STOPPED"
            moto_tasks.set_state(task, "DEACTIVATING")
            handle = running.handle
        handle.stop(self.stop_grace_seconds)

    def _finish(self, task: Any, exit_code: int | None, container_reason: str | None = None) -> None:
        with self.lock:
            running = self._running.get(task.task_arn)
            if running is None or running.done:
                return
            running.done = True
            if running.handle is not None and running.queueing_key:
                self._live_by_queueing[running.queueing_key] -= 1
            if running.handle is not None and running.try_key and running.queueing_key:
                self._live_by_try[running.try_key] -= 1
            name = self._container_definition(task).get("name", "")
            stop_code = running.stop_code or "EssentialContainerExited"
            reason = running.stop_reason or "Essential container in task exited"
            try_key = running.try_key or task.task_arn
            delay = self.faults.deprovision_delay_s

            def stopped() -> None:
                with self.lock:
                    moto_tasks.set_state(
                        task,
                        "STOPPED",
                        exit_codes={name: exit_code},
                        reasons={name: container_reason} if container_reason else None,
                        stop_code=stop_code,
                        stopped_reason=reason,
                    )
                    self.stats.stopped_at[try_key] = time.time()

            if delay <= 0:
                stopped()
                return
            task.desired_status = "STOPPED"
            moto_tasks.set_state(task, "DEPROVISIONING")  # as Fargate, seconds between exit and STOPPED
        self._at(delay, stopped)

    def snapshot_stats(self) -> dict[str, Any]:
        """The counters, plus which tries still have a container that has not stopped."""
        with self.lock:
            data = self.stats.as_dict()
            data["running_tries"] = sorted(r.try_key or r.arn for r in self._running.values() if not r.done)
        return data

    # -- logs --------------------------------------------------------------------------------------

    def _log_writer(self, task: Any) -> Callable[[str], None]:
        """Write container output to the awslogs stream the task definition names (moto Logs)."""
        options = (self._container_definition(task).get("logConfiguration") or {}).get("options") or {}
        group = options.get("awslogs-group")
        if not group:
            return lambda line: None
        name = self._container_definition(task).get("name", "container")
        prefix = options.get("awslogs-stream-prefix", "ecs")
        stream = f"{prefix}/{name}/{task.task_arn.rsplit('/', 1)[-1]}"
        from moto.logs.models import logs_backends

        backend = logs_backends[task._account_id][self.region]  # noqa: SLF001
        lock = threading.Lock()
        with lock:
            try:
                backend.create_log_stream(group, stream)
            except Exception:
                log.debug("log stream %s/%s exists", group, stream)

        def write(line: str) -> None:
            event = {"timestamp": int(time.time() * 1000), "message": line}
            with lock:
                try:
                    backend.put_log_events(group, stream, [event])
                except Exception:
                    log.debug("dropping log line for %s", stream, exc_info=True)

        return write
