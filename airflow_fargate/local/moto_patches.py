"""Patches on moto's ECS handlers for what moto lacks and ECS does: clientToken idempotency and
conflicts, RunTask's limits (ecs_rules), run_task failures, tasks the local runner really runs
and stops, direct describe lookups (moto's scan breaks under concurrent run_task), MISSING
failures, stopped-task retention, ListTasks paging, and tags on tasks."""

from __future__ import annotations

import threading
import time
from typing import Any

from moto.core.responses import ActionResult
from moto.ecs.models import EC2ContainerServiceBackend
from moto.ecs.responses import EC2ContainerServiceResponse

from airflow_fargate.local import ecs_rules, moto_tasks
from airflow_fargate.local.faults import CAPACITY_REASONS, Faults
from airflow_fargate.local.runner import LocalRunner


class State:
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
    runner = State.runner
    if runner is None:
        return _original_run_task(self)
    token = self._get_param("clientToken")
    params = self._get_params()
    cluster = str(params.get("cluster") or "default").rsplit("/", 1)[-1]
    ecs_rules.check_run_task(params, _container_names(self.ecs_backend, params.get("taskDefinition")))
    with State.lock:
        runner.stats.run_task_calls += 1
        replayed = State.tokens.replay(cluster, token, params) if token else None
        if replayed is not None:  # ECS idempotency: same token, same task(s)
            runner.stats.idempotent_replays += 1
            tasks = [moto_tasks.find_task(self.ecs_backend, arn) for arn in replayed]
            return ActionResult({"tasks": [t for t in tasks if t is not None], "failures": []})
        if runner.dice.chance(State.faults.run_task_failure_rate):
            runner.stats.run_task_failures_injected += 1
            reason = runner.dice.choice(CAPACITY_REASONS)
            return ActionResult({"tasks": [], "failures": [{"reason": reason, "detail": "injected by local ECS"}]})
        result = _original_run_task(self)
        tasks = result.result["tasks"]  # type: ignore[index]
        if token:
            State.tokens.remember(cluster, token, params, [t.task_arn for t in tasks])
    for task in tasks:
        runner.submit(task)
    if State.faults.run_task_response_delay_s:  # the task exists; its ARN is slow to come back
        time.sleep(State.faults.run_task_response_delay_s)
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
    runner = State.runner
    if runner is None:
        return _original_describe(self, cluster_str, tasks)
    if not tasks:
        from moto.ecs.exceptions import InvalidParameterException

        raise InvalidParameterException("Tasks cannot be empty.")
    cluster = self._get_cluster(cluster_str)
    prefix = cluster.arn.replace(":cluster/", ":task/")
    with State.lock:
        cluster_tasks = self.tasks.get(cluster.name, {})
        found = [cluster_tasks.get(ref) or cluster_tasks.get(f"{prefix}/{ref}") for ref in tasks]
    # moto serializes fields alphabetically (containers before lastStatus) after we return: hand it
    # snapshots taken under the runner's lock, never objects the runner is changing meanwhile.
    retention = State.faults.stopped_retention_s
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
    runner = State.runner
    with State.lock:
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
    with State.lock:
        task = moto_tasks.find_task(self, resource_arn)
    if task is None:
        from moto.ecs.exceptions import InvalidParameterException

        raise InvalidParameterException("The specified task is not found. Specify a valid task and try again.")
    return task


def _patches() -> list[tuple[type, str, Any, Any]]:
    """(class, attribute, our handler, moto's own) of every patch."""
    return [
        (EC2ContainerServiceResponse, "run_task", _run_task, _original_run_task),
        (EC2ContainerServiceBackend, "describe_tasks", _describe_tasks, _original_describe),
        (EC2ContainerServiceBackend, "stop_task", _stop_task, _original_stop),
        (EC2ContainerServiceResponse, "list_tasks", _list_tasks, _original_list_tasks),
        (EC2ContainerServiceResponse, "describe_tasks", _describe_tasks_response, _original_describe_response),
        (EC2ContainerServiceBackend, "_get_resource", _get_resource, _original_get_resource),
    ]


def install_patches() -> None:
    """Route moto's ECS handlers through the local runner (idempotent)."""
    for owner, name, ours, _ in _patches():
        setattr(owner, name, ours)


def uninstall_patches() -> None:
    """Give moto back its own handlers (so in-process moto tests are unaffected)."""
    for owner, name, _, original in _patches():
        setattr(owner, name, original)
    State.runner = None
    State.tokens = ecs_rules.TokenMemory()
