"""A real botocore ECS client whose HTTP is answered in process: botocore's own retries, events
and error parsing run as against ECS, with no endpoint to start."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse


def missing_tasks(request: dict[str, Any]) -> dict[str, Any]:
    """DescribeTasks: every ARN asked for is MISSING."""
    return {"tasks": [], "failures": [{"arn": arn, "reason": "MISSING"} for arn in request["tasks"]]}


class EcsTransport:
    """botocore before-send handler: answers each attempt with ``answer(request body)``, except
    the first ``throttled`` attempts, which get a ThrottlingException."""

    def __init__(self, throttled: int = 0, answer: Callable[[dict[str, Any]], dict[str, Any]] = missing_tasks) -> None:
        self.throttled = throttled
        self.answer = answer
        self.attempts: list[dict[str, Any]] = []

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        self.attempts.append(json.loads(request.body))
        if len(self.attempts) <= self.throttled:
            status, body = 400, {"__type": "ThrottlingException", "message": "Rate exceeded"}
        else:
            status, body = 200, self.answer(self.attempts[-1])
        return AWSResponse(request.url, status, {"x-amzn-RequestId": "r"}, _Raw(json.dumps(body).encode()))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Any:
        yield self.body


class FakeTarget:
    """Stands in for aws_session.AwsTarget: clients with fixed keys and an endpoint never dialled."""

    def client(self, service: str, config: Any) -> Any:
        import boto3

        session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
        return session.client(service, config=config, endpoint_url="http://127.0.0.1:9")
