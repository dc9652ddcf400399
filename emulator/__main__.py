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
    parser.add_argument(
        "--invoke-latency", type=float, default=0.0, help="seconds added to each InvokeEndpoint"
    )


def serve(args: argparse.Namespace) -> None:
    from emulator.a2i import ReviewerConfig
    from emulator.server import Emulator, EmulatorConfig

    reviewer = ReviewerConfig(
        args.reviewer, args.review_delay, args.noise, args.abandon, args.workers, args.seed
    )
    emulator = Emulator(
        args.host, args.port, reviewer, EmulatorConfig(invoke_latency=args.invoke_latency)
    ).start()
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
    for name in (
        "host",
        "port",
        "reviewer",
        "review_delay",
        "noise",
        "abandon",
        "workers",
        "seed",
        "invoke_latency",
    ):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    # the child finds this package wherever the command is run from
    package_root = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
    }
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
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
    if args.url:
        return args.url
    if not args.state_file.exists():
        sys.exit(f"no emulator is running ({args.state_file} is absent); start one or pass --url")
    return json.loads(args.state_file.read_text())["url"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m emulator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    subparsers = {
        "serve": commands.add_parser("serve", help="run the emulator in the foreground"),
        "start": commands.add_parser("start", help="start the emulator in the background; prints its URL"),
        "stop": commands.add_parser("stop", help="stop the background emulator"),
        "pending": commands.add_parser("pending", help="list loops waiting for a person (manual mode)"),
        "answer": commands.add_parser("answer", help="answer a human loop as a person would"),
    }
    for name, sub in subparsers.items():
        sub.add_argument(
            "--state-file", type=Path, default=DEFAULT_STATE, help="where the URL and pid are kept"
        )
        if name in ("serve", "start"):
            _reviewer_args(sub)
            sub.add_argument("--log-file", type=Path, default=Path(".emulator.log"))
        if name in ("pending", "answer"):
            sub.add_argument("--url", help="the emulator's URL (default: from the state file)")
    subparsers["answer"].add_argument("loop")
    subparsers["answer"].add_argument(
        "answer_file", type=Path, help='JSON: {"humanAnswers": [...]} in A2I output format'
    )
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
