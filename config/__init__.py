"""Configuration templates shipped with airflow-fargate (installed as ``airflow_fargate.config``).

``options.yaml`` is the single catalogue of the executor's options; ``airflow.cfg.example``,
``task-definition.example.json`` and ``example_execution_config.py`` are examples for users.
"""
