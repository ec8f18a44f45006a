"""Deadline-alert callbacks for the end-to-end tests: imported by path inside the ECS task."""

from __future__ import annotations


def record_deadline(**kwargs: object) -> None:
    print(f"deadline missed: {sorted(kwargs)}")


def failing_deadline(**kwargs: object) -> None:
    raise RuntimeError("this deadline callback fails on purpose")
