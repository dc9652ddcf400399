"""Command line: ``python -m emulator start|stop|serve|pending|answer``."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

DEFAULT_STATE = Path(".emulator.json")


def _reviewer_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--reviewer", choices=["reference", "manual"], default="reference")
    parser.add_argument("--review-delay", type=float, default=1.0)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--abandon", type=float, default=0.0, help="share of loops nobody answers")
    parser.add_argument("--workers", type=int, default=0, help="answers per loop (0: the TaskCount)")
    parser.add_argument("--seed", type=int, default=0)


def serve(args: argparse.Namespace) -> None:
    from emulator.a2i import ReviewerConfig
    from emulator.server import Emulator

    reviewer = ReviewerConfig(
        args.reviewer, args.review_delay, args.noise, args.abandon, args.workers, args.seed
    )
    emulator = Emulator(args.host, args.port, reviewer).start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    args.state_file.write_text(json.dumps({"url": emulator.url, "pid": os.getpid()}))
    print(f"emulator listening on {emulator.url}", flush=True)
    stopped.wait()
    emulator.stop()
    args.state_file.unlink(missing_ok=True)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_emulator/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start(args: argparse.Namespace) -> None:
    """Start ``serve`` in the background and wait until it answers; prints its URL."""
    args.state_file.unlink(missing_ok=True)
    log = open(args.log_file, "ab")  # noqa: SIM115 - handed to the child process
    command = [sys.executable, "-m", "emulator", "serve", "--state-file", str(args.state_file)]
    for name in ("host", "port", "reviewer", "review_delay", "noise", "abandon", "workers", "seed"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the emulator exited with {process.returncode}; see {args.log_file}")
        if args.state_file.exists():
            url = json.loads(args.state_file.read_text())["url"]
            if _healthy(url):
                print(url)
                return
        time.sleep(0.2)
    process.terminate()
    sys.exit(f"the emulator did not answer within 60 s; see {args.log_file}")


def stop(args: argparse.Namespace) -> None:
    """Stop the background emulator and wait until its process is gone."""
    if not args.state_file.exists():
        print("no emulator is running")
        return
    pid = json.loads(args.state_file.read_text())["pid"]
    try:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    args.state_file.unlink(missing_ok=True)
    print(f"emulator {pid} stopped")


def _call(url: str, path: str, body: dict[str, Any] | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{url}/_emulator{path}", data=data, method="POST" if data else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _url(args: argparse.Namespace) -> str:
    return args.url or json.loads(args.state_file.read_text())["url"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    parser.add_argument("--state-file", type=Path, default=DEFAULT_STATE)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("serve", "start"):
        sub = commands.add_parser(name, help=f"{name} the emulator")
        _reviewer_args(sub)
        sub.add_argument("--state-file", type=Path, default=DEFAULT_STATE)
        sub.add_argument("--log-file", type=Path, default=Path(".emulator.log"))
    commands.add_parser("stop", help="stop the background emulator")
    pending = commands.add_parser("pending", help="list human loops waiting for a person (manual mode)")
    pending.add_argument("--url")
    answer = commands.add_parser("answer", help="answer a human loop as a person would")
    answer.add_argument("loop")
    answer.add_argument("answer_file", type=Path, help='JSON: {"humanAnswers": [...]} in A2I output format')
    answer.add_argument("--url")
    args = parser.parse_args(argv)
    if args.command == "serve":
        serve(args)
    elif args.command == "start":
        start(args)
    elif args.command == "stop":
        stop(args)
    elif args.command == "pending":
        print(json.dumps(_call(_url(args), "/human-loops"), indent=2))
    else:
        print(
            json.dumps(
                _call(
                    _url(args), f"/human-loops/{args.loop}/answer", json.loads(args.answer_file.read_text())
                )
            )
        )


if __name__ == "__main__":
    main()
