"""Errors with messages meant for the operator who has to fix the input."""

from __future__ import annotations

from airflow.exceptions import AirflowConfigException, AirflowException


class FargateConfigError(AirflowConfigException):
    """Executor configuration is invalid: raised at scheduler start, names the option to fix."""


class TaskConfigError(AirflowException):
    """One task's executor_config (or the kwargs built for it) is invalid: fails that task only."""
