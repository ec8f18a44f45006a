"""Task sizes: the ``{"cpu": ..., "memory": ...}`` shorthand, and Fargate's size table.

A wrong Fargate size is otherwise only found when RunTask refuses it, task by task, after the
try was queued. Fargate accepts fixed CPU/memory pairs (Linux; published in the ECS developer
guide, "Task CPU and memory"); EC2 launches have no such table and are not checked.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from airflow_fargate.errors import shorten

GIB = 1024
# CPU units -> the memory values (MiB) Fargate accepts with it.
FARGATE_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: tuple(range(1 * GIB, 4 * GIB + 1, GIB)),
    1024: tuple(range(2 * GIB, 8 * GIB + 1, GIB)),
    2048: tuple(range(4 * GIB, 16 * GIB + 1, GIB)),
    4096: tuple(range(8 * GIB, 30 * GIB + 1, GIB)),
    8192: tuple(range(16 * GIB, 60 * GIB + 1, 4 * GIB)),
    16384: tuple(range(32 * GIB, 120 * GIB + 1, 8 * GIB)),
}
EPHEMERAL_STORAGE_GIB = (21, 200)  # overrides.ephemeralStorage.sizeInGiB on Fargate (20 GiB is the default)
FARGATE_PROVIDERS = frozenset({"FARGATE", "FARGATE_SPOT"})
SHORTHAND_KEYS = ("cpu", "memory", "ephemeral_storage")
_UNITS = re.compile(r"^\s*(\d*\.?\d+)\s*(vcpu|gb|gib|mb|mib)?\s*$", re.IGNORECASE)


def _units(value: Any, what: str) -> int | None:
    """CPU units or MiB from 1024, "1024", "1 vCPU", "0.25 vcpu", "8 GB"; None if unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or len(value) > 20:
        return None
    match = _UNITS.match(value)
    if not match:
        return None
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    if unit and (unit == "vcpu") != (what == "cpu"):
        return None  # "2 GB" of CPU, "1 vCPU" of memory
    if unit in ("vcpu", "gb", "gib"):
        number *= 1024
    return int(number) if number == int(number) else None


def expand_shorthand(layer: Mapping[str, Any], container: str, label: str, error: type[Exception]) -> dict[str, Any]:
    """``{"cpu": 1024, "memory": 4096, "ephemeral_storage": 50}`` (any subset, beside full run_task
    keys) as run_task kwargs: the task's size in ``overrides`` and the same size for the Airflow
    container in its containerOverrides, so a container limit in the task definition does not
    keep the task at its old size. ephemeral_storage is in GiB."""
    if not any(key in layer for key in SHORTHAND_KEYS):
        return dict(layer)
    out = {k: v for k, v in layer.items() if k not in SHORTHAND_KEYS}
    overrides = out.get("overrides", {})
    if not isinstance(overrides, Mapping):
        raise error(f"{label}: overrides must be an object, got {type(overrides).__name__}.")
    overrides = copy.deepcopy(dict(overrides))
    containers = overrides.get("containerOverrides", [])
    if not isinstance(containers, list):
        raise error(f"{label}: overrides.containerOverrides must be a list, got {type(containers).__name__}.")
    target = next((c for c in containers if isinstance(c, dict) and c.get("name") == container), None)
    if target is None:
        target = {"name": container}
        containers.append(target)
    for key, task_key in (("cpu", "cpu"), ("memory", "memory")):
        if key not in layer:
            continue
        units = _units(layer[key], key)
        if units is None or units < 1:
            example = '1024 or "1 vCPU"' if key == "cpu" else '4096 or "4 GB"'
            raise error(f"{label}: {key} must be a positive number ({example}), got {shorten(layer[key])}.")
        if task_key in overrides and _units(overrides[task_key], key) != units:
            raise error(
                f"{label} sets both {key}={shorten(layer[key])} and overrides.{task_key}="
                f"{shorten(overrides[task_key])}; keep one."
            )
        overrides[task_key] = str(units)
        target.setdefault(key, units)
    if "ephemeral_storage" in layer:
        size = layer["ephemeral_storage"]
        if type(size) is not int or size < 1:
            raise error(f"{label}: ephemeral_storage must be a whole number of GiB, got {shorten(size)}.")
        overrides["ephemeralStorage"] = {"sizeInGiB": size}
    overrides["containerOverrides"] = containers
    out["overrides"] = overrides
    return out


def is_fargate(kwargs: Mapping[str, Any], cluster_default_strategy: Sequence[Mapping[str, Any]] = ()) -> bool:
    """Whether these (defaults applied) kwargs launch on Fargate: launchType FARGATE, or a capacity
    provider strategy (the kwargs' own, else the cluster's default) of FARGATE/FARGATE_SPOT only."""
    if "launchType" in kwargs:
        return kwargs["launchType"] == "FARGATE"
    strategy = kwargs.get("capacityProviderStrategy", cluster_default_strategy)
    providers = {item.get("capacityProvider") for item in strategy or () if isinstance(item, Mapping)}
    return bool(providers) and providers <= FARGATE_PROVIDERS


def _list(values: Iterable[int]) -> str:
    return ", ".join(str(v) for v in values)


def fargate_size_problem(kwargs: Mapping[str, Any]) -> str | None:
    """What Fargate would refuse in the task size of these kwargs, with the valid choices; None
    if the size is valid or left to the task definition. A value given alone (only cpu, only
    memory) is checked against every size Fargate has, as the other half is the definition's."""
    overrides = kwargs.get("overrides")
    if not isinstance(overrides, Mapping):
        return None
    cpu_raw, memory_raw = overrides.get("cpu"), overrides.get("memory")
    cpu = None if cpu_raw is None else _units(cpu_raw, "cpu")
    memory = None if memory_raw is None else _units(memory_raw, "memory")
    cpus = f"Fargate accepts cpu {_list(FARGATE_SIZES)} (CPU units; 1024 = 1 vCPU)"
    if cpu_raw is not None and cpu not in FARGATE_SIZES:
        return f"overrides.cpu={shorten(cpu_raw)} is not a Fargate task size: {cpus}."
    if memory_raw is not None and memory is None:
        return f'overrides.memory={shorten(memory_raw)} is not a number of MiB (e.g. 4096 or "4 GB").'
    if cpu is not None and memory is not None and memory not in FARGATE_SIZES[cpu]:
        return (
            f"overrides.cpu={shorten(cpu_raw)} with overrides.memory={shorten(memory_raw)} is not a Fargate task "
            f"size: with cpu {cpu} Fargate accepts memory {_list(FARGATE_SIZES[cpu])} (MiB)."
        )
    if cpu is None and memory is not None and not any(memory in sizes for sizes in FARGATE_SIZES.values()):
        valid = sorted({m for sizes in FARGATE_SIZES.values() for m in sizes})
        return (
            f"overrides.memory={shorten(memory_raw)} is not a Fargate task size: Fargate accepts 512, 1024, "
            f"then multiples of 1024 up to 30720, of 4096 up to 61440 and of 8192 up to {valid[-1]} (MiB), "
            "each only with some cpu values."
        )
    storage = overrides.get("ephemeralStorage")
    size = storage.get("sizeInGiB") if isinstance(storage, Mapping) else None
    low, high = EPHEMERAL_STORAGE_GIB
    if isinstance(size, int) and not low <= size <= high:
        return (
            f"overrides.ephemeralStorage.sizeInGiB={size} is outside what Fargate accepts: {low}-{high} GiB "
            "(without it a task gets 20 GiB)."
        )
    return None
