"""The option catalogue (``config/options.yaml``), loaded once.

Provider info, settings defaults, the legacy/modern key mapping and the README's configuration
table all come from this one file so they cannot drift apart.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

MODERN_SECTION = "aws_ecs_executor"
LEGACY_SECTION = "fargate"
# Keys that are ours, not part of Airflow's provider-info option schema.
_PRIVATE_KEYS = frozenset({"required", "setting"})


@dataclass(frozen=True)
class Option:
    """One option of one section, as the catalogue describes it."""

    section: str
    name: str
    setting: str  # the ExecutorSettings field it feeds
    type: str
    default: str | None
    required: bool
    description: str
    example: str | None


@functools.cache
def raw_catalogue() -> dict[str, Any]:
    """The parsed YAML, sections -> {description, options}, with a [fargate] twin (same name, no
    default) of every [aws_ecs_executor] option the legacy spelling lacks.

    [fargate] is the section only this package declares: with apache-airflow-providers-amazon
    installed, Airflow lists that provider's declaration of [aws_ecs_executor] instead of ours,
    and every option of ours must still be listed (and settable) somewhere."""
    text = resources.files("airflow_fargate.config").joinpath("options.yaml").read_text("utf-8")
    data = yaml.safe_load(text)
    if set(data) != {MODERN_SECTION, LEGACY_SECTION}:
        raise RuntimeError(f"options.yaml must define exactly [{MODERN_SECTION}] and [{LEGACY_SECTION}]")
    legacy = data[LEGACY_SECTION]["options"]
    covered = {spec.get("setting", name) for name, spec in legacy.items()}
    for name, spec in data[MODERN_SECTION]["options"].items():
        if spec.get("setting", name) not in covered and name not in legacy:
            legacy[name] = {
                **{k: v for k, v in spec.items() if k not in ("default", "required")},
                "description": f"Same as [{MODERN_SECTION}] {name}: " + " ".join(str(spec["description"]).split()),
                "default": None,
                "setting": spec.get("setting", name),
            }
    return data


@functools.cache
def options() -> tuple[Option, ...]:
    """Every option of both sections, modern section first."""
    result = []
    for section in (MODERN_SECTION, LEGACY_SECTION):
        for name, spec in raw_catalogue()[section]["options"].items():
            result.append(
                Option(
                    section=section,
                    name=name,
                    setting=spec.get("setting", name),
                    type=spec["type"],
                    default=None if spec.get("default") is None else str(spec["default"]),
                    required=bool(spec.get("required", False)),
                    description=" ".join(str(spec["description"]).split()),
                    example=None if spec.get("example") is None else str(spec["example"]),
                )
            )
    return tuple(result)


def provider_config() -> dict[str, Any]:
    """The catalogue in the shape of provider-info's "config" (private keys removed)."""
    result: dict[str, Any] = {}
    for section, body in raw_catalogue().items():
        result[section] = {
            "description": body["description"],
            "options": {
                name: {k: v for k, v in spec.items() if k not in _PRIVATE_KEYS}
                for name, spec in body["options"].items()
            },
        }
    return result
