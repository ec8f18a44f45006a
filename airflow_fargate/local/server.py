"""The local ECS endpoint: moto's ThreadedMotoServer on loopback, wired to the LocalRunner.

Every request passes the guard first (guard.py: only the scheduler this endpoint was started for
is served). ECS calls go to moto; a WSGI layer in front adds latency and RunTask throttling; patches on moto's
ECS handlers add what moto lacks (clientToken idempotency, run_task failures, describe delay,
stop_task that really stops the container). /_local/stats and /_local/faults are for tests.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import boto3
from moto.core.responses import ActionResult
from moto.ecs.models import EC2ContainerServiceBackend
from moto.ecs.responses import EC2ContainerServiceResponse
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from airflow_fargate.local import ecs_rules, moto_tasks
from airflow_fargate.local.faults import CAPACITY_REASONS, Dice, Faults, TokenBucket
from airflow_fargate.local.guard import CLOSE_HEADER, Guard, LocalCredentials, control_request
from airflow_fargate.local.runner import LocalRunner
from airflow_fargate.local.runtimes import Runtime, make_runtime

log = logging.getLogger(__name__)

ECS_TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."
PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


@dataclass(frozen=True)
class LocalEcsConfig:
    """The cluster and task definition the endpoint creates at start."""

    region: str = "us-east-1"
    cluster: str = "airflow-local"
    family: str = "airflow-local-task"
    container_name: str = "airflow-worker"
    image: str = field(default_factory=lambda: f"apache/airflow:{version('apache-airflow')}-python{PYTHON}")
    log_group: str = "/ecs/airflow-local"
    log_stream_prefix: str = "airflow"
    cpu: str = "1024"
    memory: str = "2048"
    # A second task definition (same container, a bigger size), as a "large" queue profile names.
    large_family: str = "airflow-local-task-large"
    large_cpu: str = "4096"
    large_memory: str = "16384"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LocalEcsConfig:
        return cls(**data)


class _State:
    """What the patched moto handlers need; one per process (moto's backends are global too)."""

    runner: LocalRunner | None = None
    faults = Faults()
    tokens = ecs_rules.TokenMemory()
    lock = threading.Lock()


_original_run_task = EC2ContainerServiceResponse.run_task
_original_describe = EC2ContainerServiceBackend.describe_tasks
_original_stop = EC2ContainerServiceBackend.stop_task
_original_list_tasks = EC2ContainerServiceResponse.list_tasks
_original_describe_response = EC2ContainerServiceResponse.describe_tasks
_original_get_resource = EC2ContainerServiceBackend._get_resource  # noqa: SLF001


def _run_task(self: EC2ContainerServiceResponse) -> ActionResult:
    runner = _State.runner
    if runner is None:
        return _original_run_task(self)
    token = self._get_param("clientToken")
    params = self._get_params()
    cluster = str(params.get("cluster") or "default").rsplit("/", 1)[-1]
    ecs_rules.check_run_task(params, _container_names(self.ecs_backend, params.get("taskDefinition")))
    with _State.lock:
        runner.stats.run_task_calls += 1
        replayed = _State.tokens.replay(cluster, token, params) if token else None
        if replayed is not None:  # ECS idempotency: same token, same task(s)
            runner.stats.idempotent_replays += 1
            tasks = [moto_tasks.find_task(self.ecs_backend, arn) for arn in replayed]
            return ActionResult({"tasks": [t for t in tasks if t is not None], "failures": []})
        if runner.dice.chance(_State.faults.run_task_failure_rate):
            runner.stats.run_task_failures_injected += 1
            reason = runner.dice.choice(CAPACITY_REASONS)
            return ActionResult({"tasks": [], "failures": [{"reason": reason, "detail": "injected by local ECS"}]})
        result = _original_run_task(self)
        tasks = result.result["tasks"]  # type: ignore[index]
        if token:
            _State.tokens.remember(cluster, token, params, [t.task_arn for t in tasks])
    for task in tasks:
        runner.submit(task)
    if _State.faults.run_task_response_delay_s:  # the task exists; its ARN is slow to come back
        time.sleep(_State.faults.run_task_response_delay_s)
    return result


def _container_names(backend: EC2ContainerServiceBackend, task_definition: Any) -> set[str] | None:
    """The container names of the task definition a RunTask names (None: moto will refuse it)."""
    try:
        definition = backend.describe_task_definition(str(task_definition))
    except Exception:
        return None
    return {str(c.get("name")) for c in definition.container_definitions}


def _describe_tasks(self: EC2ContainerServiceBackend, cluster_str: str, tasks: list[str]) -> list[Any]:
    """Direct lookups under the lock: moto's own version scans every task for every ARN and breaks
    (dict changed size) when run_task inserts concurrently."""
    runner = _State.runner
    if runner is None:
        return _original_describe(self, cluster_str, tasks)
    if not tasks:
        from moto.ecs.exceptions import InvalidParameterException

        raise InvalidParameterException("Tasks cannot be empty.")
    cluster = self._get_cluster(cluster_str)
    prefix = cluster.arn.replace(":cluster/", ":task/")
    with _State.lock:
        cluster_tasks = self.tasks.get(cluster.name, {})
        found = [cluster_tasks.get(ref) or cluster_tasks.get(f"{prefix}/{ref}") for ref in tasks]
    # moto serializes fields alphabetically (containers before lastStatus) after we return: hand it
    # snapshots taken under the runner's lock, never objects the runner is changing meanwhile.
    retention = _State.faults.stopped_retention_s
    with runner.lock:
        return [
            moto_tasks.snapshot(t)
            for t in found
            if t is not None and runner.visible(t.task_arn) and not ecs_rules.forgotten(t, retention)
        ]


def _describe_tasks_response(self: EC2ContainerServiceResponse) -> ActionResult:
    """As ECS answers: every ARN asked for and not found is a failure with reason MISSING."""
    result = _original_describe_response(self)
    found = result.result["tasks"]  # type: ignore[index]
    arns = {t.task_arn for t in found}
    ids = {arn.rsplit("/", 1)[-1] for arn in arns}
    missing = [ref for ref in self._get_param("tasks", []) if ref not in arns and ref.rsplit("/", 1)[-1] not in ids]
    result.result["failures"] = [{"arn": ref, "reason": "MISSING"} for ref in missing]  # type: ignore[index]
    return result


def _stop_task(self: EC2ContainerServiceBackend, cluster_str: str, task_str: str, reason: str) -> Any:
    runner = _State.runner
    with _State.lock:
        task = moto_tasks.find_task(self, task_str) if "/" in task_str else None
        if task is None:
            for tasks in self.tasks.values():
                task = next((t for arn, t in tasks.items() if arn.endswith("/" + task_str)), task)
    if task is None:
        from moto.ecs.exceptions import InvalidParameterException

        raise InvalidParameterException("The referenced task was not found.")
    if runner is None:
        return _original_stop(self, cluster_str, task_str, reason)
    runner.request_stop(task, reason)
    return task


def _list_tasks(self: EC2ContainerServiceResponse) -> ActionResult:
    """ListTasks in pages as ECS serves it (maxResults up to 100, default 100, nextToken), and
    desiredStatus RUNNING when not given (moto returns stopped tasks too)."""
    arns = [
        task.task_arn
        for task in self.ecs_backend.list_tasks(
            self._get_param("cluster", "default"),
            self._get_param("containerInstance"),
            self._get_param("family"),
            self._get_param("startedBy"),
            self._get_param("serviceName"),
            self._get_param("desiredStatus") or "RUNNING",
        )
    ]
    size = max(1, min(100, int(self._get_param("maxResults") or 100)))
    start = int(self._get_param("nextToken") or 0)
    page: dict[str, Any] = {"taskArns": arns[start : start + size]}
    if start + size < len(arns):
        page["nextToken"] = str(start + size)
    return ActionResult(page)


def _get_resource(self: EC2ContainerServiceBackend, resource_arn: str, parsed_arn: dict[str, str]) -> Any:
    """Tags on tasks (moto implements the other resources only); an unknown task is ECS's error."""
    if parsed_arn.get("service") != "task":
        return _original_get_resource(self, resource_arn, parsed_arn)
    with _State.lock:
        task = moto_tasks.find_task(self, resource_arn)
    if task is None:
        from moto.ecs.exceptions import InvalidParameterException

        raise InvalidParameterException("The specified task is not found. Specify a valid task and try again.")
    return task


def install_patches() -> None:
    """Route moto's ECS handlers through the local runner (idempotent)."""
    EC2ContainerServiceResponse.run_task = _run_task  # type: ignore[method-assign]
    EC2ContainerServiceBackend.describe_tasks = _describe_tasks  # type: ignore[method-assign]
    EC2ContainerServiceBackend.stop_task = _stop_task  # type: ignore[method-assign]
    EC2ContainerServiceResponse.list_tasks = _list_tasks  # type: ignore[method-assign]
    EC2ContainerServiceResponse.describe_tasks = _describe_tasks_response  # type: ignore[method-assign]
    EC2ContainerServiceBackend._get_resource = _get_resource  # type: ignore[method-assign]  # noqa: SLF001


def uninstall_patches() -> None:
    """Give moto back its own handlers (so in-process moto tests are unaffected)."""
    EC2ContainerServiceResponse.run_task = _original_run_task  # type: ignore[method-assign]
    EC2ContainerServiceBackend.describe_tasks = _original_describe  # type: ignore[method-assign]
    EC2ContainerServiceBackend.stop_task = _original_stop  # type: ignore[method-assign]
    EC2ContainerServiceResponse.list_tasks = _original_list_tasks  # type: ignore[method-assign]
    EC2ContainerServiceResponse.describe_tasks = _original_describe_response  # type: ignore[method-assign]
    EC2ContainerServiceBackend._get_resource = _original_get_resource  # type: ignore[method-assign]  # noqa: SLF001
    _State.runner = None
    _State.tokens = ecs_rules.TokenMemory()


def _json_response(start_response: Callable[..., Any], status: str, body: Any) -> list[bytes]:
    data = json.dumps(body, default=str).encode()
    start_response(status, [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))])
    return [data]


