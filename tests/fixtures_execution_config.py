"""execution_config_function targets used by tests (good and broken ones)."""

from __future__ import annotations

from typing import Any

CALLS: list[list[str]] = []


def good_factory():
    def build(command):
        CALLS.append(list(command))
        return {
            "cluster": "from-function",
            "taskDefinition": "fn-td",
            "startedBy": "fn",
            "overrides": {
                "containerOverrides": [{"name": "base", "cpu": 256, "environment": [{"name": "A", "value": "fn"}]}]
            },
        }

    return build


def returns_list_factory():
    return lambda command: ["not", "a", "dict"]


def returns_non_callable_factory() -> Any:
    return {"cluster": "x"}


def raising_factory():
    raise RuntimeError("no credentials for the factory")


def builder_raises_factory():
    def build(command):
        raise ValueError("cannot build for " + command[0])

    return build


def count_factory():
    return lambda command: {"cluster": "c", "taskDefinition": "td", "count": 3}


NOT_CALLABLE = 42


def command_tag_factory():
    """The mistake the first shipped example made: the command (workload JSON, token) as a tag."""
    return lambda command: {
        "cluster": "c",
        "taskDefinition": "td",
        "tags": [{"key": "airflow-command", "value": " ".join(command)[:256]}],
    }


def token_env_factory():
    """Copies the whole command into another container's environment."""
    return lambda command: {
        "cluster": "c",
        "taskDefinition": "td",
        "overrides": {
            "containerOverrides": [{"name": "sidecar", "environment": [{"name": "CMD", "value": " ".join(command)}]}]
        },
    }
