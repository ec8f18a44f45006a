"""What the executor knows about each task instance it owns, and what ECS states mean for Airflow.

Pure logic: no boto3, no Airflow session. The executor feeds it ECS states and applies the
returned Verdicts, so every state-mapping and relaunch-vs-fail rule lives (and is tested) here.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow_fargate.ecs_types import EcsTaskState

# The container of a try that ended (its own report) or of a superseded queueing (see
# Tracker.add) is left to exit on its own this long: callbacks and the remote log upload run
# after the try reported its state.
RETIRED_GRACE_SECONDS = 300.0
WAITING_STATUSES = frozenset({"PROVISIONING", "PENDING", "ACTIVATING"})
# ECS stops that say nothing about the task's own code: launch the same try again.
RELAUNCH_STOP_CODES = frozenset({"SpotInterruption", "TerminationNotice", "TaskFailedToStart"})
# Start failures that another launch will not fix (wrong image name, missing permissions).
PERMANENT_START_ERRORS = (
    "manifest unknown",
    "not found",
    "repository does not exist",
    "pull access denied",
    "AccessDenied",
    "invalid reference format",
)


class Outcome(enum.Enum):
    """What the executor should do after looking at one task."""

    QUEUED = "queued"  # launched, not running yet: nothing to report
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    RELAUNCH = "relaunch"  # launch the same try again (does not cost an Airflow retry)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str = ""
    stop_first: bool = False  # the ECS task may still exist: stop it before relaunching or failing
    cause: str = ""  # why a relaunch: spot, failed_to_start, start_timeout, missing (metric suffix)


def new_queueing_id() -> str:
    """Identity of one queueing of one piece of work (see TrackedTask.queueing_id)."""
    return secrets.token_hex(16)  # 32 random hex digits, as uuid4().hex but a third of the cost


def client_token(queueing_id: str, generation: int) -> str:
    """RunTask clientToken for one launch of one queueing: 64 hex chars, the ECS limit.

    Scope, and why:
    - Retries of one run_task call (timeouts, 5xx, throttles) reuse the token, so ECS returns the
      task the first call may have started instead of starting a second one.
    - Every new queueing of a try gets a new token. Airflow queues the same try number again for a
      reschedule-mode sensor's next poke, a resume after deferral and a cleared try; a token built
      from the try alone makes ECS hand back the first, stopped task (or ConflictException).
    - Every relaunch of a queueing (Spot interruption, failed start, known-failed call) bumps
      ``generation``: the previous token surely started nothing that is still wanted.
    - Nothing of it survives a scheduler restart, and nothing needs to: a successor never resumes
      a predecessor's in-flight call. It adopts tasks whose ARN reached the metadata DB; anything
      else is reset by Airflow and queued again, which is a new queueing with a new identity.
      Random identities also keep two schedulers (HA) and two deployments from ever sharing a token.
    """
    return hashlib.sha256(f"{queueing_id}:{generation}".encode()).hexdigest()


def _container_summary(state: EcsTaskState) -> str:
    bits = [f"{c.name} exit {c.exit_code}" + (f" ({c.reason})" if c.reason else "") for c in state.containers]
    text = f"ECS task {state.arn} stopped: stopCode={state.stop_code}, reason={state.stopped_reason!r}"
    return text + (f"; containers: {', '.join(bits)}" if bits else "")


def _is_permanent_start_error(state: EcsTaskState) -> bool:
    texts = [state.stopped_reason or ""] + [c.reason or "" for c in state.containers]
    return any(marker.lower() in text.lower() for text in texts for marker in PERMANENT_START_ERRORS)


def classify(state: EcsTaskState, essential: frozenset[str] | None = None) -> Verdict:
    """Map one ECS task state to what Airflow should see.

    ``essential`` names the task definition's essential containers; None means all are essential.
    """
    status = state.last_status
    if status in WAITING_STATUSES:
        return Verdict(Outcome.QUEUED)
    if status != "STOPPED":
        return Verdict(Outcome.RUNNING)  # RUNNING, DEACTIVATING, STOPPING, DEPROVISIONING
    watched = [c for c in state.containers if essential is None or c.name in essential]
    summary = _container_summary(state)
    if watched and all(c.exit_code == 0 for c in watched):
        return Verdict(Outcome.SUCCESS, summary)
    if state.stop_code in RELAUNCH_STOP_CODES:
        # Exit codes here (143, 137) are the platform's SIGTERM/SIGKILL, not the task's verdict.
        if state.stop_code == "TaskFailedToStart" and _is_permanent_start_error(state):
            return Verdict(Outcome.FAILED, summary + " (a relaunch would fail the same way)")
        cause = "failed_to_start" if state.stop_code == "TaskFailedToStart" else "spot"
        return Verdict(Outcome.RELAUNCH, summary, cause=cause)
    failed = [c for c in watched if c.exit_code not in (None, 0)]
    if any("OutOfMemory" in (c.reason or "") for c in state.containers):
        return Verdict(Outcome.FAILED, "OutOfMemoryError: " + summary)
    if failed:
        return Verdict(Outcome.FAILED, summary)
    return Verdict(Outcome.FAILED, summary + " (no exit code: the container did not finish)")


@dataclass
class TrackedTask:
    """One try of one task instance, from queueing to its final state."""

    key: Any  # TaskInstanceKey, or CallbackKey / ConnectionTestKey for other work kinds
    command: list[str] | None  # None for adopted tasks until a relaunch needs it
    executor_config: Any = None
    queue: str | None = None
    kind: str = "task"  # work.TASK, work.CALLBACK or work.CONNECTION_TEST
    launches: int = 0  # run_task calls that returned a task, plus failed launch attempts
    queueing_id: str = field(default_factory=new_queueing_id)  # this queueing (not the try): token scope
    token_generation: int = 1  # bumped only when the previous clientToken surely started nothing
    # The kwargs builder of the current token generation: every retry with one token sends the
    # same parameters (ECS answers ConflictException to a token reused with other parameters).
    prepared: tuple[int, Callable[[], dict[str, Any]]] | None = None
    arn: str | None = None
    next_attempt_at: float = 0.0
    launched_at: float | None = None
    missing_since: float | None = None
    launching: bool = False  # a run_task request is with the launcher
    reasons: list[str] = field(default_factory=list)
    workload: Any = None  # Airflow 3 ExecuteTask; serialized into the command at launch time
    # The first launch call of this token whose outcome is unknown: (when, the API's outage
    # seconds then), so its deadline counts only time the API answered; None once one answers.
    unknown_since: tuple[float, float] | None = None
    find_next: bool = False  # the deadline passed: look for the task by its tags, launch nothing
    refresh_next: bool = False  # the find is for a fresh token: nothing found means launch anew
    accepted_at: float = 0.0  # when this queueing was accepted (its workload's token was minted)
    mint_token: bool = False  # the next kwargs get a freshly minted execution-API token


class Tracker:
    """TaskInstanceKey <-> ARN map with launch counts; decides relaunch vs fail."""

    def __init__(
        self, max_launches: int, missing_grace_seconds: float = 60.0, start_timeout_seconds: float = 300.0
    ) -> None:
        self.max_launches = max_launches
        self.missing_grace_seconds = missing_grace_seconds
        self.start_timeout_seconds = start_timeout_seconds
        self._tasks: dict[Any, TrackedTask] = {}
        self._by_arn: dict[str, Any] = {}
        self._retired: dict[str, float] = {}  # ARN of a superseded queueing -> when it was superseded

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, key: Any) -> bool:
        return key in self._tasks

    def get(self, key: Any) -> TrackedTask | None:
        return self._tasks.get(key)

    def by_arn(self, arn: str) -> TrackedTask | None:
        key = self._by_arn.get(arn)
        return None if key is None else self._tasks.get(key)

    def add(self, task: TrackedTask, now: float = 0.0) -> TrackedTask | None:
        """Track a queueing; returns the previous queueing of the same key if this supersedes one.

        Airflow queues a try again as soon as the try itself reported up_for_reschedule or
        deferred, often before its container's exit reached us. From then on the key's outcome
        belongs to the new queueing: the old container is only watched until it stops (never
        reported, so its exit cannot end the new queueing), and an old launch still in flight is
        recognised by its queueing_id and stopped by the executor when it returns."""
        previous = self._tasks.get(task.key)
        if previous is not None and previous.arn:
            self._by_arn.pop(previous.arn, None)
            self._retired[previous.arn] = now
        self._tasks[task.key] = task
        task.accepted_at = task.accepted_at or now
        if task.arn:
            self._by_arn[task.arn] = task.key
        return previous

    def settle_retired(self, arn: str, last_status: str | None, now: float) -> bool:
        """A superseded queueing's container was described (None: ECS does not know it). Forgets it
        once stopped; True if it outlived RETIRED_GRACE_SECONDS and must be stopped."""
        since = self._retired.get(arn)
        if since is None:
            return False
        if last_status in (None, "STOPPED"):
            del self._retired[arn]
            return False
        if now - since > RETIRED_GRACE_SECONDS:
            self._retired[arn] = now  # ask once per grace period, not every heartbeat
            return True
        return False

    def settle_listed(self, listed: Collection[str], listed_after: float, now: float) -> list[str]:
        """The orphan sweep listed the deployment's tasks still up (its listing began after
        ``listed_after``). A container retired before that and not listed has exited: forget it.
        Returns the retired ones listed that outlived RETIRED_GRACE_SECONDS: to be stopped."""
        stuck = []
        for arn, since in list(self._retired.items()):
            if since > listed_after:
                continue
            if arn not in listed:
                del self._retired[arn]
            elif now - since > RETIRED_GRACE_SECONDS:
                self._retired[arn] = now  # ask once per grace period
                stuck.append(arn)
        return stuck

    def remove(self, key: Any) -> TrackedTask | None:
        task = self._tasks.pop(key, None)
        if task and task.arn:
            self._by_arn.pop(task.arn, None)
        return task

    def retire(self, key: Any, now: float) -> TrackedTask | None:
        """The try ended (it said so itself): forget it; its container, left to exit on its own,
        is only kept in mind until the orphan sweep no longer lists it (settle_listed)."""
        task = self._tasks.pop(key, None)
        if task and task.arn:
            self._by_arn.pop(task.arn, None)
            self._retired[task.arn] = now
        return task

    def due_for_launch(self, now: float, limit: int) -> list[TrackedTask]:
        """Up to ``limit`` tasks without an ECS task or a launch in progress whose back-off has
        passed, oldest first. Stops at the limit: with 10,000 tasks queued, a heartbeat looks at
        the ones launched before them and the few it hands over, not at every one."""
        due: list[TrackedTask] = []
        if limit > 0:
            for task in self._tasks.values():
                if task.arn is None and not task.launching and task.next_attempt_at <= now:
                    due.append(task)
                    if len(due) == limit:
                        break
        return due

    def waiting_for_launch(self) -> Iterator[TrackedTask]:
        return (t for t in self._tasks.values() if t.arn is None)

    @property
    def waiting_count(self) -> int:
        """How many tasks have no ECS task (``waiting_for_launch``), without visiting them: every
        task with an ECS task is in the ARN index, and only those."""
        return len(self._tasks) - len(self._by_arn)

    def active_arns(self) -> list[str]:
        """Every ECS task that may still be up: current queueings' and retired ones (superseded
        queueings, ended tries) until they are known to have stopped."""
        return [*self._by_arn, *self._retired]

    @property
    def watched_count(self) -> int:
        return len(self._by_arn)

    def watched(self) -> dict[str, Any]:
        """ARN -> key of every current queueing's ECS task: the ones to watch for an outcome."""
        return dict(self._by_arn)

    def queueing_ids(self) -> set[str]:
        """Queueings tracked now (launched, launching or waiting): their ECS tasks are wanted."""
        return {task.queueing_id for task in self._tasks.values()}

    def record_launch(self, key: Any, arn: str, now: float) -> None:
        task = self._tasks[key]
        task.launches += 1
        task.launching = False
        task.arn = arn
        task.launched_at = now
        task.missing_since = None
        task.unknown_since = None
        task.find_next = task.refresh_next = False
        self._by_arn[arn] = key

    def client_token(self, key: Any) -> str:
        task = self._tasks[key]
        return client_token(task.queueing_id, task.token_generation)

    def record_launch_failure(
        self, key: Any, reason: str, retry_at: float | None, outcome_unknown: bool = False, counts: bool = True
    ) -> Verdict:
        """A run_task call failed. ``retry_at`` None means the failure is not retryable.

        ``outcome_unknown`` (timeouts, connection errors, 5xx): ECS may have started the task, so
        the next call reuses the same clientToken and ECS returns that task instead of a second one;
        the API's trouble, not the task's, so it never counts as one of the task's attempts.
        ``counts`` False (missing or expired credentials): a pause, not one of the task's attempts.
        """
        task = self._tasks[key]
        task.launches += 1 if counts and not outcome_unknown else 0
        task.launching = False
        task.reasons.append(reason)
        if not outcome_unknown:
            task.token_generation += 1
            task.unknown_since = None
        if retry_at is None:
            return Verdict(Outcome.FAILED, f"ECS could not launch the task: {reason}")
        if task.launches >= self.max_launches:
            return Verdict(
                Outcome.FAILED,
                f"ECS could not launch the task in {task.launches} attempts "
                f"(max_run_task_attempts={self.max_launches}): " + "; ".join(task.reasons[-3:]),
            )
        task.next_attempt_at = retry_at
        return Verdict(Outcome.QUEUED, reason)

    def observe(
        self, state: EcsTaskState, essential: frozenset[str] | None = None, now: float | None = None
    ) -> Verdict:
        """Apply one describe_tasks result; a RELAUNCH verdict beyond the limit becomes FAILED.

        A task still PROVISIONING/PENDING ``start_timeout_seconds`` after its launch is stuck
        (no capacity, ENI never attached): it is stopped and relaunched."""
        task = self.by_arn(state.arn)
        if task is None:
            raise KeyError(state.arn)
        task.missing_since = None
        verdict = classify(state, essential)
        if verdict.outcome is Outcome.RELAUNCH:
            return self._relaunch_or_fail(task, verdict.reason, cause=verdict.cause)
        waited = None if now is None or task.launched_at is None else now - task.launched_at
        if verdict.outcome is Outcome.QUEUED and waited is not None and waited > self.start_timeout_seconds:
            reason = (
                f"ECS task {state.arn} still {state.last_status} {waited:.0f}s after launch "
                f"(task_start_timeout={self.start_timeout_seconds:g}s)"
            )
            return self._relaunch_or_fail(task, reason, stop_first=True, cause="start_timeout")
        return verdict

    def observe_missing(self, arn: str, reason: str, now: float) -> Verdict:
        """describe_tasks did not find the task: wait out eventual consistency, then relaunch."""
        task = self.by_arn(arn)
        if task is None:
            raise KeyError(arn)
        if task.missing_since is None:
            task.missing_since = now
        if now - task.missing_since < self.missing_grace_seconds:
            return Verdict(Outcome.QUEUED, reason)
        return self._relaunch_or_fail(
            task,
            f"ECS task {arn} not found by describe_tasks for {now - task.missing_since:.0f}s ({reason})",
            stop_first=True,  # should it surface later, it must not run beside the relaunch
            cause="missing",
        )

    def _relaunch_or_fail(self, task: TrackedTask, reason: str, stop_first: bool = False, cause: str = "") -> Verdict:
        task.reasons.append(reason)
        if task.launches >= self.max_launches:
            return Verdict(
                Outcome.FAILED,
                f"{reason}; not relaunching: {task.launches} launches reached max_run_task_attempts",
                stop_first,
            )
        return Verdict(Outcome.RELAUNCH, reason, stop_first, cause)

    def launch_afresh(self, key: Any, now: float) -> None:
        """No task of this token exists (looked up by tags): the next launch gets a new clientToken
        and new kwargs (a fresh execution token in its command, minted about ``now``). The
        deadline of its unknown outcomes still runs from the first of them."""
        task = self._tasks[key]
        task.launching = task.find_next = task.refresh_next = False
        task.token_generation += 1
        task.accepted_at = now
        task.mint_token = True
        task.next_attempt_at = 0.0

    def prepare_relaunch(self, key: Any, retry_at: float) -> None:
        """Forget the stopped ARN so the task is launched again (with a new clientToken)."""
        task = self._tasks[key]
        if task.arn:
            self._by_arn.pop(task.arn, None)
        task.arn = None
        task.launched_at = None
        task.token_generation += 1
        task.next_attempt_at = retry_at
