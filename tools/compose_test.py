"""TEST-ONLY: ``make compose-test``: docker-compose.yaml run for real, its seeded days backfilled.

Needs a Docker daemon (``DOCKER_HOST`` or the default socket; ``.ci/run`` starts one with
``tools/compose_dockerd.sh``) and docker-compose 1.29 (Debian 12's). Steps:

1. The base images the compose file and the Dockerfiles name: found locally, else pulled, else (no
   image registry reachable, as in CI) built as stand-ins from Debian packages
   (``tools/compose_standins/``: a ``debootstrap --variant=minbase`` root, then small Dockerfiles).
2. The project's two images, each built once from its Dockerfile with the tag the compose file
   names (``docker build --network host``: the daemon may have no default bridge to build on).
3. ``docker-compose up -d --no-build`` of the unchanged ``docker-compose.yaml`` (default profiles:
   no Label Studio) on free ports, until the api-server is healthy and the DAG parsed.
4. A backfill of the seeded days through the REST API (``POST /api/v2/backfills``, a JWT from
   ``/auth/token`` as admin), the DAG unpaused, as ``make airflow`` does; every DagRun must succeed.
5. ``docker-compose down -v``; no container, volume or network of the project, and no listening
   port, may be left.

Prints each step's wall time.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tools.airflow_runs import free_port
from tools.stack import DAG_ID, AirflowApi, seeded_days, wait_until

ROOT = Path(__file__).resolve().parents[1]
STANDINS = ROOT / "tools" / "compose_standins"
PROJECT = "alcomposetest"
# The images the project's files name, in build order (the airflow stand-in is built on the python one).
BASE_IMAGES = {
    "python:3.11-slim": "python",
    "postgres:16": "postgres",
    "apache/airflow:3.3.2-python3.11": "airflow",
}
# docker-compose.celery.yaml's broker (--celery)
CELERY_IMAGES = {"redis:7.2-bookworm": "redis"}
# The stand-ins' own base: Debian 12 from its packages.
DEBIAN_IMAGE = "active-learning-standin/debian:bookworm-minbase"
STANDIN_BASE = {
    "python": DEBIAN_IMAGE,
    "postgres": DEBIAN_IMAGE,
    "redis": DEBIAN_IMAGE,
    "airflow": "python:3.11-slim",
}
PROJECT_IMAGES = {
    "airflow-active-learning:local": "Dockerfile",
    "active-learning-local-aws:local": "emulator/Dockerfile",
}
DEBIAN_MIRROR = "http://deb.debian.org/debian"
TERMINAL = {"success", "failed"}
STANDIN_LABEL = "org.active-learning.standin"
# services that run once and exit; every other one must keep running
ONE_SHOTS = {"aws-seed", "airflow-init", "airflow-seeded-days"}
# the legacy builder: the same with or without a buildx plugin, and --network host works with it
BUILD_ENV = {"DOCKER_BUILDKIT": "0"}


def log(message: str) -> None:
    print(f"[compose-test {datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def steps(timings: Mapping[str, float]) -> str:
    """Each step's wall time, on one line."""
    return "; ".join(f"{what} {seconds:.0f} s" for what, seconds in timings.items())


@contextmanager
def timed(what: str, timings: dict[str, float]) -> Iterator[None]:
    started = time.monotonic()
    log(f"{what} ...")
    try:
        yield
    finally:
        timings[what] = time.monotonic() - started
        log(f"{what}: {timings[what]:.0f} s")


def run(
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    capture: bool = False,
    check: bool = True,
    stdin: Any = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(command),
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        capture_output=capture,
        text=True,
        check=check,
        stdin=stdin,
    )


