"""Thin ECS client: run_task with a clientToken, describe_tasks in batches of 100, stop_task.

Responses are parsed into the typed records of ecs_types; errors propagate to the caller, which
owns the retry policy (launcher.py) or the decision (executor.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config

from airflow_fargate import task_answers
from airflow_fargate.api_errors import is_throttling_answer
from airflow_fargate.aws_session import AwsTarget
from airflow_fargate.ecs_types import EcsTaskState, LaunchFailure, LaunchResult, MalformedEntry
from airflow_fargate.ownership import read_owner
from airflow_fargate.rate_limit import AdaptiveRateLimiter, describe_burst

log = logging.getLogger(__name__)

DESCRIBE_BATCH = 100  # ECS DescribeTasks accepts at most 100 task ARNs per call
LAUNCH_CONNECTIONS = 100  # RunTask calls in flight at once, at most: a whole burst of ECS's bucket
DESCRIBE_TASKS = "DescribeTasks"
DESCRIBE_WORKERS = 10
DEFINITION_RETRY_SECONDS = 300.0  # an unreadable task definition is asked for again after this
BOTO_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 4},  # botocore's max_attempts counts retries only
    connect_timeout=5,
    read_timeout=20,
    user_agent_extra="airflow-fargate",
)
# run_task is retried by the launcher (same clientToken, so never a second task), which must
# see each ThrottlingException to slow its token bucket: no hidden retries inside botocore. Its
# kwargs were validated against this same botocore model by RunTaskKwargsBuilder (with errors
# that name the setting at fault), so botocore does not validate them a second time per launch.
LAUNCH_CONFIG = BOTO_CONFIG.merge(
    Config(
        retries={"mode": "standard", "total_max_attempts": 1},
        parameter_validation=False,
        max_pool_connections=LAUNCH_CONNECTIONS,
    )
)


@dataclass
class DescribeResult:
    """What one or more DescribeTasks calls said."""

    tasks: dict[str, EcsTaskState] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # arn -> failure reason (e.g. MISSING)
    unreadable: set[str] = field(default_factory=set)  # malformed entries: neither judged nor missing
    # task definition ARN -> its essential containers (None: unreadable, judge all as essential),
    # looked up (and cached) on the describing thread for every task described.
    essential: dict[str, frozenset[str] | None] = field(default_factory=dict)

    @classmethod
    def merged(cls, results: Sequence[DescribeResult]) -> DescribeResult:
        merged = cls()
        for result in results:
            merged.tasks.update(result.tasks)
            merged.missing.update(result.missing)
            merged.unreadable.update(result.unreadable)
            merged.essential.update(result.essential)
        return merged


def _entries(response: Any, key: str) -> list[Any]:
    value = response.get(key) if isinstance(response, dict) else None
    return value if isinstance(value, list) else []


class EcsClient:
    """ECS calls the executor makes, against one cluster."""

    def __init__(
        self,
        target_factory: Callable[[], AwsTarget],
        cluster: str,
        describe_rate: float,
    ) -> None:
        self._target_factory = target_factory
        # [aws_ecs_executor] describe_tasks_rate: this process's DescribeTasks budget
        self.describe_limiter = AdaptiveRateLimiter(describe_rate, describe_burst(describe_rate))
        self.cluster = cluster
        self._client: Any = None
        self._launch_client: Any = None
        self._client_lock = threading.Lock()
        self._target: AwsTarget | None = None
        self._definition_cache: dict[str, dict[str, Any]] = {}
        self._definition_failures: dict[str, float] = {}  # ARN -> monotonic time to ask again
        self._malformed_seen: set[str] = set()
        # Threads start only when more than 100 tasks are described at once; close() joins them.
        self._describe_pool = ThreadPoolExecutor(max_workers=DESCRIBE_WORKERS, thread_name_prefix="fargate-describe")

    def _make_client(self, config: Config) -> Any:
        if self._target is None:  # one session for both clients: botocore loads its models once
            self._target = self._target_factory()
        return self._target.client("ecs", config=config)

    @property
    def client(self) -> Any:
        with self._client_lock:  # launch/describe workers must not each build a client
            if self._client is None:
                self._client = self._make_client(BOTO_CONFIG)
                task_answers.install(self._client, DESCRIBE_TASKS)
                self._budget_every_attempt(self._client)
            return self._client

    def _budget_every_attempt(self, client: Any) -> None:
        """Every DescribeTasks attempt, botocore's own retries included, takes a token from the
        budget, and every throttled attempt slows the budget down: a retry is one more call on
        ECS's shared bucket, and a throttle that a retry hid is still a throttle."""
        limiter = self.describe_limiter

        def before_send(**_: Any) -> None:
            limiter.acquire()

        def after_attempt(response: Any = None, **_: Any) -> None:
            if isinstance(response, tuple) and len(response) == 2 and is_throttling_answer(response[1]):
                limiter.on_throttle()

        client.meta.events.register(f"before-send.ecs.{DESCRIBE_TASKS}", before_send)
        client.meta.events.register(f"needs-retry.ecs.{DESCRIBE_TASKS}", after_attempt)

    @property
    def launch_client(self) -> Any:
        with self._client_lock:
            if self._launch_client is None:
                self._launch_client = self._make_client(LAUNCH_CONFIG)
                task_answers.install(self._launch_client, "RunTask")
            return self._launch_client

    def reset(self) -> None:
        """Drop the clients so the next call re-resolves the connection (rotated credentials)."""
        with self._client_lock:
            self._client = self._launch_client = self._target = None

    def run_task(self, kwargs: dict[str, Any], client_token: str) -> LaunchResult:
        response = self.launch_client.run_task(**kwargs, clientToken=client_token)
        tasks = response.get("tasks") or []
        failures = tuple(
            LaunchFailure(reason=f.get("reason", "unknown"), detail=f.get("detail"))
            for f in response.get("failures") or []
        )
        extra = tuple(t.get("taskArn", "") for t in tasks[1:])
        return LaunchResult(EcsTaskState.from_api(tasks[0]) if tasks else None, failures, extra)

    def describe_tasks(self, arns: Sequence[str]) -> DescribeResult:
        """Describe any number of tasks: one call per 100 ARNs, the calls made concurrently."""
        batches = [list(arns[i : i + DESCRIBE_BATCH]) for i in range(0, len(arns), DESCRIBE_BATCH)]
        if len(batches) > 1:
            results = list(self._describe_pool.map(self.describe_batch, batches))
        else:
            results = [self.describe_batch(batch) for batch in batches]
        return DescribeResult.merged(results)

    def describe_batch(self, batch: Sequence[str]) -> DescribeResult:
        """One DescribeTasks call (at most 100 ARNs), paced by the describe budget, parsed; the
        essential containers of every task's definition are looked up here too."""
        response = self._describe_call(list(batch))
        result = DescribeResult()
        anonymous = False  # a malformed entry without an ARN: any ARN of the batch may be it
        for entry in _entries(response, "tasks"):
            try:
                state = EcsTaskState.from_api(entry)
            except MalformedEntry as err:
                arn = entry.get("taskArn") if isinstance(entry, dict) else None
                arn = arn if isinstance(arn, str) and arn else None
                self._report_malformed(arn, err)
                if arn:
                    result.unreadable.add(arn)
                anonymous = anonymous or arn is None
                continue
            result.tasks[state.arn] = state
        for failure in _entries(response, "failures"):
            if isinstance(failure, dict) and isinstance(failure.get("arn"), str):
                result.missing[failure["arn"]] = str(failure.get("reason") or "MISSING")
        for arn in [] if anonymous else batch:  # an ARN in neither list is as good as missing
            if arn not in result.tasks and arn not in result.missing and arn not in result.unreadable:
                result.missing[arn] = "MISSING"
        # Looked up the first time a definition is seen (cached), not when its task stops: the
        # round that finds a task STOPPED then makes no second call and is applied a beat sooner.
        for definition_arn in {
            state.task_definition_arn for state in result.tasks.values() if state.task_definition_arn
        }:
            result.essential[definition_arn] = self.essential_containers(definition_arn)
        return result

    def _report_malformed(self, arn: str | None, err: Exception) -> None:
        """Warn once per task (a bounded memory of which), not on every poll."""
        key = arn or "(no taskArn)"
        if key in self._malformed_seen:
            return
        if len(self._malformed_seen) > 10_000:
            self._malformed_seen.clear()
        self._malformed_seen.add(key)
        log.warning("Ignoring a malformed describe_tasks entry for %s: %s; the other tasks are applied.", key, err)

    def _describe_call(self, batch: list[str], **extra: Any) -> Any:
        """Every DescribeTasks of this process goes through the budget (polls, adoption, the
        orphan sweep, failure output), so together they stay inside it: each attempt waits for
        a token and reports a throttle (``_budget_every_attempt``)."""
        response = self.client.describe_tasks(cluster=self.cluster, tasks=batch, **extra)
        self.describe_limiter.on_success()
        return response

    def close(self) -> None:
        """Join the describe threads (executor shutdown)."""
        self._describe_pool.shutdown(wait=True, cancel_futures=True)

    def default_capacity_provider_strategy(self) -> list[Any]:
        """The cluster's default capacity provider strategy ([] if it has none)."""
        clusters = self.client.describe_clusters(clusters=[self.cluster]).get("clusters") or []
        return list(clusters[0].get("defaultCapacityProviderStrategy") or []) if clusters else []

    def list_running_arns(self, started_by: str, pace: Callable[[], None]) -> list[str]:
        """ARNs of the cluster's tasks with this startedBy whose desired status is RUNNING (also
        those still PROVISIONING/PENDING), every page; ``pace`` runs before each call."""
        arns: list[str] = []
        token: str | None = None
        while True:
            pace()
            kwargs: dict[str, Any] = {"cluster": self.cluster, "startedBy": started_by, "desiredStatus": "RUNNING"}
            if token:
                kwargs["nextToken"] = token
            response = self.client.list_tasks(maxResults=100, **kwargs)
            arns.extend(arn for arn in response.get("taskArns") or [] if isinstance(arn, str))
            token = response.get("nextToken")
            if not token:
                return arns

    def describe_with_tags(self, arns: Sequence[str], pace: Callable[[], None]) -> list[Any]:
        """Raw describe_tasks entries, tags included, for up to 100 ARNs; ``pace`` (the sweep's own
        pace, and its point to give up at shutdown) runs first, then the describe budget's."""
        pace()
        return _entries(self._describe_call(list(arns), include=["TAGS"]), "tasks")

    def probe(self) -> None:
        """One cheap call that says whether the ECS API answers (the circuit breaker's probe):
        DescribeClusters of our cluster, metered apart from RunTask and DescribeTasks."""
        self.client.describe_clusters(clusters=[self.cluster])

    def find_launched(self, started_by: str, queueing_id: str) -> LaunchResult | None:
        """The running (or starting) task this deployment launched for one queueing, found by its
        startedBy and its queueing tag; None when there is none."""
        arns = self.list_running_arns(started_by, lambda: None)
        for start in range(0, len(arns), DESCRIBE_BATCH):
            for entry in self.describe_with_tags(arns[start : start + DESCRIBE_BATCH], lambda: None):
                owner = read_owner(entry.get("tags") if isinstance(entry, dict) else None)
                if owner is not None and owner.queueing == queueing_id:
                    return LaunchResult(EcsTaskState.from_api(entry))
        return None

    def stop_task(self, arn: str, reason: str) -> None:
        self.client.stop_task(cluster=self.cluster, task=arn, reason=reason[:255])

    def task_definition(self, task_definition_arn: str) -> dict[str, Any] | None:
        """A task definition by ARN (cached: a revision never changes), None if unreadable.

        Failures of any kind (access denied, throttling, a read timeout) are remembered for
        DEFINITION_RETRY_SECONDS, so a thousand stopped tasks of one definition cost one call."""
        if task_definition_arn in self._definition_cache:
            return self._definition_cache[task_definition_arn]
        if time.monotonic() < self._definition_failures.get(task_definition_arn, 0.0):
            return None
        try:
            definition = self.client.describe_task_definition(taskDefinition=task_definition_arn)["taskDefinition"]
        except Exception as err:
            self._definition_failures[task_definition_arn] = time.monotonic() + DEFINITION_RETRY_SECONDS
            log.warning(
                "Cannot read task definition %s (%s: %s); its containers count as essential for the next %.0fs.",
                task_definition_arn,
                type(err).__name__,
                err,
                DEFINITION_RETRY_SECONDS,
            )
            return None
        self._definition_cache[task_definition_arn] = definition
        return definition

    def essential_containers(self, task_definition_arn: str | None) -> frozenset[str] | None:
        """Names of the essential containers of a task definition (None = treat all as essential)."""
        definition = self.task_definition(task_definition_arn) if task_definition_arn else None
        if definition is None:
            return None
        return frozenset(c["name"] for c in definition.get("containerDefinitions", []) if c.get("essential", True))
