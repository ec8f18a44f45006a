"""The background describe poller: one poll at a time, answers taken once, errors handed over."""

from __future__ import annotations

import threading
import time

import pytest

from airflow_fargate.ecs import DescribeResult
from airflow_fargate.poller import Poller


def wait_answer(poller: Poller, timeout: float = 5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = poller.take()
        if answer is not None:
            return answer
        time.sleep(0.005)
    raise TimeoutError


def test_one_poll_at_a_time_and_each_answer_once():
    release = threading.Event()
    seen: list[list[str]] = []

    def describe(arns):
        seen.append(list(arns))
        release.wait(5)
        return DescribeResult(missing={a: "MISSING" for a in arns})

    poller = Poller(describe)
    assert poller.request(["a"])
    assert not poller.request(["b"])  # busy: the request is dropped, the caller asks again later
    assert poller.take() is None
    release.set()
    answer = wait_answer(poller)
    assert answer.missing == {"a": "MISSING"}
    assert poller.take() is None
    assert poller.request(["c"])
    assert wait_answer(poller).missing == {"c": "MISSING"}
    assert seen == [["a"], ["c"]]
    poller.shutdown()


def test_errors_are_handed_to_the_caller():
    poller = Poller(lambda arns: (_ for _ in ()).throw(RuntimeError("ecs down")))
    poller.request(["a"])
    answer = wait_answer(poller)
    assert isinstance(answer, RuntimeError)
    poller.shutdown()
    assert not poller.request(["a"])


@pytest.mark.timeout(10)
def test_shutdown_while_idle_returns():
    Poller(lambda arns: DescribeResult()).shutdown()
