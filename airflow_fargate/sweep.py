"""The orphan sweep: find ECS tasks of this deployment that no scheduler tracks, adopt or stop them.

A scheduler killed after RunTask returned but before the task ARN reached the metadata DB leaves
an ECS task nobody tracks: Airflow resets its try and queues the next one while the old
container keeps running. Every task carries startedBy and owner tags (ownership.py), so at start
and on every orphan check the executor lists its deployment's running tasks (ListTasks, paged;
DescribeTasks with tags for those it does not track), off the scheduler thread and paced within
the ECS read quota. The decisions are made on the scheduler thread from the metadata DB:

- launched by this scheduler for a queueing it no longer tracks: stop it;
- launched by a scheduler job Airflow still counts as running: leave it to that scheduler;
- launched by a dead scheduler: adopt it if its try is still queued/running with no other ECS
  task recorded (one conditional UPDATE makes it ours), leave it if the DB already records it
  (Airflow's own adoption offers it), leave it for ``FINISHED_TRY_GRACE_SECONDS`` if its try
  ended just now (the task reports its state before its container exits: a stop then could cut
  the remote log upload), otherwise stop it with a reason naming the try;
- not identifiable, of another deployment, or a try this DB does not know: never touched.

The same listing settles the containers the executor retired (tries that reported their end,
superseded queueings): one no longer listed has exited and is forgotten; one still listed
RETIRED_GRACE_SECONDS after its retirement is stopped (tracker.settle_listed).
"""

from __future__ import annotations

import enum
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from airflow_fargate.metadata_db import ACTIVE_STATES, TryIdentity, TryRow
from airflow_fargate.ownership import Owner, read_owner

SWEEP_CALL_RATE = 5.0  # ListTasks/DescribeTasks calls per second: a quarter of the 20/s read quota
SWEEP_CALL_BURST = 10
FINISHED_TRY_GRACE_SECONDS = 300.0  # a container still up this long after its try ended is stuck
# A task of this scheduler created less than this before a sweep was asked for may be one whose
# RunTask answer was on its way: ECS's clock and ours may differ by this much.
REQUEST_CLOCK_MARGIN_SECONDS = 5.0


@dataclass(frozen=True)
class Listed:
    """One running ECS task of this deployment that the executor did not track when listed."""

    arn: str
    owner: Owner | None
    last_status: str
    created_at: float  # epoch seconds; 0 if ECS did not say


@dataclass(frozen=True)
class Snapshot:
    tasks: tuple[Listed, ...]  # untracked ones, described
    listed_arns: frozenset[str]  # every ARN ListTasks returned, tracked ones included
    started_at: float = 0.0  # the sweeper's clock when the listing began
    # What the scheduler tracked when it asked for this sweep: a task it launched for one of
    # these queueings (or created after the request) was wanted then, whatever became of it
    # before the snapshot is applied; judging it by tracking at apply time stops it falsely.
    requested_queueings: frozenset[str] = frozenset()
    requested_at: float = float("inf")  # epoch seconds of the request

    @property
    def listed(self) -> int:
        return len(self.listed_arns)


class Action(enum.Enum):
    SKIP = "skip"
    ADOPT = "adopt"
    STOP = "stop"


@dataclass(frozen=True)
class Decision:
    action: Action
    task: Listed
    reason: str
    row: TryRow | None = None


class MetadataDb(Protocol):
    """metadata_db's functions (tests pass a fake)."""

    def load_rows(self, identities: Iterable[TryIdentity]) -> dict[tuple[str, str, str, int], TryRow]: ...

    def running_jobs(self, job_ids: Iterable[str]) -> set[str]: ...

    def claim_try(self, identity: TryIdentity, arn: str, previous_job: str | None, our_job: Any) -> bool: ...


@dataclass
class Ownership:
    """What the scheduler thread knows when it applies a snapshot."""

    our_job: str
    deployment: str
    tracked_arns: set[str] = field(default_factory=set)
    tracked_queueings: set[str] = field(default_factory=set)


def listed(entry: Any) -> Listed | None:
    if not isinstance(entry, dict) or not isinstance(entry.get("taskArn"), str):
        return None
    created = entry.get("createdAt")
    created_at = created.timestamp() if isinstance(created, datetime) else 0.0
    return Listed(entry["taskArn"], read_owner(entry.get("tags")), str(entry.get("lastStatus") or ""), created_at)


