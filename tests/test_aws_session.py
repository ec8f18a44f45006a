"""aws_conn_id -> boto3 session: keys, region, endpoint_url, role_arn through STS, default chain."""

from __future__ import annotations

import json

import pytest
from moto import mock_aws

from airflow_fargate.aws_session import aws_target


def set_connection(monkeypatch, conn_id: str, **fields) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "aws", **fields}))


def test_keys_and_endpoint_from_connection(monkeypatch):
    set_connection(
        monkeypatch,
        "ecs_keys",
        login="AKIAFROMCONN",
        password="secret-from-conn",
        extra={"endpoint_url": "http://127.0.0.1:4599", "aws_session_token": "tok"},
    )
    target = aws_target("ecs_keys", "eu-central-1")
    creds = target.session.get_credentials()
    assert (creds.access_key, creds.secret_key, creds.token) == ("AKIAFROMCONN", "secret-from-conn", "tok")
    assert target.session.region_name == "eu-central-1"
    assert target.endpoint_url == "http://127.0.0.1:4599"


def test_service_config_endpoint(monkeypatch):
    set_connection(monkeypatch, "ecs_svc", extra={"service_config": {"ecs": {"endpoint_url": "http://localhost:1"}}})
    assert aws_target("ecs_svc", "us-east-1").endpoint_url == "http://localhost:1"


def test_role_arn_is_assumed_and_refreshable(monkeypatch):
    set_connection(monkeypatch, "ecs_role", extra={"role_arn": "arn:aws:iam::123456789012:role/airflow-scheduler"})
    with mock_aws():
        target = aws_target("ecs_role", "us-east-1")
        creds = target.session.get_credentials()
        frozen = creds.get_frozen_credentials()
        assert frozen.access_key != "testing"  # came from sts:AssumeRole, not the environment
        assert frozen.token
        assert type(creds).__name__ == "RefreshableCredentials"
        assert (
            target.session.client("sts")
            .get_caller_identity()["Arn"]
            .startswith("arn:aws:sts::123456789012:assumed-role/airflow-scheduler/")
        )


def test_absent_connection_uses_the_default_chain(airflow_db):
    target = aws_target("no_such_connection", "ap-south-1")
    assert target.endpoint_url is None
    assert target.session.get_credentials().access_key == "testing"  # from AWS_ACCESS_KEY_ID
    assert target.session.region_name == "ap-south-1"


@pytest.mark.parametrize("conn_id", [None, ""])
def test_no_connection_id_uses_the_default_chain(conn_id):
    assert aws_target(conn_id, "us-east-1").session.get_credentials().access_key == "testing"
