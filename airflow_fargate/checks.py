"""Pre-flight checks of a deployment: the executor's startup health check and ``airflow fargate check``.

Each check answers one question an operator would ask before the first task is lost (is the
config valid, do credentials work, does the cluster exist, ...) with PASS, WARN or FAIL and a
sentence saying what was found or what to fix. WARN never fails the command.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from airflow_fargate.logs import awslogs_stream

log = logging.getLogger(__name__)

BAD_CREDENTIAL_CODES = frozenset(
    {"InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "AccessDenied"}
)
_VERSION_IN_TAG = re.compile(r"(?<![\d.])(\d+)\.(\d+)\.(\d+)(?![\d])")


class Status(enum.Enum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str

    def line(self) -> str:
        return f"{self.status.value:4}  {self.name}: {self.detail}"


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {err}"


def _code(err: Exception) -> str:
    return err.response.get("Error", {}).get("Code", "") if isinstance(err, ClientError) else ""


def check_credentials(session: Any) -> Check:
    """Credentials resolve, and STS accepts them (the identity is printed)."""
    name = "credentials"
    try:
        credentials = session.get_credentials()
    except (BotoCoreError, ClientError) as err:
        return Check(name, Status.FAIL, f"cannot resolve AWS credentials ({_error(err)})")
    if credentials is None:
        return Check(name, Status.FAIL, "no AWS credentials found (aws_conn_id connection or boto3's default chain)")
    try:
        identity = session.client("sts").get_caller_identity()
    except ClientError as err:
        if _code(err) in BAD_CREDENTIAL_CODES:
            return Check(name, Status.FAIL, f"AWS rejects the credentials ({_error(err)})")
        return Check(name, Status.WARN, f"credentials found; sts:GetCallerIdentity failed ({_error(err)})")
    except BotoCoreError as err:
        return Check(name, Status.WARN, f"credentials found; sts:GetCallerIdentity failed ({_error(err)})")
    return Check(name, Status.PASS, f"account {identity.get('Account')}, {identity.get('Arn')}")


def check_cluster(ecs: Any, cluster: str) -> Check:
    name = "cluster"
    try:
        found = ecs.describe_clusters(clusters=[cluster]).get("clusters", [])
    except (BotoCoreError, ClientError) as err:
        return Check(name, Status.FAIL, f"cannot call ecs:DescribeClusters ({_error(err)})")
    active = [c for c in found if c.get("status") == "ACTIVE"]
    if not active:
        return Check(name, Status.FAIL, f"cluster {cluster!r} not found or not ACTIVE")
    info = active[0]
    return Check(
        name,
        Status.PASS,
        f"{cluster!r} is ACTIVE ({info.get('runningTasksCount', 0)} running, "
        f"{info.get('pendingTasksCount', 0)} pending tasks)",
    )


def check_task_definition(ecs: Any, task_definition: str, container: str) -> tuple[Check, dict[str, Any] | None]:
    """The task definition exists, is ACTIVE and has the container the command goes to."""
    name = "task definition"
    try:
        definition: dict[str, Any] = ecs.describe_task_definition(taskDefinition=task_definition)["taskDefinition"]
    except (BotoCoreError, ClientError) as err:
        return Check(name, Status.FAIL, f"task definition {task_definition!r} not found: {_error(err)}"), None
    names = [str(c.get("name")) for c in definition.get("containerDefinitions", [])]
    if container not in names:
        detail = (
            f"task definition {task_definition!r} has no container named {container!r} "
            f"(it has: {', '.join(names) or 'none'}); set container_name"
        )
        return Check(name, Status.FAIL, detail), definition
    if definition.get("status") not in (None, "ACTIVE"):
        return Check(
            name, Status.FAIL, f"task definition {task_definition!r} is {definition.get('status')}"
        ), definition
    label = f"{definition.get('family')}:{definition.get('revision')}"
    return Check(name, Status.PASS, f"{label} is ACTIVE and has container {container!r}"), definition


def launch_summary(kwargs: dict[str, Any]) -> str:
    """Where and how big a launch is, in a few words: task definition, capacity, size."""
    capacity = kwargs.get("launchType") or "+".join(
        str(item.get("capacityProvider")) for item in kwargs.get("capacityProviderStrategy") or []
    )
    overrides = kwargs.get("overrides") or {}
    size = " ".join(f"{key} {overrides[key]}" for key in ("cpu", "memory") if key in overrides)
    parts = [f"task definition {kwargs.get('taskDefinition')!r}", capacity or "the cluster's default capacity"]
    return ", ".join([*parts, size or "the task definition's size"])


def check_queue_profile(
    name: str, kwargs: dict[str, Any], base_task_definition: str, ecs: Any | None, container: str
) -> Check:
    """One queue profile gives valid kwargs (checked when they were built) and, with ``ecs``, a
    task definition of its own exists with the container the command goes to."""
    label = f"queue profile {name!r}"
    summary = launch_summary(kwargs)
    task_definition = str(kwargs.get("taskDefinition", ""))
    if ecs is None or task_definition == base_task_definition:
        return Check(label, Status.PASS, summary)
    result, definition = check_task_definition(ecs, task_definition, container)
    if result.status is not Status.PASS or definition is None:
        return Check(label, result.status, result.detail)
    network = check_network(definition, kwargs)
    if network.status is Status.FAIL:
        return Check(label, Status.FAIL, f"{summary}: {network.detail}")
    return Check(label, Status.PASS, f"{summary}; {result.detail}")


def check_network(definition: dict[str, Any], kwargs: dict[str, Any]) -> Check:
    """awsvpc (always so on Fargate) needs subnets in the run_task kwargs."""
    name = "network"
    mode = definition.get("networkMode", "bridge")
    vpc = (kwargs.get("networkConfiguration") or {}).get("awsvpcConfiguration") or {}
    if mode == "awsvpc" and not vpc.get("subnets"):
        return Check(name, Status.FAIL, "the task definition uses awsvpc networking but no subnets are configured")
    if mode == "awsvpc":
        return Check(
            name,
            Status.PASS,
            f"awsvpc in {len(vpc['subnets'])} subnet(s), security groups {vpc.get('securityGroups') or 'default'}, "
            f"public IP {vpc.get('assignPublicIp', 'DISABLED')}",
        )
    return Check(name, Status.PASS, f"network mode {mode}")


def check_awslogs(definition: dict[str, Any], container: str, logs_client: Callable[[str | None], Any]) -> Check:
    """awslogs is configured (task output in the UI and failure reasons) and its group exists."""
    name = "awslogs"
    where = awslogs_stream(definition, container, "task/x")
    if where is None:
        return Check(
            name,
            Status.WARN,
            f"container {container!r} has no awslogs log configuration with awslogs-group and "
            "awslogs-stream-prefix: the UI cannot show output of running tasks, failures carry no output",
        )
    try:
        groups = logs_client(where.region).describe_log_groups(logGroupNamePrefix=where.group).get("logGroups", [])
    except (BotoCoreError, ClientError) as err:
        return Check(name, Status.WARN, f"group {where.group}: cannot verify that it exists ({_error(err)})")
    if not any(g.get("logGroupName") == where.group for g in groups) and where.create_group:
        return Check(
            name,
            Status.WARN,
            f"log group {where.group} does not exist yet; awslogs-create-group makes ECS create it only if the "
            "execution role may logs:CreateLogGroup (AmazonECSTaskExecutionRolePolicy may not): create the group",
        )
    if not any(g.get("logGroupName") == where.group for g in groups):
        return Check(
            name,
            Status.FAIL,
            f"log group {where.group} does not exist: ECS cannot start the task (ResourceInitializationError); "
            "create it or set awslogs-create-group=true",
        )
    return Check(name, Status.PASS, f"group {where.group}, streams {where.stream.rsplit('/', 1)[0]}/<task id>")


def check_image(definition: dict[str, Any], container: str, airflow_version: str) -> Check:
    """The image tag's Airflow version (if it names one) matches the scheduler's."""
    name = "image"
    containers = definition.get("containerDefinitions", [])
    image = str(next((c.get("image", "") for c in containers if c.get("name") == container), ""))
    last_part = image.rsplit("/", 1)[-1]
    tag = last_part.rpartition(":")[2] if ":" in last_part else ""
    match = _VERSION_IN_TAG.search(tag)
    if not match:
        return Check(name, Status.PASS, f"{image} (tag names no version; make sure it runs Airflow {airflow_version})")
    in_tag = ".".join(match.groups())
    ours = _VERSION_IN_TAG.search(airflow_version)
    ours_parts = ours.groups() if ours else ()
    if match.groups()[:2] != ours_parts[:2]:
        return Check(
            name,
            Status.FAIL,
            f"{image} looks like Airflow {in_tag} but the scheduler runs {airflow_version}: workers must run the "
            "same Airflow major.minor (rebuild the image with --build-arg AIRFLOW_VERSION)",
        )
    if match.groups() != ours_parts:
        return Check(name, Status.WARN, f"{image} looks like Airflow {in_tag}; the scheduler runs {airflow_version}")
    return Check(name, Status.PASS, f"{image} matches the scheduler's Airflow {airflow_version}")


def check_execution_config_function(settings: Any, builder: Any) -> Check | None:
    """An execution_config_function's kwargs replace the section values: an option set beside it
    that its result does not carry has no effect (another cluster is refused by the builder)."""
    from airflow_fargate.compat import AIRFLOW_V3
    from airflow_fargate.provenance import CONFIG_SETTINGS, leaves
    from airflow_fargate.run_task import config_layer
    from airflow_fargate.settings import option_label
    from airflow_fargate.work import sample_command

    if not settings.execution_config_function:
        return None
    name = "execution_config_function"
    built = builder.base_layers(sample_command(AIRFLOW_V3))[0][1]
    found = leaves(built)
    dropped = sorted(
        {
            option_label(setting)
            for path, value in leaves(config_layer(settings)).items()
            if (setting := CONFIG_SETTINGS.get(path)) not in (None, "cluster")
            and settings.sources.get(setting, "default") != "default"
            and found.get(path) != value
        }
    )
    if dropped:
        return Check(
            name,
            Status.WARN,
            "its kwargs replace the section values and do not carry "
            + ", ".join(dropped)
            + ": those settings have no effect (have the function read them, or put them in run_task_kwargs)",
        )
    return Check(name, Status.PASS, "its kwargs carry every section value set beside it")


TAGGING_IAM = "ecs:TagResource on arn:aws:ecs:<region>:<account>:task/<cluster>/*"


def check_task_tagging(ecs: Any, cluster: str) -> list[Check]:
    """Every task is started with owner tags (ownership.py), which needs the long task ARN format
    and ecs:TagResource; without them every RunTask fails."""
    return [check_arn_format(ecs), check_tagging_permission(ecs, cluster)]


def check_arn_format(ecs: Any) -> Check:
    """Tags on tasks need the long task ARN format."""
    try:
        found = ecs.list_account_settings(name="taskLongArnFormat", effectiveSettings=True).get("settings") or []
    except (BotoCoreError, ClientError) as err:
        return Check("task ARN format", Status.WARN, f"cannot read ecs:ListAccountSettings ({_error(err)})")
    value = str(found[0].get("value", "enabled")) if found else "enabled"
    if value.lower() == "disabled":
        return Check(
            "task ARN format",
            Status.FAIL,
            "taskLongArnFormat is disabled for this identity: ECS cannot tag its tasks, and FargateExecutor "
            "tags every task to find it after a scheduler crash. Run: aws ecs put-account-setting "
            "--name taskLongArnFormat --value enabled",
        )
    return Check("task ARN format", Status.PASS, "long ARN format: tasks can carry tags")


def check_tagging_permission(ecs: Any, cluster: str) -> Check:
    """ecs:TagResource on the cluster's tasks, probed by tagging a task that cannot exist: IAM
    answers AccessDenied before ECS looks for the task."""
    try:
        clusters = ecs.describe_clusters(clusters=[cluster]).get("clusters") or []
        cluster_arn = str(clusters[0]["clusterArn"])
        probe = cluster_arn.replace(":cluster/", ":task/") + "/" + "0" * 32
        ecs.tag_resource(resourceArn=probe, tags=[{"key": "airflow-fargate:probe", "value": "1"}])
    except ClientError as err:
        if "AccessDenied" in _code(err) or "not authorized" in str(err):
            return Check(
                "task tagging",
                Status.WARN,
                f"ecs:TagResource was refused for tasks ({_error(err)}). RunTask with tags needs {TAGGING_IAM} "
                "(a policy that allows it only with the condition ecs:CreateAction=RunTask is enough, and "
                "answers this probe with AccessDenied too).",
            )
    except Exception:  # the task not being found (or no cluster) is the expected answer
        log.debug("TagResource probe answered", exc_info=True)
    return Check("task tagging", Status.PASS, "ecs:TagResource is allowed for this cluster's tasks")


def startup_problems(
    ecs: Any, cluster: str, task_definition: str | None, container: str
) -> tuple[list[str], list[str]]:
    """What the executor's startup health check refuses to start with (cluster, task definition,
    task ARN format), and what it only warns about. The tagging permission probe, which can only
    warn and takes a second round trip, is the caller's to run beside the first heartbeats."""
    jobs: list[Callable[[], Check]] = [
        functools.partial(check_cluster, ecs, cluster),
        functools.partial(check_arn_format, ecs),
    ]
    if task_definition:
        jobs.append(lambda: check_task_definition(ecs, task_definition, container)[0])
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="fargate-health") as pool:
        checks = list(pool.map(lambda job: job(), jobs))  # the calls go out together: one round trip
    problems = [c.detail for c in checks if c.status is Status.FAIL]
    return problems, [f"{c.name}: {c.detail}" for c in checks if c.status is Status.WARN]
