"""A configuration error at scheduler start: printed once, exit status 1 (issue #15)."""

from __future__ import annotations

import os
import subprocess
import sys
import traceback

import pytest

from airflow_fargate import FargateExecutor
from airflow_fargate.errors import FargateConfigError
from airflow_fargate.startup_error import POINTER, raised_at_start

BAD_JSON = '{"count": "unterminated'
MESSAGE = "run_task_kwargs (AIRFLOW__AWS_ECS_EXECUTOR__RUN_TASK_KWARGS) or [fargate] run_task_kwargs"


def _bad_config_env() -> dict[str, str]:
    return {
        "AIRFLOW__AWS_ECS_EXECUTOR__REGION_NAME": "us-east-1",
        "AIRFLOW__AWS_ECS_EXECUTOR__CLUSTER": "airflow",
        "AIRFLOW__AWS_ECS_EXECUTOR__TASK_DEFINITION": "airflow-worker",
        "AIRFLOW__AWS_ECS_EXECUTOR__CONTAINER_NAME": "airflow-worker",
        "AIRFLOW__AWS_ECS_EXECUTOR__RUN_TASK_KWARGS": BAD_JSON,
    }


def test_start_raises_the_config_error_without_the_frames_that_found_it(monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    for name, value in _bad_config_env().items():
        monkeypatch.setenv(name, value)
    with pytest.raises(FargateConfigError, match="is not valid JSON") as caught:
        FargateExecutor().start()
    files = {os.path.basename(frame.filename) for frame in traceback.extract_tb(caught.value.__traceback__)}
    assert "settings.py" not in files and "executor.py" in files
    assert caught.value.__suppress_context__  # no "During handling of the above exception" JSON error


def test_the_dying_print_of_a_start_error_is_one_line_and_others_print_as_before(monkeypatch, capsys):
    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda exc_type, exc, tb: seen.append(exc))
    marked = raised_at_start(FargateConfigError("bad"))
    hook = sys.excepthook
    raised_at_start(FargateConfigError("worse"))
    assert sys.excepthook is hook  # installed once, not wrapped again

    sys.excepthook(FargateConfigError, marked, None)
    assert capsys.readouterr().err == POINTER + "\n" and not seen
    other = FargateConfigError("raised elsewhere")
    sys.excepthook(FargateConfigError, other, None)
    sys.excepthook(ValueError, ValueError("x"), None)
    assert [type(e) for e in seen] == [FargateConfigError, ValueError] and seen[0] is other
    assert capsys.readouterr().err == ""


@pytest.mark.e2e
def test_a_real_scheduler_prints_a_config_error_once_and_exits_1(airflow_db):
    """`airflow scheduler` (Airflow 3.3, and 2.11 in its venv): the scheduler's own log entry is
    the only place the message appears, its traceback stops at start(), and the process's last
    line is the pointer, not a second traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "scheduler"],
        env=os.environ | _bad_config_env(),
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert output.count(MESSAGE) == 1, output[-3000:]
    assert output.count("Traceback (most recent call last)") == 1, output[-3000:]
    assert "settings.py" not in output
    assert result.stderr.strip().splitlines()[-1] == POINTER
