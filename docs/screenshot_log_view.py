"""Take the README's screenshot of the log view (docs/log-view.png): a finished try's log, read
from CloudWatch after its container (and its private AIRFLOW_HOME) is gone.

Needs the project venv and Debian's chromium: ``.venv/bin/python docs/screenshot_log_view.py``.
No test depends on it.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from airflow_fargate.local.stack import AirflowStack

ROOT = Path(__file__).resolve().parents[1]
LOG_CONFIG = {"AIRFLOW__LOGGING__LOGGING_CONFIG_CLASS": "airflow_fargate.log_config.LOGGING_CONFIG"}


def main(task_id: str = "greet") -> int:
    home = Path(tempfile.mkdtemp(prefix="log-view-shot-")) / "airflow"
    stack = AirflowStack(home=home, dags_folder=ROOT / "config" / "dags", extra_env=LOG_CONFIG)
    run_id = "manual__readme"
    with stack:
        stack.trigger("example_fargate", run_id)
        if stack.wait_for_run("example_fargate", run_id, timeout=600) != "success":
            return 1
        url = f"http://127.0.0.1:{stack.api_port}/dags/example_fargate/runs/{run_id}/tasks/{task_id}"
        command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                   "--window-size=1440,900", "--virtual-time-budget=20000",
                   f"--screenshot={ROOT / 'docs' / 'log-view.png'}", url]  # fmt: skip
        return subprocess.run(command, timeout=120, check=False, capture_output=True).returncode


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
