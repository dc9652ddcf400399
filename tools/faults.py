"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the local AWS (``make chaos``).

Every request goes to the upstream (the emulator) unless the seeded dice say otherwise:

- ``throttle``: answered at once with the service's throttling error (S3: 503 ``SlowDown``;
  SageMaker JSON and the A2I / runtime REST-JSON APIs: ``ThrottlingException``), never forwarded;
- ``error_before``: answered with a 500 or 503 without forwarding;
- ``error_after``: forwarded, so it takes effect, but the client is answered with a 500 or 503 and
  retries: what a lost response looks like, and what exposes non-idempotent starts.

Requests whose URL contains one of ``deny`` (e.g. a day's ``incoming/<day>/`` prefix) are answered
``AccessDenied``: a permanent failure. Counters of what was faulted are kept per operation. This
module talks HTTP only: it imports neither the product nor the emulator.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import sys
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

FAULT_KINDS = ("throttle", "error_before", "error_after", "denied")
# Hop-by-hop headers (RFC 9110 7.6.1) and the ones this proxy recomputes.
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "expect",
    "content-length",
}
CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[a-z0-9-]+/([a-z0-9-]+)/")
A2I_OPERATIONS = {
    ("POST", "/human-loops"): "StartHumanLoop",
    ("GET", "/human-loops"): "ListHumanLoops",
    ("POST", "/human-loops/stop"): "StopHumanLoop",
}


@dataclass(frozen=True)
class FaultRates:
    """Shares of requests faulted, each in [0, 1] and at most 1 together.

    :param throttle: answered with a throttling error, not forwarded.
    :param error_before: answered with a 500 or 503, not forwarded.
    :param error_after: forwarded, then answered with a 500 or 503.
    """

    throttle: float = 0.0
    error_before: float = 0.0
    error_after: float = 0.0

    def __post_init__(self) -> None:
        rates = (self.throttle, self.error_before, self.error_after)
        if any(not 0 <= rate <= 1 for rate in rates) or sum(rates) > 1:
            raise ValueError(f"fault rates must be in [0, 1] and sum to at most 1: {self}")


def operation_of(method: str, path: str, headers: Any) -> tuple[str, str]:
    """``(protocol, operation)`` of a request: ``s3``, ``json`` (SageMaker) or ``rest-json``."""
    match = CREDENTIAL_SCOPE.search(headers.get("Authorization", ""))
    service = match.group(1) if match else ""
    target = headers.get("X-Amz-Target", "")
    if service == "sagemaker" and target:
        return "json", target.rpartition(".")[2]
    if service == "sagemaker" and path.startswith("/human-loops"):
        name = A2I_OPERATIONS.get((method, path))
        if name is None:
            name = {"GET": "DescribeHumanLoop", "DELETE": "DeleteHumanLoop"}.get(method, method)
        return "rest-json", name
    if service == "sagemaker" and path.endswith("/invocations"):
        return "rest-json", "InvokeEndpoint"
    if service == "s3":
        key = path.strip("/").partition("/")[2]
        return "s3", f"s3:{method} {'object' if key else 'bucket'}"
    return "json" if target else "other", target or f"{method} {path}"


def error_response(protocol: str, code: str, status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    """``(status, headers, body)`` of an AWS error the way the protocol's clients parse it."""
    request_id = str(uuid.uuid4())
    if protocol == "s3":
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
            f"<Message>{message}</Message><RequestId>{request_id}</RequestId></Error>"
        ).encode()
        return status, {"Content-Type": "application/xml", "x-amz-request-id": request_id}, body
    body = json.dumps({"__type": code, "message": message}).encode()
    content_type = "application/x-amz-json-1.1" if protocol == "json" else "application/json"
    headers = {"Content-Type": content_type, "x-amzn-ErrorType": code, "x-amzn-RequestId": request_id}
    return status, headers, body


def throttling(protocol: str) -> tuple[int, dict[str, str], bytes]:
    if protocol == "s3":
        return error_response(protocol, "SlowDown", 503, "Please reduce your request rate.")
    # A2I's model gives ThrottlingException 429; SageMaker's JSON API answers 400
    return error_response(
        protocol, "ThrottlingException", 429 if protocol == "rest-json" else 400, "Rate exceeded"
    )


def server_error(protocol: str, status: int) -> tuple[int, dict[str, str], bytes]:
    if status == 503:
        code = "ServiceUnavailable"
    else:
        code = "InternalError" if protocol == "s3" else "InternalFailure"
    return error_response(protocol, code, status, "injected by the fault proxy")


