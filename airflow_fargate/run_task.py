"""Build and validate the kwargs of one ECS ``run_task`` call.

Precedence, lowest to highest: built-in defaults < [fargate]/[aws_ecs_executor] values (or the
result of execution_config_function) < run_task_kwargs < the profile of the task's queue
(queue_profiles.py) < the task's executor_config. The command
always goes to the container named container_name. The result is checked against botocore's own
RunTaskRequest shape, so a typo fails with the key path instead of a failed API call.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

from airflow_fargate.compat import AIRFLOW_V3, import_string
from airflow_fargate.ecs_limits import COMMAND_RESERVE_CHARS, overrides_problem
from airflow_fargate.errors import FargateConfigError, TaskConfigError, refuse_deep_nesting, shorten, shorten_lines
from airflow_fargate.ownership import merge_tags, started_by
from airflow_fargate.queue_profiles import QueueRouter, profile_label
from airflow_fargate.settings import ExecutorSettings, option_label
from airflow_fargate.task_size import expand_shorthand, fargate_size_problem, is_fargate
from airflow_fargate.work import SAMPLE_TOKEN, sample_command

log = logging.getLogger(__name__)

Builder = Callable[[Sequence[str]], Mapping[str, Any]]
EXECUTOR_ENV = {"name": "AIRFLOW_IS_EXECUTOR_CONTAINER", "value": "true"}
SAMPLE_COMMAND = ("airflow", "version")
CHECK_CACHE_SIZE = 4096  # distinct valid executor_configs remembered
# Exclusive pairs: setting one in a higher layer drops the other from lower layers.
_EXCLUSIVE = {"launchType": "capacityProviderStrategy", "capacityProviderStrategy": "launchType"}


@functools.cache
def _run_task_shape() -> Any:
    """botocore's input shape of ECS RunTask (loading the model costs ~0.1 s, so once)."""
    return botocore.session.get_session().get_service_model("ecs").operation_model("RunTask").input_shape


def _camel(key: str) -> str:
    first, *rest = key.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def camelize_keys(value: Any, label: str, error: type[Exception], shape: Any = None) -> Any:
    """snake_case keys (``platform_version``, ``network_configuration.awsvpc_configuration``) as
    RunTask spells them, at every depth botocore's RunTask shape knows, as the Amazon provider
    accepts them. Keys the shape does not know are left for validation to report."""
    shape = shape if shape is not None else _run_task_shape()
    if shape.type_name == "structure" and isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            name = key
            if isinstance(key, str) and key not in shape.members and _camel(key) in shape.members:
                name = _camel(key)
                if name in value:
                    raise error(f"{label} sets both {key} and {name}; keep one.")
            member = shape.members.get(name)
            out[name] = camelize_keys(item, label, error, member) if member is not None else item
        return out
    if shape.type_name == "list" and isinstance(value, list):
        return [camelize_keys(item, label, error, shape.member) for item in value]
    return value


# Letters and digits of any script (\w is str.isalnum() plus "_"), spaces and _ . : / = + - @.
_TAG_TEXT = re.compile(r"[\w .:/=+@-]*")


def _tag_text_ok(text: str) -> bool:
    return _TAG_TEXT.fullmatch(text) is not None


def tag_problems(kwargs: Mapping[str, Any]) -> str | None:
    """What ECS would refuse in the tags (botocore does not check character sets): keys of 1-128
    and values of up to 256 letters, digits, spaces and _ . : / = + - @, no aws: prefix, 50 tags."""
    tags = kwargs.get("tags")
    if not isinstance(tags, list):
        return None
    if len(tags) > 50:
        return f"tags: {len(tags)} tags, ECS allows 50 per task (the executor adds up to 10 of its own)"
    for index, tag in enumerate(tags):
        if not isinstance(tag, Mapping):
            continue
        key, value = tag.get("key"), tag.get("value", "")
        if isinstance(key, str) and (
            not 1 <= len(key) <= 128 or not _tag_text_ok(key) or key.lower().startswith("aws:")
        ):
            return f"tags[{index}].key {shorten(key)}: ECS allows 1-128 letters, digits, spaces and _ . : / = + - @"
        if isinstance(value, str) and (len(value) > 256 or not _tag_text_ok(value)):
            return (
                f"tags[{index}].value {shorten(value)}: ECS allows up to 256 letters, digits, spaces and "
                "_ . : / = + - @ (a task's command, for one, is not a valid tag value)"
            )
    return None


