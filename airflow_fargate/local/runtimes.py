"""Ways the local endpoint runs a task's container command: a subprocess, Docker, or a simulation
(silent, or reporting to Airflow's execution API).

Each runtime calls ``on_output(line)`` for every line the container prints and ``on_exit(code)``
exactly once when it ends; ``stop(grace)`` sends SIGTERM and kills after ``grace`` seconds.
"""

from __future__ import annotations

import contextlib
import datetime
import itertools
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import tenacity

log = logging.getLogger(__name__)

OutputFn = Callable[[str], None]
ExitFn = Callable[[int], None]


@dataclass(frozen=True)
class ContainerSpec:
    """What to run for one task."""

    command: Sequence[str]
    environment: Mapping[str, str]  # a process on this machine: the deployment's env around ECS's
    image: str | None = None
    # A real container gets what ECS gives one, nothing of this machine's environment: the task
    # definition's environment, the overrides' and the ECS metadata variables.
    ecs_environment: Mapping[str, str] = field(default_factory=dict)


class Handle(Protocol):
    def stop(self, grace_seconds: float) -> None: ...


class Runtime(Protocol):
    name: str

    def start(self, spec: ContainerSpec, on_output: OutputFn, on_exit: ExitFn) -> Handle: ...


class _ProcessHandle:
    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def stop(self, grace_seconds: float) -> None:
        """SIGTERM the process group, SIGKILL it if still alive after the grace period."""
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return  # already gone

        def kill_later() -> None:
            try:
                self.proc.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)

        threading.Thread(target=kill_later, daemon=True, name="local-ecs-kill").start()


def private_home(environment: Mapping[str, str]) -> tuple[Path, dict[str, str]]:
    """A container's own AIRFLOW_HOME: a fresh folder with a copy of the deployment's airflow.cfg
    (as an image built with the same configuration has), its own log folder, and the environment
    pointing there. Nothing the task writes reaches the scheduler's filesystem, as on ECS."""
    home = Path(tempfile.mkdtemp(prefix="local-ecs-container-"))
    shared = environment.get("AIRFLOW_HOME")
    if shared and (Path(shared) / "airflow.cfg").is_file():
        shutil.copy(Path(shared) / "airflow.cfg", home / "airflow.cfg")
    env = dict(environment)
    env["AIRFLOW_HOME"] = str(home)
    env["AIRFLOW__LOGGING__BASE_LOG_FOLDER"] = str(home / "logs")
    return home, env


class ProcessRuntime:
    """Runs the command as a subprocess on this machine (the default: no engine needed), in its
    own AIRFLOW_HOME, removed when it exits (private_home)."""

    name = "process"

    def start(self, spec: ContainerSpec, on_output: OutputFn, on_exit: ExitFn) -> Handle:
        home, env = private_home(spec.environment)
        try:
            proc = subprocess.Popen(
                list(spec.command),
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
                start_new_session=True,  # its own process group, so stop() reaches its children
            )
        except OSError as err:
            shutil.rmtree(home, ignore_errors=True)
            on_output(f"CannotStartContainerError: {err}")
            on_exit(127)
            return _NullHandle()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                on_output(line.rstrip("\n"))
            code = proc.wait()
            shutil.rmtree(home, ignore_errors=True)  # the container is gone, and its files with it
            on_exit(128 - code if code < 0 else code)  # killed by signal N -> 128+N, as Docker reports

        threading.Thread(target=pump, daemon=True, name="local-ecs-output").start()
        return _ProcessHandle(proc)


class _NullHandle:
    def stop(self, grace_seconds: float) -> None:
        return None


class _SimulatedHandle:
    def __init__(self, timer: threading.Timer, on_exit: ExitFn) -> None:
        self._timer = timer
        self._on_exit = on_exit

    def stop(self, grace_seconds: float) -> None:
        self._timer.cancel()
        self._on_exit(143)


class SimulatedRuntime:
    """Runs nothing: the container 'exits 0' after ``duration`` seconds (benchmarks, chaos at scale)."""

    name = "simulate"

    def __init__(self, duration: float = 1.0) -> None:
        self.duration = duration

    def start(self, spec: ContainerSpec, on_output: OutputFn, on_exit: ExitFn) -> Handle:
        on_output("simulated container: " + " ".join(spec.command)[:200])
        timer = threading.Timer(self.duration, on_exit, args=(0,))
        timer.daemon = True
        timer.start()
        return _SimulatedHandle(timer, on_exit)


class _ReportingHandle:
    def __init__(self) -> None:
        self.stopped = threading.Event()

    def stop(self, grace_seconds: float) -> None:
        self.stopped.set()


def workload_of(command: Sequence[str]) -> dict[str, Any] | None:
    """The workload a container command carries (``... --json-string <workload json>``), if any."""
    args = list(command)
    for flag, value in itertools.pairwise(args):
        if flag == "--json-string":
            with contextlib.suppress(ValueError):
                workload = json.loads(value)
                return workload if isinstance(workload, dict) else None
    return None


