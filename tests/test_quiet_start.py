"""The tagging probe waits for the first launches (quiet_start.AfterFirstLaunches)."""

from __future__ import annotations

import threading

from airflow_fargate.quiet_start import AfterFirstLaunches


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def probe(launching: list[bool], clock: Clock) -> tuple[AfterFirstLaunches, threading.Event]:
    ran = threading.Event()
    return AfterFirstLaunches(ran.set, "probe", lambda: launching[0], clock=clock, max_wait_seconds=10), ran


def test_it_runs_at_the_first_heartbeat_that_finds_the_launcher_idle() -> None:
    launching, clock = [True], Clock()
    job, ran = probe(launching, clock)
    job.poll()
    clock.now += 5
    job.poll()
    assert not job.started and not ran.is_set()
    launching[0] = False
    job.poll()
    job.join(5)
    assert ran.is_set()


def test_it_runs_after_the_longest_wait_while_launches_never_stop() -> None:
    launching, clock = [True], Clock()
    job, ran = probe(launching, clock)
    clock.now += 10
    job.poll()
    job.join(5)
    assert ran.is_set()


def test_it_runs_once_and_a_job_never_started_is_not_waited_for() -> None:
    launching, clock = [False], Clock()
    runs: list[int] = []
    job = AfterFirstLaunches(lambda: runs.append(1), "probe", lambda: launching[0], clock=clock)
    job.join(0)  # nothing started: returns at once
    job.poll()
    job.poll()
    job.join(5)
    assert runs == [1]
