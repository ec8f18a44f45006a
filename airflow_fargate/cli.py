"""``airflow fargate check`` and ``airflow fargate show-config``.

Registered through the provider info's "cli" entry (Airflow 3) and
``FargateExecutor.get_cli_commands`` (Airflow 2). This module is imported by every ``airflow``
command, so it imports nothing heavy until a fargate command actually runs.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand, lazy_load_command

ARG_EXECUTOR_CONFIG = Arg(
    ("--executor-config",),
    help="A task's executor_config as JSON, merged on top like a real task's (show-config only)",
    metavar="JSON",
)
ARG_QUEUE = Arg(
    ("--queue",),
    help="The task's Airflow queue: its profile in queue_profiles is merged in (show-config only)",
    metavar="NAME",
)
ARG_OUTPUT = Arg(("--output",), help="text (default) or json", choices=("text", "json"), default="text")
ARG_TEAM = Arg(("--team",), help="Use this team's configuration (Airflow 3.3 multi-team)", metavar="TEAM")
ARG_NO_AWS = Arg(("--offline",), help="Only check the configuration; make no AWS calls", action="store_true")


def get_fargate_cli_commands() -> list[GroupCommand]:
    """The ``airflow fargate`` command group."""
    return [
        GroupCommand(
            name="fargate",
            help="FargateExecutor tools: pre-flight checks and the effective ECS run_task configuration",
            subcommands=(
                ActionCommand(
                    name="check",
                    help="Check configuration, credentials, cluster, task definition, logs and image; "
                    "exit 1 if any check fails",
                    func=lazy_load_command("airflow_fargate.cli.check"),
                    args=(ARG_NO_AWS, ARG_TEAM),
                ),
                ActionCommand(
                    name="show-config",
                    help="Print the run_task kwargs a task would get, with where every value comes from",
                    func=lazy_load_command("airflow_fargate.cli.show_config"),
                    args=(ARG_EXECUTOR_CONFIG, ARG_QUEUE, ARG_OUTPUT, ARG_TEAM),
                ),
            ),
        )
    ]


def team_settings(team: str | None) -> Any:
    """The settings the executor of this team (None: the global one) would load."""
    from airflow_fargate.settings import load_settings

    if not team:
        return load_settings()
    try:
        from airflow.executors.base_executor import ExecutorConf
    except ImportError:
        sys.exit("--team needs Airflow 3.3 or later (multi-team executors)")
    return load_settings(ExecutorConf(team_name=team))


def run_checks(offline: bool = False, team: str | None = None) -> list[Any]:
    """Every check in order; later checks are skipped when what they need is missing."""
    from airflow import __version__ as airflow_version

    from airflow_fargate import checks
    from airflow_fargate.aws_session import aws_target
    from airflow_fargate.run_task import SAMPLE_COMMAND, RunTaskKwargsBuilder

    try:
        settings = team_settings(team)
        builder = RunTaskKwargsBuilder(settings)
        kwargs = builder.build(list(SAMPLE_COMMAND), None)
        function_check = checks.check_execution_config_function(settings, builder)
    except Exception as err:
        return [checks.Check("configuration", checks.Status.FAIL, str(err))]
    sections = sorted({s.split("]")[0] + "]" for s in settings.sources.values() if s.startswith("[")})
    results = [
        checks.Check(
            "configuration",
            checks.Status.PASS,
            f"valid, from {', '.join(sections) or 'defaults'} (cluster {settings.cluster!r}, task definition "
            f"{kwargs.get('taskDefinition')!r}, container {settings.container_name!r}, region {settings.region_name})",
        )
    ]
    if function_check is not None:
        results.append(function_check)
    profiles = {name: builder.build(list(SAMPLE_COMMAND), None, queue=name) for name in settings.queue_profiles}

    def profile_checks(ecs: Any | None) -> list[Any]:
        base = str(kwargs.get("taskDefinition", ""))
        return [
            checks.check_queue_profile(name, built, base, ecs, settings.container_name)
            for name, built in profiles.items()
        ]

    if offline:
        return [*results, *profile_checks(None)]
    try:
        target = aws_target(settings.aws_conn_id, settings.region_name)
    except Exception as err:
        return [*results, checks.Check("credentials", checks.Status.FAIL, f"cannot build an AWS session: {err}")]
    results.append(checks.check_credentials(target.session))
    ecs = target.client("ecs")
    results.append(checks.check_cluster(ecs, settings.cluster))
    results.extend(checks.check_task_tagging(ecs, settings.cluster))
    task_definition_check, definition = checks.check_task_definition(
        ecs, kwargs.get("taskDefinition", ""), settings.container_name
    )
    results.append(task_definition_check)
    results.extend(profile_checks(ecs))
    if definition is None or task_definition_check.status is checks.Status.FAIL:
        return results

    def logs_client(region: str | None) -> Any:
        return target.client("logs", region_name=region or settings.region_name)

    results.append(checks.check_network(definition, kwargs))
    results.append(checks.check_awslogs(definition, settings.container_name, logs_client))
    results.append(checks.check_image(definition, settings.container_name, airflow_version))
    results.append(_secrets_check(definition))
    return results


def _secrets_check(definition: dict[str, Any]) -> Any:
    """The task definition gives its containers no scheduler secret (secret_checks)."""
    from airflow_fargate import checks
    from airflow_fargate.compat import AIRFLOW_V3
    from airflow_fargate.secret_checks import secret_problems

    problems = secret_problems(definition, AIRFLOW_V3)
    if problems:
        return checks.Check("task secrets", checks.Status.FAIL, "; ".join(problems))
    return checks.Check("task secrets", checks.Status.PASS, "no scheduler secret in any container")


def _quiet() -> None:
    """Keep the commands' output to their own lines: boto's and our INFO chatter goes."""
    for name in ("botocore", "boto3", "airflow_fargate"):
        logging.getLogger(name).setLevel(logging.WARNING)


def check(args: Any) -> None:
    """``airflow fargate check``: one PASS/WARN/FAIL line per check; exit 1 on any FAIL."""
    from airflow_fargate.checks import Status

    _quiet()
    results = run_checks(offline=bool(getattr(args, "offline", False)), team=getattr(args, "team", None))
    for result in results:
        print(result.line())
    failed = [r for r in results if r.status is Status.FAIL]
    print(f"\n{len(results) - len(failed)} of {len(results)} checks passed." if failed else "\nAll checks passed.")
    if failed:
        sys.exit(1)


def show_config(args: Any) -> None:
    """``airflow fargate show-config``: effective run_task kwargs for a sample task, with sources."""
    from airflow_fargate.provenance import dotted, leaves, value_sources
    from airflow_fargate.run_task import SAMPLE_COMMAND, RunTaskKwargsBuilder

    _quiet()
    try:
        executor_config = json.loads(args.executor_config) if getattr(args, "executor_config", None) else None
    except json.JSONDecodeError as err:
        sys.exit(f"--executor-config is not valid JSON: {err}")
    queue = getattr(args, "queue", None)
    try:
        settings = team_settings(getattr(args, "team", None))
        builder = RunTaskKwargsBuilder(settings)
        kwargs = builder.build(list(SAMPLE_COMMAND), executor_config, queue=queue)
        layers = builder.layers(list(SAMPLE_COMMAND), queue, executor_config)
    except Exception as err:  # FargateConfigError, TaskConfigError: both read as the fix to make
        sys.exit(f"Cannot build run_task kwargs: {err}")
    sources = value_sources(kwargs, layers, settings)
    if getattr(args, "output", "text") == "json":
        print(json.dumps({"run_task_kwargs": kwargs, "sources": sources}, indent=2, default=str))
        return
    print(f"# Effective ECS run_task kwargs for a sample task (command {' '.join(SAMPLE_COMMAND)!r}).")
    if queue is not None:
        print(f"# {_queue_note(builder, queue)}")
    print("# clientToken is added per launch: one per queueing of a try, and per relaunch.\n")
    width = max(len(path) for path in sources)
    for path, value in leaves(kwargs).items():
        name = dotted(path)
        print(f"{name:<{width}} = {json.dumps(value, default=str):<40}  # {sources[name]}")


def _queue_note(builder: Any, queue: str) -> str:
    """Which profile a task on ``queue`` gets, in words."""
    profile = builder.router.profile_for(queue)
    if profile == queue:
        return f"Queue {queue!r}: its own profile."
    if profile is not None:
        return f"Queue {queue!r} has no profile: it gets the default queue {profile!r}'s profile."
    if builder.router.names:
        return f"Queue {queue!r} has no profile (nor has the default queue): the configured layers only."
    return "No queue_profiles configured: the queue changes nothing."