def build(command: Sequence[str]) -> None:
    """A ``docker build``, its long output shown only when it fails."""
    done = run(command, env=BUILD_ENV, capture=True, check=False, timeout=3600)
    if done.returncode != 0:
        print(done.stdout[-6000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
        raise subprocess.CalledProcessError(done.returncode, list(command))


def image_exists(tag: str) -> bool:
    return run(["docker", "image", "inspect", tag], capture=True, check=False).returncode == 0


def pulled(tag: str, timeout: float) -> bool:
    """``docker pull``; False when no registry answers (the sandbox, CI) within ``timeout``."""
    try:
        return (
            run(["docker", "pull", "--quiet", tag], capture=True, check=False, timeout=timeout).returncode
            == 0
        )
    except subprocess.TimeoutExpired:
        return False


def import_debian(tag: str) -> None:
    """A Debian 12 minbase root from Debian's mirror, imported as an image (debootstrap needs root)."""
    with tempfile.TemporaryDirectory(prefix="compose-debootstrap-") as folder:
        rootfs = Path(folder) / "rootfs"
        run(["debootstrap", "--variant=minbase", "bookworm", str(rootfs), DEBIAN_MIRROR], capture=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run(
            ["docker", "import", "--message", "debootstrap minbase bookworm (test-only)", "-", tag],
            stdin=tar.stdout,
        )
        if tar.wait() != 0:
            raise RuntimeError("tar of the debootstrap root failed")


def standin_digest() -> str:
    """What the stand-ins are built from: a stand-in labelled with another digest is rebuilt."""
    digest = hashlib.sha256()
    for path in sorted(STANDINS.iterdir()):
        if path.suffix not in (".Dockerfile", ".sh"):
            continue  # the README
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def standin_label(tag: str) -> str:
    """The image's stand-in digest; empty for a real image."""
    template = f'{{{{index .Config.Labels "{STANDIN_LABEL}"}}}}'
    return run(["docker", "image", "inspect", "--format", template, tag], capture=True).stdout.strip()


def build_standin(tag: str, name: str) -> None:
    """``tools/compose_standins/<name>.Dockerfile`` on its base, trusting the host's extra CAs."""
    with tempfile.TemporaryDirectory(prefix="compose-standin-") as folder:
        context = Path(folder)
        for path in STANDINS.iterdir():
            shutil.copy2(path, context / path.name)
        (context / "ca").mkdir()
        for certificate in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            shutil.copy2(certificate, context / "ca" / certificate.name)
        build([
            "docker", "build", "--network", "host", "--build-arg", f"BASE={STANDIN_BASE[name]}",
            "--label", f"{STANDIN_LABEL}={standin_digest()}",
            "--file", str(context / f"{name}.Dockerfile"), "--tag", tag, str(context),
        ])  # fmt: skip


def ensure_base_images(images: Mapping[str, str], pull_timeout: float) -> dict[str, str]:
    """Each base image: cached, pulled or built as a stand-in; returns how each was had."""
    how: dict[str, str] = {}
    for tag, name in images.items():
        label = standin_label(tag) if image_exists(tag) else None
        if label == "":
            how[tag] = "cached"
        elif label == standin_digest():
            how[tag] = "cached stand-in"
        elif label is None and pull_timeout > 0 and pulled(tag, pull_timeout):
            how[tag] = "pulled"
        else:
            if STANDIN_BASE[name] == DEBIAN_IMAGE and not image_exists(DEBIAN_IMAGE):
                log("a Debian root for the stand-ins (debootstrap)")
                import_debian(DEBIAN_IMAGE)
            log(f"{tag}: building its test-only stand-in ({name}.Dockerfile)")
            build_standin(tag, name)
            how[tag] = "stand-in built"
        log(f"{tag}: {how[tag]}")
    return how


def build_project_images() -> None:
    """Each of the project's images once, with the tag docker-compose.yaml runs it by."""
    for tag, dockerfile in PROJECT_IMAGES.items():
        build(["docker", "build", "--network", "host", "--file", dockerfile, "--tag", tag, "."])


class Compose:
    """``docker-compose -p PROJECT -f FILE... --profile PROFILE...`` on the unchanged files, with
    their ports moved."""

    def __init__(
        self, project: str, env: Mapping[str, str], files: Sequence[str], profiles: Sequence[str]
    ) -> None:
        self.project = project
        self.env = dict(env)
        self.options = [
            *(word for file in files for word in ("--file", file)),
            *(word for profile in profiles for word in ("--profile", profile)),
        ]

    def __call__(
        self, *arguments: str, timeout: float = 900, capture: bool = False, check: bool = True
    ) -> str:
        done = run(
            ["docker-compose", "--project-name", self.project, *self.options, *arguments],
            env=self.env,
            timeout=timeout,
            capture=capture,
            check=check,
        )
        return done.stdout or ""

    def leftovers(self, ports: Sequence[int]) -> list[str]:
        """The project's containers, volumes and networks, and listening ports, still there."""
        label = f"label=com.docker.compose.project={self.project}"
        left = []
        for kind, listing in (
            ("container", ["docker", "ps", "--all", "--quiet", "--filter", label]),
            ("volume", ["docker", "volume", "ls", "--quiet", "--filter", label]),
            ("network", ["docker", "network", "ls", "--quiet", "--filter", label]),
        ):
            left += [f"{kind} {name}" for name in run(listing, capture=True).stdout.split()]
        for port in ports:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    left.append(f"port {port} still listening")
        return left

    def exited(self) -> list[str]:
        """The long-running services whose container has stopped, and the one-shots that failed."""
        listing = run(
            [
                "docker", "ps", "--all", "--filter", f"label=com.docker.compose.project={self.project}",
                "--filter", "status=exited",
                "--format", '{{.Label "com.docker.compose.service"}}: {{.Status}}',
            ],
            capture=True,
        ).stdout.splitlines()  # fmt: skip
        return [
            line
            for line in listing
            if line.split(":")[0] not in ONE_SHOTS or not line.split(": ", 1)[1].startswith("Exited (0)")
        ]

    def check_running(self) -> None:
        if stopped := self.exited():
            raise RuntimeError(f"services stopped: {stopped}")


def dag_runs(api: AirflowApi) -> list[dict[str, Any]]:
    return api("GET", f"/dags/{DAG_ID}/dagRuns?limit=100")["dag_runs"]


def backfill_seeded_days(
    api: AirflowApi, compose: Compose, timeout: float, *, through_service: bool
) -> list[dict[str, Any]]:
    """The seeded days backfilled through the REST API (or by the airflow-seeded-days service),
    run to the end; returns the runs."""
    days = seeded_days(datetime.now(UTC).date())
    if through_service:
        log(f"backfill of {days[0]} .. {days[-1]}: by the airflow-seeded-days service")
    else:
        api.backfill(DAG_ID, days[0], days[-1])
        api.unpause(DAG_ID)
        log(f"backfill of {days[0]} .. {days[-1]} created through POST /api/v2/backfills; DAG unpaused")
    finished: list[dict[str, Any]] = []

    def done() -> bool:
        nonlocal finished
        compose.check_running()
        finished = dag_runs(api)
        return len(finished) >= len(days) and {run["state"] for run in finished} <= TERMINAL

    wait_until(done, timeout, f"the {len(days)} backfilled runs finished", 5.0)
    return finished


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--pull-timeout",
        type=float,
        default=20.0,
        help="seconds to try each missing base image's pull (0: build its stand-in at once)",
    )
    parser.add_argument("--backfill-timeout", type=float, default=900.0)
    parser.add_argument(
        "--celery",
        action="store_true",
        help="with docker-compose.celery.yaml (CeleryExecutor: Redis and a Celery worker)",
    )
    parser.add_argument(
        "--seeded-days-service",
        action="store_true",
        help="backfill with the profile seeded-days (the documented way) instead of the REST API",
    )
    parser.add_argument(
        "--images-only",
        action="store_true",
        help="build (or find) the base and project images, then stop: a later run starts at once",
    )
    args = parser.parse_args(argv)
    files = ["docker-compose.yaml", *(["docker-compose.celery.yaml"] if args.celery else [])]
    profiles = ["seeded-days"] if args.seeded_days_service else []
    for program in ("docker", "docker-compose"):
        if not shutil.which(program):
            sys.exit(
                f"compose-test: {program} is not installed (.ci/run installs docker.io and docker-compose)"
            )
    if run(["docker", "info"], capture=True, check=False).returncode != 0:
        sys.exit("compose-test: no Docker daemon answers (DOCKER_HOST or the default socket)")
    started = time.monotonic()
    timings: dict[str, float] = {}
    with timed("base images", timings):
        ensure_base_images({**BASE_IMAGES, **(CELERY_IMAGES if args.celery else {})}, args.pull_timeout)
    with timed("project images (one build each)", timings):
        build_project_images()
    if args.images_only:
        log(f"{steps(timings)}; images ready")
        return 0
    api_port, aws_port = free_port(), free_port()
    ports = {"AIRFLOW_API_PORT": str(api_port), "LOCAL_AWS_PORT": str(aws_port)}
    compose = Compose(PROJECT, ports, files, profiles)
    log(f"docker-compose {' '.join(compose.options)}")
    compose("down", "--volumes", "--remove-orphans", timeout=300)  # a killed run's leftovers
    failure: BaseException | None = None
    try:
        with timed("up until the api-server is healthy and the DAG parsed", timings):
            compose("up", "--detach", "--no-build")
            api = AirflowApi(f"http://127.0.0.1:{api_port}")

            def ready() -> bool:
                compose.check_running()
                return api.healthy() and api.dag_parsed(DAG_ID)

            wait_until(ready, 600, "the api-server and the DAG", 2.0)
        with timed("backfill of the seeded days", timings):
            runs = backfill_seeded_days(
                api, compose, args.backfill_timeout, through_service=args.seeded_days_service
            )
        states = {run["logical_date"][:10]: run["state"] for run in runs}
        log(f"runs: {states}")
        if set(states.values()) != {"success"}:
            raise AssertionError(f"not every DagRun succeeded: {states}")
    except BaseException as err:
        failure = err
        compose("ps", check=False)
        compose("logs", "--no-color", "--tail", "60", check=False, timeout=120)
    finally:
        with timed("down -v", timings):
            compose("down", "--volumes", "--remove-orphans", timeout=300, check=failure is None)
        left = compose.leftovers([api_port, aws_port])
    if failure is not None:
        raise failure
    if left:
        raise AssertionError(f"left after down -v: {left}")
    total = time.monotonic() - started
    log(f"{steps(timings)}; total {total:.0f} s")
    log(f"passed: {len(states)} DagRuns succeeded; no container, volume, network or port left")
    return 0


if __name__ == "__main__":
    sys.exit(main())
