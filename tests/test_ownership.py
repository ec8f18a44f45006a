"""startedBy and owner tags: within ECS's limits, and read back to exactly the try that was tagged."""

from __future__ import annotations

import re
from types import SimpleNamespace

from airflow.models.taskinstancekey import TaskInstanceKey
from hypothesis import given
from hypothesis import strategies as st

from airflow_fargate.ownership import (
    decode_value,
    default_deployment_id,
    encode_value,
    merge_tags,
    ownership_tags,
    read_owner,
    started_by,
)

# ECS: tag values are letters, digits, spaces and + - = . _ : / @, at most 256 characters.
TAG_VALUE = re.compile(r"[\w +\-=._:/@]{0,256}")
TAG_KEY = re.compile(r"[\w +\-=._:/@]{1,128}")
STARTED_BY = re.compile(r"[A-Za-z0-9_\-/]{1,128}")


@given(st.text(max_size=80))
def test_any_value_round_trips_through_the_tag_alphabet(value):
    encoded = encode_value(value)
    assert re.fullmatch(r"[A-Za-z0-9 +\-=._:/@]*", encoded)
    assert decode_value(encoded) == value


def test_a_value_cut_at_the_length_limit_is_refused_rather_than_read_as_a_shorter_one():
    key = TaskInstanceKey("dag", "task", "r~" * 120, 1, -1)
    tags = {t["key"]: t["value"] for t in ownership_tags(key, "task", "q", 7, "dep")}
    assert len(tags["airflow-fargate:run_id"]) == 256
    owner = read_owner([{"key": k, "value": v} for k, v in tags.items()])
    assert owner is not None and owner.run_id is None and owner.try_identity is None


def test_task_try_tags_read_back_to_the_exact_try():
    key = TaskInstanceKey("etl.daily", "load-1", "manual__2026-11-23T10:00:00.123+00:00~x", 3, 12)
    tags = ownership_tags(key, "task", "a" * 32, 42, "analytics-prod")
    assert all(TAG_KEY.fullmatch(t["key"]) and TAG_VALUE.fullmatch(t["value"]) for t in tags)
    assert not any(t["key"].lower().startswith("aws:") for t in tags)
    owner = read_owner(tags)
    assert owner is not None
    assert owner.try_identity == ("etl.daily", "load-1", "manual__2026-11-23T10:00:00.123+00:00~x", 12, 3)
    assert (owner.queueing, owner.job, owner.deployment, owner.kind) == ("a" * 32, "42", "analytics-prod", "task")


def test_callback_tags_name_the_callback_and_have_no_try():
    owner = read_owner(ownership_tags(SimpleNamespace(id="cb-1"), "callback", "q", 1, "d"))
    assert owner is not None and owner.kind == "callback" and owner.work_id == "cb-1"
    assert owner.try_identity is None


def test_tags_of_other_tools_are_not_an_owner():
    assert read_owner([{"key": "team", "value": "data"}]) is None
    assert read_owner(None) is None


def test_our_tags_replace_user_tags_of_the_same_key_and_keep_the_rest():
    ours = [{"key": "airflow-fargate:job", "value": "7"}]
    user = [{"key": "team", "value": "data"}, {"key": "airflow-fargate:job", "value": "forged"}]
    assert merge_tags(user, ours) == [{"key": "team", "value": "data"}, *ours]


@given(st.text(min_size=1, max_size=200), st.one_of(st.none(), st.text(max_size=60)))
def test_started_by_is_always_valid_for_ecs_and_distinct_names_stay_distinct(deployment, team):
    value = started_by(deployment, team)
    assert STARTED_BY.fullmatch(value)
    assert value != started_by(deployment + "x", team)


def test_started_by_names_deployment_and_team():
    assert started_by("prod") == "airflow-fargate/prod"
    assert started_by("prod", "team_a") == "airflow-fargate/prod/team_a"


def test_default_deployment_id_ignores_the_password_and_tells_databases_apart():
    base = default_deployment_id("postgresql+psycopg2://airflow:secret@db:5432/airflow")
    assert base == default_deployment_id("postgresql+psycopg2://airflow:rotated@db:5432/airflow")
    assert base != default_deployment_id("postgresql+psycopg2://airflow:secret@db:5432/airflow_staging")
    assert base != default_deployment_id("postgresql+psycopg2://airflow:secret@other-db:5432/airflow")
    assert re.fullmatch(r"db-[0-9a-f]{12}", base)
    assert "secret" not in base