class ReportingRuntime:
    """Runs no Airflow, but tells Airflow's execution API what a quick task would: the try starts,
    runs ``duration`` seconds and succeeds; then the container exits 0. For benchmarks on a real
    scheduler, where starting hundreds of Python task processes would measure this machine, not
    the executor. Workloads that are not task tries (callbacks) just exit 0."""

    name = "simulate-api"

    def __init__(self, duration: float = 1.0) -> None:
        self.duration = duration

    def start(self, spec: ContainerSpec, on_output: OutputFn, on_exit: ExitFn) -> Handle:
        handle = _ReportingHandle()
        workload = workload_of(spec.command)
        api = spec.environment.get("AIRFLOW__CORE__EXECUTION_API_SERVER_URL", "")
        threading.Thread(
            target=self._run, args=(workload, api, handle, on_output, on_exit), daemon=True, name="local-ecs-report"
        ).start()
        return handle

    def _run(
        self, workload: dict[str, Any] | None, api: str, handle: _ReportingHandle, on_output: OutputFn, on_exit: ExitFn
    ) -> None:
        ti = workload.get("ti") if workload is not None else None
        if workload is None or not isinstance(ti, dict) or not api:
            on_output("simulated container: not a task try, exits 0")
            on_exit(143 if handle.stopped.wait(self.duration) else 0)
            return
        try:
            token = _report(api, f"task-instances/{ti['id']}/run", workload["token"], _running_payload())
            if handle.stopped.wait(self.duration):
                on_exit(143)
                return
            _report(api, f"task-instances/{ti['id']}/state", token, {"state": "success", "end_date": _now()})
        except (OSError, KeyError, ValueError) as err:  # urllib's HTTPError is an OSError
            on_output(f"simulated task could not report to the execution API: {err}")
            on_exit(1)
            return
        on_output("simulated task succeeded")
        on_exit(0)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _running_payload() -> dict[str, Any]:
    return {"state": "running", "hostname": "local-ecs", "unixname": "airflow", "pid": 1, "start_date": _now()}


def _retryable(err: BaseException) -> bool:
    """What Airflow's own task client retries: server errors and connection failures."""
    if isinstance(err, urllib.error.HTTPError):
        return err.code >= 500
    return isinstance(err, OSError)


@tenacity.retry(
    retry=tenacity.retry_if_exception(_retryable),
    stop=tenacity.stop_after_attempt(5),
    wait=tenacity.wait_random_exponential(min=0.5, max=5),
    reraise=True,
)
def _report(api: str, path: str, token: str, body: dict[str, Any]) -> str:
    """PATCH one execution-API call; the token to use next (the API swaps a workload token)."""
    request = urllib.request.Request(
        api.rstrip("/") + "/" + path,
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers.get("Refreshed-API-Token") or token


class _DockerHandle:
    def __init__(self, container: Any) -> None:
        self.container = container

    def stop(self, grace_seconds: float) -> None:
        self.container.stop(timeout=int(grace_seconds))


class DockerRuntime:
    """Runs the task definition's image with the Docker SDK (when an engine is reachable)."""

    name = "docker"

    def __init__(self, client: Any) -> None:
        self.client = client

    def start(self, spec: ContainerSpec, on_output: OutputFn, on_exit: ExitFn) -> Handle:
        container = self.client.containers.run(
            spec.image,
            list(spec.command),
            environment=dict(spec.ecs_environment),
            detach=True,
            network_mode="host",
        )

        def pump() -> None:
            for line in whole_lines(container.logs(stream=True, follow=True)):
                on_output(line)
            on_exit(int(container.wait().get("StatusCode", 1)))
            container.remove(force=True)

        threading.Thread(target=pump, daemon=True, name="local-ecs-docker").start()
        return _DockerHandle(container)


def whole_lines(chunks: Iterable[bytes]) -> Iterator[str]:
    """Lines of a stream whose chunks may end mid-line (or mid-character): one line, one
    CloudWatch event, as the awslogs driver sends them."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
    if pending:
        yield pending.rstrip(b"\r").decode("utf-8", "replace")


def docker_client() -> Any | None:
    """A Docker SDK client if the ``docker`` package is installed and an engine answers, else None."""
    try:
        import docker
    except ImportError:
        return None
    try:
        client = docker.from_env(timeout=3)
        client.ping()
    except Exception as err:
        log.debug("No Docker engine reachable: %s", err)
        return None
    return client


def make_runtime(name: str, simulate_duration: float = 1.0) -> Runtime:
    """``process`` | ``docker`` | ``auto`` (docker when reachable, else process) | ``simulate`` |
    ``simulate-api``."""
    if name == "simulate":
        return SimulatedRuntime(simulate_duration)
    if name == "simulate-api":
        return ReportingRuntime(simulate_duration)
    if name in ("docker", "auto"):
        client = docker_client()
        if client is not None:
            return DockerRuntime(client)
        if name == "docker":
            raise RuntimeError("runtime 'docker' requested but no Docker engine is reachable")
    if name in ("process", "auto"):
        return ProcessRuntime()
    raise ValueError(f"unknown runtime {name!r}: use process, docker, auto, simulate or simulate-api")
