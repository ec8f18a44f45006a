"""Reference image files: linters, entrypoint behaviour with a fake `aws`, build args, and a real
build where a Docker engine is reachable (skipped otherwise)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = ROOT / "entrypoint.sh"
BIN = Path(sys.executable).parent
DOCUMENTED_BUILD_ARGS = {
    "aws_access_key_id",
    "aws_secret_access_key",
    "aws_default_region",
    "aws_session_token",
    "s3_uri",
    "host_dag_path",
    "container_dag_path",
    "requirements_path",
    "AIRFLOW_VERSION",
    "PYTHON_VERSION",
}
# Arguments a real Airflow 3 command carries: spaces, quotes, JSON.
TRICKY_ARGS = [
    "--json-string",
    json.dumps({"ti": {"task_id": "a b", "quote": 'it\'s "x"'}}),
    "two  spaces",
    "",
    "$HOME",
]


def test_hadolint_passes():
    result = subprocess.run(
        [str(BIN / "hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_hadolint_ignore_is_justified():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            window = "\n".join(lines[max(0, number - 12) : number])
            assert "NOT for production" in window, f"unjustified ignore at line {number + 1}"


def test_shellcheck_passes():
    result = subprocess.run([str(BIN / "shellcheck"), str(ENTRYPOINT)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_has_every_documented_build_arg_and_tested_versions():
    parser = DockerfileParser(path=str(ROOT / "Dockerfile"))
    args = {}
    for instruction in parser.structure:
        if instruction["instruction"] == "ARG":
            name, _, default = instruction["value"].partition("=")
            args.setdefault(name, default)  # the first declaration holds the default
    assert set(args) >= DOCUMENTED_BUILD_ARGS
    # The versions the project pins (not whatever this venv resolved): an Airflow 3 release within
    # setup.cfg's range, a Python within python_requires.
    airflow_version, python = args["AIRFLOW_VERSION"], args["PYTHON_VERSION"]
    assert re.fullmatch(r"3\.\d+\.\d+", airflow_version) and re.fullmatch(r"3\.1[0-9]", python)
    setup = (ROOT / "setup.cfg").read_text()
    assert "apache-airflow>=2.10,<4" in setup and "python_requires = >=3.10" in setup
    assert args["container_dag_path"] == "/opt/airflow/dags"
    assert (ROOT / args["requirements_path"]).is_file()
    assert (ROOT / args["host_dag_path"]).is_dir()
    assert args["BASE_IMAGE"] == "apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}"
    # ARGs declared before FROM are empty after it unless declared again (the pip pin uses it)
    after_from = [i for i in parser.structure if i["instruction"] in ("FROM", "ARG")]
    first_from = next(n for n, i in enumerate(after_from) if i["instruction"] == "FROM")
    again = {i["value"].partition("=")[0] for i in after_from[first_from + 1 :] if i["instruction"] == "ARG"}
    assert {"AIRFLOW_VERSION", "PYTHON_VERSION"} <= again
    assert not (ROOT / "Dockerfile").read_text().startswith("# syntax=")  # no frontend fetched from a registry
    entrypoint = [i for i in parser.structure if i["instruction"] == "ENTRYPOINT"][-1]["value"]
    assert json.loads(entrypoint)[:2] == ["/usr/bin/dumb-init", "--"]


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A PATH dir with a fake `aws` that logs its args and copies FAKE_S3_DIR into the target."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    aws = bin_dir / "aws"
    aws.write_text(
        textwrap.dedent(
            """\
            #!/usr/bin/env bash
            echo "$*" >> "$FAKE_AWS_LOG"
            if [ -n "${FAKE_AWS_FAIL:-}" ]; then echo "fatal error: Could not connect" >&2; exit 1; fi
            cp -r "$FAKE_S3_DIR"/. "$5"
            """
        )
    )
    aws.chmod(0o755)
    return bin_dir


def run_entrypoint(tmp_path: Path, fake_bin: Path, command: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    s3 = tmp_path / "s3"
    s3.mkdir(exist_ok=True)
    (s3 / "from_s3.py").write_text("# dag\n")
    full_env = {
        **os.environ,
        "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
        "FAKE_AWS_LOG": str(tmp_path / "aws.log"),
        "FAKE_S3_DIR": str(s3),
        "CONTAINER_DAG_PATH": str(tmp_path / "dags"),
        "S3_SYNC_RETRY_SECONDS": "0",
        **env,
    }
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *command], env=full_env, capture_output=True, text=True, timeout=60, check=False
    )


def echo_args(tmp_path: Path) -> list[str]:
    out = tmp_path / "args.json"
    return [sys.executable, "-c", f"import json, sys; json.dump(sys.argv[1:], open({str(out)!r}, 'w'))"]


def test_s3_mode_syncs_then_execs_with_args_intact(tmp_path, fake_bin):
    result = run_entrypoint(tmp_path, fake_bin, [*echo_args(tmp_path), *TRICKY_ARGS], S3_URI="s3://bucket/dags")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "aws.log").read_text().split() == [
        "s3",
        "sync",
        "--no-progress",
        "s3://bucket/dags",
        str(tmp_path / "dags"),
    ]
    assert (tmp_path / "dags" / "from_s3.py").exists()
    assert json.loads((tmp_path / "args.json").read_text()) == TRICKY_ARGS
    assert "entrypoint: syncing DAGs from s3://bucket/dags" in result.stderr


def test_sync_failure_exits_non_zero_without_running_the_command(tmp_path, fake_bin):
    marker = tmp_path / "ran"
    result = run_entrypoint(
        tmp_path, fake_bin, ["touch", str(marker)], S3_URI="s3://bucket/dags", FAKE_AWS_FAIL="1", S3_SYNC_ATTEMPTS="3"
    )
    assert result.returncode == 65
    assert not marker.exists()
    assert len((tmp_path / "aws.log").read_text().splitlines()) == 3  # retried
    assert "could not sync DAGs from s3://bucket/dags after 3 attempts" in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("S3_SYNC_ATTEMPTS", "three"),
        ("S3_SYNC_ATTEMPTS", "0"),
        ("S3_SYNC_ATTEMPTS", "9" * 5000),
        ("S3_SYNC_ATTEMPTS", "-1"),
        ("S3_SYNC_RETRY_SECONDS", "5s"),
        ("S3_SYNC_RETRY_SECONDS", "1.5"),
    ],
)
def test_bad_numeric_settings_stop_before_syncing_with_a_message_naming_them(tmp_path, fake_bin, name, value):
    marker = tmp_path / "ran"
    result = run_entrypoint(tmp_path, fake_bin, ["touch", str(marker)], S3_URI="s3://bucket/dags", **{name: value})
    assert result.returncode == 64
    assert f"ERROR: {name} must be a whole number" in result.stderr
    assert len(result.stderr) < 500  # the value is shortened, not repeated
    assert not marker.exists() and not (tmp_path / "aws.log").exists()


def test_empty_baked_aws_settings_are_unset_for_the_command(tmp_path, fake_bin):
    """An empty build arg bakes AWS_DEFAULT_REGION=""; the CLI and SDKs must see it unset."""
    out = tmp_path / "env.json"
    dump = [sys.executable, "-c", f"import json, os; json.dump(dict(os.environ), open({str(out)!r}, 'w'))"]
    empty = dict.fromkeys(("AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"), "")
    assert run_entrypoint(tmp_path, fake_bin, dump, **empty).returncode == 0
    assert not set(empty) & set(json.loads(out.read_text()))
    assert run_entrypoint(tmp_path, fake_bin, dump, AWS_DEFAULT_REGION="eu-west-1").returncode == 0
    assert json.loads(out.read_text())["AWS_DEFAULT_REGION"] == "eu-west-1"


def test_local_mode_runs_directly(tmp_path, fake_bin):
    result = run_entrypoint(tmp_path, fake_bin, [*echo_args(tmp_path), "airflow", "tasks", "run", "d", "t", "r"])
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "aws.log").exists()
    assert json.loads((tmp_path / "args.json").read_text()) == ["airflow", "tasks", "run", "d", "t", "r"]
    assert "S3_URI not set" in result.stderr


def test_exit_code_of_the_command_is_the_containers(tmp_path, fake_bin):
    assert run_entrypoint(tmp_path, fake_bin, ["sh", "-c", "exit 7"]).returncode == 7


def test_no_command_is_an_error(tmp_path, fake_bin):
    result = run_entrypoint(tmp_path, fake_bin, [])
    assert result.returncode == 64
    assert "no command given" in result.stderr


def test_requirements_are_installed_only_when_asked(tmp_path, fake_bin):
    pip_log = tmp_path / "pip.log"
    fake_python = fake_bin / "python"
    fake_python.write_text(f'#!/usr/bin/env bash\necho "$*" >> {pip_log}\n')
    fake_python.chmod(0o755)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("requests==2.32.3\n")
    assert run_entrypoint(tmp_path, fake_bin, ["true"], REQUIREMENTS_FILE=str(requirements)).returncode == 0
    assert not pip_log.exists()
    result = run_entrypoint(
        tmp_path, fake_bin, ["true"], REQUIREMENTS_FILE=str(requirements), INSTALL_REQUIREMENTS="true"
    )
    assert result.returncode == 0, result.stderr
    assert pip_log.read_text().split() == ["-m", "pip", "install", "--no-cache-dir", "--user", "-r", str(requirements)]
    missing = run_entrypoint(
        tmp_path, fake_bin, ["true"], REQUIREMENTS_FILE=str(tmp_path / "nope"), INSTALL_REQUIREMENTS="true"
    )
    assert missing.returncode == 66


def test_exec_replaces_the_shell_so_signals_reach_the_command(tmp_path, fake_bin):
    pid_file, term_file = tmp_path / "pid", tmp_path / "got-term"
    script = (
        "import os, signal, sys, time\n"
        f"signal.signal(signal.SIGTERM, lambda *a: (open({str(term_file)!r}, 'w').write('x'), sys.exit(0)))\n"
        # the pid file appears whole (renamed into place) and only once SIGTERM is handled
        f"open({str(pid_file)!r} + '.tmp', 'w').write(str(os.getpid()))\n"
        f"os.replace({str(pid_file)!r} + '.tmp', {str(pid_file)!r})\n"
        "time.sleep(30)\n"
    )
    env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "CONTAINER_DAG_PATH": str(tmp_path)}
    proc = subprocess.Popen(["bash", str(ENTRYPOINT), sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert int(pid_file.read_text()) == proc.pid  # same process: the shell exec'd the command
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0
    assert term_file.exists()


def _docker_client():
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
        return client
    except Exception:
        return None


@pytest.mark.skipif(shutil.which("docker") is None or _docker_client() is None, reason="no Docker engine reachable")
def test_image_builds_and_runs_airflow_version():
    client = _docker_client()
    image, _ = client.images.build(path=str(ROOT), tag="airflow-fargate:test", rm=True)
    output = client.containers.run(image.id, ["airflow", "version"], remove=True).decode()
    import airflow

    assert airflow.__version__ in output
