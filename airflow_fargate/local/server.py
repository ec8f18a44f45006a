"""The local ECS endpoint: moto's ThreadedMotoServer on loopback, wired to the LocalRunner.

Every request passes the guard first (guard.py: only the scheduler this endpoint was started for
is served). ECS calls go to moto; a WSGI layer in front (FaultMiddleware) adds latency, throttling
and outages; moto_patches add what moto lacks and ECS does; http_layer keeps connections alive.
/_local/stats and /_local/faults are for tests and benchmarks.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any

import boto3
from moto.moto_server.threaded_moto_server import ThreadedMotoServer

from airflow_fargate.local import ecs_rules
from airflow_fargate.local.faults import Dice, Faults, TokenBucket
from airflow_fargate.local.guard import Guard, LocalCredentials, control_request
from airflow_fargate.local.http_layer import dropped, json_response, keep_alive_handler
from airflow_fargate.local.moto_patches import State, install_patches, uninstall_patches
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


class FaultMiddleware:
    """WSGI layer before moto: per-call latency, RunTask throttling, and the /_local control API."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self.set_faults(State.faults)

    def set_faults(self, faults: Faults) -> None:
        self.dice = Dice(faults.seed)
        State.faults = faults
        if State.runner:
            State.runner.faults = faults
        self.bucket = TokenBucket(faults.run_task_rate, faults.run_task_burst)
        self.describe_bucket = TokenBucket(faults.describe_tasks_rate, faults.describe_tasks_burst)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_local/"):
            return self._control(path, environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if State.faults.api_outage:
            return self._outage(environ, start_response)
        if target.startswith(ECS_TARGET_PREFIX) and self.dice.chance(State.faults.timeout_rate):
            return self._answer_lost(environ, start_response)
        if target.startswith(ECS_TARGET_PREFIX):
            if State.runner:
                State.runner.stats.api_calls[target.removeprefix(ECS_TARGET_PREFIX)] += 1
            if State.faults.latency_ms:
                time.sleep(State.faults.latency_ms / 1000)
            if target.endswith(".RunTask") and not self.bucket.take():
                if State.runner:
                    State.runner.stats.run_task_throttled += 1
                return self._throttled(start_response)
            if target.endswith(".DescribeTasks") and not self.describe_bucket.take():
                if State.runner:
                    State.runner.stats.describe_tasks_throttled += 1
                return self._throttled(start_response)
        return self.app(environ, start_response)

    def _outage(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Every AWS call fails as in an outage of the kind the faults name."""
        if State.runner:
            State.runner.stats.outage_answers += 1
        outage = State.faults.api_outage
        if outage == "throttle":
            return self._throttled(start_response)
        if outage == "5xx":
            body = {"__type": "ServiceUnavailableException", "message": "Service Unavailable (local outage)"}
            return json_response(start_response, "503 Service Unavailable", body)
        return dropped(environ, start_response)

    def _answer_lost(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        """The call is carried out (a RunTask starts its task), but its answer never arrives:
        the connection is dropped ``timeout_s`` later, as a client's read timeout ends it."""
        if State.runner:
            State.runner.stats.answers_lost += 1
        for _ in self.app(environ, lambda *args, **kwargs: None):
            pass
        time.sleep(State.faults.timeout_s)
        return dropped(environ, start_response)

    @staticmethod
    def _throttled(start_response: Callable[..., Any]) -> list[bytes]:
        return json_response(
            start_response, "400 Bad Request", {"__type": "ThrottlingException", "message": "Rate exceeded"}
        )

    def _control(self, path: str, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        if path == "/_local/stats":
            stats = State.runner.snapshot_stats() if State.runner else {}
            return json_response(start_response, "200 OK", stats)
        if path == "/_local/faults" and environ.get("REQUEST_METHOD") == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            try:
                self.set_faults(Faults.from_dict(json.loads(environ["wsgi.input"].read(length) or b"{}")))
            except (ValueError, TypeError) as err:
                return json_response(start_response, "400 Bad Request", {"error": str(err)})
            return json_response(start_response, "200 OK", State.faults.as_dict())
        if path == "/_local/faults":
            return json_response(start_response, "200 OK", State.faults.as_dict())
        return json_response(start_response, "404 Not Found", {"error": f"unknown control path {path}"})


def _count_refused() -> None:
    if State.runner:
        State.runner.stats.requests_refused += 1


class _Server(ThreadedMotoServer):
    """ThreadedMotoServer with our WSGI layers in front of moto's app: the guard, then faults."""

    middleware: FaultMiddleware | None = None
    credentials: LocalCredentials

    def _server_entry(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        self.middleware = FaultMiddleware(DomainDispatcherApplication(create_backend_app))
        guard = Guard(self.middleware, self.credentials, _count_refused)
        handler = keep_alive_handler()
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
        State.faults = self.faults
        State.tokens = ecs_rules.TokenMemory()
        self.runner = LocalRunner(
            self.config.region, self.runtime, self.faults, stop_grace_seconds=self.stop_grace_seconds
        )
        State.runner = self.runner
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