class FaultMiddleware:
    """WSGI layer before moto: per-call latency, RunTask throttling, and the /_local control API."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.set_faults(_State.faults)

    def set_faults(self, faults: Faults) -> None:
        self.dice = Dice(faults.seed)
        _State.faults = faults
        if _State.runner:
            _State.runner.faults = faults
        self.bucket = TokenBucket(faults.run_task_rate, faults.run_task_burst)
        self.describe_bucket = TokenBucket(faults.describe_tasks_rate, faults.describe_tasks_burst)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_local/"):
            return self._control(path, environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if _State.faults.api_outage:
            return self._outage(environ, start_response)
        if target.startswith(ECS_TARGET_PREFIX) and self.dice.chance(_State.faults.timeout_rate):
            return self._answer_lost(environ, start_response)
        if target.startswith(ECS_TARGET_PREFIX):
            if _State.runner:
                _State.runner.stats.api_calls[target.removeprefix(ECS_TARGET_PREFIX)] += 1
            if _State.faults.latency_ms:
                time.sleep(_State.faults.latency_ms / 1000)
            if target.endswith(".RunTask") and not self.bucket.take():
                if _State.runner:
                    _State.runner.stats.run_task_throttled += 1
                return self._throttled(start_response)
            if target.endswith(".DescribeTasks") and not self.describe_bucket.take():
                if _State.runner:
                    _State.runner.stats.describe_tasks_throttled += 1
                return self._throttled(start_response)
        return self.app(environ, start_response)

    def _outage(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Every AWS call fails as in an outage of the kind the faults name."""
        if _State.runner:
            _State.runner.stats.outage_answers += 1
        outage = _State.faults.api_outage
        if outage == "throttle":
            return self._throttled(start_response)
        if outage == "5xx":
            body = {"__type": "ServiceUnavailableException", "message": "Service Unavailable (local outage)"}
            return _json_response(start_response, "503 Service Unavailable", body)
        return _dropped(environ, start_response)

    def _answer_lost(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The call is carried out (a RunTask starts its task), but its answer never arrives:
        the connection is dropped ``timeout_s`` later, as a client's read timeout ends it."""
        if _State.runner:
            _State.runner.stats.answers_lost += 1
        for _ in self.app(environ, lambda *args, **kwargs: None):
            pass
        time.sleep(_State.faults.timeout_s)
        return _dropped(environ, start_response)

    @staticmethod
    def _throttled(start_response: Callable[..., Any]) -> list[bytes]:
        return _json_response(
            start_response, "400 Bad Request", {"__type": "ThrottlingException", "message": "Rate exceeded"}
        )

    def _control(self, path: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if path == "/_local/stats":
            stats = _State.runner.snapshot_stats() if _State.runner else {}
            return _json_response(start_response, "200 OK", stats)
        if path == "/_local/faults" and environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            try:
                self.set_faults(Faults.from_dict(json.loads(environ["wsgi.input"].read(length) or b"{}")))
            except (ValueError, TypeError) as err:
                return _json_response(start_response, "400 Bad Request", {"error": str(err)})
            return _json_response(start_response, "200 OK", _State.faults.as_dict())
        if path == "/_local/faults":
            return _json_response(start_response, "200 OK", _State.faults.as_dict())
        return _json_response(start_response, "404 Not Found", {"error": f"unknown control path {path}"})


def _drop_connection(environ: dict[str, Any]) -> None:
    """Close the request's connection without an answer (the client sees it reset)."""
    sock = environ.get("werkzeug.socket")
    if sock is None:
        raise ConnectionAbortedError("local outage")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _dropped(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The connection is dropped; werkzeug's write of this answer then fails as a connection
    the client dropped (quietly), never reaching the client."""
    _drop_connection(environ)
    return _json_response(start_response, "503 Service Unavailable", {"__type": "Dropped"})


def _count_refused() -> None:
    if _State.runner:
        _State.runner.stats.requests_refused += 1


def _keep_alive_handler() -> type:
    """Moto's request handler with HTTP/1.1 keep-alive, as ECS's endpoints keep connections open
    (werkzeug closes every connection; a client then pays a new TCP connection per call). Safe
    because the guard reads every request body whole before anything answers; a response the
    guard marks (``CLOSE_HEADER``: a body it did not read) still closes its connection."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class KeepAliveHandler(MotoRequestHandler):
        protocol_version = "HTTP/1.1"
        _close_asked = False

        def send_header(self, keyword: str, value: str) -> None:
            if keyword == CLOSE_HEADER:
                self._close_asked = True
                return
            if keyword.lower() == "connection" and value.lower() == "close" and not self._close_asked:
                return  # werkzeug's blanket close
            super().send_header(keyword, value)

        def handle_one_request(self) -> None:
            self._close_asked = False
            super().handle_one_request()

        def run_wsgi(self) -> None:
            # werkzeug drains what is left to read after each answer (it closes every connection):
            # on a kept-alive connection that would block on the next request. The guard has read
            # this request's body whole, so nothing of it is left: skip the drain.
            rfile = self.rfile
            self.rfile = _NoDrain(rfile)  # type: ignore[assignment]
            try:
                super().run_wsgi()
            finally:
                self.rfile = rfile

    return KeepAliveHandler


class _NoDrain:
    """A request's input stream whose drain read (werkzeug's 10 MB read) finds nothing."""

    DRAIN_SIZE = 10_000_000

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        return b"" if size == self.DRAIN_SIZE else bytes(self._stream.read(size))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Server(ThreadedMotoServer):
    """ThreadedMotoServer with our WSGI layers in front of moto's app: the guard, then faults."""

    middleware: FaultMiddleware | None = None
    credentials: LocalCredentials

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        self.middleware = FaultMiddleware(DomainDispatcherApplication(create_backend_app))
        guard = Guard(self.middleware, self.credentials, _count_refused)
        handler = _keep_alive_handler()
        self._server = make_server(self._ip_address, self._port, guard, True, request_handler=handler)
        guard.port = self._server.server_port
        self._server_ready_event.set()
        self._server.serve_forever()


class LocalEcs:
    """Start/stop the endpoint, create the cluster, task definition and log group."""

    def __init__(
        self,
        config: LocalEcsConfig | None = None,
        *,
        port: int = 0,
        runtime: str | Runtime = "process",
        faults: Faults | None = None,
        simulate_duration: float = 1.0,
        stop_grace_seconds: float = 10.0,
    ) -> None:
        self.config = config or LocalEcsConfig()
        self.port = port
        self.faults = faults or Faults()
        self.runtime = make_runtime(runtime, simulate_duration) if isinstance(runtime, str) else runtime
        self.stop_grace_seconds = stop_grace_seconds
        self._server: _Server | None = None
        self.runner: LocalRunner | None = None
        self.credentials = LocalCredentials.generate()  # only the scheduler gets them (scheduler_env)

    @property
    def endpoint_url(self) -> str:
        assert self._server is not None, "start() first"
        host, port = self._server.get_host_and_port()
        return f"http://{host}:{port}"

    def start(self) -> LocalEcs:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request is noise here
        from moto.moto_api._internal.models import moto_api_backend

        moto_api_backend.reset()  # moto's state is per process: start from an empty account
        install_patches()
        _State.faults = self.faults
        _State.tokens = ecs_rules.TokenMemory()
        self.runner = LocalRunner(
            self.config.region, self.runtime, self.faults, stop_grace_seconds=self.stop_grace_seconds
        )
        _State.runner = self.runner
        self._server = _Server("127.0.0.1", self.port, verbose=False)  # loopback only, never 0.0.0.0
        self._server.credentials = self.credentials
        self._server.start()
        self._create_resources()
        return self

    def stop(self) -> None:
        if self.runner:
            self.runner.close()
        if self._server:
            self._server.stop()
        uninstall_patches()

    def client(self, service: str) -> Any:
        session: Any = boto3.session.Session()
        return session.client(
            service,
            region_name=self.config.region,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.credentials.access_key,
            aws_secret_access_key=self.credentials.secret_key,
        )

    def control(self, path: str, payload: Any = None) -> Any:
        """A signed request to a /_local control path (stats, faults), as tests and benchmarks make."""
        return control_request(self.endpoint_url, path, self.credentials, payload, self.config.region)

    def _create_resources(self) -> None:
        cfg = self.config
        self.client("logs").create_log_group(logGroupName=cfg.log_group)
        self.client("ecs").create_cluster(clusterName=cfg.cluster)
        for family, cpu, memory in (
            (cfg.family, cfg.cpu, cfg.memory),
            (cfg.large_family, cfg.large_cpu, cfg.large_memory),
        ):
            self._register(family, cpu, memory)

    def _register(self, family: str, cpu: str, memory: str) -> None:
        cfg = self.config
        self.client("ecs").register_task_definition(
            family=family,
            cpu=cpu,
            memory=memory,
            containerDefinitions=[
                {
                    "name": cfg.container_name,
                    "image": cfg.image,
                    "essential": True,
                    "memory": int(memory),
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {
                            "awslogs-group": cfg.log_group,
                            "awslogs-region": cfg.region,
                            "awslogs-stream-prefix": cfg.log_stream_prefix,
                        },
                    },
                }
            ],
        )

    def scheduler_env(self) -> dict[str, str]:
        """Env vars a scheduler needs to use this endpoint with FargateExecutor."""
        cfg = self.config
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": cfg.region,
            "AWS_ACCESS_KEY_ID": self.credentials.access_key,
            "AWS_SECRET_ACCESS_KEY": self.credentials.secret_key,
            "AIRFLOW__CORE__EXECUTOR": "airflow_fargate.FargateExecutor",
            "AIRFLOW__AWS_ECS_EXECUTOR__REGION_NAME": cfg.region,
            "AIRFLOW__AWS_ECS_EXECUTOR__CLUSTER": cfg.cluster,
            "AIRFLOW__AWS_ECS_EXECUTOR__CONTAINER_NAME": cfg.container_name,
            "AIRFLOW__AWS_ECS_EXECUTOR__TASK_DEFINITION": cfg.family,
        }
