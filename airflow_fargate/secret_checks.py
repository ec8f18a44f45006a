"""What a task container must not carry: on Airflow 3 a task needs the execution API's URL and
its own role, never the scheduler's secrets. With the JWT signing secret any DAG's code could mint
execution-API tokens for every other task instance; a Fernet key or a database URL in plain text
opens the metadata DB and every connection to whoever can read the task definition."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Settings only the scheduler and the api-server need (Airflow 3), by environment name.
SCHEDULER_ONLY = (
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API_AUTH__JWT_PRIVATE_KEY_PATH",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
)
# Connection strings that carry a password when written in plain text.
CONNECTION_STRINGS = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CELERY__RESULT_BACKEND", "AIRFLOW_CONN_")


def _names(items: Any) -> Iterable[tuple[str, str]]:
    for item in items if isinstance(items, list) else []:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            yield item["name"], str(item.get("value", item.get("valueFrom", "")))


def secret_problems(definition: Mapping[str, Any], airflow_3: bool) -> list[str]:
    """What the task definition's containers carry that they must not (empty: nothing)."""
    problems = []
    for container in definition.get("containerDefinitions") or []:
        if not isinstance(container, Mapping):
            continue
        where = f"container {container.get('name')!r}"
        plain = dict(_names(container.get("environment")))
        from_secrets = dict(_names(container.get("secrets")))
        for name in SCHEDULER_ONLY if airflow_3 else ():
            if name in plain or name in from_secrets:
                kind = "environment" if name in plain else "secrets"
                problems.append(
                    f"{where} gets {name} ({kind}): Airflow 3 tasks need only the execution API URL; "
                    "remove it (only the scheduler and the api-server use it)"
                )
        for name, value in plain.items():
            if name.startswith(CONNECTION_STRINGS) and "://" in value and ":" in value.split("://", 1)[1]:
                problems.append(
                    f"{where} has {name} in plain text with a password: put it in Secrets Manager and "
                    "reference it under `secrets` (or use Airflow's secrets backend)"
                )
    return problems
