"""The local ECS endpoint over HTTP: lifecycle, stop, logs, idempotency and every fault switch."""

from __future__ import annotations

import datetime
import http.server
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from airflow_fargate.local.faults import Faults, TokenBucket
from airflow_fargate.local.runner import try_key
from airflow_fargate.local.server import LocalEcs
from tests.helpers import slowdown, wait_until


@pytest.fixture
def local() -> Iterator[LocalEcs]:
    ecs = LocalEcs(runtime="process", stop_grace_seconds=1).start()
    try:
        yield ecs
    finally:
        ecs.stop()


def run(
    ecs: LocalEcs, command: list[str], token: str | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    override: dict[str, Any] = {"name": ecs.config.container_name, "command": command}
    if env:
        override["environment"] = [{"name": k, "value": v} for k, v in env.items()]
    kwargs: dict[str, Any] = {
        "cluster": ecs.config.cluster,
        "taskDefinition": ecs.config.family,
        "launchType": "FARGATE",
        "overrides": {"containerOverrides": [override]},
    }
    if token:
        kwargs["clientToken"] = token
    return ecs.client("ecs").run_task(**kwargs)


def describe(ecs: LocalEcs, arn: str, client: Any = None) -> dict[str, Any] | None:
    client = client or ecs.client("ecs")
    tasks = client.describe_tasks(cluster=ecs.config.cluster, tasks=[arn])["tasks"]
    return tasks[0] if tasks else None


def wait_stopped(ecs: LocalEcs, arn: str, timeout: float = 20) -> dict[str, Any]:
    """Until the task is STOPPED; ``_seen`` is the statuses seen on the way. One client for every
    call: a new boto3 client per call took over a second on a loaded machine, long enough to miss
    a status that lasts one."""
    client = ecs.client("ecs")
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        task = describe(ecs, arn, client)
        if task:
            if not seen or seen[-1] != task["lastStatus"]:
                seen.append(task["lastStatus"])
            if task["lastStatus"] == "STOPPED":
                task["_seen"] = seen
                return task
        time.sleep(0.05)
    raise TimeoutError(f"{arn} not stopped; saw {seen}")


def wait_for_output(ecs: LocalEcs, arn: str, line: str, timeout: float = 30) -> None:
    """Until the task's container has printed ``line`` (its output reaches CloudWatch as printed)."""
    logs = ecs.client("logs")
    stream = f"airflow/{ecs.config.container_name}/{arn.rsplit('/', 1)[-1]}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            events = logs.get_log_events(logGroupName=ecs.config.log_group, logStreamName=stream)["events"]
        except logs.exceptions.ResourceNotFoundException:
            events = []
        if any(e["message"] == line for e in events):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{arn} did not print {line!r}")


def test_binds_to_loopback_only(local):
    assert local.endpoint_url.startswith("http://127.0.0.1:")
    env = local.scheduler_env()
    assert env["AWS_ENDPOINT_URL"] == local.endpoint_url
    assert env["AIRFLOW__AWS_ECS_EXECUTOR__CLUSTER"] == local.config.cluster


def test_task_runs_through_its_lifecycle_with_exit_code_env_and_logs(local, tmp_path):
    release = tmp_path / "release"  # the container exits only once the test has seen it running
    command = [
        sys.executable,
        "-c",
        "import os, sys, time\n"
        "print('value', os.environ['GREETING'], flush=True)\n"
        f"while not os.path.exists({str(release)!r}): time.sleep(0.02)\n"
        "sys.exit(3)",
    ]
    arn = run(local, command, env={"GREETING": "hi there"})["tasks"][0]["taskArn"]
    seen = []
    deadline = time.monotonic() + 20
    while "RUNNING" not in seen and time.monotonic() < deadline:
        status = (describe(local, arn) or {}).get("lastStatus")
        if status and (not seen or seen[-1] != status):
            seen.append(status)
        time.sleep(0.02)
    assert seen[-1] == "RUNNING" and set(seen) <= {"PROVISIONING", "PENDING", "RUNNING"}, seen
    release.touch()
    task = wait_stopped(local, arn)
    assert task["stopCode"] == "EssentialContainerExited"
    assert task["containers"][0]["exitCode"] == 3
    assert task["startedAt"] and task["stoppedAt"]
    logs = local.client("logs")
    stream = f"airflow/{local.config.container_name}/{arn.rsplit('/', 1)[-1]}"
    events = logs.get_log_events(logGroupName=local.config.log_group, logStreamName=stream)["events"]
    assert [e["message"] for e in events] == ["value hi there"]


def test_stop_task_terminates_then_kills(local):
    ignores_term = [
        sys.executable,
        "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)",
    ]
    arn = run(local, ignores_term)["tasks"][0]["taskArn"]
    # "up" is printed once SIGTERM is ignored (RUNNING comes earlier, as the process is spawned,
    # and a busy machine may take a second or more to start Python)
    wait_for_output(local, arn, "up")
    local.client("ecs").stop_task(cluster=local.config.cluster, task=arn, reason="operator said so")
    task = wait_stopped(local, arn)
    assert task["stopCode"] == "UserInitiated"
    assert task["stoppedReason"] == "operator said so"
    assert task["containers"][0]["exitCode"] == 137  # SIGTERM ignored -> SIGKILL after the grace period


def test_stop_of_unknown_task_is_an_ecs_error(local):
    with pytest.raises(ClientError, match="InvalidParameterException"):
        local.client("ecs").stop_task(cluster=local.config.cluster, task="0" * 32, reason="x")


def test_client_token_is_idempotent_and_refused_with_other_parameters(local):
    """As ECS: the same token with the same parameters returns the first call's task; with other
    parameters it is a ConflictException, and nothing starts."""
    from botocore.exceptions import ClientError

    first = run(local, ["true"], token="same-token")["tasks"][0]["taskArn"]
    second = run(local, ["true"], token="same-token")["tasks"][0]["taskArn"]
    third = run(local, ["true"], token="other-token")["tasks"][0]["taskArn"]
    assert first == second != third
    with pytest.raises(ClientError) as err:
        run(local, ["false"], token="same-token")
    assert err.value.response["Error"]["Code"] == "ConflictException"
    assert local.runner.stats.idempotent_replays == 1
    assert local.runner.stats.tasks_created == 2


def test_try_key_from_airflow_commands():
    workload = json.dumps({"ti": {"dag_id": "d", "task_id": "t", "run_id": "r", "map_index": -1, "try_number": 2}})
    assert try_key(["python", "-m", "x", "--json-string", workload]) == "d|t|r|-1|2"
    assert try_key(["airflow", "tasks", "run", "d", "t", "r", "--local"]) == "d|t|r|-1"
    assert try_key(["airflow", "tasks", "run", "d", "t", "r", "--map-index", "3", "--local"]) == "d|t|r|3"
    assert try_key(["echo"]) is None
    callback = json.dumps({"callback": {"id": "c1"}, "type": "ExecuteCallback"})
    assert try_key(["python", "-c", "...", "--json-string", callback]) == "callback|c1"
    test = json.dumps({"connection_test_id": "t1", "type": "TestConnection"})
    assert try_key(["python", "-c", "...", "--json-string", test]) == "connection_test|t1"


def test_overlap_is_two_live_containers_of_one_queueing(local, tmp_path):
    """A reschedule poke may start while the previous poke's container is still exiting (each
    queueing has its own execution-API token): no overlap. Two of one queueing is one."""

    def both_alive_then_stopped(tokens: list[str], release: Path) -> None:
        ti = {"dag_id": "d", "task_id": "t", "run_id": "r", "map_index": -1, "try_number": 1}
        wait = f"import os, time\nwhile not os.path.exists({str(release)!r}): time.sleep(0.02)"
        before = stats(local)["containers_started"]
        arns = [
            run(local, ["python", "-c", wait, "--json-string", json.dumps({"ti": ti, "token": token})])["tasks"][0][
                "taskArn"
            ]
            for token in tokens
        ]
        deadline = time.monotonic() + 30
        while stats(local)["containers_started"] < before + 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # both containers running at once, whatever the machine's speed
        release.touch()
        for arn in arns:
            wait_stopped(local, arn)

    both_alive_then_stopped(["poke-1", "poke-2"], tmp_path / "first")
    assert stats(local)["overlapping_tries"] == []
    assert stats(local)["started_per_try"] == {"d|t|r|-1|1": 2}
    both_alive_then_stopped(["poke-3", "poke-3"], tmp_path / "second")
    assert stats(local)["overlapping_tries"] == ["d|t|r|-1|1"]


def set_faults(local: LocalEcs, **switches: Any) -> None:
    assert local.control("/_local/faults", switches)["seed"] == switches.get("seed")


def stats(local: LocalEcs) -> dict[str, Any]:
    return dict(local.control("/_local/stats"))


def raw_request(
    local: LocalEcs, path: str = "/", body: bytes = b"{}", headers: dict[str, str] | None = None, method: str = "POST"
) -> tuple[int, dict[str, str], str]:
    """A request made by hand (curl, a browser, another local user): status, headers, body."""
    request = urllib.request.Request(local.endpoint_url + path, data=body or None, method=method)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


RUN_TASK_HEADERS = {
    "Content-Type": "application/x-amz-json-1.1",
    "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.RunTask",
}


def signed_headers(
    local: LocalEcs, body: bytes, access_key: str, secret_key: str, *, host: str | None = None, action: str = "RunTask"
) -> dict[str, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url = local.endpoint_url if host is None else f"http://{host}"
    headers = {**RUN_TASK_HEADERS, "X-Amz-Target": f"AmazonEC2ContainerServiceV20141113.{action}"}
    request = AWSRequest(method="POST", url=url + "/", data=body, headers=headers)
    SigV4Auth(Credentials(access_key, secret_key), "ecs", local.config.region).add_auth(request)
    return dict(request.headers)


def test_the_endpoint_refuses_every_request_not_from_its_scheduler(local):
    """The attacks of the security audit, each refused with 403 and counted; nothing runs."""
    command = json.dumps(
        {
            "cluster": local.config.cluster,
            "taskDefinition": local.config.family,
            "overrides": {
                "containerOverrides": [{"name": local.config.container_name, "command": ["touch", "/tmp/x"]}]
            },
        }
    ).encode()
    creds = local.credentials
    host = local.endpoint_url.removeprefix("http://")
    attacks = {
        "unsigned curl": RUN_TASK_HEADERS,
        "forged signature": signed_headers(local, command, creds.access_key, "guessed-secret"),
        "another access key": signed_headers(local, command, "AKIAOTHER", "other-secret"),
        "cross-origin page": {
            **signed_headers(local, command, creds.access_key, creds.secret_key),
            "Origin": "https://evil.example",
        },
        "DNS rebinding": {
            **signed_headers(
                local, command, creds.access_key, creds.secret_key, host=f"rebind.example:{host.split(':')[1]}"
            ),
            "Host": f"rebind.example:{host.split(':')[1]}",
        },
    }
    for name, headers in attacks.items():
        status, response_headers, body = raw_request(local, body=command, headers=headers)
        assert status == 403, (name, status, body)
        assert not any(h.lower().startswith("access-control-") for h in response_headers), name
    unsigned_register = {
        **RUN_TASK_HEADERS,
        "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.RegisterTaskDefinition",
    }
    assert (
        raw_request(local, body=b'{"family": "evil", "containerDefinitions": []}', headers=unsigned_register)[0] == 403
    )
    assert raw_request(local, "/_local/faults", b'{"seed": 1}')[0] == 403
    assert raw_request(local, "/_local/stats", b"", method="GET")[0] == 403
    preflight = raw_request(local, body=b"", method="OPTIONS", headers={"Origin": "https://evil.example"})
    assert preflight[0] == 403 and not any(h.lower().startswith("access-control-") for h in preflight[1])
    assert stats(local)["tasks_created"] == 0 and stats(local)["requests_refused"] == len(attacks) + 4
    # ...while the scheduler's own, signed calls work, without CORS headers either
    describe = b'{"clusters": []}'
    status, response_headers, body = raw_request(
        local,
        body=describe,
        headers=signed_headers(local, describe, creds.access_key, creds.secret_key, action="DescribeClusters"),
    )
    assert status == 200, body
    assert not any(h.lower().startswith("access-control-") for h in response_headers)


def test_bad_fault_switch_is_refused(local):
    with pytest.raises(urllib.error.HTTPError) as err:
        local.control("/_local/faults", {"typo": 1})
    assert "unknown fault switches: typo" in err.value.read().decode()


def test_throttling_like_ecs(local):
    set_faults(local, run_task_rate=0.001, run_task_burst=2, seed=1)
    results = []
    for _ in range(3):
        try:
            run(local, ["true"])
            results.append("ok")
        except ClientError as err:
            results.append(err.response["Error"]["Code"])
    assert results[:2] == ["ok", "ok"]
    assert results[2] == "ThrottlingException"
    assert stats(local)["run_task_throttled"] >= 1


def test_token_bucket_refills():
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=2, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [True, True, False]
    now[0] += 0.1
    assert bucket.take() is True
    assert bucket.take() is False


def test_injected_run_task_failures(local):
    set_faults(local, run_task_failure_rate=1.0, seed=2)
    response = run(local, ["true"])
    assert response["tasks"] == []
    assert response["failures"][0]["reason"] in (
        "Capacity is unavailable at this time. Please try again later or in a different availability zone",
        "RESOURCE:MEMORY",
        "AGENT",
    )
    assert stats(local)["run_task_failures_injected"] == 1


def test_injected_start_failures(local):
    set_faults(local, start_failure_rate=1.0, seed=3)
    arn = run(local, ["true"])["tasks"][0]["taskArn"]
    task = wait_stopped(local, arn)
    assert task["stopCode"] == "TaskFailedToStart"
    assert "RUNNING" not in task["_seen"]
    assert task["containers"][0].get("exitCode") is None
    assert task["containers"][0]["reason"].startswith(("CannotPullContainerError", "ResourceInitializationError"))


def test_injected_spot_interruptions(local):
    set_faults(local, spot_interruption_rate=1.0, seed=4)
    arn = run(local, [sys.executable, "-c", "import time; time.sleep(30)"])["tasks"][0]["taskArn"]
    task = wait_stopped(local, arn)
    assert task["stopCode"] == "SpotInterruption"
    assert task["containers"][0]["exitCode"] in (143, 137)
    assert stats(local)["spot_interruptions"] == 1


def test_describe_delay_hides_new_tasks(local):
    set_faults(local, describe_delay_s=600.0, seed=5)  # far longer than any slow machine takes to ask
    arn = run(local, ["true"])["tasks"][0]["taskArn"]
    assert describe(local, arn) is None
    set_faults(local, describe_delay_s=0.0, seed=5)  # the delay is judged when asked: visible now
    assert describe(local, arn) is not None


def test_api_latency(local):
    set_faults(local, latency_ms=300, seed=6)
    started = time.monotonic()
    local.client("ecs").list_clusters()
    assert time.monotonic() - started >= 0.3


def test_simulated_runtime_runs_nothing():
    ecs = LocalEcs(runtime="simulate", simulate_duration=0.2).start()
    try:
        arn = run(ecs, ["definitely-not-a-command"])["tasks"][0]["taskArn"]
        assert wait_stopped(ecs, arn)["containers"][0]["exitCode"] == 0
    finally:
        ecs.stop()


def test_faults_from_dict_validates():
    assert Faults.from_dict({"latency_ms": 5}).latency_ms == 5
    with pytest.raises(ValueError, match="unknown fault switches: nope"):
        Faults.from_dict({"nope": 1})


def test_cli_prints_scheduler_env_and_stops_on_sigterm(tmp_path):
    env_file = tmp_path / "env"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_fargate.local",
            "--port",
            "0",
            "--runtime",
            "process",
            "--env-file",
            str(env_file),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("# local ECS endpoint on http://127.0.0.1:")
        exports = [proc.stdout.readline().strip() for _ in range(9)]
        assert any(line.startswith("export AWS_ENDPOINT_URL=http://127.0.0.1:") for line in exports)
        assert "export AIRFLOW__CORE__EXECUTOR=airflow_fargate.FargateExecutor" in exports
        assert env_file.read_text().splitlines() == exports
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0


def test_describe_tasks_is_throttled_like_ecs_when_asked(local):
    """DescribeTasks has its own bucket (the burst, then the rate), counted apart from RunTask's."""
    set_faults(local, describe_tasks_rate=0.001, describe_tasks_burst=3)
    client = local.client("ecs")
    for _ in range(3):
        client.describe_tasks(cluster=local.config.cluster, tasks=["x"])
    with pytest.raises(ClientError, match="ThrottlingException"):
        client.describe_tasks(cluster=local.config.cluster, tasks=["x"])
    counted = stats(local)
    assert counted["describe_tasks_throttled"] >= 1 and counted["run_task_throttled"] == 0


class FakeExecutionApi:
    """Airflow's execution API as far as the simulate-api runtime uses it: records each call."""

    def __init__(self, fail_state: bool = False, busy_once: bool = False) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.busy = busy_once  # answer the first call 500 (a locked SQLite), as a loaded API server does
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PATCH(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if api.busy:
                    api.busy = False
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                api.calls.append((self.path, self.headers["Authorization"], body))
                failing = fail_state and self.path.endswith("/state")
                self.send_response(409 if failing else 200)
                if self.path.endswith("/run"):
                    self.send_header("Refreshed-API-Token", "execution-token")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/execution/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def workload_command(workload: dict[str, Any]) -> list[str]:
    return ["python", "-m", "airflow.sdk.execution_time.execute_workload", "--json-string", json.dumps(workload)]


@pytest.mark.parametrize(("fail_state", "busy_once"), [(False, False), (True, False), (False, True)])
def test_simulate_api_runtime_reports_the_try_to_the_execution_api(fail_state, busy_once):
    api = FakeExecutionApi(fail_state=fail_state, busy_once=busy_once)
    ecs = LocalEcs(runtime="simulate-api", simulate_duration=0.2).start()
    try:
        workload = {"type": "ExecuteTask", "token": "workload-token", "ti": {"id": "0193-ti"}}
        arn = run(ecs, workload_command(workload), env={"AIRFLOW__CORE__EXECUTION_API_SERVER_URL": api.url})
        code = wait_stopped(ecs, arn["tasks"][0]["taskArn"])["containers"][0]["exitCode"]
    finally:
        ecs.stop()
        api.close()
    (run_path, run_auth, running), (state_path, state_auth, final) = api.calls
    assert (run_path, run_auth, running["state"]) == (
        "/execution/task-instances/0193-ti/run",
        "Bearer workload-token",
        "running",
    )
    assert (state_path, state_auth) == ("/execution/task-instances/0193-ti/state", "Bearer execution-token")
    assert final["state"] == "success"
    assert code == (1 if fail_state else 0)  # an API that refuses the success is a failed container


def test_simulate_api_runtime_lets_other_workloads_exit_0():
    ecs = LocalEcs(runtime="simulate-api", simulate_duration=0.1).start()
    try:
        nowhere = {"AIRFLOW__CORE__EXECUTION_API_SERVER_URL": "http://127.0.0.1:9/execution/"}  # a call fails
        arn = run(ecs, workload_command({"type": "ExecuteCallback", "token": "t"}), env=nowhere)["tasks"][0]["taskArn"]
        assert wait_stopped(ecs, arn)["containers"][0]["exitCode"] == 0
    finally:
        ecs.stop()


def test_a_task_deprovisions_for_a_while_after_its_container_exits_when_asked():
    ecs = LocalEcs(runtime="simulate", simulate_duration=0.1, faults=Faults(deprovision_delay_s=3.0)).start()
    try:
        arn = run(ecs, ["true"])["tasks"][0]["taskArn"]
        task = wait_stopped(ecs, arn)
        assert task["_seen"][-2:] == ["DEPROVISIONING", "STOPPED"]
        assert task["stoppedAt"] - task["executionStoppedAt"] >= datetime.timedelta(seconds=2.9)
        assert task["containers"][0]["exitCode"] == 0
    finally:
        ecs.stop()


def test_start_times_vary_per_task_when_asked_as_on_ecs():
    """provision_jitter_s: each task stays PROVISIONING/PENDING its own while (seeded), as ECS
    tasks do (ENI attachment, image pulls), so tasks launched together do not start in lockstep."""
    faults = Faults(provision_delay_s=0.2, provision_jitter_s=2.0, seed=3)
    ecs = LocalEcs(runtime="simulate", simulate_duration=0.1, faults=faults).start()
    try:
        launched = {}
        for _ in range(12):
            asked = datetime.datetime.now(datetime.timezone.utc)
            launched[run(ecs, ["true"])["tasks"][0]["taskArn"]] = asked
        waits = [(wait_stopped(ecs, arn)["startedAt"] - asked).total_seconds() for arn, asked in launched.items()]
        slack = 1.0 * slowdown()  # a busy machine starts the simulated containers late
        assert all(0.15 <= wait <= 2.2 + slack for wait in waits), waits
        assert max(waits) - min(waits) > 0.5, waits
    finally:
        ecs.stop()


def test_the_guard_refuses_old_signatures_and_headers_added_after_signing(local):
    """As SigV4 does: a request signed more than 5 minutes ago (a replay), or one whose host or
    operation was not signed (changed after signing), is refused."""
    import datetime
    from unittest import mock

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    creds = local.credentials
    body = b'{"clusters": []}'
    describe = {**RUN_TASK_HEADERS, "X-Amz-Target": "AmazonEC2ContainerServiceV20141113.DescribeClusters"}
    now = datetime.datetime.now(datetime.timezone.utc)

    def signed(when: datetime.datetime | None = None, unsigned: str = "") -> dict[str, str]:
        class Leaving(SigV4Auth):
            def headers_to_sign(self, request):  # type: ignore[no-untyped-def]
                names = super().headers_to_sign(request)
                if unsigned:
                    del names[unsigned]
                return names

        request = AWSRequest(method="POST", url=local.endpoint_url + "/", data=body, headers=describe)
        auth = Leaving(Credentials(creds.access_key, creds.secret_key), "ecs", local.config.region)
        with mock.patch("botocore.auth.get_current_datetime", lambda: (when or now).replace(tzinfo=None)):
            auth.add_auth(request)
        return dict(request.headers)

    assert raw_request(local, body=body, headers=signed())[0] == 200
    assert raw_request(local, body=body, headers=signed(now - datetime.timedelta(minutes=2)))[0] == 200
    status, _, text = raw_request(local, body=body, headers=signed(now - datetime.timedelta(days=400)))
    assert status == 403 and "more than 5 minutes" in text
    status, _, text = raw_request(local, body=body, headers=signed(now + datetime.timedelta(minutes=6)))
    assert status == 403 and "more than 5 minutes" in text
    for header in ("host", "x-amz-target"):
        status, _, text = raw_request(local, body=body, headers=signed(unsigned=header))
        assert status == 403 and f"{header} must be among the signed headers" in text, text


def test_connections_are_kept_alive_as_ecs_keeps_them(local):
    """One TCP connection serves many calls (a new one per call would cost every client a
    handshake that real ECS does not)."""
    client = local.client("ecs")
    for _ in range(5):
        headers = client.list_clusters()["ResponseMetadata"]["HTTPHeaders"]
        assert headers.get("connection", "").lower() != "close"
    pool = client._endpoint.http_session._manager.connection_from_url(local.endpoint_url)
    assert pool.num_connections == 1


@pytest.mark.parametrize(
    ("outage", "error"),
    [
        ("refuse", "ConnectionClosedError|EndpointConnectionError|ConnectionError"),
        ("5xx", "ServiceUnavailableException"),
        ("throttle", "ThrottlingException"),
    ],
)
def test_an_api_outage_fails_every_aws_call_until_it_ends(local, outage, error):
    import re

    from botocore.config import Config

    ecs = boto3_client(local, Config(retries={"total_max_attempts": 1}))
    logs = boto3_client(local, Config(retries={"total_max_attempts": 1}), "logs")
    set_faults(local, api_outage=outage)
    for call in (ecs.list_clusters, logs.describe_log_groups):
        with pytest.raises(Exception) as err:
            call()
        assert re.search(error, f"{type(err.value).__name__} {err.value}"), err.value
    assert stats(local)["outage_answers"] == 2
    set_faults(local)
    assert ecs.list_clusters()["clusterArns"]


def test_a_lost_answer_leaves_the_task_started_and_the_same_token_finds_it(local):
    from botocore.config import Config
    from botocore.exceptions import ConnectionClosedError

    ecs = boto3_client(local, Config(retries={"total_max_attempts": 1}))
    set_faults(local, timeout_rate=1.0, timeout_s=0.2, seed=3)
    kwargs = {
        "cluster": local.config.cluster,
        "taskDefinition": local.config.family,
        "launchType": "FARGATE",
        "overrides": {"containerOverrides": [{"name": local.config.container_name, "command": ["true"]}]},
        "clientToken": "lost-answer",
    }
    with pytest.raises(ConnectionClosedError):  # as a read timeout: no answer, outcome unknown
        ecs.run_task(**kwargs)
    assert stats(local)["tasks_created"] == 1 and stats(local)["answers_lost"] == 1
    set_faults(local)
    again = local.client("ecs").run_task(**kwargs)
    assert len(again["tasks"]) == 1 and stats(local)["tasks_created"] == 1  # the same task, not a second


def boto3_client(local: LocalEcs, config: Any, service: str = "ecs") -> Any:
    import boto3

    return boto3.session.Session().client(
        service,
        region_name=local.config.region,
        endpoint_url=local.endpoint_url,
        aws_access_key_id=local.credentials.access_key,
        aws_secret_access_key=local.credentials.secret_key,
        config=config,
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda kw: kw["overrides"]["containerOverrides"][0].update(
                environment=[{"name": "BIG", "value": "x" * 8200}]
            ),
            "Container Overrides length must be at most 8192",
        ),
        (
            lambda kw: kw["overrides"]["containerOverrides"].append({"name": "sidecar", "command": ["true"]}),
            "Override for container named sidecar is not a container in the TaskDefinition",
        ),
        (lambda kw: kw.update(tags=[{"key": f"k{i}", "value": "v"} for i in range(51)]), "maximum number of tags"),
        (lambda kw: kw.update(count=11), "count must be between 1 and 10"),
    ],
    ids=["overrides over 8 KiB", "unknown container", "51 tags", "count 11"],
)
def test_the_endpoint_refuses_what_ecs_refuses(local, change, message):
    from botocore.exceptions import ClientError

    kwargs = {
        "cluster": local.config.cluster,
        "taskDefinition": local.config.family,
        "launchType": "FARGATE",
        "overrides": {"containerOverrides": [{"name": local.config.container_name, "command": ["true"]}]},
    }
    change(kwargs)
    with pytest.raises(ClientError) as err:
        local.client("ecs").run_task(**kwargs)
    assert err.value.response["Error"]["Code"] == "InvalidParameterException"
    assert message in err.value.response["Error"]["Message"]
    assert stats(local)["tasks_created"] == 0


def test_a_stopped_task_is_forgotten_after_the_retention_as_on_ecs(local):
    set_faults(local, stopped_retention_s=1.0)
    arn = run(local, ["true"])["tasks"][0]["taskArn"]
    ecs = local.client("ecs")

    def described() -> list:
        return ecs.describe_tasks(cluster=local.config.cluster, tasks=[arn])["tasks"]

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (described() and described()[0]["lastStatus"] == "STOPPED"):
        time.sleep(0.1)
    assert described()[0]["lastStatus"] == "STOPPED"  # kept for a while
    time.sleep(1.5)
    answer = ecs.describe_tasks(cluster=local.config.cluster, tasks=[arn])
    assert answer["tasks"] == [] and answer["failures"][0]["reason"] == "MISSING"


def test_a_client_token_is_remembered_per_cluster_for_a_day():
    from airflow_fargate.local.ecs_rules import TOKEN_MEMORY_SECONDS, ConflictException, TokenMemory

    now = [0.0]
    memory = TokenMemory(clock=lambda: now[0])
    memory.remember("a", "t", {"count": 1}, ["arn-1"])
    assert memory.replay("a", "t", {"count": 1, "clientToken": "t"}) == ["arn-1"]
    assert memory.replay("b", "t", {"count": 2}) is None  # another cluster
    with pytest.raises(ConflictException):
        memory.replay("a", "t", {"count": 2})
    now[0] += TOKEN_MEMORY_SECONDS + 1
    assert memory.replay("a", "t", {"count": 2}) is None  # forgotten after 24 hours


def test_a_container_gets_only_what_ecs_gives_it_none_of_this_machines_environment(monkeypatch):
    """The docker runtime's environment: the task definition's, the overrides' and ECS's metadata
    variables; never the endpoint's own (HOME, PATH, VIRTUAL_ENV, AIRFLOW_HOME, AWS keys)."""
    from airflow_fargate.local.runtimes import ContainerSpec

    specs: list[ContainerSpec] = []

    class Recording:
        name = "recording"

        def start(self, spec, on_output, on_exit):
            specs.append(spec)
            on_exit(0)
            return SimpleNamespace(stop=lambda grace: None)

    monkeypatch.setenv("AIRFLOW_HOME", "/host/airflow")
    ecs = LocalEcs(runtime=Recording()).start()
    try:
        ecs.runner.base_env = {"AIRFLOW__CORE__DAGS_FOLDER": "/host/dags", "HOME": "/root"}
        run(ecs, ["true"], env={"FROM_OVERRIDE": "1"})
        wait_until(lambda: specs, 30, "the container start")
    finally:
        ecs.stop()
    (spec,) = specs
    assert spec.ecs_environment["FROM_OVERRIDE"] == "1"
    assert spec.ecs_environment["ECS_CONTAINER_METADATA_URI_V4"].startswith("http://")
    leaked = {"HOME", "PATH", "VIRTUAL_ENV", "AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AWS_SECRET_ACCESS_KEY"}
    assert not leaked & set(spec.ecs_environment), spec.ecs_environment
    assert spec.environment["AIRFLOW__CORE__DAGS_FOLDER"] == "/host/dags"  # the process runtime's, as before


def test_container_output_is_cut_into_whole_lines_whatever_the_chunks():
    """The log pump: a line split across chunks (or inside a UTF-8 character) is one event."""
    from airflow_fargate.local.runtimes import whole_lines

    text = "first line\nsecond é line\r\nlast without newline"
    data = text.encode()
    for size in (1, 2, 3, 7, len(data)):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        assert list(whole_lines(chunks)) == ["first line", "second é line", "last without newline"]
