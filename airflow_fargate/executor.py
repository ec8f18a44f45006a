"""FargateExecutor: Airflow glue only. Each Airflow task instance runs as its own ECS task.

Configuration (settings.py) becomes run_task kwargs (run_task.py), launches go through the
launcher (retry policy), describe results go through the tracker (state mapping), and this class
turns the verdicts into Airflow events. sync() never raises: one task's problem fails that task.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.configuration import conf as airflow_conf
from airflow.executors.base_executor import BaseExecutor

from airflow_fargate import metadata_db, work
from airflow_fargate.api_errors import backoff_seconds, is_credentials_error, record_api_error
from airflow_fargate.aws_session import AwsTarget, aws_target
from airflow_fargate.breaker import CircuitBreaker
from airflow_fargate.checks import (
    Status,
    check_execution_config_function,
    check_tagging_permission,
    startup_problems,
)
from airflow_fargate.compat import (
    AIRFLOW_V3,
    command_for_adopted,
    record_connection_test_failure,
    requeue_try_for_relaunch,
    stats,
    task_instance_key,
)
from airflow_fargate.ecs import DescribeResult, EcsClient
from airflow_fargate.ecs_types import EcsTaskState, LaunchResult
from airflow_fargate.errors import FargateConfigError, shorten_lines
from airflow_fargate.launch_requests import BuildOnce, LaunchRequest
from airflow_fargate.launcher import Launcher
from airflow_fargate.log_view import build_task_output
from airflow_fargate.logs import CloudWatchLogReader, FailureOutput, TaskOutput
from airflow_fargate.ownership import ownership_tags, started_by
from airflow_fargate.poller import Ended, Poller
from airflow_fargate.quiet_start import AfterFirstLaunches
from airflow_fargate.run_task import RunTaskKwargsBuilder, names_launch_capacity
from airflow_fargate.settings import ExecutorSettings, load_settings, option_label
from airflow_fargate.startup_error import raised_at_start
from airflow_fargate.sweep import Action, Listed, Ownership, Snapshot, decide
from airflow_fargate.sweeper import OrphanSweeper
from airflow_fargate.task_events import TaskEventKeeper
from airflow_fargate.tracker import Outcome, TrackedTask, Tracker, Verdict
from airflow_fargate.try_reports import TryReports
from airflow_fargate.wakeup import Wakeup

TERMINATE_WAIT_SECONDS = 60.0
FAILURE_OUTPUT_WAIT_SECONDS = 5.0
# How long a heartbeat waits for answers about to arrive (rows asked for, calls on the wire):
# an answer applied now instead of a heartbeat later keeps the scheduler loop from idling.
SETTLE_SECONDS = 0.04
# A launch whose RunTask outcome stays unknown this long (counting only time the API answered
# other calls) is looked up by its tags: adopted if it exists, failed if it surely does not.
LAUNCH_OUTCOME_DEADLINE_SECONDS = 300.0
# A workload queued longer than this gets a fresh execution-API token when its kwargs are built
# (the one minted at queueing lasts [scheduler] task_queued_timeout, 600 s by default); one whose
# launch outcome is unknown is first looked up by its tags, then launched afresh if none exists.
TOKEN_REFRESH_SECONDS = 120.0


class FargateExecutor(BaseExecutor):
    """Runs each Airflow task instance as one ECS task (Fargate, Fargate Spot or EC2)."""

    is_local = False
    is_production = True
    serve_logs = False
    # Airflow 3.3 work types (work.py): deadline-alert callbacks and "test connection" run as ECS tasks.
    supports_callbacks = True
    supports_connection_test = True
    # One instance per team, each reading its team's [aws_ecs_executor]/[fargate] (self.conf).
    supports_multi_team = True

    # Built in start(), which the scheduler calls before handing the executor any work. A process
    # that only shows task logs (the api-server) never starts it: get_task_log builds a reader.
    settings: ExecutorSettings
    kwargs_builder: RunTaskKwargsBuilder
    ecs: EcsClient
    tracker: Tracker
    launcher: Launcher
    poller: Poller
    sweeper: OrphanSweeper
    log_reader: CloudWatchLogReader
    output: TaskOutput
    failure_output: FailureOutput

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = time.monotonic
        self._started = False
        self._log_output: TaskOutput | None = None
        self._task_events = TaskEventKeeper(self._task_event_logs)
        self._successes: list[tuple[Any, str | None]] = []  # tries that exited 0 in this describe batch
        self._poke_check_paused_until = 0.0  # after a failed metadata DB read (_report_successes)

    def _stat(self, kind: str, name: str, value: float = 1) -> None:
        """One metric through Airflow's Stats, tagged with this executor and its team (a team's
        executor is its own series: two teams' gauges never overwrite each other)."""
        team = getattr(self, "team_name", None)
        tags = {"executor": type(self).__name__, **({"team_name": str(team)} if team else {})}
        getattr(stats, kind)(name, value, tags=tags)

    def _load_settings(self) -> ExecutorSettings:
        # Airflow 3.1+: self.conf is the team-scoped ExecutorConf; Airflow 2 reads the global conf.
        return load_settings(getattr(self, "conf", None))

    def _aws_target(self) -> AwsTarget:
        """Session (re-resolved after credential problems) for every AWS client of the executor."""
        return aws_target(self.settings.aws_conn_id, self.settings.region_name)

    # -- lifecycle --

    def start(self) -> None:
        """Validate configuration (and optionally AWS reachability), then build every part.

        Raises FargateConfigError before any lasting thread exists (the start-up calls' pool is
        joined first), so a bad configuration stops the scheduler with that one message, printed
        once (startup_error)."""
        try:
            self._start()
        except FargateConfigError as err:
            raise raised_at_start(err) from None

    def _start(self) -> None:
        self.settings = settings = self._load_settings()
        self.ecs = EcsClient(self._aws_target, settings.cluster, settings.describe_tasks_rate)
        self.ecs.client  # noqa: B018 - the session and its models, once, before the calls below
        # The start-up calls go out together: start() costs about one round trip, not five.
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="fargate-start") as pool:
            strategy = pool.submit(self._cluster_default_strategy, settings)
            health = pool.submit(self._health_check, settings) if settings.check_health_on_startup else None
            metrics = pool.submit(self._stat, "gauge", "fargate.tasks.running", 0)  # Airflow's metrics registry
            self.ecs.launch_client  # noqa: B018 - create clients now, not inside the first heartbeats
            # builds and validates the configured kwargs
            self.kwargs_builder = RunTaskKwargsBuilder(settings, cluster_default_strategy=strategy.result())
            function_check = check_execution_config_function(settings, self.kwargs_builder)
            if function_check is not None and function_check.status is Status.WARN:
                self.log.warning("%s: %s", option_label("execution_config_function"), function_check.detail)
            if health is not None:
                health.result()
            metrics.result()
        self.tracker = Tracker(settings.max_run_task_attempts, start_timeout_seconds=settings.task_start_timeout)
        self.log_reader = CloudWatchLogReader(self._aws_target, settings.region_name)
        self.output = TaskOutput(self.ecs, self.log_reader, settings.container_name)
        self.failure_output = FailureOutput(self.output)
        self._wakeup = Wakeup()
        self.breaker = CircuitBreaker(self._clock)
        self.launcher = Launcher(
            self._run_task,
            rate=settings.run_task_rate,
            burst=settings.run_task_burst,
            breaker=self.breaker,
            probe=self._probe_api,
            find=self._find_launched,
            wakeup=self._wakeup,
        )
        # not in start() and not in the first launches' way: it can only warn, and takes two round trips
        self._tagging_probe: AfterFirstLaunches | None = None
        if settings.check_health_on_startup:
            self._tagging_probe = AfterFirstLaunches(
                self._probe_tagging, "fargate-tagging-probe", lambda: self.launcher.in_flight > 0, clock=self._clock
            )
        self.poller = Poller(
            self._describe,
            read_reports=TryReports() if settings.read_task_states else None,
            max_interval=settings.max_poll_interval,
            running_interval=settings.running_check_interval,
            wakeup=self._wakeup,
        )
        self.sweeper = OrphanSweeper(
            functools.partial(self.ecs.list_running_arns, started_by(settings.deployment_id, settings.team)),
            self.ecs.describe_with_tags,
            self.ecs.stop_task,
            clock=self._clock,
        )
        self._sweep_interval = airflow_conf.getfloat("scheduler", "orphaned_tasks_check_interval", fallback=300.0)
        self._next_sweep_at = self._clock()  # the first sync() sweeps: at start, tasks of a crashed scheduler
        self._swept: dict[Any, list[Listed]] = {}
        self._started = True

    def _probe_tagging(self) -> None:
        """The health check's tagging permission probe (checks.check_tagging_permission)."""
        check = check_tagging_permission(self.ecs.client, self.settings.cluster)
        if check.status is not Status.PASS:
            self.log.warning("FargateExecutor health check: %s: %s", check.name, check.detail)

    def _health_check(self, settings: ExecutorSettings) -> None:
        """Refuse to start with a readable message when the cluster or task definition is wrong."""
        problems, warnings = startup_problems(
            self.ecs.client, settings.cluster, settings.task_definition, settings.container_name
        )
        for warning in warnings:
            self.log.warning("FargateExecutor health check: %s", warning)
        if problems:
            raise FargateConfigError(
                "FargateExecutor health check failed (set [aws_ecs_executor] check_health_on_startup = "
                "False to skip it): " + "; ".join(problems)
            )
        self.log.info("FargateExecutor health check passed for cluster %s.", settings.cluster)

    def _cluster_default_strategy(self, settings: ExecutorSettings) -> list[Any]:
        """The cluster's default capacity provider strategy, which launches naming neither
        launchType nor capacityProviderStrategy get instead of FARGATE (read once, as the Amazon
        provider does); [] when the configuration names one or the cluster has none."""
        if names_launch_capacity(settings):
            return []
        try:
            strategy = self.ecs.default_capacity_provider_strategy()
        except Exception as err:
            self.log.warning("Cannot read cluster %s (%s); launching with FARGATE.", settings.cluster, err)
            return []
        if strategy:
            self.log.info("Launching with the default capacity provider strategy of %s: %s", settings.cluster, strategy)
        return strategy

    def _run_task(self, kwargs: dict[str, Any], client_token: str) -> LaunchResult:
        return self.ecs.run_task(kwargs, client_token)  # looked up per call, so tests can stand in for it

    def _probe_api(self) -> None:
        self.ecs.probe()  # looked up per call, as _run_task

    def _find_launched(self, queueing_id: str) -> LaunchResult | None:
        return self.ecs.find_launched(started_by(self.settings.deployment_id, self.settings.team), queueing_id)

    # -- accepting work --

    def queue_workload(self, workload: Any, session: Any = None) -> None:
        """Airflow 3: the base class files each workload type in its queue. A type this executor
        cannot run (from a newer Airflow) is logged and left to Airflow's own queued timeouts
        instead of raising out of the scheduler loop."""
        try:
            super().queue_workload(workload, session)
        except (NotImplementedError, ValueError, TypeError) as err:
            self.log.error("FargateExecutor cannot queue %s: %s", type(workload).__name__, err)

    def _process_workloads(self, workloads: Sequence[Any]) -> None:
        """Airflow 3: accept task, callback and connection-test workloads (each serialized to a
        container command on a launch worker). Never raises for one workload's problem."""
        queues = (self.queued_tasks, *self._other_queues())
        for workload in workloads:
            try:
                item = work.work_item(workload)
            except work.UnsupportedWorkload as err:
                self.log.error("%s; it is left to Airflow's queued timeouts.", err)
                continue
            for queued in queues:
                queued.pop(item.key, None)
            self.running.add(item.key)
            self._accept(TrackedTask(item.key, None, item.executor_config, item.queue, item.kind, workload=workload))

    def log_task_event(self, *, event: str, extra: str, ti_key: Any) -> None:
        """Airflow's, plus a reference that keeps the row until the scheduler saved it (task_events.py)."""
        before = len(self._task_event_logs)
        super().log_task_event(event=event, extra=extra, ti_key=ti_key)
        self._task_events.keep_added_since(before)

    def _other_queues(self) -> list[dict[Any, Any]]:
        """The base class's queues of callbacks and connection tests (Airflow 3.3+)."""
        names = ("queued_callbacks", "queued_connection_tests")
        return [queued for name in names if isinstance(queued := getattr(self, name, None), dict)]

    def execute_async(
        self, key: Any, command: Any, queue: str | None = None, executor_config: Any | None = None
    ) -> None:
        """Airflow 2: the base class passes an ``airflow tasks run ...`` command list."""
        self._accept(TrackedTask(key, list(command), executor_config, queue))

    def _accept(self, task: TrackedTask) -> None:
        """Track a task; a bad executor_config fails it now (checked once per distinct config)."""
        try:
            self.kwargs_builder.check_executor_config(task.executor_config, task.queue)
        except Exception as err:  # whatever is wrong with one task's config fails that task only
            self._fail(task, f"Invalid executor_config: {err}")
            return
        previous = self.tracker.add(task, self._clock())
        if previous is not None:
            self.log.info(
                "%s queued again (reschedule, deferral or clear); its previous ECS task %s is left to finish.",
                work.describe(task.key),
                previous.arn or "(launch in flight)",
            )

    # -- the heartbeat --

    def sync(self) -> None:
        """Apply finished launches and answers, ask for the tries' rows, hand due tasks to the
        launcher, wait a moment (SETTLE_SECONDS) for answers about to arrive and apply them too.

        Never blocks on AWS beyond that moment and never raises into the scheduler loop."""
        started = time.monotonic()  # real time, as the launcher's and poller's clocks
        self._guarded(self._apply_launches, "applying launch results failed; will retry next heartbeat")
        self._guarded(self._apply_answers, "describing ECS tasks failed; will retry next heartbeat")
        self.poller.track(self.tracker.watched())
        self._guarded(self._launch_due, "launching ECS tasks failed; will retry next heartbeat")
        self._settle(started)
        self._guarded(self._apply_launches, "applying launch results failed; will retry next heartbeat")
        self._guarded(self._apply_answers, "describing ECS tasks failed; will retry next heartbeat")
        self._guarded(self._sweep, "the orphan sweep failed; will retry next round")
        self._release_failures()
        self._task_events.release_saved()
        self._report_breaker()
        if self._tagging_probe is not None:
            self._tagging_probe.poll()
        self._stat("gauge", "fargate.tasks.pending", self.tracker.waiting_count)
        self._stat("gauge", "fargate.tasks.running", self.tracker.watched_count)

    def _guarded(self, step: Any, what: str) -> None:
        """One step of the heartbeat; its failure is logged (quietly while the API is out)."""
        try:
            step()
        except Exception as err:
            if is_credentials_error(err):
                self._refresh_credentials(str(err))
            elif self.breaker.is_open:
                self.log.debug("FargateExecutor: %s (the ECS API is out): %s", what, err)
            else:
                self.log.exception("FargateExecutor: %s.", what)

    def _settle(self, started: float) -> None:
        """Wait (at most until SETTLE_SECONDS after the heartbeat started) while an answer is
        expected before then: the rows just asked for, a describe call about to answer, a
        RunTask sent in this heartbeat."""
        deadline = started + SETTLE_SECONDS

        def expected_soon() -> bool:
            times = [t for t in (self.launcher.expected_by(started), self.poller.expected_by()) if t is not None]
            return bool(times) and min(times) <= deadline

        self._wakeup.wait_while(expected_soon, deadline)

    def _report_breaker(self) -> None:
        """Log each start and end of an ECS API outage once, with metrics."""
        for change in self.breaker.take_changes():
            if change.opened:
                self._stat("incr", "fargate.ecs_api.outage")
                self.log.warning(
                    "ECS API outage (%s): launches pause and one probe call at a time checks the API; "
                    "no task is failed for it.",
                    change.reason,
                )
            else:
                self._stat("timing", "fargate.ecs_api.outage_duration", change.outage_seconds * 1000)
                self.log.warning(
                    "The ECS API answers again after %.0fs of outage; launching resumes.", change.outage_seconds
                )
                self._next_sweep_at = min(self._next_sweep_at, self._clock())  # the sweep missed the outage
                self.launcher.limiter.restore()  # the outage's throttles said nothing of our pace
        self._stat("gauge", "fargate.ecs_api.available", 0 if self.breaker.is_open else 1)

    # -- the orphan sweep (sweep.py decides; here its verdicts become tracker state and stops) --

    def _sweep(self) -> None:
        """Request a sweep when one is due; apply the last one that finished. Without a scheduler
        job (the executor run outside a scheduler) nothing names this executor's tasks."""
        if self.job_id is None:
            return
        now = self._clock()
        if now >= self._next_sweep_at and not self.sweeper.busy:
            self._next_sweep_at = now + self._sweep_interval
            self.sweeper.request(self.tracker.active_arns(), self.tracker.queueing_ids())
        result = self.sweeper.take()
        if isinstance(result, Exception):
            record_api_error(self.breaker, result)
            if is_credentials_error(result):
                self._refresh_credentials(str(result))
            quiet = self.log.debug if self.breaker.is_open else self.log.warning  # the outage is logged once
            quiet("FargateExecutor: listing this deployment's ECS tasks failed: %s", result)
        elif result is not None:
            self._apply_sweep(result)

    def _apply_sweep(self, snapshot: Snapshot) -> None:
        known = Ownership(
            our_job=str(self.job_id),
            deployment=self.settings.deployment_id,
            tracked_arns=set(self.tracker.active_arns()),
            tracked_queueings=self.tracker.queueing_ids(),
        )
        decisions = decide(snapshot, known, metadata_db)
        self.log.debug(
            "Orphan sweep: %d ECS task(s) of this deployment listed, %d untracked and still up",
            snapshot.listed,
            len(snapshot.tasks),
        )
        self._swept = {}
        for arn in self.tracker.settle_listed(snapshot.listed_arns, snapshot.started_at, self._clock()):
            self.log.warning("Stopping ECS task %s: its try ended over 5 minutes ago and it is still up.", arn)
            self.sweeper.stop_task(arn, "FargateExecutor: its Airflow try ended long ago; this container never exited")
        for decision in decisions:
            identity = decision.task.owner.try_identity if decision.task.owner else None
            if decision.action is Action.STOP:
                self.log.warning("Orphan sweep: stopping ECS task %s: %s", decision.task.arn, decision.reason)
                self._stat("incr", "fargate.orphans.stopped")
                self.sweeper.stop_task(decision.task.arn, f"FargateExecutor orphan sweep: {decision.reason}")
            elif decision.action is Action.ADOPT and identity is not None:
                previous_job = decision.row.queued_by_job_id if decision.row else None
                if metadata_db.claim_try(identity, decision.task.arn, previous_job, self.job_id):
                    self._track_adopted(task_instance_key(*identity), decision.task.arn, decision.row)
                    self._stat("incr", "fargate.orphans.adopted")
                    self.log.info("Orphan sweep: adopted ECS task %s: %s", decision.task.arn, decision.reason)
            elif identity is not None:
                self._swept.setdefault(identity, []).append(decision.task)  # try_adopt may still claim it
                self.log.debug("Orphan sweep: leaving ECS task %s: %s", decision.task.arn, decision.reason)

    def _track_adopted(self, key: Any, arn: str, row: Any) -> None:
        self.tracker.add(
            TrackedTask(
                key=key,
                command=None,
                executor_config=getattr(row, "executor_config", None),
                queue=getattr(row, "queue", None),
                launches=1,
                arn=arn,
                launched_at=self._clock(),
            )
        )
        self.running.add(key)

    def _launch_due(self) -> None:
        """Hand tasks whose back-off has passed to the launcher, oldest first, as many as it has
        room for (returns at once; the rest go on later heartbeats, as the bucket drains).

        Serializing the workload and building/validating kwargs (ownership tags included) happen
        on the launch workers, and only the launcher's room is handed over, so a heartbeat that
        10,000 tasks were queued in costs little more than one with 300."""
        requests = []
        for task in self.tracker.due_for_launch(self._clock(), self.launcher.room()):
            if task.command is None and task.workload is None:  # adopted, and now it must be relaunched
                try:
                    task.command = command_for_adopted(task.key, self)  # the ORM: scheduler thread only
                except Exception as err:
                    self._fail(task, f"Cannot rebuild the command of adopted task: {err}")
                    continue
            task.launching = True
            if task.unknown_since is not None and not task.find_next:
                self._note_unknown_outcome(task, self._clock())  # its kwargs' token may have aged
            if task.prepared is None or task.prepared[0] != task.token_generation:
                fresh = task.workload is not None and (self._token_aged(task, self._clock()) or task.mint_token)
                task.mint_token = False
                build = functools.partial(
                    self._kwargs_for,
                    key=task.key,
                    kind=task.kind,
                    queueing_id=task.queueing_id,
                    command=task.command,
                    workload=work.with_fresh_token(task.workload, self.jwt_generator) if fresh else task.workload,
                    executor_config=task.executor_config,
                    queue=task.queue,
                )
                task.prepared = (task.token_generation, BuildOnce(build))
            token = self.tracker.client_token(task.key)
            requests.append(LaunchRequest(task.key, task.prepared[1], token, task.queueing_id, find=task.find_next))
        self.launcher.submit(requests)

    def _kwargs_for(
        self,
        *,
        key: Any,
        kind: str,
        queueing_id: str,
        command: list[str] | None,
        workload: Any,
        executor_config: Any,
        queue: str | None,
    ) -> dict[str, Any]:
        """run_task kwargs for one launch, its ownership tags included (runs on a launch worker
        thread; touches no shared state)."""
        tags = ownership_tags(key, kind, queueing_id, self.job_id, self.settings.deployment_id)
        return self.kwargs_builder.build(
            command if command is not None else work.container_command(workload), executor_config, tags, queue
        )

    def _apply_launches(self) -> None:
        """Turn finished run_task calls into tracker state and Airflow events (scheduler thread)."""
        now = self._clock()
        launched = 0
        for request, outcome in self.launcher.drain():
            task = self.tracker.get(request.key)
            # revoked, failed or queued again (superseded) while the call was in flight
            if task is None or not task.launching or task.queueing_id != request.queueing_id:
                if isinstance(outcome, LaunchResult) and outcome.task is not None:
                    self._stop_quietly(outcome.task.arn, "Airflow no longer wants this launch (revoked or requeued)")
                continue
            if isinstance(outcome, LaunchResult):
                assert outcome.task is not None
                for extra in outcome.extra_arns:  # count is always 1; should ECS start more, none may run
                    self._stop_quietly(extra, f"More ECS tasks than the one launched for {work.describe(task.key)}")
                self.tracker.record_launch(task.key, outcome.task.arn, now)
                self._stat("incr", "fargate.run_task.success")
                self.log.debug("Launched %s as ECS task %s (launch %d).", task.key, outcome.task.arn, task.launches)
                launched += 1
                # RUNNING with the ARN as info: the scheduler stores it as external_executor_id.
                self.running_state(task.key, outcome.task.arn)
                continue
            self._stat("incr", "fargate.run_task.failure")
            if outcome.not_found and task.refresh_next:  # nothing started: launch with a fresh token
                self.tracker.launch_afresh(task.key, now)
                continue
            if outcome.not_found:
                self._fail(task, f"{outcome.reason}; last launch errors: " + "; ".join(task.reasons[-3:]))
                continue
            if outcome.credentials:
                self._refresh_credentials(outcome.reason)
            if outcome.conflict:
                self._stat("incr", "fargate.run_task.token_conflict")
                self.log.warning(
                    "RunTask for %s answered %s; launching again with a new clientToken.",
                    work.describe(task.key),
                    outcome.reason,
                )
            if outcome.outcome_unknown:
                self._note_unknown_outcome(task, now)
            retry_at = now + backoff_seconds(task.launches + 1) if outcome.retryable else None
            verdict = self.tracker.record_launch_failure(
                task.key, outcome.reason, retry_at, outcome.outcome_unknown, counts=not outcome.credentials
            )
            if verdict.outcome is Outcome.FAILED:
                self._fail(task, verdict.reason)
            elif self.breaker.is_open:
                self.log.debug("Launching %s waits for the ECS API (%s).", task.key, outcome.reason)
            else:
                self.log.warning(
                    "Launching %s failed (%s); retrying in %.0fs%s.",
                    task.key,
                    outcome.reason,
                    (retry_at or now) - now,
                    " with the same clientToken" if outcome.outcome_unknown else "",
                )
        if launched:
            self.log.info("Launched %d ECS task(s); %d launch(es) in flight.", launched, self.launcher.in_flight)
        throttled, self.launcher.throttled = self.launcher.throttled, 0
        if throttled:
            self._stat("incr", "fargate.run_task.throttled", throttled)

    def _note_unknown_outcome(self, task: TrackedTask, now: float) -> None:
        """A RunTask call of this token may or may not have started the task. Past the deadline
        (time the API was out not counted), the next request looks for the task instead."""
        outage = self.breaker.outage_seconds()
        if task.unknown_since is None:
            task.unknown_since = (now, outage)
        since, outage_then = task.unknown_since
        if (now - since) - (outage - outage_then) >= LAUNCH_OUTCOME_DEADLINE_SECONDS:
            task.find_next = True
        elif self._token_aged(task, now):
            task.find_next = task.refresh_next = True  # its kwargs carry an aging token

    @staticmethod
    def _token_aged(task: TrackedTask, now: float) -> bool:
        """The try's workload carries an execution-API token minted over TOKEN_REFRESH_SECONDS ago."""
        return task.workload is not None and now - task.accepted_at > TOKEN_REFRESH_SECONDS

    def _refresh_credentials(self, reason: str) -> None:
        """Missing/expired/rotated credentials: rebuild the clients so the next calls resolve the
        connection (or default chain) again. No scheduler restart, no task lost meanwhile."""
        self.log.warning("AWS credentials problem (%s); re-resolving credentials for the next calls.", reason)
        self._stat("incr", "fargate.credentials.refresh")
        self.ecs.reset()
        self.log_reader.reset()

    def _stop_quietly(self, arn: str, reason: str) -> None:
        try:
            self.ecs.stop_task(arn, reason)
        except Exception:
            self.log.exception("Could not stop ECS task %s", arn)

    def _apply_answers(self) -> None:
        """Apply every answer the poller has handed over (tries that ended, describe results);
        a failed call is raised after the others are applied."""
        failure: Exception | None = None
        for answer in self.poller.take():
            if isinstance(answer, Exception):
                failure = answer
            elif isinstance(answer, Ended):
                self._apply_ended(answer)
            else:
                self._apply_describe(answer)
        self._report_successes()
        if failure is not None:
            raise failure

    def _poll_now(self) -> None:
        """Describe and apply synchronously (shutdown paths, where waiting is the point)."""
        arns = self.tracker.active_arns()
        if arns:
            self._apply_describe(self.ecs.describe_tasks(arns))

    def _describe(self, arns: Sequence[str]) -> DescribeResult:
        started = time.perf_counter()
        try:
            result = self.ecs.describe_batch(arns)
        except Exception as err:
            record_api_error(self.breaker, err)
            raise
        self.breaker.answered()
        self._stat("timing", "fargate.describe.latency", (time.perf_counter() - started) * 1000)
        return result

    def _apply_describe(self, result: DescribeResult) -> None:
        """Judge every described task; one task's surprise is logged and costs only that task."""
        now = self._clock()
        for arn, state in result.tasks.items():
            try:
                self._apply_state(arn, state, result, now)
            except Exception:
                self.log.exception("FargateExecutor: could not apply the state of ECS task %s; next poll.", arn)
        for arn, reason in result.missing.items():
            self.tracker.settle_retired(arn, None, now)
            task = self.tracker.by_arn(arn)
            if task is not None:
                self._apply(task, self.tracker.observe_missing(arn, reason, now), now)
        self._report_successes()

    def _report_successes(self) -> None:
        """Report the tries whose container exited 0, except a sensor's poke whose task instance is
        already SCHEDULED for its next poke: Airflow would read that success as a task killed
        externally (metadata_db.pokes_awaiting_their_next). That try is simply no longer ours."""
        finished, self._successes = self._successes, []
        if not finished:
            return
        pokes: set[Any] = set()
        if self._clock() >= self._poke_check_paused_until:
            try:
                pokes = metadata_db.pokes_awaiting_their_next(key for key, _ in finished)
            except Exception as err:  # the DB is the scheduler's own: rare, so say it once a minute
                self._poke_check_paused_until = self._clock() + 60
                self.log.warning(
                    "FargateExecutor: could not read finished tries' states (%s: %s); reporting every finished "
                    "try for a minute without checking for sensor pokes.",
                    type(err).__name__,
                    shorten_lines(str(err)),
                )
        for key, arn in finished:
            if key in pokes:
                self.log.info("%s: a sensor's poke ended and its next poke is already scheduled; not reported.", key)
                self.running.discard(key)
            else:
                self.success(key, arn)

    def _apply_state(self, arn: str, state: EcsTaskState, result: DescribeResult, now: float) -> None:
        task = self.tracker.by_arn(arn)
        if task is None:  # finished, revoked, relaunched or superseded since the poll started
            if self.tracker.settle_retired(arn, state.last_status, now):
                self._stop_quietly(arn, "Its Airflow try was queued again long ago; this container never exited")
            return
        definition = state.task_definition_arn
        # None = unreadable definition or not stopped: every container counts as essential
        essential = result.essential.get(definition) if definition and state.last_status == "STOPPED" else None
        self._apply(task, self.tracker.observe(state, essential, now), now, definition)

    def _apply(self, task: TrackedTask, verdict: Verdict, now: float, task_definition_arn: str | None = None) -> None:
        if verdict.stop_first and task.arn:
            self._stop_quietly(task.arn, verdict.reason)
        if verdict.outcome is Outcome.SUCCESS:
            self.tracker.remove(task.key)
            self._succeeded(task)
        elif verdict.outcome is Outcome.FAILED and task.arn and task_definition_arn:
            # The container ran: report the failure with its last output lines (fetched off-heartbeat).
            self.tracker.remove(task.key)
            self.failure_output.hold(task.key, verdict.reason, task.arn, task_definition_arn, now)
        elif verdict.outcome is Outcome.FAILED:
            self._fail(task, verdict.reason)
        elif verdict.outcome is Outcome.RELAUNCH:
            blocker = self._requeue_try(task.key) if task.kind == work.TASK else None
            if blocker is not None:
                self._fail(task, f"{verdict.reason}; not relaunched: {blocker}")
                return
            self.log.warning("Relaunching %s (same try, launch %d): %s", task.key, task.launches + 1, verdict.reason)
            self._stat("incr", "fargate.relaunch")
            self._stat("incr", f"fargate.relaunch.{verdict.cause or 'other'}")
            self.tracker.prepare_relaunch(task.key, now + backoff_seconds(task.launches))

    def _succeeded(self, task: TrackedTask, maybe_a_poke: bool = True) -> None:
        """A try's container exited 0, or its row says it ended. On Airflow 3 one that may have
        been a sensor's poke is reported after the batch (_report_successes checks the pokes)."""
        if maybe_a_poke and task.kind == work.TASK and AIRFLOW_V3:
            self._successes.append((task.key, task.arn))
        else:
            self.success(task.key, task.arn)

    def _apply_ended(self, ended: Ended) -> None:
        """Tries whose own row says they ended (success, skipped, deferred, up_for_reschedule):
        reported now, not when ECS stops their container (on Fargate, tens of seconds later).
        The container finishes on its own (callbacks, the remote log upload); the orphan sweep
        stops one still up RETIRED_GRACE_SECONDS later. Only a poke (up_for_reschedule) can be
        SCHEDULED for its next poke by the time Airflow reads the report: only pokes are checked."""
        now = self._clock()
        for arn in ended.arns:
            task = self.tracker.by_arn(arn)
            if task is None:  # reported, relaunched or superseded since the round read the row
                continue
            self.tracker.retire(task.key, now)
            self.log.debug("%s ended (its task instance row says so); ECS task %s exits on its own.", task.key, arn)
            self._succeeded(task, maybe_a_poke=arn in ended.pokes)

    def _requeue_try(self, key: Any) -> str | None:
        """Make the try startable again before relaunching it (None = go ahead, else why not)."""
        try:
            return requeue_try_for_relaunch(key)
        except Exception as err:
            self.log.exception("Could not requeue %s for relaunch", key)
            return f"could not requeue the try ({type(err).__name__}: {err})"

    def _fail(self, task: TrackedTask, reason: str) -> None:
        self.tracker.remove(task.key)
        self._report_failure(task.key, reason)

    def _report_failure(self, key: Any, reason: str) -> None:
        self.log.error("%s failed: %s", work.describe(key), reason)
        self.log_task_event(event="fargate task failed", ti_key=key, extra=reason)
        if work.is_connection_test(key):
            self._record_connection_test_failure(key, reason)
        self.fail(key, reason)

    def _record_connection_test_failure(self, key: Any, reason: str) -> None:
        """A connection test reports its result itself; one whose container never did must still
        say why in the UI, not only after Airflow's reaper times it out."""
        try:
            record_connection_test_failure(key, f"FargateExecutor: {reason}")
        except Exception:
            self.log.exception("Could not record the failure of %s", work.describe(key))

    def fail_connection_test(self, key: Any) -> None:
        """Airflow's reaper gave up on a connection test: stop its ECS task and forget it."""
        task = self.tracker.remove(key)
        if task is not None and task.arn:
            self._stop_quietly(task.arn, "Airflow timed out this connection test")
        self.running.discard(key)
        for queued in self._other_queues():
            queued.pop(key, None)

    def _release_failures(self, *, everything: bool = False) -> None:
        for key, reason in self.failure_output.release(self._clock(), everything=everything):
            self._report_failure(key, reason)

    # -- shutdown, revoke, adoption --

    def end(self, heartbeat_interval: float = 10) -> None:
        """Scheduler shutdown (SIGTERM, Ctrl-C, the loop ending; Airflow 2.11 and 3.3 call only
        this). Running ECS tasks are left running: the next scheduler adopts them by the task ARN
        saved as external_executor_id, so a restart or a rolling deploy costs no task. Waits only
        for run_task calls already on the wire. A task whose ARN the scheduler has not saved yet
        (its RUNNING event is still in the buffer: the scheduler processes no event after end())
        could never be adopted, so it is stopped; Airflow resets and queues that try again."""
        if not self._started:  # start() failed and said why; there is nothing to wait for
            return
        try:
            for task in list(self.tracker.waiting_for_launch()):
                if not task.launching:
                    self._fail(task, "Scheduler is shutting down before the task could be launched")
            self._shutdown_launcher()
            unsaved = [task for task in self._tracked_with_arn() if self._arn_unsaved(task)]
            for task in unsaved:
                self.tracker.remove(task.key)
                self._stop_quietly(task.arn or "", "Airflow scheduler stopped before it saved this task's ARN")
            left = len(self._tracked_with_arn())
            self.log.warning(
                "FargateExecutor shutting down: %d ECS task(s) keep running for the next scheduler to adopt "
                "(their ARN is the task instance's external_executor_id); %d stopped because the scheduler "
                "had not saved their ARN yet.",
                left,
                len(unsaved),
            )
        except Exception:
            self.log.exception("FargateExecutor: error while shutting down.")
        self._flush_failures()

    def _tracked_with_arn(self) -> list[TrackedTask]:
        return [task for arn in self.tracker.active_arns() if (task := self.tracker.by_arn(arn)) is not None]

    def _arn_unsaved(self, task: TrackedTask) -> bool:
        """The RUNNING event carrying this task's ARN has not been fetched by the scheduler."""
        event = self.event_buffer.get(task.key)
        return event is not None and event[1] == task.arn

    def terminate(self) -> None:
        """Stop every ECS task this scheduler owns (SIGTERM to the scheduler), then wait briefly."""
        if not self._started:
            return
        try:
            self.launcher.cancel_pending()  # withdrawn requests leave their tasks waiting: failed below
            self._shutdown_launcher()  # calls already on the wire finish; their tasks are stopped below
            for task in list(self.tracker.waiting_for_launch()):
                self._fail(task, "Scheduler terminated before the task was launched")
            for arn in self.tracker.active_arns():
                self._stop_quietly(arn, "Airflow scheduler received SIGTERM (FargateExecutor.terminate)")
            self._wait_for_tasks(1, deadline=self._clock() + TERMINATE_WAIT_SECONDS)
        except Exception:
            self.log.exception("FargateExecutor: error while terminating ECS tasks.")
        self._flush_failures()

    def _flush_failures(self) -> None:
        """Report every held failure before the scheduler goes (output if it arrives in time),
        then join the last threads."""
        self.failure_output.shutdown(wait_seconds=FAILURE_OUTPUT_WAIT_SECONDS)
        self._release_failures(everything=True)
        self.sweeper.shutdown()  # stops already decided are made first
        self.ecs.close()
        if self._tagging_probe is not None:
            self._tagging_probe.join()

    def _wait_for_tasks(self, interval: float, deadline: float | None = None) -> None:
        """Describe synchronously until no ECS task we own is left (or the deadline passes)."""
        while self.tracker.active_arns() and (deadline is None or self._clock() < deadline):
            self._poll_now()
            if self.tracker.active_arns():
                time.sleep(interval)

    def _shutdown_launcher(self) -> None:
        self.launcher.shutdown(wait=True)
        self._apply_launches()
        self.poller.shutdown()

    def revoke_task(self, *, ti: Any) -> None:
        """Stop the task's ECS task and forget it (Airflow's stuck-in-queued handling). Never raises."""
        task = self.tracker.remove(ti.key)
        self.running.discard(ti.key)
        self.queued_tasks.pop(ti.key, None)
        if task is None or task.arn is None:
            return  # a launch still in flight is stopped when its result arrives
        self._stop_quietly(task.arn, "Revoked by Airflow (task stuck in queued)")
        self.log.info("Revoked %s: stopped ECS task %s", ti.key, task.arn)

    @staticmethod
    def get_cli_commands() -> list[Any]:
        """``airflow fargate ...`` on Airflow 2 (Airflow 3 finds them through the provider info)."""
        from airflow_fargate.cli import get_fargate_cli_commands

        return list(get_fargate_cli_commands())

    def get_task_log(self, ti: Any, try_number: int) -> tuple[list[str], list[str]]:
        """The running try's container output from CloudWatch, for the Airflow UI (the container
        serves no logs itself). Called by the webserver/api-server while the task is RUNNING."""
        arn = getattr(ti, "external_executor_id", None)
        if not arn or try_number != ti.try_number:
            return [], []
        try:
            result = self._task_output().read(arn, for_log_view=True)
        except Exception as err:  # the UI must get a message, never a stack trace
            self.log.warning("Cannot read the output of ECS task %s", arn, exc_info=True)
            return [f"FargateExecutor could not read the output of ECS task {arn}: {err}"], []
        if not result.lines:
            return [f"ECS task {arn}: {result.problem}"], []
        return [f"Output of ECS task {arn} from {result.source}"], ["\n".join(result.lines) + "\n"]

    def _task_output(self) -> TaskOutput:
        """The started executor's reader, or (api-server, which never starts executors) one of
        its own, built on first use so that merely loading the executor needs no configuration."""
        if self._started:
            return self.output
        if self._log_output is None:
            self._log_output = build_task_output(self._load_settings())
        return self._log_output

    def try_adopt_task_instances(self, tis: Sequence[Any]) -> Sequence[Any]:
        """Adopt tasks launched by a dead scheduler: their external_executor_id is the task ARN.
        A try whose ARN never reached the DB (the scheduler died right after RunTask) is adopted
        when the last orphan sweep found its ECS task by its tags; every adoption round also
        starts a sweep, which stops the ECS tasks of tries Airflow resets."""
        if self._started and self.job_id is not None:
            self.sweeper.request(self.tracker.active_arns(), self.tracker.queueing_ids())
            self._next_sweep_at = self._clock() + self._sweep_interval
        # Airflow's orphan check may offer a scheduler its own just-queued tries (the row's
        # queued_by_job_id is not ours yet, or the ARN not yet saved): those are ours, kept as they are.
        own = [ti for ti in tis if ti.key in self.tracker]
        tis = [ti for ti in tis if ti.key not in self.tracker]
        if own:
            self.log.info("Kept %d task(s) offered for adoption that this executor already runs.", len(own))
        candidates = {ti.external_executor_id: ti for ti in tis if ti.external_executor_id}
        adopted = self._adopt_swept([ti for ti in tis if not ti.external_executor_id])
        if candidates:
            try:
                found = self.ecs.describe_tasks(list(candidates)).tasks
            except Exception:
                self.log.exception("Could not describe ECS tasks to adopt; leaving them to be reset.")
                found = {}
            for arn in found:
                ti = candidates[arn]
                self._track_adopted(ti.key, arn, ti)
                adopted.append(ti)
        if adopted:
            self._stat("incr", "fargate.adopt.count", len(adopted))
            self.log.info("Adopted %d ECS tasks: %s", len(adopted), ", ".join(str(t.key) for t in adopted))
        return [ti for ti in tis if ti not in adopted]

    def _adopt_swept(self, tis: Sequence[Any]) -> list[Any]:
        """Tries without a recorded ARN whose ECS task the last sweep found (the newest one): the
        ARN is written on the offered row, which Airflow saves with its adoption."""
        adopted = []
        for ti in tis:
            key = ti.key
            identity = (key.dag_id, key.task_id, key.run_id, key.map_index, key.try_number)
            found = sorted(self._swept.pop(identity, []), key=lambda task: -task.created_at)
            if found:
                ti.external_executor_id = found[0].arn
                self._track_adopted(key, found[0].arn, ti)
                adopted.append(ti)
        return adopted
