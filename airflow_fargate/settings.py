"""Read ``[aws_ecs_executor]`` and legacy ``[fargate]`` into one validated ExecutorSettings.

Both sections (and their ``AIRFLOW__SECTION__KEY`` env vars) are read through Airflow's ``conf``;
when both set the same setting the modern section wins and one warning names the conflict.
Defaults and the key mapping come from the option catalogue, never from literals here.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from airflow_fargate.catalogue import LEGACY_SECTION, MODERN_SECTION, options
from airflow_fargate.errors import FargateConfigError, refuse_deep_nesting, shorten, shorten_lines
from airflow_fargate.ownership import default_deployment_id
from airflow_fargate.queue_profiles import parse_queue_profiles

log = logging.getLogger(__name__)

LAUNCH_TYPES = ("FARGATE", "EC2", "EXTERNAL", "MANAGED_INSTANCES")
_TRUE = frozenset({"true", "t", "1", "yes", "y", "on", "enabled"})
_FALSE = frozenset({"false", "f", "0", "no", "n", "off", "disabled"})


class ConfigSource(Protocol):
    """The part of Airflow's ``conf`` we use (lets tests pass a plain parser)."""

    def get(self, section: str, key: str, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class ExecutorSettings:
    """Everything the executor needs from configuration, validated and typed."""

    region_name: str
    cluster: str
    container_name: str
    task_definition: str | None = None
    launch_type: str | None = None
    capacity_provider_strategy: tuple[Mapping[str, Any], ...] | None = None
    platform_version: str | None = None
    assign_public_ip: bool | None = None
    security_groups: tuple[str, ...] = ()
    subnets: tuple[str, ...] = ()
    aws_conn_id: str | None = "aws_default"
    run_task_kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Airflow queue name -> run_task kwargs layer (queue_profiles.py); default_queue is the one
    # Airflow gives tasks that name none ([operators] default_queue).
    queue_profiles: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    default_queue: str = "default"
    execution_config_function: str | None = None
    max_run_task_attempts: int = 3
    run_task_rate: float = 20.0
    run_task_burst: int = 100
    describe_tasks_rate: float = 10.0
    max_poll_interval: float = 10.0
    running_check_interval: float = 60.0
    read_task_states: bool = True
    task_start_timeout: float = 300.0
    check_health_on_startup: bool = True
    check_dags_at_parse_time: bool = True
    deployment_id: str = ""  # never empty once loaded: configured or derived from the metadata DB
    team: str | None = None  # the team whose executor this is (multi-team Airflow 3), else None
    # setting name -> where its value came from, e.g. "[fargate] cluster (env)"
    sources: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def option_label(setting: str) -> str:
    """Every spelling of a setting, for error messages: both sections and their env vars."""
    spellings = []
    for opt in options():
        if opt.setting == setting:
            env = f"AIRFLOW__{opt.section.upper()}__{opt.name.upper()}"
            spellings.append(f"[{opt.section}] {opt.name} ({env})")
    return " or ".join(spellings) if spellings else setting


def _env_name(section: str, key: str, team: str | None) -> str:
    prefix = f"AIRFLOW__{team.upper()}___" if team else "AIRFLOW__"
    return f"{prefix}{section.upper()}__{key.upper()}"


def _from_env(section: str, key: str, team: str | None) -> str | None:
    """The env var (or its _CMD/_SECRET form) that sets this option, if any."""
    env = _env_name(section, key, team)
    return next((env + suffix for suffix in ("", "_CMD", "_SECRET") if env + suffix in os.environ), None)


def _declared_default(conf: ConfigSource, section: str, key: str) -> str | None:
    """The default some installed package declares for this option (ours, or with
    apache-airflow-providers-amazon installed, that provider's for [aws_ecs_executor])."""
    getter = getattr(conf, "get_default_value", None)
    if getter is None:
        return None
    try:
        value = getter(section, key, fallback=None)
    except Exception:
        return None
    return None if value is None else str(value)


def _is_explicit(conf: ConfigSource, opt: Any, key: str, value: str, team: str | None) -> bool:
    """Chosen by the operator, as opposed to a declared default: Airflow writes every declared
    default into the airflow.cfg it generates, and with apache-airflow-providers-amazon installed
    [aws_ecs_executor] answers with that provider's defaults (assign_public_ip False,
    platform_version LATEST). A value equal to a declared default counts only from an env var."""
    if _from_env(opt.section, key, team):
        return True
    defaults = (opt.default, _declared_default(conf, opt.section, key))
    return value.strip() not in {d.strip() for d in defaults if d is not None}


def _source(section: str, key: str, value: str, default: str | None, team: str | None = None) -> str:
    """Where a value came from, for `show-config` and messages."""
    env = _from_env(section, key, team)
    if env:
        return f"[{section}] {key} (env {env})"
    if default is not None and value == default:
        return "default"
    return f"[{section}] {key} (airflow.cfg)"


def _read(conf: ConfigSource, section: str, name: str) -> str | None:
    try:
        value = conf.get(section, name, fallback=None)
    except Exception as err:  # e.g. a bare % in airflow.cfg (interpolation), a failing _cmd
        raise FargateConfigError(f"[{section}] {name}: cannot read the value: {err}") from None
    return str(value) if value is not None and str(value).strip() else None


def _raw_values(conf: ConfigSource) -> tuple[dict[str, str], dict[str, str]]:
    """Setting name -> raw string and -> source, applying modern-over-legacy precedence.

    Only values the operator set count; anything else gets the catalogue default. With
    [fargate] ignore_aws_ecs_executor_section, [aws_ecs_executor] is not read at all."""
    team = getattr(conf, "team_name", None)
    own_only = _read(conf, LEGACY_SECTION, "ignore_aws_ecs_executor_section")
    skip_modern = own_only is not None and _bool("ignore_aws_ecs_executor_section", own_only)
    candidates: dict[str, list[tuple[str, str, str, str | None]]] = {}
    for opt in options():  # modern section first, so it wins
        if skip_modern and opt.section == MODERN_SECTION:
            continue
        for name in [opt.name] + (["conn_id"] if opt.name == "aws_conn_id" else []):
            value = _read(conf, opt.section, name)
            if value is not None and _is_explicit(conf, opt, name, value, team):
                candidates.setdefault(opt.setting, []).append((opt.section, name, value, opt.default))
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for setting, found in candidates.items():
        section, name, value, default = found[0]
        for other_section, other_name, other_value, _ in found[1:]:
            if other_section != section and other_value.strip() != value.strip():
                log.warning(
                    "[%s] %s=%s and [%s] %s=%s are both set; using [%s] %s.",
                    section,
                    name,
                    shorten(value),
                    other_section,
                    other_name,
                    shorten(other_value),
                    section,
                    name,
                )
        values[setting] = value
        sources[setting] = _source(section, name, value, default, team)
    for opt in options():
        if opt.setting not in values and opt.default is not None:
            values[opt.setting] = opt.default
            sources[opt.setting] = "default"
    return values, sources


def _bool(setting: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise FargateConfigError(f"{option_label(setting)} must be True/False (or ENABLED/DISABLED), got {shorten(raw)}.")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _json(setting: str, raw: str, expected: type) -> Any:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as err:  # JSONDecodeError, a 5000-digit number, deep nesting
        problem = "it is nested too deeply" if isinstance(err, RecursionError) else str(err)
        raise FargateConfigError(
            f"{option_label(setting)} is not valid JSON ({shorten_lines(problem)}). Value: {shorten(raw)}"
        ) from None
    refuse_deep_nesting(option_label(setting), value, FargateConfigError)
    if not isinstance(value, expected):
        kind = "a JSON object" if expected is dict else "a JSON list"
        raise FargateConfigError(f"{option_label(setting)} must be {kind}, got {type(value).__name__}.")
    return value


def _capacity_provider_strategy(raw: str) -> tuple[Mapping[str, Any], ...]:
    try:
        items = _json("capacity_provider_strategy", raw, list)
    except FargateConfigError:
        # The Amazon provider documents a Python literal: [{'capacityProvider': 'cp1', 'weight': 5}]
        items = _python_list(raw)
        if items is None:
            raise
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("capacityProvider"), str):
            raise FargateConfigError(
                f"{option_label('capacity_provider_strategy')}: item {index} must be an object with a "
                f'"capacityProvider" string, e.g. {{"capacityProvider": "FARGATE_SPOT", "weight": 1}}; '
                f"got {shorten(item)}."
            )
    return tuple(MappingProxyType(dict(item)) for item in items)


def _python_list(raw: str) -> list[Any] | None:
    """A short Python list literal (single quotes), or None."""
    if len(raw) > 10_000 or not raw.lstrip().startswith("["):
        return None
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, list) else None


