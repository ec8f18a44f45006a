"""The local endpoint's HTTP layer: connections kept alive as ECS's are, and dropped unanswered
when a fault says so (an outage, a lost answer)."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

from airflow_fargate.local.guard import CLOSE_HEADER


def json_response(start_response: Callable[..., Any], status: str, body: Any) -> list[bytes]:
    data = json.dumps(body, default=str).encode()
    start_response(status, [("Content-Type", "application/x-amz-json-1.1"), ("Content-Length", str(len(data)))])
    return [data]


def drop_connection(environ: dict[str, Any]) -> None:
    """Close the request's connection without an answer (the client sees it reset)."""
    sock = environ.get("werkzeug.socket")
    if sock is None:
        raise ConnectionAbortedError("local outage")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def dropped(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    """The connection is dropped; werkzeug's write of this answer then fails as a connection
    the client dropped (quietly), never reaching the client."""
    drop_connection(environ)
    return json_response(start_response, "503 Service Unavailable", {"__type": "Dropped"})


def keep_alive_handler() -> type:
    """Moto's request handler with HTTP/1.1 keep-alive, as ECS's endpoints keep connections open
    (werkzeug closes every connection; a client then pays a new TCP connection per call). Safe
    because the guard reads every request body whole before anything answers; a response the
    guard marks (``CLOSE_HEADER``: a body it did not read) still closes its connection."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler

    class KeepAliveHandler(MotoRequestHandler):
        protocol_version = "HTTP/1.1"
        _close_asked = False

        def send_header(self, keyword: str, value: str) -> None:
            if keyword == CLOSE_HEADER:
                self._close_asked = True
                return
            if keyword.lower() == "connection" and value.lower() == "close" and not self._close_asked:
                return  # werkzeug's blanket close
            super().send_header(keyword, value)

        def handle_one_request(self) -> None:
            self._close_asked = False
            super().handle_one_request()

        def run_wsgi(self) -> None:
            # werkzeug drains what is left to read after each answer (it closes every connection):
            # on a kept-alive connection that would block on the next request. The guard has read
            # this request's body whole, so nothing of it is left: skip the drain.
            rfile = self.rfile
            self.rfile = _NoDrain(rfile)  # type: ignore[assignment]
            try:
                super().run_wsgi()
            finally:
                self.rfile = rfile

    return KeepAliveHandler


class _NoDrain:
    """A request's input stream whose drain read (werkzeug's 10 MB read) finds nothing."""

    DRAIN_SIZE = 10_000_000

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        return b"" if size == self.DRAIN_SIZE else bytes(self._stream.read(size))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
