"""Server errors injected into real botocore clients before a request is sent (moto behind them)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from botocore.awsrequest import AWSResponse


class Http503:
    """Answers the first ``failures`` requests with 503 SlowDown before they reach moto."""

    def __init__(self, failures: int) -> None:
        self.failures = failures

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        if self.failures <= 0:
            return None
        self.failures -= 1
        body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
        return AWSResponse(request.url, 503, {}, _Raw(body))


class _Raw:
    """The raw stream botocore reads an answer from."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body
