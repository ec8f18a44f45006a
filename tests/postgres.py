"""A throwaway PostgreSQL server (Debian's postgresql package) for tests that need a database
several schedulers can share (Airflow HA). Loopback only, password auth, removed afterwards."""

from __future__ import annotations

import glob
import importlib.util
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

SKIP_REASON = (
    "PostgreSQL is not installed (Debian package postgresql; `make test` installs it where apt-get can) "
    "or its drivers (psycopg2, asyncpg) are missing"
)


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def available() -> bool:
    """PostgreSQL's binaries and both drivers Airflow 3 uses (psycopg2, asyncpg) are installed."""
    return _bindir() is not None and all(importlib.util.find_spec(m) for m in ("psycopg2", "asyncpg"))


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield its SQLAlchemy URL for database ``airflow``; stop and delete it.
    Skips the test (with the reason) where PostgreSQL is not available."""
    if not available():
        pytest.skip(SKIP_REASON)
    bindir = _bindir()
    assert bindir is not None
    # PostgreSQL refuses to run as root: as root, run it as the package's postgres user.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    home = Path(tempfile.mkdtemp(prefix="airflow-fargate-pg-"))
    password = secrets.token_hex(16)
    (home / "pw").write_text(password)
    if as_user:
        shutil.chown(home, "postgres")
        shutil.chown(home / "pw", "postgres")
    port = _free_port()
    data = home / "data"
    initdb = [str(bindir / "initdb"), "-D", str(data), "-U", "airflow", "--auth=scram-sha-256", "-E", "UTF8"]
    subprocess.run(
        [*as_user, *initdb, "--pwfile", str(home / "pw")],
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {home} -c max_connections=200"
    subprocess.run(
        [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(home / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        env = {**os.environ, "PGPASSWORD": password}
        subprocess.run(
            [str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "airflow", "airflow"],
            check=True,
            capture_output=True,
            env=env,
        )
        yield f"postgresql+psycopg2://airflow:{password}@127.0.0.1:{port}/airflow"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(home, ignore_errors=True)
