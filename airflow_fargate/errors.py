"""Errors with messages meant for the operator who has to fix the input, and the helpers that
keep those messages short whatever the input was."""

from __future__ import annotations

import reprlib
from typing import Any

from airflow.exceptions import AirflowConfigException, AirflowException

MAX_NESTING = 32  # deeper JSON is no run_task kwargs; refused before recursive merging or copying sees it
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlevel = 3


class FargateConfigError(AirflowConfigException, AirflowException):
    """Executor configuration is invalid: raised at scheduler start, names the option to fix.

    Airflow's config exception (as the provider's are) and, on Airflow 3 too, an AirflowException
    (there the config exception no longer derives from it)."""


class TaskConfigError(AirflowException):
    """One task's executor_config (or the kwargs built for it) is invalid: fails that task only."""


def shorten(value: Any) -> str:
    """repr(value), cut to about 80 characters per item: an error message never repeats a
    megabyte of input (nor a 5000-digit number, which Python refuses to print)."""
    try:
        return _SHORT.repr(value)
    except ValueError:
        return "<a number too long to print>"


def shorten_lines(text: str, limit: int = 300) -> str:
    """Each line of a message (e.g. botocore's validation report, which quotes values) cut to ``limit``."""
    return "\n".join(line if len(line) <= limit else line[:limit] + "... (cut)" for line in text.splitlines())


def nesting_depth(value: Any, limit: int = MAX_NESTING) -> int:
    """Depth of nested lists/dicts, counted without recursion, stopping once past ``limit``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def refuse_deep_nesting(label: str, value: Any, error: type[Exception]) -> None:
    """Raise ``error`` naming ``label`` if ``value`` nests deeper than MAX_NESTING levels."""
    if nesting_depth(value) > MAX_NESTING:
        raise error(f"{label} is nested deeper than {MAX_NESTING} levels.")