def _positive_int(setting: str, raw: str) -> int:
    try:
        value = int(raw.strip())
    except ValueError:
        raise FargateConfigError(f"{option_label(setting)} must be an integer, got {shorten(raw)}.") from None
    if value < 1:
        raise FargateConfigError(f"{option_label(setting)} must be at least 1, got {value}.")
    return value


def _positive_float(setting: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise FargateConfigError(f"{option_label(setting)} must be a number, got {shorten(raw)}.") from None
    if not value > 0:
        raise FargateConfigError(f"{option_label(setting)} must be greater than 0, got {shorten(raw)}.")
    return value


def _airflow_option(conf: ConfigSource, section: str, key: str, fallback: str) -> str:
    """An option outside our sections, read through a team-scoped conf where it answers."""
    try:
        return str(conf.get(section, key, fallback=fallback) or fallback)
    except Exception:  # a team-scoped conf may not answer for other sections
        from airflow.configuration import conf as airflow_conf

        return str(airflow_conf.get(section, key, fallback=fallback) or fallback)


def _deployment_id(configured: str | None, conf: ConfigSource) -> str:
    if configured:
        if len(configured) > 64 or not re.fullmatch(r"[A-Za-z0-9_-]+", configured):
            raise FargateConfigError(
                f"{option_label('deployment_id')} must be 1-64 letters, digits, '-' or '_' "
                f"(it becomes part of every task's startedBy), got {shorten(configured)}."
            )
        return configured
    return default_deployment_id(_airflow_option(conf, "database", "sql_alchemy_conn", ""))


def load_settings(conf: ConfigSource | None = None) -> ExecutorSettings:
    """Read, merge and validate both sections; raise FargateConfigError naming the bad option."""
    if conf is None:
        from airflow.configuration import conf as airflow_conf

        conf = airflow_conf
    raw, sources = _raw_values(conf)
    clean = {k: v.strip() for k, v in raw.items()}

    missing = [opt.setting for opt in options() if opt.required and not clean.get(opt.setting)]
    if missing:
        team = getattr(conf, "team_name", None)
        if _bool("ignore_aws_ecs_executor_section", clean["ignore_aws_ecs_executor_section"]):
            missing_in = "; ".join(f"set [{LEGACY_SECTION}] {o.name}" for o in options()
                                   if o.section == LEGACY_SECTION and o.setting in missing)  # fmt: skip
            raise FargateConfigError(
                f"[{LEGACY_SECTION}] ignore_aws_ecs_executor_section is set, so only [{LEGACY_SECTION}] is read, "
                f"and it lacks required configuration: {missing_in}."
            )
        raise FargateConfigError(
            (f"FargateExecutor of team {team!r} (team values: AIRFLOW__{team.upper()}___SECTION__KEY) " if team else "")
            + "FargateExecutor is missing required configuration: "
            + "; ".join(f"set {option_label(name)}" for name in missing)
            + "."
        )

    launch_type = clean.get("launch_type") or None
    if launch_type is not None:
        launch_type = launch_type.upper()
        if launch_type not in LAUNCH_TYPES:
            raise FargateConfigError(
                f"{option_label('launch_type')} must be one of {', '.join(LAUNCH_TYPES)}, "
                f"got {shorten(raw['launch_type'])}."
            )
    strategy = (
        _capacity_provider_strategy(clean["capacity_provider_strategy"])
        if clean.get("capacity_provider_strategy")
        else None
    )
    if launch_type and strategy:
        raise FargateConfigError(
            f"{option_label('launch_type')} and {option_label('capacity_provider_strategy')} are "
            "mutually exclusive (ECS RunTask accepts only one); remove one of them."
        )
    run_task_kwargs = _json("run_task_kwargs", clean["run_task_kwargs"], dict) if clean.get("run_task_kwargs") else {}
    assign_public_ip = _bool("assign_public_ip", clean["assign_public_ip"]) if clean.get("assign_public_ip") else None

    return ExecutorSettings(
        region_name=clean["region_name"],
        cluster=clean["cluster"],
        container_name=clean["container_name"],
        task_definition=clean.get("task_definition") or None,
        launch_type=launch_type,
        capacity_provider_strategy=strategy,
        platform_version=clean.get("platform_version") or None,
        assign_public_ip=assign_public_ip,
        security_groups=_csv(clean.get("security_groups", "")),
        subnets=_csv(clean.get("subnets", "")),
        aws_conn_id=clean.get("aws_conn_id") or None,
        run_task_kwargs=MappingProxyType(run_task_kwargs),
        queue_profiles=parse_queue_profiles(
            option_label("queue_profiles"), _json("queue_profiles", clean["queue_profiles"], dict)
        )
        if clean.get("queue_profiles")
        else MappingProxyType({}),
        default_queue=_airflow_option(conf, "operators", "default_queue", "default"),
        execution_config_function=clean.get("execution_config_function") or None,
        max_run_task_attempts=_positive_int("max_run_task_attempts", clean["max_run_task_attempts"]),
        run_task_rate=_positive_float("run_task_rate", clean["run_task_rate"]),
        run_task_burst=_positive_int("run_task_burst", clean["run_task_burst"]),
        describe_tasks_rate=_positive_float("describe_tasks_rate", clean["describe_tasks_rate"]),
        max_poll_interval=_positive_float("max_poll_interval", clean["max_poll_interval"]),
        running_check_interval=_positive_float("running_check_interval", clean["running_check_interval"]),
        read_task_states=_bool("read_task_states", clean["read_task_states"]),
        task_start_timeout=_positive_float("task_start_timeout", clean["task_start_timeout"]),
        check_health_on_startup=_bool("check_health_on_startup", clean["check_health_on_startup"]),
        check_dags_at_parse_time=_bool("check_dags_at_parse_time", clean["check_dags_at_parse_time"]),
        deployment_id=_deployment_id(clean.get("deployment_id"), conf),
        team=getattr(conf, "team_name", None) or None,
        sources=MappingProxyType(sources),
    )
