"""``python -m airflow_fargate.local`` / ``airflow-fargate-local``: run the local ECS endpoint.

Prints the env vars a scheduler needs (as ``export`` lines, so ``eval`` works), then serves
until SIGINT/SIGTERM. Binds to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import threading
from dataclasses import fields
from pathlib import Path

from airflow_fargate.local.faults import OUTAGES, Faults

MISSING_EXTRA = (
    "airflow-fargate-local needs the 'local' extra (moto and its server): pip install 'airflow-fargate[local]'"
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="airflow-fargate-local", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one, printed)")
    parser.add_argument(
        "--config", type=Path, help="JSON file: region, cluster, family, container_name, image, log_group, ..."
    )
    parser.add_argument(
        "--runtime",
        default="auto",
        choices=["auto", "process", "docker", "simulate", "simulate-api"],
        help="auto = Docker when an engine is reachable, else subprocess",
    )
    parser.add_argument("--simulate-duration", type=float, default=1.0, help="seconds a simulated task runs")
    parser.add_argument("--stop-grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL")
    parser.add_argument("--env-file", type=Path, help="also write the scheduler env vars to this file")
    for item in fields(Faults):
        if item.name == "api_outage":
            parser.add_argument("--api-outage", choices=OUTAGES, default="", help="fail every AWS call this way")
            continue
        kind = int if item.name.endswith("_burst") or item.name == "seed" else float
        parser.add_argument(f"--{item.name.replace('_', '-')}", type=kind, default=item.default)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    try:  # moto comes with the 'local' extra; without it, say so (even for --help), no traceback
        from airflow_fargate.local.server import LocalEcs, LocalEcsConfig
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] in ("moto", "werkzeug", "flask", "flask_cors"):
            print(f"{MISSING_EXTRA} ({err})", file=sys.stderr)
            return 2
        raise
    args = parse_args(argv)
    # Handlers first: a SIGTERM that arrives as soon as the env is printed must stop us cleanly.
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    config = LocalEcsConfig.from_dict(json.loads(args.config.read_text())) if args.config else LocalEcsConfig()
    faults = Faults(**{f.name: getattr(args, f.name) for f in fields(Faults)})
    ecs = LocalEcs(
        config,
        port=args.port,
        runtime=args.runtime,
        faults=faults,
        simulate_duration=args.simulate_duration,
        stop_grace_seconds=args.stop_grace,
    ).start()
    lines = [f"export {name}={shlex.quote(value)}" for name, value in ecs.scheduler_env().items()]
    if args.env_file:  # it holds this start's credentials: readable by this user only
        fd = os.open(args.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines) + "\n")
    print(f"# local ECS endpoint on {ecs.endpoint_url} (runtime: {ecs.runtime.name}); scheduler env:")
    print("\n".join(lines), flush=True)
    done.wait()
    ecs.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