def token_copies(kwargs: Mapping[str, Any], command: Sequence[str]) -> list[str]:
    """Paths of kwargs that hold the sample command's token outside the command itself."""
    found: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            if value == list(command):
                return  # the command where it belongs
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")
        elif isinstance(value, str) and SAMPLE_TOKEN[:24] in value:
            found.append(path)

    walk(kwargs, "")
    return found


def validation_errors(kwargs: Mapping[str, Any]) -> str | None:
    """botocore's report of what is wrong with these RunTask kwargs, naming key paths; None if valid."""
    report = ParamValidator().validate(kwargs, _run_task_shape())
    if not report.has_errors():
        return None
    try:
        return shorten_lines(_name_containers(report.generate_report(), kwargs))
    except ValueError:  # the report quotes a value Python refuses to print (an integer of 4300+ digits)
        return "a value has the wrong type and is too large to print"


def _name_containers(report: str, kwargs: Mapping[str, Any]) -> str:
    """containerOverrides[1] -> containerOverrides[name='base']: the index is the merged list's
    (the executor adds the command's container), not the one the user wrote."""
    overrides = kwargs.get("overrides")
    containers = overrides.get("containerOverrides") if isinstance(overrides, Mapping) else None
    if not isinstance(containers, list):
        return report

    def named(match: re.Match[str]) -> str:
        index = int(match.group(1))
        item = containers[index] if index < len(containers) else None
        name = item.get("name") if isinstance(item, Mapping) else None
        return f"containerOverrides[name={name!r}]" if isinstance(name, str) else match.group(0)

    return re.sub(r"containerOverrides\[(\d+)\]", named, report)


def is_named_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in value)


def deep_merge(base: Any, overlay: Any) -> Any:
    """Recursive update returning a new value: dicts merge key by key, lists of ``{"name": ...}``
    items (containerOverrides, environment) merge item by name, everything else is replaced."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        merged = {k: copy.deepcopy(v) for k, v in base.items()}
        for key, value in overlay.items():
            if key in _EXCLUSIVE and _EXCLUSIVE[key] not in overlay:
                merged.pop(_EXCLUSIVE[key], None)
            merged[key] = deep_merge(merged[key], value) if key in merged else copy.deepcopy(value)
        return merged
    if is_named_list(base) and is_named_list(overlay):
        merged_items = {item["name"]: copy.deepcopy(item) for item in base}
        for item in overlay:
            name = item["name"]
            merged_items[name] = deep_merge(merged_items[name], item) if name in merged_items else copy.deepcopy(item)
        return list(merged_items.values())
    return copy.deepcopy(overlay)


def config_layer(settings: ExecutorSettings) -> dict[str, Any]:
    """run_task kwargs from the section values (the built-in builder)."""
    kwargs: dict[str, Any] = {
        "cluster": settings.cluster,
        "overrides": {"containerOverrides": [{"name": settings.container_name}]},
    }
    if settings.task_definition:
        kwargs["taskDefinition"] = settings.task_definition
    if settings.launch_type:
        kwargs["launchType"] = settings.launch_type
    if settings.capacity_provider_strategy:
        kwargs["capacityProviderStrategy"] = [dict(item) for item in settings.capacity_provider_strategy]
    if settings.platform_version:
        kwargs["platformVersion"] = settings.platform_version
    vpc: dict[str, Any] = {}
    if settings.subnets:
        vpc["subnets"] = list(settings.subnets)
    if settings.security_groups:
        vpc["securityGroups"] = list(settings.security_groups)
    # DISABLED alone is ECS's default and needs no awsvpc block (the amazon provider declares
    # assign_public_ip = False by default in the same section).
    if settings.assign_public_ip or (vpc and settings.assign_public_ip is not None):
        vpc["assignPublicIp"] = "ENABLED" if settings.assign_public_ip else "DISABLED"
    if vpc:
        kwargs["networkConfiguration"] = {"awsvpcConfiguration": vpc}
    return kwargs


def _layer_label(name: str) -> str:
    return f"the kwargs returned by {option_label(name)}" if name == "execution_config_function" else name


def check_count(label: str, layer: Mapping[str, Any], error: type[Exception]) -> None:
    """One Airflow try is one ECS task: a layer asking for more (or fewer) is refused, naming it.

    With count=2 ECS would start two containers for one try and the executor could track one."""
    if "count" in layer and (type(layer["count"]) is not int or layer["count"] != 1):
        raise error(
            f"{label} sets count={shorten(layer['count'])}: FargateExecutor runs every Airflow task try as exactly "
            "one ECS task. Remove count (or set it to 1); to run work in parallel, use more Airflow tasks "
            "(e.g. mapping)."
        )


def warn_started_by(label: str, layer: Mapping[str, Any], warned: set[str]) -> None:
    """startedBy is how the executor finds its tasks again after a scheduler crash (ownership.py),
    so it always wins; a layer that sets one (AIP-29 examples did) is told so once."""
    if "startedBy" in layer and label not in warned:
        warned.add(label)
        log.warning(
            "%s sets startedBy=%s; FargateExecutor replaces it with its own (from %s) to find its tasks "
            "after a scheduler crash. Use tags to label tasks.",
            label,
            shorten(layer["startedBy"]),
            option_label("deployment_id"),
        )


def names_launch_capacity(settings: ExecutorSettings) -> bool:
    """The configuration says where tasks run (launchType or capacityProviderStrategy, or an
    execution_config_function that may); False leaves the choice to the cluster's default."""
    configured = settings.run_task_kwargs
    return bool(
        settings.launch_type
        or settings.capacity_provider_strategy
        or settings.execution_config_function
        or "launchType" in configured
        or "capacityProviderStrategy" in configured
        or "launch_type" in configured
        or "capacity_provider_strategy" in configured
    )


