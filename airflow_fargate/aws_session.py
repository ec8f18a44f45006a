"""boto3 session for the executor: from an Airflow AWS connection, or boto3's default chain.

With apache-airflow-providers-amazon installed its AwsBaseHook reads the connection; otherwise
an equivalent reading here: login/password = access key id/secret; extra may hold
aws_session_token, profile_name, role_arn (assumed through STS with auto-refreshing credentials,
so a long-running scheduler never needs a restart when they expire) with assume_role_method and
assume_role_kwargs, endpoint_url and per-service service_config endpoints.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.session
from botocore.credentials import RefreshableCredentials

from airflow_fargate.errors import FargateConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AwsTarget:
    """A session plus the endpoint overrides (e.g. the local ECS endpoint) to use with it."""

    session: boto3.session.Session
    endpoint_url: str | None = None  # every service's, unless service_config names one
    service_endpoints: Mapping[str, str] = field(default_factory=dict)

    def endpoint_for(self, service: str) -> str | None:
        return self.service_endpoints.get(service, self.endpoint_url)

    def client(self, service: str, **kwargs: Any) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_for(service), **kwargs)  # type: ignore[call-overload]


DEFAULT_CONN_ID = "aws_default"  # the option's default: most deployments never create it


def _connection(conn_id: str | None, *, quiet: bool = False) -> Any | None:
    if not conn_id:
        return None
    from airflow.exceptions import AirflowNotFoundException
    from airflow.models.connection import Connection

    try:
        return Connection.get_connection_from_secrets(conn_id)
    except AirflowNotFoundException:
        if not quiet:
            log.info("Airflow connection %r not found; using boto3's default credential chain.", conn_id)
        return None


def _refreshing_session(region: str, fetch: Callable[[], Mapping[str, Any]], method: str) -> boto3.session.Session:
    """Session whose credentials come from ``fetch`` (an STS call) and refresh before expiry."""

    def refresh() -> dict[str, str]:
        creds = fetch()["Credentials"]
        return {
            "access_key": creds["AccessKeyId"],
            "secret_key": creds["SecretAccessKey"],
            "token": creds["SessionToken"],
            "expiry_time": creds["Expiration"].isoformat(),
        }

    core = botocore.session.get_session()
    # botocore has no public setter for refreshable credentials; the amazon provider does the same.
    core._credentials = RefreshableCredentials.create_from_metadata(  # type: ignore[attr-defined]  # noqa: SLF001
        metadata=refresh(), refresh_using=refresh, method=method
    )
    return boto3.session.Session(botocore_session=core, region_name=region)


def _assume_role(
    source: boto3.session.Session, role_arn: str, region: str, extra: dict[str, Any]
) -> boto3.session.Session:
    """assume_role_method ``assume_role`` (the default) or ``assume_role_with_web_identity`` (an
    OIDC token file, as on EKS), with the connection's assume_role_kwargs."""
    method = extra.get("assume_role_method") or "assume_role"
    sts = source.client("sts", region_name=region, endpoint_url=_service_endpoints(extra).get("sts"))
    kwargs = dict(extra.get("assume_role_kwargs") or {})
    kwargs.setdefault("RoleSessionName", "airflow-fargate-executor")
    if method == "assume_role":
        return _refreshing_session(region, lambda: sts.assume_role(RoleArn=role_arn, **kwargs), "sts-assume-role")
    federation = extra.get("assume_role_with_web_identity_federation") or "file"
    if method == "assume_role_with_web_identity" and federation == "file":
        token_file = extra.get("assume_role_with_web_identity_token_file") or os.environ.get(
            "AWS_WEB_IDENTITY_TOKEN_FILE"
        )
        if not token_file:
            raise FargateConfigError(
                "assume_role_method assume_role_with_web_identity needs the connection extra "
                "assume_role_with_web_identity_token_file (or AWS_WEB_IDENTITY_TOKEN_FILE)."
            )

        def fetch() -> Mapping[str, Any]:
            token = Path(token_file).read_text().strip()
            return sts.assume_role_with_web_identity(RoleArn=role_arn, WebIdentityToken=token, **kwargs)

        return _refreshing_session(region, fetch, "assume-role-with-web-identity")
    what = f"{method!r}" + (f" with federation {federation!r}" if method == "assume_role_with_web_identity" else "")
    raise FargateConfigError(
        f"assume_role_method {what} of the AWS connection is supported only with apache-airflow-providers-amazon "
        "installed (without it: assume_role, or assume_role_with_web_identity from a token file)."
    )


def _service_endpoints(extra: Mapping[str, Any]) -> dict[str, str]:
    config = extra.get("service_config")
    if not isinstance(config, Mapping):
        return {}
    return {
        str(service): str(values["endpoint_url"])
        for service, values in config.items()
        if isinstance(values, Mapping) and values.get("endpoint_url")
    }


def _provider_target(conn_id: str | None, region_name: str) -> AwsTarget | None:
    """The Amazon provider's own reading of the connection (every extra it documents), if installed."""
    try:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook
    except ImportError:
        return None
    if conn_id == DEFAULT_CONN_ID and _connection(conn_id, quiet=True) is None:
        conn_id = None  # the default, never created: boto3's chain, without the hook's warning
    hook = AwsBaseHook(aws_conn_id=conn_id or None, region_name=region_name, client_type="ecs")
    wrapper = hook.conn_config
    endpoints = {svc: url for svc in ("ecs", "logs", "sts") if (url := wrapper.get_service_endpoint_url(svc))}
    return AwsTarget(hook.get_session(region_name=region_name), wrapper.endpoint_url, endpoints)


def aws_target(conn_id: str | None, region_name: str) -> AwsTarget:
    """Resolve ``conn_id`` (absent connection -> default chain) into a session for ``region_name``.

    With apache-airflow-providers-amazon installed, its AwsBaseHook reads the connection (so every
    extra it supports means the same here); otherwise: login/password, aws_session_token,
    profile_name, role_arn with assume_role_method/assume_role_kwargs, endpoint_url and
    service_config.<service>.endpoint_url. region_name from the executor's configuration wins
    over the connection's, as in the provider's executor."""
    provided = _provider_target(conn_id, region_name)
    if provided is not None:
        return provided
    conn = _connection(conn_id)
    if conn is None:
        return AwsTarget(boto3.session.Session(region_name=region_name))
    extra = conn.extra_dejson or {}
    session = boto3.session.Session(
        aws_access_key_id=conn.login or None,
        aws_secret_access_key=conn.password or None,
        aws_session_token=extra.get("aws_session_token") or None,
        region_name=region_name,
        profile_name=extra.get("profile_name") or None,
    )
    if extra.get("role_arn"):
        session = _assume_role(session, extra["role_arn"], region_name, extra)
    return AwsTarget(session, extra.get("endpoint_url") or None, _service_endpoints(extra))