class FaultProxy:
    """Forwards to ``upstream``, faulting requests at ``rates`` with a seeded RNG.

    :param upstream: the emulator's URL, ``http://127.0.0.1:PORT``.
    :param rates: how often each kind of fault is injected.
    :param seed: seed of the dice (the order of concurrent requests still varies).
    :param deny: URL substrings (decoded) answered ``AccessDenied`` (403), never forwarded.
    """

    def __init__(
        self, upstream: str, rates: FaultRates | None = None, seed: int = 0, deny: tuple[str, ...] = ()
    ) -> None:
        parts = urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream must be http://host:port, not {upstream!r}")
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.rates = rates or FaultRates()
        self.deny = deny
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.faults: Counter[tuple[str, str]] = Counter()  # (operation, kind) -> count
        self.requests: Counter[str] = Counter()  # operation -> requests received
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fault proxy is not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FaultProxy:
        self._server = _Server(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    # Faults --------------------------------------------------------------------------------------
    def configure(self, rates: FaultRates | None = None, deny: tuple[str, ...] | None = None) -> None:
        """Change the rates or the denied URL parts while running."""
        with self.lock:
            if rates is not None:
                self.rates = rates
            if deny is not None:
                self.deny = deny

    def total_requests(self) -> int:
        with self.lock:
            return sum(self.requests.values())

    def total_faults(self) -> int:
        with self.lock:
            return sum(self.faults.values())

    def counters(self) -> dict[str, dict[str, int]]:
        """``{operation: {"requests": n, kind: n, ...}}``, sorted by operation."""
        with self.lock:
            table: dict[str, dict[str, int]] = {}
            for operation, count in sorted(self.requests.items()):
                table[operation] = {"requests": count}
            for (operation, kind), count in sorted(self.faults.items()):
                table.setdefault(operation, {"requests": 0})[kind] = count
            return table

    def decide(self, operation: str, url: str) -> str | None:
        """The fault to inject into this request, or None; counts both."""
        with self.lock:
            self.requests[operation] += 1
            if any(part in url for part in self.deny):
                kind: str | None = "denied"
            else:
                roll = self.random.random()
                kind = None
                for name, rate in (
                    ("throttle", self.rates.throttle),
                    ("error_before", self.rates.error_before),
                    ("error_after", self.rates.error_after),
                ):
                    if roll < rate:
                        kind = name
                        break
                    roll -= rate
            if kind is not None:
                self.faults[(operation, kind)] += 1
            return kind

    def status_of_error(self) -> int:
        with self.lock:
            return self.random.choice((500, 503))

    def forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list, bytes]:
        connection = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=120)
        try:
            connection.request(
                method, path, body=body if body or method in ("POST", "PUT") else None, headers=headers
            )
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client killed mid-request (the suite's SIGKILLs) is expected: not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as botocore's connection pool expects

        def log_message(self, format: str, *args: Any) -> None:  # no line per request
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass  # trailers
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _answer(self, status: int, headers: list | dict, body: bytes) -> None:
            self.send_response(status)
            items = headers.items() if isinstance(headers, dict) else headers
            for name, value in items:
                if name.lower() not in HOP_BY_HOP and name.lower() not in ("server", "date"):
                    self.send_header(name, value)
            if self.command == "HEAD":
                length = {k.lower(): v for k, v in items}.get("content-length", "0")
                self.send_header("Content-Length", length)
            else:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self) -> None:
            body = self._body()
            path = urlsplit(self.path).path
            protocol, operation = operation_of(self.command, path, self.headers)
            # the emulator's own admin routes are never faulted
            admin = path.startswith("/_emulator")
            kind = None if admin else proxy.decide(operation, unquote(self.path))
            if kind == "denied":
                self._answer(*error_response(protocol, "AccessDenied", 403, "Access Denied (fault proxy)"))
                return
            if kind == "throttle":
                self._answer(*throttling(protocol))
                return
            if kind == "error_before":
                self._answer(*server_error(protocol, proxy.status_of_error()))
                return
            headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
            status, response_headers, response_body = proxy.forward(self.command, self.path, headers, body)
            if kind == "error_after":  # it took effect upstream; the client only sees an error
                self._answer(*server_error(protocol, proxy.status_of_error()))
                return
            self._answer(status, response_headers, response_body)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _handle

    return Handler