def apply_defaults(kwargs: dict[str, Any], cluster_default_strategy: Sequence[Any] = ()) -> dict[str, Any]:
    """Fill what no layer set: count 1, FARGATE unless a capacity provider strategy is used,
    platformVersion LATEST for FARGATE only (EC2 rejects a platform version and a public IP
    setting, so both are dropped there)."""
    kwargs["count"] = 1  # every layer was checked by check_count: one try, one container
    # With neither, ECS uses the cluster's default capacity provider strategy, if it has one
    if "launchType" not in kwargs and "capacityProviderStrategy" not in kwargs and not cluster_default_strategy:
        kwargs["launchType"] = "FARGATE"
    if kwargs.get("launchType") == "FARGATE":
        kwargs.setdefault("platformVersion", "LATEST")
    elif kwargs.get("launchType") in ("EC2", "EXTERNAL"):
        kwargs.pop("platformVersion", None)
        # ECS refuses assignPublicIp outside Fargate; the provider drops it the same way
        vpc = (kwargs.get("networkConfiguration") or {}).get("awsvpcConfiguration")
        if isinstance(vpc, dict):
            vpc.pop("assignPublicIp", None)
    return kwargs


def load_execution_config_function(path: str) -> Builder:
    """Import the AIP-29 factory at ``path`` and call it to get ``builder(command) -> kwargs``."""
    label = option_label("execution_config_function")
    try:
        factory = import_string(path)
    except (Exception, SystemExit) as err:  # a module that exits on import must not stop the scheduler
        raise FargateConfigError(f"{label}: cannot import {shorten(path)}: {shorten_lines(str(err))}") from None
    if not callable(factory):
        raise FargateConfigError(
            f"{label}: {shorten(path)} is a {type(factory).__name__}, not a zero-argument factory."
        )
    try:
        builder = factory()
    except (Exception, SystemExit) as err:  # e.g. builtins.exit: SystemExit would end the scheduler
        raise FargateConfigError(
            f"{label}: calling {path}() failed: {type(err).__name__}: {shorten_lines(str(err))}"
        ) from None
    if not callable(builder):
        raise FargateConfigError(
            f"{label}: {path}() must return a function f(command) -> run_task kwargs, got {type(builder).__name__}."
        )
    return builder


