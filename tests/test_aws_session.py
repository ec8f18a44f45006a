"""aws_conn_id -> boto3 session: every extra an Airflow AWS connection can hold, read by the Amazon
provider's AwsBaseHook when it is installed and by our own equivalent path when it is not (each
test runs both ways where the provider is installed)."""

from __future__ import annotations

import json

import pytest
from moto import mock_aws

from airflow_fargate import aws_session
from airflow_fargate.aws_session import aws_target
from airflow_fargate.errors import FargateConfigError

PROVIDER = aws_session._provider_target


@pytest.fixture(params=["provider", "own"])
def reader(request, monkeypatch) -> str:
    """Which path reads the connection: the provider's AwsBaseHook, or ours (provider hidden)."""
    if request.param == "provider":
        pytest.importorskip("airflow.providers.amazon", reason="apache-airflow-providers-amazon is not installed")
    else:
        monkeypatch.setattr(aws_session, "_provider_target", lambda conn_id, region: None)
    return str(request.param)


def set_connection(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "aws", **fields}))


def test_keys_and_session_token(monkeypatch, reader):
    set_connection(monkeypatch, "ecs_keys", login="AKIAFROMCONN", password="secret", extra={"aws_session_token": "tok"})
    creds = aws_target("ecs_keys", "eu-central-1").session.get_credentials().get_frozen_credentials()
    assert (creds.access_key, creds.secret_key, creds.token) == ("AKIAFROMCONN", "secret", "tok")


def test_region_of_the_executor_wins_over_the_connections(monkeypatch, reader):
    set_connection(monkeypatch, "ecs_region", extra={"region_name": "ap-south-1"})
    assert aws_target("ecs_region", "eu-central-1").session.region_name == "eu-central-1"


def test_endpoint_url_applies_to_every_service_and_service_config_to_its_own(monkeypatch, reader):
    set_connection(
        monkeypatch,
        "ecs_endpoints",
        extra={"endpoint_url": "http://127.0.0.1:1", "service_config": {"ecs": {"endpoint_url": "http://127.0.0.1:2"}}},
    )
    target = aws_target("ecs_endpoints", "us-east-1")
    assert target.endpoint_for("ecs") == "http://127.0.0.1:2"
    assert target.endpoint_for("logs") == "http://127.0.0.1:1"
    assert target.client("logs").meta.endpoint_url == "http://127.0.0.1:1"


def test_service_config_for_logs_only_leaves_ecs_on_aws(monkeypatch, reader):
    set_connection(
        monkeypatch, "ecs_logs_only", extra={"service_config": {"logs": {"endpoint_url": "http://127.0.0.1:3"}}}
    )
    target = aws_target("ecs_logs_only", "us-east-1")
    assert target.endpoint_for("logs") == "http://127.0.0.1:3"
    assert target.endpoint_for("ecs") is None


def test_profile_name(monkeypatch, reader, tmp_path):
    credentials = tmp_path / "credentials"
    credentials.write_text("[etl]\naws_access_key_id = AKIAPROFILE\naws_secret_access_key = from-profile\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)  # the profile, not the environment, must answer
    set_connection(monkeypatch, "ecs_profile", extra={"profile_name": "etl"})
    assert aws_target("ecs_profile", "us-east-1").session.get_credentials().access_key == "AKIAPROFILE"


def test_role_arn_is_assumed_with_its_kwargs_and_refreshes(monkeypatch, reader):
    set_connection(
        monkeypatch,
        "ecs_role",
        extra={
            "role_arn": "arn:aws:iam::123456789012:role/airflow-scheduler",
            "assume_role_kwargs": {"RoleSessionName": "fargate-sched"},
        },
    )
    with mock_aws():
        target = aws_target("ecs_role", "us-east-1")
        creds = target.session.get_credentials()
        assert creds.get_frozen_credentials().access_key != "testing"  # came from sts:AssumeRole
        assert type(creds).__name__ in ("RefreshableCredentials", "DeferredRefreshableCredentials")
        arn = target.session.client("sts").get_caller_identity()["Arn"]
    assert arn == "arn:aws:sts::123456789012:assumed-role/airflow-scheduler/fargate-sched"


def test_role_assumed_with_a_web_identity_token(monkeypatch, reader, tmp_path):
    token = tmp_path / "token"
    token.write_text("eyJ.web-identity.token")
    set_connection(
        monkeypatch,
        "ecs_oidc",
        extra={
            "role_arn": "arn:aws:iam::123456789012:role/airflow-oidc",
            "assume_role_method": "assume_role_with_web_identity",
            "assume_role_with_web_identity_federation": "file",  # the provider's documented form
            "assume_role_with_web_identity_token_file": str(token),
            "assume_role_kwargs": {"RoleSessionName": "oidc-sched"},
        },
    )
    with mock_aws():
        target = aws_target("ecs_oidc", "us-east-1")
        arn = target.session.client("sts").get_caller_identity()["Arn"]
    assert arn.startswith("arn:aws:sts::123456789012:assumed-role/airflow-oidc/")


def test_an_assume_role_method_only_the_provider_knows_is_a_clear_error_without_it(monkeypatch):
    monkeypatch.setattr(aws_session, "_provider_target", lambda conn_id, region: None)
    set_connection(
        monkeypatch,
        "ecs_saml",
        extra={"role_arn": "arn:aws:iam::1:role/r", "assume_role_method": "assume_role_with_saml"},
    )
    with pytest.raises(FargateConfigError, match=r"assume_role_with_saml.*apache-airflow-providers-amazon"):
        aws_target("ecs_saml", "us-east-1")


def test_absent_connection_uses_the_default_chain(airflow_db, reader):
    target = aws_target("no_such_connection", "ap-south-1")
    assert target.endpoint_for("ecs") is None
    assert target.session.get_credentials().access_key == "testing"  # from AWS_ACCESS_KEY_ID
    assert target.session.region_name == "ap-south-1"


@pytest.mark.parametrize("conn_id", [None, ""])
def test_no_connection_id_uses_the_default_chain(conn_id, reader):
    assert aws_target(conn_id, "us-east-1").session.get_credentials().access_key == "testing"


def test_the_provider_reads_the_connection_when_installed():
    pytest.importorskip("airflow.providers.amazon", reason="apache-airflow-providers-amazon is not installed")
    assert PROVIDER("aws_default", "us-east-1") is not None


def test_the_default_connection_never_created_uses_the_default_chain_without_a_warning(airflow_db, capsys, caplog):
    """aws_conn_id's default (aws_default) is rarely created: no "Unable to find AWS Connection ID"
    warning on every start, check and demo run. A named connection that is missing still says so."""
    pytest.importorskip("airflow.providers.amazon", reason="apache-airflow-providers-amazon is not installed")
    target = aws_target("aws_default", "us-east-1")
    assert target.session.get_credentials().access_key == "testing"
    said = capsys.readouterr().out + caplog.text
    assert "Unable to find AWS Connection ID" not in said, said
    aws_target("named_but_missing", "us-east-1")
    said = capsys.readouterr().out + caplog.text
    assert "Unable to find AWS Connection ID 'named_but_missing'" in said
