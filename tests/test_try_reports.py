"""What a try's own row says, and how a failing metadata DB degrades to describing."""

from __future__ import annotations

import logging

import pytest
from airflow.models.taskinstancekey import TaskInstanceKey

from airflow_fargate.try_reports import Report, TryReports, identity_of, report_of

KEY = TaskInstanceKey("dag", "task", "run", 2, 5)  # dag_id, task_id, run_id, try_number, map_index


@pytest.mark.parametrize(
    ("state", "report"),
    [
        ("queued", Report.STARTING),
        ("running", Report.RUNNING),
        ("success", Report.ENDED),
        ("skipped", Report.ENDED),
        ("deferred", Report.ENDED),
        ("up_for_reschedule", Report.RESCHEDULED),  # ended too, as a poke
        ("failed", Report.FAILED),
        ("up_for_retry", Report.FAILED),
        ("upstream_failed", Report.FAILED),
        # the row says nothing about this container: cleared while running, reset, scheduled
        ("restarting", None),
        ("scheduled", None),
        ("removed", None),
        (None, None),
    ],
)
def test_each_state_a_row_can_be_in_maps_to_what_it_says_of_the_container(state, report):
    assert report_of(state) is report


def test_a_poke_has_ended_as_much_as_a_success():
    assert [report.ended for report in Report] == [False, False, True, True, False]


def test_only_task_tries_have_a_row():
    assert identity_of(KEY) == ("dag", "task", "run", 5, 2)
    assert identity_of(object()) is None  # a callback's or connection test's key


def test_rows_are_read_by_try_and_answered_by_arn():
    asked: list = []

    def read_states(identities):
        asked.append(set(identities))
        return {("dag", "task", "run", 5, 2): "success"}

    reports = TryReports(read_states)({"arn-1": KEY, "arn-2": object()})
    assert reports == {"arn-1": Report.ENDED}
    assert asked == [{("dag", "task", "run", 5, 2)}]
    assert TryReports(read_states)({"arn-2": object()}) == {}  # nothing to read: no query at all
    assert len(asked) == 1


def test_a_db_that_does_not_answer_is_warned_about_once_a_minute_and_answers_nothing(caplog):
    now = [0.0]

    def read_states(identities):
        raise RuntimeError("database is locked\n" + "x" * 5000)

    reports = TryReports(read_states, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="airflow_fargate.try_reports"):
        for second in range(0, 130, 10):
            now[0] = second
            assert reports({"arn-1": KEY}) == {}
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3  # at 0, 60 and 120 s
    assert "described instead" in warnings[0] and len(warnings[0]) < 1000


def test_the_metadata_db_is_read_with_one_memory_of_row_keys_kept_from_round_to_round(monkeypatch):
    """metadata_db.try_states reads a row by its primary key once a round found it: the reader
    must hand it the same memory every round, or every round reads by identity again."""
    memories: list = []

    def try_states(identities, row_ids=None):
        memories.append(row_ids)
        return {identity: "running" for identity in identities}

    monkeypatch.setattr("airflow_fargate.metadata_db.try_states", try_states)
    reports = TryReports()
    assert reports({"arn-1": KEY}) == reports({"arn-1": KEY}) == {"arn-1": Report.RUNNING}
    assert isinstance(memories[0], dict) and memories[1] is memories[0]