class RunTaskKwargsBuilder:
    """Turns (command, queue, executor_config) into validated run_task kwargs for one settings object."""

    def __init__(self, settings: ExecutorSettings, cluster_default_strategy: Sequence[Mapping[str, Any]] = ()) -> None:
        """``cluster_default_strategy``: the cluster's default capacity provider strategy, which
        ECS applies when a launch names neither launchType nor capacityProviderStrategy."""
        self.settings = settings
        self.cluster_default_strategy = tuple(cluster_default_strategy)
        self._custom: Builder | None = (
            load_execution_config_function(settings.execution_config_function)
            if settings.execution_config_function
            else None
        )
        self._static_base = None if self._custom else config_layer(settings)
        self._valid_configs: set[str] = set()
        # Profiles whose launches (no executor_config, the section values' layers) validated once
        # with owner tags: the next differ only in their command and tag values, both well-formed
        # by construction, so botocore's validation (most of a build's CPU) is not run again.
        self._valid_launches: set[str | None] = set()
        self._static_bases: dict[str | None, dict[str, Any]] = {}  # see _base
        self._warned: set[str] = set()
        self.router = QueueRouter(settings.queue_profiles, settings.default_queue, option_label("queue_profiles"))
        self._profiles = {
            name: self._checked_layer(self._profile_label(name), layer, FargateConfigError)
            for name, layer in settings.queue_profiles.items()
        }
        # Fail at scheduler start, not on the first task, if the configured layers are invalid,
        # with a command shaped like a real task's (an execution_config_function sees it).
        sample = sample_command(AIRFLOW_V3)
        leaked = token_copies(self._build(sample, None, None), sample)
        if leaked:
            raise FargateConfigError(
                f"The run_task kwargs built from {self._sources(None)} copy the task's command, which carries its "
                f"execution-API token, into {', '.join(leaked)}: anyone who can describe the ECS task could "
                "read it. Keep the command out of tags and other fields."
            )
        for name in self._profiles:  # each profile over the (now known good) configured layers
            self._build(sample, name, None)

    def _profile_label(self, name: str) -> str:
        return profile_label(self.settings.sources.get("queue_profiles") or option_label("queue_profiles"), name)

    def _checked_layer(self, label: str, raw: Mapping[str, Any], error: type[Exception]) -> dict[str, Any]:
        """One layer above the section values, as RunTask spells it (size shorthand expanded, keys
        camelized), refused with ``error`` naming ``label`` if it asks for what the executor owns."""
        refuse_deep_nesting(label, raw, error)  # before anything recursive sees it
        layer = camelize_keys(expand_shorthand(raw, self.settings.container_name, label, error), label, error)
        self._check_layer(label, layer, error)
        if "clientToken" in layer:
            raise error(f"{label} may not set clientToken: the executor sets it per launch.")
        overrides = layer.get("overrides", {})
        containers = overrides.get("containerOverrides", []) if isinstance(overrides, Mapping) else []
        for index, item in enumerate(containers if isinstance(containers, list) else []):
            if isinstance(item, Mapping) and item.get("name") == self.settings.container_name and "command" in item:
                raise error(
                    f"{label} overrides.containerOverrides[{index}].command: the command of container "
                    f"{self.settings.container_name!r} is the Airflow task's own and cannot be overridden."
                )
        return layer

    def _check_layer(self, label: str, layer: Mapping[str, Any], error: type[Exception]) -> None:
        """What every layer is refused for: a count other than 1, deep nesting, both launchType and
        capacityProviderStrategy; a startedBy is named in one warning."""
        check_count(label, layer, error)
        warn_started_by(label, layer, self._warned)
        refuse_deep_nesting(label, layer, error)
        if "launchType" in layer and "capacityProviderStrategy" in layer:
            raise error(f"{label} sets both launchType and capacityProviderStrategy; ECS accepts one.")

    def layers(
        self, command: Sequence[str], queue: str | None = None, executor_config: Any = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """Every layer merged for a task, lowest first, named for show-config: the section values
        (or the execution_config_function's result), run_task_kwargs, the queue's profile
        ("queue_profile:<name>") and the task's executor_config, the last two when present."""
        result = self._configured_layers(command, self.router.profile_for(queue))
        task_layer = self._check_executor_config(executor_config)
        return [*result, ("executor_config", task_layer)] if task_layer else result

    def base_layers(self, command: Sequence[str]) -> list[tuple[str, dict[str, Any]]]:
        """The section values (or the execution_config_function's result) and run_task_kwargs."""
        return self._configured_layers(command, None)

    def _configured_layers(self, command: Sequence[str], profile: str | None) -> list[tuple[str, dict[str, Any]]]:
        if self._custom is None:
            assert self._static_base is not None
            first = ("config", copy.deepcopy(self._static_base))
        else:
            label = option_label("execution_config_function")
            try:
                built: Any = self._custom(list(command))
            except (Exception, SystemExit) as err:
                raise FargateConfigError(
                    f"{label}: the builder raised {type(err).__name__}: {shorten_lines(str(err))}"
                ) from None
            if not isinstance(built, Mapping):
                raise FargateConfigError(
                    f"{label}: the builder must return a dict of run_task kwargs, got {type(built).__name__}."
                )
            first = ("execution_config_function", copy.deepcopy(dict(built)))
        run_task_kwargs = camelize_keys(
            dict(self.settings.run_task_kwargs), option_label("run_task_kwargs"), FargateConfigError
        )
        result = [first, ("run_task_kwargs", run_task_kwargs)]
        if profile is not None:
            result.append((f"queue_profile:{profile}", copy.deepcopy(self._profiles[profile])))
        return result

    def _base(self, command: Sequence[str], profile: str | None) -> dict[str, Any]:
        """The configured layers merged (never mutated: deep_merge copies). Without an
        execution_config_function they are the same for every launch of a profile: merged and
        checked once, not on every launch worker call."""
        if self._custom is not None:
            return self._merged_layers(command, profile)
        if profile not in self._static_bases:
            self._static_bases[profile] = self._merged_layers(command, profile)
        return self._static_bases[profile]

    def _merged_layers(self, command: Sequence[str], profile: str | None) -> dict[str, Any]:
        layers = self._configured_layers(command, profile)
        merged: dict[str, Any] = {}
        for index, (name, layer) in enumerate(layers):
            if index < 2:  # profiles were checked at start
                label = _layer_label(name) if index == 0 else option_label("run_task_kwargs")
                self._check_layer(label, layer, FargateConfigError)
            merged = deep_merge(merged, layer)
        return merged

    def _check_executor_config(self, executor_config: Any) -> dict[str, Any]:
        if executor_config is None:
            return {}
        if not isinstance(executor_config, Mapping):
            raise TaskConfigError(
                f"executor_config must be a dict of ECS run_task kwargs, got {type(executor_config).__name__}."
            )
        return self._checked_layer("executor_config", executor_config, TaskConfigError)

    def _inject_command(self, kwargs: dict[str, Any], command: Sequence[str]) -> None:
        overrides = kwargs.setdefault("overrides", {})
        if not isinstance(overrides, dict):
            return  # botocore validation reports the wrong type with its path
        containers = overrides.setdefault("containerOverrides", [])
        if not isinstance(containers, list):
            return
        target = next(
            (c for c in containers if isinstance(c, dict) and c.get("name") == self.settings.container_name), None
        )
        if target is None:
            target = {"name": self.settings.container_name}
            containers.append(target)
        target["command"] = list(command)
        env = target.setdefault("environment", [])
        if isinstance(env, list) and not any(
            isinstance(e, dict) and e.get("name") == EXECUTOR_ENV["name"] for e in env
        ):
            env.append(dict(EXECUTOR_ENV))

    def build(
        self,
        command: Sequence[str],
        executor_config: Any,
        owner_tags: list[dict[str, str]] | None = None,
        queue: str | None = None,
    ) -> dict[str, Any]:
        """Validated kwargs for one task (clientToken excluded: the ECS client adds it), carrying
        the deployment's startedBy and ``owner_tags`` (ownership.py) beside the user's tags, with
        the profile of ``queue`` (the task's Airflow queue) merged under its executor_config.

        Raises FargateConfigError if the configured layers are wrong, TaskConfigError if the
        task's executor_config is.
        """
        return self._build(command, self.router.profile_for(queue), executor_config, owner_tags)

    def _build(
        self,
        command: Sequence[str],
        profile: str | None,
        executor_config: Any,
        owner_tags: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        base = self._base(command, profile)
        if "clientToken" in base:
            raise FargateConfigError(
                f"{self._sources(profile)}: clientToken is set by the executor per launch; remove it."
            )
        task_layer = self._check_executor_config(executor_config)
        task_label = "executor_config" + (f" (with the profile of queue {profile!r})" if profile else "")
        try:
            kwargs = self._assemble(base, task_layer, command, owner_tags)
        except (TypeError, AttributeError, ValueError) as err:  # shapes no merge can make sense of
            raise TaskConfigError(f"{task_label} cannot be merged into the run_task kwargs: {err}") from None
        cluster = kwargs.get("cluster")
        if isinstance(cluster, str) and cluster.rsplit("/", 1)[-1] != self.settings.cluster.rsplit("/", 1)[-1]:
            where = "executor_config" if "cluster" in task_layer else self._sources(profile)
            error = TaskConfigError if "cluster" in task_layer else FargateConfigError
            raise error(
                f"{where} launches in cluster {shorten(cluster)} but the executor describes, stops and adopts tasks "
                f"in {self.settings.cluster!r} ({option_label('cluster')}): set the cluster there instead."
            )
        if "taskDefinition" not in kwargs and "taskDefinition" not in task_layer:
            raise FargateConfigError(
                f"Set {option_label('task_definition')}: the task definition to run (family, family:revision or "
                f"ARN), or taskDefinition in {option_label('run_task_kwargs')}."
            )
        same_shape = executor_config is None and self._custom is None and owner_tags is not None
        if same_shape and profile in self._valid_launches:
            return kwargs
        reserve = COMMAND_RESERVE_CHARS if tuple(command) == SAMPLE_COMMAND else 0
        problems = self._problems(kwargs, reserve)
        if problems is None and same_shape:
            self._valid_launches.add(profile)
        if problems:
            without_task = self._assemble(base, {}, command, owner_tags)
            if task_layer and self._problems(without_task, reserve) is None:
                raise TaskConfigError(f"{task_label} gives invalid ECS run_task kwargs: {problems}")
            raise FargateConfigError(
                f"The ECS run_task kwargs built from {self._sources(profile)} are invalid: {problems}"
            )
        return kwargs

    def _problems(self, kwargs: Mapping[str, Any], command_reserve: int = 0) -> str | None:
        """What ECS would refuse: tags, botocore's shape, overrides over 8 KiB, and a size
        Fargate does not have."""
        problems = tag_problems(kwargs) or validation_errors(kwargs) or overrides_problem(kwargs, command_reserve)
        if problems is None and is_fargate(kwargs, self.cluster_default_strategy):
            problems = fargate_size_problem(kwargs)
        return problems

    def _sources(self, profile: str | None) -> str:
        """The configured layers in use, named as the operator sets them."""
        names = [option_label("execution_config_function") if self._custom else "the section values"]
        if self.settings.run_task_kwargs:
            names.append(option_label("run_task_kwargs"))
        if profile is not None:
            names.append(self._profile_label(profile))
        return " and ".join(names)

    def check_executor_config(self, executor_config: Any, queue: str | None = None) -> None:
        """Raise TaskConfigError if this executor_config cannot give valid kwargs with the profile
        of ``queue``. The answer does not depend on the command, so it is cached per distinct
        (profile, config): O(1) for the usual task."""
        if executor_config is None:
            return  # the configured layers and every profile were checked at start
        profile = self.router.profile_for(queue)
        refuse_deep_nesting("executor_config", executor_config, TaskConfigError)  # before json.dumps recurses
        try:
            cache_key = json.dumps([profile, executor_config], sort_keys=True, default=repr)
        except (TypeError, ValueError):  # keys json cannot sort, or an integer too long to print
            self._build(list(SAMPLE_COMMAND), profile, executor_config)
            return
        if cache_key in self._valid_configs:
            return
        self._build(list(SAMPLE_COMMAND), profile, executor_config)
        if len(self._valid_configs) < CHECK_CACHE_SIZE:
            self._valid_configs.add(cache_key)

    def _assemble(
        self,
        base: dict[str, Any],
        task_layer: dict[str, Any],
        command: Sequence[str],
        owner_tags: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """Merge the task's layer over the base, fill defaults, put the command in its container,
        and mark the task as this deployment's."""
        kwargs = apply_defaults(deep_merge(base, task_layer), self.cluster_default_strategy)
        self._inject_command(kwargs, command)
        kwargs["startedBy"] = started_by(self.settings.deployment_id, self.settings.team)
        if owner_tags and isinstance(kwargs.get("tags", []), list):  # else botocore names the wrong type
            kwargs["tags"] = merge_tags(kwargs.get("tags"), owner_tags)
        return kwargs
