"""A zero-CPU stand-in for S3 and a SageMaker endpoint, so that a benchmark measures the operator.

One asyncio process on 127.0.0.1 answers, with AWS's wire shapes, just what ``BatchPredictOperator``
calls: ``ListObjectsV2`` (a synthetic day of N keys, paged by 1,000), ``GetObject`` (the same small
JPEG for every key), ``PutObject`` (accepted; kept in memory only under ``/shards/``, the day's
shards, which routing reads back with ``HeadObject`` and ``GetObject``) and ``InvokeEndpoint`` (a
canned prediction after a fixed latency, like a remote endpoint's round trip). Nothing is decoded or
computed per request beyond parsing the request line, so the endpoint and the store cost next to no CPU.

``--days`` says what ``incoming/<day>/`` holds: ``{"2026-11-01": {"count": 100}}`` lists 100 JPEG keys;
``{"count": 8, "size_mib": 150}`` lists 8 objects of 150 MiB, served (should anything fetch them) as
that many bytes of non-image data.

Run: ``python bench/standin.py --latency 0.05 --days '{...}'`` prints its URL and serves until stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
from urllib.parse import parse_qs, unquote, urlsplit

from PIL import Image

PAGE = 1000
PREDICTION = json.dumps(
    {"prediction": [[0.0, 0.42, 0.1, 0.1, 0.5, 0.6], [1.0, 0.31, 0.4, 0.2, 0.9, 0.8]]}
).encode()
DAY = re.compile(r"incoming/(\d{4}-\d{2}-\d{2})/")


def sample_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 120, 150)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def day_of(key: str, days: dict[str, dict[str, int]]) -> tuple[int, int]:
    """``(object count, object size)`` of the day in ``key``'s prefix."""
    match = DAY.search(key)
    day = days.get(match.group(1), {}) if match else {}
    size = day["size_mib"] * 2**20 if "size_mib" in day else len(JPEG)
    return day.get("count", 0), size


def listing(bucket: str, prefix: str, token: str | None, days: dict[str, dict[str, int]]) -> bytes:
    """One ListObjectsV2 page of the synthetic day named in ``prefix``."""
    count, size = day_of(prefix, days)
    start = int(token or 0)
    end = min(start + PAGE, count)
    contents = "".join(
        f"<Contents><Key>{prefix}{index:06d}.jpg</Key><Size>{size}</Size></Contents>"
        for index in range(start, end)
    )
    more = end < count
    next_token = f"<NextContinuationToken>{end}</NextContinuationToken>" if more else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Name>{bucket}</Name><Prefix>{prefix}</Prefix><KeyCount>{end - start}</KeyCount>"
        f"<MaxKeys>{PAGE}</MaxKeys><IsTruncated>{'true' if more else 'false'}</IsTruncated>"
        f"{next_token}{contents}</ListBucketResult>"
    ).encode()


JPEG = sample_jpeg()


class StandIn:
    def __init__(self, latency: float, days: dict[str, dict[str, int]]) -> None:
        self.latency = latency
        self.days = days
        self.kept: dict[str, bytes] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request_line = await reader.readline()
                if not request_line:
                    return
                method, target, _ = request_line.decode().split(" ", 2)
                length, expect_continue = 0, False
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                    elif name.lower() == "expect" and value.strip().lower() == "100-continue":
                        expect_continue = True
                if (
                    expect_continue
                ):  # as S3 does; botocore otherwise waits 1 s before sending a PutObject body
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                payload = await reader.readexactly(length) if length else b""
                status, content_type, body = await self.answer(method, target, payload)
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                    f'Content-Length: {len(body)}\r\nETag: "bench"\r\n\r\n'.encode()
                    + (b"" if method == "HEAD" else body)
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            writer.close()

    async def answer(self, method: str, target: str, payload: bytes) -> tuple[str, str, bytes]:
        url = urlsplit(target)
        path = unquote(url.path)
        if method == "POST" and path.endswith("/invocations"):
            await asyncio.sleep(self.latency)
            return "200 OK", "application/json", PREDICTION
        bucket, _, key = path.lstrip("/").partition("/")
        if method == "GET" and not key:
            query = parse_qs(url.query)
            token = query.get("continuation-token", [None])[0]
            prefix = query.get("prefix", [""])[0]
            return "200 OK", "application/xml", listing(bucket, prefix, token, self.days)
        if key in self.kept and method in ("GET", "HEAD"):
            return "200 OK", "application/octet-stream", self.kept[key]
        if method == "HEAD" or (method == "GET" and "/shards/" in key):
            return "404 Not Found", "application/xml", b"<Error><Code>NoSuchKey</Code></Error>"
        if method == "GET":
            _, size = day_of(key, self.days)
            return "200 OK", "image/jpeg", JPEG if size == len(JPEG) else bytes(size)
        if method == "PUT":
            if "/shards/" in key:
                self.kept[key] = payload
            return "200 OK", "application/xml", b""
        return "404 Not Found", "application/xml", b"<Error><Code>NoSuchKey</Code></Error>"


async def serve(latency: float, port: int, days: dict[str, dict[str, int]]) -> None:
    server = await asyncio.start_server(StandIn(latency, days).handle, "127.0.0.1", port)
    print(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--latency", type=float, default=0.05, help="InvokeEndpoint round trip (seconds)")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument("--days", type=json.loads, default={}, help="what each incoming/<day>/ holds")
    args = parser.parse_args()
    asyncio.run(serve(args.latency, args.port, args.days))


if __name__ == "__main__":
    main()
