"""boto3 session for the executor: from an Airflow AWS connection, or boto3's default chain.

Connection fields: login/password = access key id/secret; extra may hold region_name,
aws_session_token, role_arn (assumed through STS with auto-refreshing credentials, so a
long-running scheduler never needs a restart when they expire) and endpoint_url.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.session
from botocore.credentials import RefreshableCredentials

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AwsTarget:
    """A session plus the endpoint override (e.g. the local ECS endpoint) to use with it."""

    session: boto3.session.Session
    endpoint_url: str | None = None


def _connection(conn_id: str | None) -> Any | None:
    if not conn_id:
        return None
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        return Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        log.info("Airflow connection %r not found; using boto3's default credential chain.", conn_id)
        return None


def _assume_role(
    source: boto3.session.Session, role_arn: str, region: str, extra: dict[str, Any]
) -> boto3.session.Session:
    """Session whose credentials come from sts:AssumeRole and refresh themselves before expiry."""
    sts = source.client("sts", region_name=region, endpoint_url=extra.get("sts_endpoint_url"))
    kwargs = dict(extra.get("assume_role_kwargs") or {})
    kwargs.setdefault("RoleSessionName", "airflow-fargate-executor")

    def refresh() -> dict[str, str]:
        creds = sts.assume_role(RoleArn=role_arn, **kwargs)["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    core = botocore.session.get_session()
    # botocore has no public setter for refreshable credentials; the amazon provider does the same.
    core._credentials = RefreshableCredentials.create_from_metadata(  # type: ignore[attr-defined]  # noqa: SLF001
        metadata=refresh(), refresh_using=refresh, method="sts-assume-role"
    )
    return boto3.session.Session(botocore_session=core, region_name=region)


def aws_target(conn_id: str | None, region_name: str) -> AwsTarget:
    """Resolve ``conn_id`` (absent connection -> default chain) into a session for ``region_name``."""
    conn = _connection(conn_id)
    if conn is None:
        return AwsTarget(boto3.session.Session(region_name=region_name))
    extra = conn.extra_dejson or {}
    session = boto3.session.Session(
        aws_access_key_id=conn.login or None,
        aws_secret_access_key=conn.password or None,
        aws_session_token=extra.get("aws_session_token") or None,
        region_name=region_name,
    )
    if extra.get("role_arn"):
        session = _assume_role(session, extra["role_arn"], region_name, extra)
    endpoint = extra.get("endpoint_url") or (extra.get("service_config", {}).get("ecs", {}) or {}).get("endpoint_url")
    return AwsTarget(session, endpoint)
