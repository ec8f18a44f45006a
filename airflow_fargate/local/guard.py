"""Who may use the local ECS endpoint: only the scheduler it was started for.

The endpoint runs each RunTask command on this machine, so it must refuse everyone else, even on
loopback: other local users and processes, web pages in a browser (cross-origin requests, DNS
rebinding) and forged requests. Every request, the /_local control paths included, must

- name this endpoint in its Host header (127.0.0.1:<port> or localhost:<port>), which a
  rebinding DNS name cannot;
- carry no Origin header (browsers add one to cross-origin requests; AWS SDKs never do), and no
  response carries CORS headers (moto's own are removed);
- be AWS Signature V4 signed with this start's random credentials, checked with botocore's
  signer: a wrong access key or a forged signature gets 403.
"""

from __future__ import annotations

import datetime
import hmac
import io
import json
import secrets
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

StartResponse = Callable[..., Any]
MAX_BODY = 16 * 1024 * 1024
CLOSE_HEADER = "X-Local-Close"  # a response whose request body was not read closes its connection
MAX_CLOCK_SKEW_SECONDS = 300  # SigV4 refuses a request signed more than 5 minutes off


@dataclass(frozen=True)
class LocalCredentials:
    """Random per-start credentials, handed only to the scheduler (scheduler_env)."""

    access_key: str
    secret_key: str

    @classmethod
    def generate(cls) -> LocalCredentials:
        return cls("AKIALOCAL" + secrets.token_hex(6).upper(), secrets.token_urlsafe(30))


def _refuse(start_response: StartResponse, reason: str, close: bool = False) -> list[bytes]:
    body = json.dumps({"__type": "AccessDeniedException", "message": f"local ECS endpoint: {reason}"}).encode()
    headers = [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(body)))]
    start_response("403 Forbidden", headers + ([(CLOSE_HEADER, "1")] if close else []))
    return [body]


def _parse_authorization(value: str) -> dict[str, str] | None:
    """The fields of 'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...'."""
    scheme, _, rest = value.partition(" ")
    if scheme != "AWS4-HMAC-SHA256":
        return None
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    if not {"Credential", "SignedHeaders", "Signature"} <= fields.keys():
        return None
    return fields


def expected_signature(credentials: LocalCredentials, request: AWSRequest, scope: list[str]) -> str:
    """The SigV4 signature botocore computes for this request under our secret (scope: date,
    region, service from the request's Credential field; the request holds only the headers it
    says it signed)."""
    date, region, service = scope[0], scope[1], scope[2]
    request.context["timestamp"] = request.headers.get("x-amz-date", "")
    signer = SigV4Auth(Credentials(credentials.access_key, credentials.secret_key), service, region)
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    if not request.context["timestamp"].startswith(date):
        return ""
    return str(signer.signature(string_to_sign, request))


class Guard:
    """WSGI layer in front of everything the endpoint serves."""

    def __init__(
        self, app: Callable[..., Iterable[bytes]], credentials: LocalCredentials, on_refused: Callable[[], None]
    ) -> None:
        self.app = app
        self.credentials = credentials
        self.on_refused = on_refused
        self.port: int | None = None  # set once the server is bound

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        body = self._read_body(environ)
        problem = "request body too large" if body is None else self._problem(environ, body)
        if problem:
            self.on_refused()
            return _refuse(start_response, problem, close=body is None)
        environ["wsgi.input"] = io.BytesIO(body or b"")
        return self.app(environ, _without_cors(start_response))

    @staticmethod
    def _read_body(environ: dict[str, Any]) -> bytes | None:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return None
        if length > MAX_BODY or length < 0:
            return None
        return environ["wsgi.input"].read(length) if length else b""

    def _problem(self, environ: dict[str, Any], body: bytes) -> str | None:
        host = environ.get("HTTP_HOST", "")
        if host not in (f"127.0.0.1:{self.port}", f"localhost:{self.port}"):
            return "unexpected Host header (only this endpoint's loopback address is served)"
        if environ.get("HTTP_ORIGIN") is not None:
            return "cross-origin requests are not served"
        fields = _parse_authorization(environ.get("HTTP_AUTHORIZATION", ""))
        if fields is None:
            return "requests must be signed (AWS Signature V4) with the credentials this endpoint printed"
        access_key, *scope = fields["Credential"].split("/")
        if not hmac.compare_digest(access_key, self.credentials.access_key) or len(scope) < 3:
            return "unknown access key"
        signed = [name.strip().lower() for name in fields["SignedHeaders"].split(";") if name.strip()]
        unsigned = [name for name in _must_sign(environ) if name not in signed]
        if unsigned:
            return f"{', '.join(unsigned)} must be among the signed headers"
        skew = _clock_skew(environ.get("HTTP_X_AMZ_DATE", ""))
        if skew is None or skew > MAX_CLOCK_SKEW_SECONDS:
            return "request time (x-amz-date) is more than 5 minutes away from the endpoint's clock"
        headers = {name: environ.get("HTTP_" + name.upper().replace("-", "_"), "") for name in signed}
        for name in ("content-type", "content-length"):  # WSGI keeps these two without HTTP_
            if name in signed:
                headers[name] = environ.get(name.upper().replace("-", "_"), "")
        query = environ.get("QUERY_STRING", "")
        url = f"http://{host}{environ.get('PATH_INFO', '')}" + (f"?{query}" if query else "")
        method = environ.get("REQUEST_METHOD", "GET")
        request = AWSRequest(method=method, url=url, headers=headers, data=body)
        expected = expected_signature(self.credentials, request, scope)
        if not expected or not hmac.compare_digest(expected, fields["Signature"]):
            return "signature does not match"
        return None


def _must_sign(environ: dict[str, Any]) -> list[str]:
    """Headers a request must have signed: host and its date always, its operation when named."""
    names = ["host", "x-amz-date"]
    if environ.get("HTTP_X_AMZ_TARGET"):
        names.append("x-amz-target")
    return names


def _clock_skew(amz_date: str) -> float | None:
    """Seconds between the request's x-amz-date (20261208T010203Z) and now; None if unreadable."""
    try:
        signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None
    return abs((datetime.datetime.now(datetime.timezone.utc) - signed_at).total_seconds())


def _without_cors(start_response: StartResponse) -> StartResponse:
    def start(status: str, headers: list[tuple[str, str]], *args: Any) -> Any:
        kept = [(k, v) for k, v in headers if not k.lower().startswith("access-control-")]
        return start_response(status, kept, *args)

    return start


def control_request(
    endpoint_url: str, path: str, credentials: LocalCredentials, payload: Any = None, region: str = "us-east-1"
) -> Any:
    """GET (or, with a payload, POST) one of the endpoint's /_local control paths, signed like an
    SDK call; the decoded JSON answer. urllib.error.HTTPError on refusal."""
    body = json.dumps(payload).encode() if payload is not None else b""
    request = AWSRequest(
        method="POST" if payload is not None else "GET",
        url=endpoint_url + path,
        data=body,
        headers={"Content-Type": "application/json"},
    )
    SigV4Auth(Credentials(credentials.access_key, credentials.secret_key), "ecs", region).add_auth(request)
    prepared = request.prepare()
    http = urllib.request.Request(
        prepared.url, data=body or None, headers=dict(prepared.headers), method=request.method
    )
    with urllib.request.urlopen(http, timeout=10) as response:
        return json.loads(response.read())
