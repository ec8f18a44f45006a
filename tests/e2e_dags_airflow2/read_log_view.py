"""What Airflow 2's log view shows for one try (its TaskLogReader), printed as JSON.

Run by tests/test_e2e_airflow2.py in the webserver's stead, with the deployment's environment plus
[logging] logging_config_class = airflow_fargate.log_config.LOGGING_CONFIG.
Usage: read_log_view.py DAG_ID RUN_ID TASK_ID
"""

from __future__ import annotations

import json
import sys

from airflow.models import TaskInstance
from airflow.utils.log.log_reader import TaskLogReader
from airflow.utils.session import create_session

dag_id, run_id, task_id = sys.argv[1:4]
with create_session() as session:
    ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id).one()
    chunks, _ = TaskLogReader().read_log_chunks(ti, ti.try_number, {})
print(json.dumps(chunks, default=str))