def decide(snapshot: Snapshot, known: Ownership, db: MetadataDb, now: float | None = None) -> list[Decision]:
    """What to do with each listed task (reads the DB; changes nothing); ``now`` is epoch seconds."""
    now = time.time() if now is None else now
    wanted_queueings = known.tracked_queueings | snapshot.requested_queueings
    candidates = [
        task
        for task in snapshot.tasks
        if task.arn not in known.tracked_arns
        and not (task.owner and task.owner.queueing and task.owner.queueing in wanted_queueings)
        and not (task.owner and task.owner.job == known.our_job and task.created_at >= snapshot.requested_at)
    ]
    decisions: list[Decision] = []
    others: list[Listed] = []
    for task in candidates:
        owner = task.owner
        if owner is None or owner.deployment != known.deployment:
            decisions.append(Decision(Action.SKIP, task, "carries no owner tags of this deployment"))
        elif owner.job == known.our_job:
            decisions.append(
                Decision(Action.STOP, task, f"launched by this scheduler for {owner.describe()}, no longer wanted")
            )
        else:
            others.append(task)
    alive = db.running_jobs({str(task.owner.job) for task in others if task.owner and task.owner.job})
    dead: list[Listed] = []
    for task in others:
        assert task.owner is not None
        if task.owner.job in alive:
            decisions.append(Decision(Action.SKIP, task, f"scheduler job {task.owner.job} is running"))
        elif task.owner.try_identity is None:
            decisions.append(Decision(Action.SKIP, task, f"{task.owner.describe()} of a dead scheduler"))
        else:
            dead.append(task)
    rows = db.load_rows(task.owner.try_identity for task in dead if task.owner and task.owner.try_identity)
    row_owners = db.running_jobs({row.queued_by_job_id for row in rows.values() if row.queued_by_job_id})
    by_try: dict[TryIdentity, list[Listed]] = defaultdict(list)
    for task in dead:
        assert task.owner is not None and task.owner.try_identity is not None
        by_try[task.owner.try_identity].append(task)
    for identity, tasks in by_try.items():
        newest_first = sorted(tasks, key=lambda t: -t.created_at)
        decisions.extend(_decide_try(identity, newest_first, rows.get(identity[:4]), row_owners, now))
    return decisions


def _decide_try(
    identity: TryIdentity, newest_first: list[Listed], row: TryRow | None, running_owners: set[str], now: float
) -> list[Decision]:
    """A dead scheduler's tasks for one try: adopt at most one (the newest), stop the rest."""
    what = newest_first[0].owner.describe() if newest_first[0].owner else str(identity)
    if row is None:
        return [Decision(Action.SKIP, t, f"{what}: no such task instance in this metadata DB") for t in newest_first]
    if row.try_number == identity[4] and row.state is not None and row.state not in ACTIVE_STATES:
        ended = now - row.end_date if row.end_date is not None else None
        if ended is not None and ended < FINISHED_TRY_GRACE_SECONDS:
            reason = f"{what} ended {max(ended, 0):.0f}s ago ({row.state}); its container may still be exiting"
            return [Decision(Action.SKIP, t, reason, row) for t in newest_first]
    if row.try_number != identity[4] or row.state not in ACTIVE_STATES:
        current = f"try {row.try_number} is {row.state or 'reset'}"
        return [Decision(Action.STOP, t, f"orphan of {what}; {current}", row) for t in newest_first]
    decisions = []
    for task in newest_first:
        if row.external_executor_id == task.arn:
            decisions.append(Decision(Action.SKIP, task, f"{what} is recorded with this task; Airflow adopts it", row))
        elif row.external_executor_id:
            reason = f"orphan of {what}, which runs as ECS task {row.external_executor_id}"
            decisions.append(Decision(Action.STOP, task, reason, row))
        elif row.queued_by_job_id in running_owners:
            reason = f"{what} is queued by running scheduler job {row.queued_by_job_id}"
            decisions.append(Decision(Action.SKIP, task, reason, row))
        elif not any(d.action is Action.ADOPT for d in decisions):
            decisions.append(Decision(Action.ADOPT, task, f"{what} is {row.state} with no ECS task recorded", row))
        else:
            decisions.append(Decision(Action.STOP, task, f"second ECS task of {what}", row))
    return decisions
