"""``[logging] logging_config_class = airflow_fargate.log_config.LOGGING_CONFIG``: Airflow's own
logging configuration, plus the log view reader of log_view.py, so the UI shows a finished try's
whole log from CloudWatch with no remote logging to set up. Airflow 3 takes it as its remote log
IO (REMOTE_TASK_LOG); Airflow 2 as the "task" handler (airflow_fargate.log_handler).

Set it where logs are read (api-server or webserver, and scheduler), not in the task image:
containers keep Airflow's default. With ``[logging] remote_logging`` on, the configured remote
logging (S3, CloudWatch, ...) is kept unchanged and this module adds nothing.
"""

from __future__ import annotations

import copy
from typing import Any

from airflow.config_templates.airflow_local_settings import DEFAULT_LOGGING_CONFIG
from airflow.configuration import conf

from airflow_fargate.compat import AIRFLOW_V3
from airflow_fargate.log_view import FargateTaskLogIO

_REMOTE_LOGGING = conf.getboolean("logging", "remote_logging", fallback=False)

LOGGING_CONFIG: dict[str, Any] = copy.deepcopy(DEFAULT_LOGGING_CONFIG)
# None lets Airflow resolve the configured remote logging as it would without this module.
REMOTE_TASK_LOG = FargateTaskLogIO() if AIRFLOW_V3 and not _REMOTE_LOGGING else None
if not AIRFLOW_V3 and not _REMOTE_LOGGING:
    LOGGING_CONFIG["handlers"]["task"]["class"] = "airflow_fargate.log_handler.FargateTaskHandler"
