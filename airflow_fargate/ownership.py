"""Who an ECS task belongs to: the RunTask ``startedBy`` and tags the executor puts on every task.

A scheduler can die between RunTask returning and the task ARN reaching the metadata DB; the
task then exists on ECS with no external_executor_id pointing at it. The orphan sweep (sweep.py)
finds such tasks with ListTasks(startedBy=...) and reads these tags to learn which Airflow try,
which queueing of it and which scheduler job launched it. Tag values are encoded reversibly
(ECS allows only letters, digits, spaces and ``+-=._:/@`` in them), so a run_id like
``manual__2026-11-23T10:00:00+00:00`` or one with ``~`` maps back to exactly its row.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STARTED_BY_PREFIX = "airflow-fargate"
TAG_PREFIX = "airflow-fargate:"
TAG_VALUE_MAX = 256
STARTED_BY_MAX = 128
# Characters ECS accepts in tag values, minus our escape character '='.
_PLAIN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 +-._:/@")
_ALL_PLAIN = re.compile(r"[A-Za-z0-9 +\-._:/@]*")
_STARTED_BY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-/]")
# Field name -> tag key. Task tries carry the key of their TaskInstance; other work its id.
FIELDS = ("kind", "dag_id", "task_id", "run_id", "map_index", "try_number", "work_id", "queueing", "job", "deployment")


def tag_key(field: str) -> str:
    return TAG_PREFIX + field


def encode_value(value: str) -> str:
    """Reversible encoding into ECS's tag-value alphabet: '=' escapes each other byte as =XX.
    Most values (ids, numbers, dag and task ids) are plain already and come back as they are."""
    if _ALL_PLAIN.fullmatch(value):
        return value
    return "".join(
        char if char in _PLAIN_CHARS else "".join(f"={byte:02X}" for byte in char.encode()) for char in value
    )


def decode_value(value: str) -> str | None:
    """encode_value's inverse; None for a value it could not have produced (truncated, edited)."""
    data = bytearray()
    index = 0
    while index < len(value):
        char = value[index]
        if char == "=":
            hex_digits = value[index + 1 : index + 3]
            if len(hex_digits) != 2 or not re.fullmatch(r"[0-9A-F]{2}", hex_digits):
                return None
            data.append(int(hex_digits, 16))
            index += 3
        else:
            data.extend(char.encode())
            index += 1
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def started_by(deployment_id: str, team: str | None = None) -> str:
    """RunTask startedBy of every task of this deployment (and team): ListTasks filters on it.

    ECS allows letters, digits, '-', '_' and '/' up to 128 characters; anything else becomes '_',
    and a name that had to change or is too long gets a digest so two names never collide."""
    raw = "/".join(part for part in (STARTED_BY_PREFIX, deployment_id, team) if part)
    safe = _STARTED_BY_UNSAFE.sub("_", raw)
    if safe != raw or len(safe) > STARTED_BY_MAX:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:12]
        safe = safe[: STARTED_BY_MAX - 13] + "-" + digest
    return safe


@dataclass(frozen=True)
class Owner:
    """What a launched ECS task says about itself (from its tags); None fields were unreadable."""

    kind: str | None
    queueing: str | None
    job: str | None
    deployment: str | None
    dag_id: str | None = None
    task_id: str | None = None
    run_id: str | None = None
    map_index: int | None = None
    try_number: int | None = None
    work_id: str | None = None

    @property
    def try_identity(self) -> tuple[str, str, str, int, int] | None:
        """(dag_id, task_id, run_id, map_index, try_number) of a task try, if every part was read."""
        parts = (self.dag_id, self.task_id, self.run_id, self.map_index, self.try_number)
        if self.kind != "task" or any(part is None for part in parts):
            return None
        return parts  # type: ignore[return-value]

    def describe(self) -> str:
        identity = self.try_identity
        if identity is not None:
            dag_id, task_id, run_id, map_index, try_number = identity
            index = f", map_index={map_index}" if map_index >= 0 else ""
            return f"{dag_id}.{task_id} run_id={run_id}{index} try {try_number}"
        return f"{self.kind or 'unknown work'} {self.work_id or ''}".strip()


def ownership_tags(key: Any, kind: str, queueing_id: str, job_id: Any, deployment_id: str) -> list[dict[str, str]]:
    """The tags that name this launch's owner: the try (or callback/connection test), the
    queueing, the scheduler job and the deployment."""
    values: dict[str, Any] = {"kind": kind, "queueing": queueing_id, "job": job_id, "deployment": deployment_id}
    if hasattr(key, "try_number"):
        values.update(
            dag_id=key.dag_id,
            task_id=key.task_id,
            run_id=key.run_id,
            map_index=key.map_index,
            try_number=key.try_number,
        )
    else:
        values["work_id"] = getattr(key, "id", key)
    tags = []
    for name in FIELDS:
        if name in values and values[name] is not None:
            tags.append({"key": tag_key(name), "value": _fit(encode_value(str(values[name])))})
    return tags


def _fit(encoded: str) -> str:
    """A value within ECS's 256 characters; one that had to be cut ends in a lone '=', which
    decode_value refuses, so a cut run_id can never be mistaken for a shorter one."""
    return encoded if len(encoded) <= TAG_VALUE_MAX else encoded[: TAG_VALUE_MAX - 1] + "="


def default_deployment_id(sql_alchemy_conn: str) -> str:
    """A stable id for one Airflow deployment: a digest of its metadata DB's address (dialect,
    user, host, port, database; never the password, which may rotate). Every scheduler of the
    deployment computes the same id; another deployment sharing the cluster gets another."""
    from sqlalchemy.engine import make_url

    try:
        url = make_url(sql_alchemy_conn)
        parts = (url.drivername, url.username, url.host, url.port, url.database)
        identity = "|".join(str(part or "") for part in parts)
    except Exception:  # not a URL SQLAlchemy can read: Airflow itself fails on it later
        identity = sql_alchemy_conn
    return "db-" + hashlib.sha256(identity.encode()).hexdigest()[:12]


def merge_tags(user_tags: Any, ours: list[dict[str, str]]) -> list[Any]:
    """The user's tags plus ours; ours replace any user tag with the same key."""
    taken = {tag["key"] for tag in ours}
    kept = [t for t in user_tags if not (isinstance(t, Mapping) and t.get("key") in taken)] if user_tags else []
    return [*kept, *ours]


def read_owner(tags: Any) -> Owner | None:
    """The owner a task's tags name, or None if it carries none of ours."""
    raw = {}
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, Mapping) and isinstance(tag.get("key"), str) and tag["key"].startswith(TAG_PREFIX):
            raw[tag["key"][len(TAG_PREFIX) :]] = tag.get("value")
    if not raw:
        return None
    text = {name: decode_value(value) if isinstance(value, str) else None for name, value in raw.items()}
    return Owner(
        kind=text.get("kind"),
        queueing=text.get("queueing"),
        job=text.get("job"),
        deployment=text.get("deployment"),
        dag_id=text.get("dag_id"),
        task_id=text.get("task_id"),
        run_id=text.get("run_id"),
        map_index=_int(text.get("map_index")),
        try_number=_int(text.get("try_number")),
        work_id=text.get("work_id"),
    )


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
