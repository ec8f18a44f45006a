"""Where each value of the effective run_task kwargs came from (for ``airflow fargate show-config``).

Pure: walks the same layers the builder merges and names, for every leaf of the result, the
highest layer that set it: an option (with section and env/airflow.cfg), run_task_kwargs,
execution_config_function, the profile of the task's queue, the task's executor_config, a
built-in default, or the executor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_fargate.run_task import EXECUTOR_ENV, is_named_list
from airflow_fargate.settings import ExecutorSettings

Path = tuple[str, ...]

# Leaves of the built-in config layer -> the setting that produced them.
CONFIG_SETTINGS: dict[Path, str] = {
    ("cluster",): "cluster",
    ("taskDefinition",): "task_definition",
    ("launchType",): "launch_type",
    ("capacityProviderStrategy",): "capacity_provider_strategy",
    ("platformVersion",): "platform_version",
    ("networkConfiguration", "awsvpcConfiguration", "subnets"): "subnets",
    ("networkConfiguration", "awsvpcConfiguration", "securityGroups"): "security_groups",
    ("networkConfiguration", "awsvpcConfiguration", "assignPublicIp"): "assign_public_ip",
}
DEFAULT = "default (built in)"
EXECUTOR = "executor (the task's command, set per try)"


def leaves(value: Any, prefix: Path = ()) -> dict[Path, Any]:
    """Flatten kwargs to path -> value; items of ``{"name": ...}`` lists are addressed by name."""
    if isinstance(value, Mapping) and value:
        out: dict[Path, Any] = {}
        for key, item in value.items():
            out.update(leaves(item, (*prefix, str(key))))
        return out
    if is_named_list(value) and value:
        out = {}
        for item in value:
            out.update(leaves(item, (*prefix, f"[{item['name']}]")))
        return out
    return {prefix: value}


def dotted(path: Path) -> str:
    return ".".join(path).replace(".[", "[")


def _config_source(path: Path, settings: ExecutorSettings) -> str:
    if path[:2] == ("overrides", "containerOverrides") and path[-1] == "name":
        setting = "container_name"
    else:
        setting = CONFIG_SETTINGS.get(path, "")
    return settings.sources.get(setting, "config")


def _executor_set(path: Path, container: str) -> bool:
    """Leaves the executor writes into container_name's override: the command and its env flag."""
    flag = f"[{EXECUTOR_ENV['name']}]"
    return path[:3] == ("overrides", "containerOverrides", f"[{container}]") and path[3:] in {
        ("command",),
        ("environment", flag, "name"),
        ("environment", flag, "value"),
    }


def value_sources(
    final: Mapping[str, Any], layers: Sequence[tuple[str, Mapping[str, Any]]], settings: ExecutorSettings
) -> dict[str, str]:
    """Dotted path of every leaf of ``final`` -> where its value came from."""
    flat_layers = [(name, leaves(layer)) for name, layer in layers]
    sources: dict[str, str] = {}
    for path, value in leaves(final).items():
        source = DEFAULT
        if _executor_set(path, settings.container_name):
            source = EXECUTOR
        elif path == ("startedBy",):
            source = f"executor (deployment_id: {settings.sources.get('deployment_id', 'default')})"
        else:
            # An item's "name" only identifies it: it comes from the layer that first added the item.
            identity = len(path) > 1 and path[-1] == "name" and path[-2].startswith("[")
            for name, flat in flat_layers if identity else reversed(flat_layers):
                if path in flat and flat[path] == value:
                    source = _layer_label(name, path, settings)
                    break
        sources[dotted(path)] = source
    return sources


def _layer_label(name: str, path: Path, settings: ExecutorSettings) -> str:
    if name == "config":
        return _config_source(path, settings)
    if name in ("run_task_kwargs", "execution_config_function"):
        return f"{name}: {settings.sources.get(name, name)}"
    if name.startswith("queue_profile:"):
        return f"queue profile {name.split(':', 1)[1]!r}: {settings.sources.get('queue_profiles', 'queue_profiles')}"
    return name
