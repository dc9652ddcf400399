"""docker-compose.yaml checked against what runs here (``make compose-test`` runs it for real).

Its services must run the commands and settings that ``make airflow`` (``tools/stack.py``) runs
and the system tests exercise, from images built once each with their requirements, and every
command must exist in the project or in Airflow's CLI. docker-compose.celery.yaml (CeleryExecutor)
must give its worker the same settings.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from airflow.cli.cli_parser import get_parser

from active_learning.settings import EnvironmentDefaults, LoopSettings
from tools.airflow_runs import airflow_env
from tools.stack import (
    AIRFLOW_COMPONENTS,
    AIRFLOW_INIT,
    COMPOSE_JWT_SECRET_FILE,
    DAG_ID,
    PLACE_SETTINGS,
    Stack,
    backfill_command,
    compose_init_script,
    emulator_command,
    seed_command,
    seeded_days,
    seeded_days_script,
    shared_settings,
)

ROOT = Path(__file__).parents[1]
AIRFLOW_SERVICES = {f"airflow-{name}": command for name, command in AIRFLOW_COMPONENTS.items()}
# docker-compose's places: the JWT secret is read from a generated file, not given in the file
COMPOSE_PLACES = {
    *(name for name in PLACE_SETTINGS if name != "AIRFLOW__API_AUTH__JWT_SECRET"),
    "AIRFLOW__API_AUTH__JWT_SECRET_CMD",
}
CELERY_SETTINGS = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CELERY__BROKER_URL": "redis://redis:6379/0",
    "AIRFLOW__CELERY__RESULT_BACKEND": "db+postgresql://airflow:airflow@postgres/airflow",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def celery() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.celery.yaml").read_text())


def test_services(compose: dict) -> None:
    assert set(compose["services"]) == {
        "postgres",
        "aws",
        "aws-seed",
        "airflow-init",
        *AIRFLOW_SERVICES,
        "airflow-seeded-days",
        "label-studio",
    }
    for name in AIRFLOW_SERVICES:
        depends_on = compose["services"][name]["depends_on"]
        assert depends_on["airflow-init"]["condition"] == "service_completed_successfully"
        assert depends_on["aws-seed"]["condition"] == "service_completed_successfully"
        assert depends_on["aws"]["condition"] == "service_healthy"


def test_the_airflow_services_run_the_stacks_commands(compose: dict) -> None:
    for name, command in AIRFLOW_SERVICES.items():
        assert compose["services"][name]["command"] == list(command), name
    assert compose["services"]["airflow-init"]["command"] == ["bash", "-c", compose_init_script()]


def test_the_local_aws_services_run_the_stacks_commands(compose: dict) -> None:
    assert compose["services"]["aws"]["command"] == emulator_command("0.0.0.0", 4566, "/tmp/emulator.json")
    assert compose["services"]["aws-seed"]["command"] == seed_command("http://aws:4566")
    assert compose["services"]["aws-seed"]["depends_on"]["aws"]["condition"] == "service_healthy"


def test_every_airflow_command_exists_in_airflows_cli(compose: dict) -> None:
    parser = get_parser()
    commands = [*AIRFLOW_INIT, *(compose["services"][name]["command"] for name in AIRFLOW_SERVICES)]
    for program, *arguments in commands:
        assert program == "airflow"
        parsed = parser.parse_args(arguments)  # exits (SystemExit) on an unknown command or flag
        assert callable(parsed.func), arguments


@pytest.mark.parametrize("service", ["aws", "aws-seed"])
def test_every_local_aws_command_exists_in_the_project(compose: dict, service: str) -> None:
    program, flag, module, *arguments = compose["services"][service]["command"]
    assert (program, flag) == ("python", "-m")
    command, options = (arguments[0], arguments[1:]) if module == "emulator" else (None, arguments)
    help_text = subprocess.run(
        [sys.executable, "-m", module, *([command] if command else []), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in options:
        if option.startswith("--"):
            assert re.search(rf"{option}\b", help_text), f"{service}: {option} is not an option"


def test_the_airflow_services_get_the_stacks_settings(compose: dict) -> None:
    """Same settings as ``make airflow``; only the places (database, URLs, secret, connection) differ."""
    shared = shared_settings()
    for name in ("airflow-init", *AIRFLOW_SERVICES):
        environment = {key: str(value) for key, value in compose["services"][name]["environment"].items()}
        assert {key: environment.get(key) for key in shared} == shared, name
        assert set(environment) - set(shared) == COMPOSE_PLACES, name
    stack = Stack(Path("/tmp/airflow-home"), sql_alchemy_conn="sqlite:////tmp/airflow-home/airflow.db")
    assert set(PLACE_SETTINGS) <= set(stack.airflow_environment())


def test_the_connection_points_at_the_aws_service_as_the_stack_at_its_own(compose: dict) -> None:
    environment = compose["services"]["airflow-scheduler"]["environment"]
    local_aws = airflow_env(Path("/airflow-home"), "http://aws:4566")["AIRFLOW_CONN_AWS_DEFAULT"]
    assert environment["AIRFLOW_CONN_AWS_DEFAULT"] == local_aws
    assert compose["services"]["aws"]["ports"] == ["127.0.0.1:${LOCAL_AWS_PORT:-4566}:4566"]
    assert compose["services"]["airflow-api-server"]["ports"] == ["127.0.0.1:${AIRFLOW_API_PORT:-8080}:8080"]
    assert (
        environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-api-server:8080/execution/"
    )


def test_images_are_built_with_their_requirements(compose: dict) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-python3.11" in dockerfile
    assert "COPY requirements.txt " in dockerfile
    assert "RUN pip install --no-cache-dir -r /opt/airflow/requirements.txt" in dockerfile
    assert "apache-airflow==3.3.2" in (ROOT / "requirements.txt").read_text()
    emulator = (ROOT / "emulator" / "Dockerfile").read_text()
    assert "RUN pip install --no-cache-dir -r emulator/requirements.txt" in emulator
    assert compose["services"]["airflow-init"]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert compose["services"]["aws"]["build"] == {"context": ".", "dockerfile": "emulator/Dockerfile"}


def depends_on(services: dict, name: str) -> set[str]:
    """Every service ``name`` starts after, directly or not."""
    direct = set(services[name].get("depends_on", {}))
    return direct.union(*(depends_on(services, other) for other in direct))


@pytest.mark.parametrize(
    "files", [("docker-compose.yaml",), ("docker-compose.yaml", "docker-compose.celery.yaml")]
)
def test_each_image_is_built_once_before_the_services_that_run_it(files: tuple[str, ...]) -> None:
    """One service per image has ``build:``; the others name the image and start after it, so
    docker-compose 1.29 (which builds per service, in dependency order) builds it once, and compose
    v2 (which ignores a failed pull of an image another service builds) too."""
    services = merged_services(files)
    built = {service["image"]: name for name, service in services.items() if "build" in service}
    assert built == {
        "airflow-active-learning:local": "airflow-init",
        "active-learning-local-aws:local": "aws",
    }
    assert sum("build" in service for service in services.values()) == len(built)
    for name, service in services.items():
        builder = built.get(service.get("image", ""))
        if builder and builder != name:
            assert builder in depends_on(services, name), name


def merged_services(files: tuple[str, ...]) -> dict:
    """The services of the files as compose merges an override: each service's keys, its
    environment and depends_on mappings merged (both compose versions do)."""
    services: dict = {}
    for file in files:
        for name, service in yaml.safe_load((ROOT / file).read_text())["services"].items():
            merged = {**services.get(name, {}), **service}
            for key in ("environment", "depends_on"):
                if key in services.get(name, {}) and key in service:
                    merged[key] = {**services[name][key], **service[key]}
            services[name] = merged
    return services


def test_nothing_is_installed_when_a_container_starts(compose: dict) -> None:
    for name, service in compose["services"].items():
        started = " ".join(map(str, [*service.get("command", []), *service.get("entrypoint", [])]))
        assert "pip" not in started, name
        assert "_PIP_ADDITIONAL_REQUIREMENTS" not in service.get("environment", {}), name
        assert not any("requirements" in volume for volume in service.get("volumes", [])), name


def test_project_folders_and_one_log_folder_are_mounted(compose: dict) -> None:
    for name in ("airflow-init", *AIRFLOW_SERVICES):
        volumes = compose["services"][name]["volumes"]
        for folder in ("dags", "plugins", "include"):
            assert f"./{folder}:/opt/airflow/{folder}" in volumes
        assert "airflow-logs:/opt/airflow/logs" in volumes  # the api-server reads every log itself


def test_the_simple_auth_managers_login_is_set_in_the_image(compose: dict) -> None:
    environment = compose["services"]["airflow-api-server"]["environment"]
    assert environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    dockerfile = (ROOT / "Dockerfile").read_text()
    passwords = "/opt/airflow/simple_auth_manager_passwords.json.generated"  # the default file
    assert f"""'{{"admin": "admin"}}' > {passwords}""" in dockerfile


def test_the_compose_settings_are_valid_loop_settings(compose: dict) -> None:
    """The AL_* defaults the services get build valid settings (the seeded data is allowed)."""
    environment = EnvironmentDefaults(compose["services"]["airflow-scheduler"]["environment"])
    settings = LoopSettings.from_mapping(environment.settings())
    assert environment.problems == []
    assert settings.initial_model_data_url == "s3://active-learning-demo/models/initial/model.tar.gz"
    assert settings.validation_manifest_uri == "s3://active-learning-demo/validation/validation.manifest"


def test_label_studio_runs_the_pinned_release_beside_airflow_when_asked(compose: dict) -> None:
    service = compose["services"]["label-studio"]
    assert service["image"] == "heartexlabs/label-studio:1.23.2"
    assert service["profiles"] == ["label-studio"]  # off unless `--profile label-studio`
    assert service["ports"] == ["127.0.0.1:${LABEL_STUDIO_PORT:-8081}:8080"]  # 8080 is Airflow's
    assert "label-studio-data:/label-studio/data" in service["volumes"]
    assert "label-studio-data" in compose["volumes"]
    assert service["environment"]["LATEST_VERSION_CHECK"] == "false"


def test_the_build_context_leaves_out_the_virtualenvs_and_keeps_what_the_images_copy() -> None:
    """Without .dockerignore the context was the whole checkout: 2.5 GB after `make install`."""
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def is_ignored(path: str) -> bool:
        parts = Path(path).parts
        return any(
            fnmatch.fnmatch(path, pattern.removeprefix("**/"))
            or any(fnmatch.fnmatch(part, pattern.removeprefix("**/")) for part in parts)
            or path.startswith(pattern.rstrip("/") + "/")
            for pattern in ignored
        )

    for heavy in (
        ".venv",
        ".venv-label-studio",
        ".git",
        "airflow-stack",
        "demo-output",
        "plugins/x/__pycache__",
    ):
        assert is_ignored(heavy), heavy
    copied = [
        source
        for dockerfile in (ROOT / "Dockerfile", ROOT / "emulator" / "Dockerfile")
        for line in dockerfile.read_text().splitlines()
        if line.startswith("COPY ")
        for source in line.split()[1:-1]
    ]
    assert copied, "no COPY found"
    assert [source for source in copied if is_ignored(source)] == []


def test_every_published_port_is_on_loopback(compose: dict, celery: dict) -> None:
    published = [
        port
        for file in (compose, celery)
        for service in file["services"].values()
        for port in service.get("ports", [])
    ]
    assert len(published) == 4
    for port in published:
        assert port.startswith("127.0.0.1:"), port


def test_the_jwt_secret_is_generated_once_and_read_by_every_airflow_service(
    compose: dict, tmp_path: Path
) -> None:
    """No secret in the file: airflow-init writes 48 random bytes into the airflow-secrets volume
    (kept across restarts), and Airflow reads it through ``AIRFLOW__API_AUTH__JWT_SECRET_CMD``."""
    secrets_folder = str(Path(COMPOSE_JWT_SECRET_FILE).parent)
    for name in ("airflow-init", *AIRFLOW_SERVICES, "airflow-seeded-days"):
        service = compose["services"][name]
        assert "AIRFLOW__API_AUTH__JWT_SECRET" not in service["environment"], name
        assert service["environment"]["AIRFLOW__API_AUTH__JWT_SECRET_CMD"] == f"cat {COMPOSE_JWT_SECRET_FILE}"
        assert f"airflow-secrets:{secrets_folder}" in service["volumes"], name
    assert "airflow-secrets" in compose["volumes"]
    assert f"RUN mkdir -p {secrets_folder}" in (ROOT / "Dockerfile").read_text()  # the airflow user's
    # the init's secret step, run here on a folder of the test's (Airflow's commands left out)
    secret_file = tmp_path / "jwt_secret"
    step = compose_init_script().split(" && airflow ")[0].replace(COMPOSE_JWT_SECRET_FILE, str(secret_file))
    subprocess.run(["bash", "-c", step.replace("python ", f"{sys.executable} ")], check=True)
    secret = secret_file.read_text()
    assert len(secret) >= 32
    assert secret.isprintable()  # no newline either
    assert secret_file.stat().st_mode & 0o777 == 0o600
    subprocess.run(["bash", "-c", step.replace("python ", f"{sys.executable} ")], check=True)
    assert secret_file.read_text() == secret  # kept: tokens stay valid across `up`s
    read = subprocess.run(
        [
            sys.executable,
            "-c",
            "from airflow.configuration import conf; print(conf.get('api_auth', 'jwt_secret'))",
        ],
        env={**os.environ, "AIRFLOW__API_AUTH__JWT_SECRET_CMD": f"cat {secret_file}"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert read.stdout.splitlines()[-1] == secret  # after what Airflow logs (make test: unit-test mode)


def test_the_seeded_days_service_backfills_the_days_the_seed_uploaded(compose: dict, tmp_path: Path) -> None:
    """Profile seeded-days: wait for the DAG, backfill the seeded days, unpause: run here with an
    ``airflow`` that records its arguments, each then checked against Airflow's CLI parser."""
    service = compose["services"]["airflow-seeded-days"]
    assert service["profiles"] == ["seeded-days"]
    assert service["depends_on"] == {"airflow-dag-processor": {"condition": "service_started"}}
    program, flag, script = service["command"]
    assert (program, flag) == ("bash", "-c")
    assert script.replace("$$", "$") == seeded_days_script()  # compose turns $$ into $
    calls = tmp_path / "calls"
    recorder = tmp_path / "airflow"
    recorder.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> {calls}\n')
    recorder.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    subprocess.run(["bash", "-c", seeded_days_script()], env=env, check=True)
    days = seeded_days(datetime.now(UTC).date())
    backfill = backfill_command(DAG_ID, days[0].isoformat(), days[-1].isoformat())
    assert calls.read_text().splitlines() == [
        f"dags details {DAG_ID}",
        " ".join(backfill[1:]),
        f"dags unpause {DAG_ID}",
    ]
    parser = get_parser()
    for line in calls.read_text().splitlines():
        assert callable(parser.parse_args(line.split()).func), line


def test_the_celery_variant_follows_airflows_official_file(compose: dict, celery: dict) -> None:
    """docker-compose.celery.yaml: Redis, a worker with the scheduler's settings, Flower on request;
    every Airflow service switched to the CeleryExecutor."""
    services = celery["services"]
    assert set(services) == {
        "redis",
        *AIRFLOW_SERVICES,
        "airflow-init",
        "airflow-seeded-days",
        "airflow-worker",
        "flower",
    }
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name in ("airflow-init", *AIRFLOW_SERVICES, "airflow-seeded-days"):
        assert services[name]["environment"] == CELERY_SETTINGS, name
    for name in AIRFLOW_SERVICES:
        assert services[name]["depends_on"] == {"redis": {"condition": "service_healthy"}}, name
    worker = services["airflow-worker"]
    assert worker["command"] == ["airflow", "celery", "worker", "--skip-serve-logs"]
    scheduler = compose["services"]["airflow-scheduler"]
    expected = {**scheduler["environment"], **CELERY_SETTINGS, "DUMB_INIT_SETSID": "0"}
    assert worker["environment"] == expected
    assert services["flower"]["environment"] == {**scheduler["environment"], **CELERY_SETTINGS}
    assert worker["volumes"] == scheduler["volumes"]
    assert worker["image"] == services["flower"]["image"] == scheduler["image"]
    assert set(worker["depends_on"]) == {"redis", *scheduler["depends_on"]} - {"postgres"}
    assert services["flower"]["profiles"] == ["flower"]
    assert services["flower"]["command"] == ["airflow", "celery", "flower"]


@pytest.mark.skipif(not shutil.which("docker-compose"), reason="docker-compose (1.29) is not installed")
@pytest.mark.parametrize(
    "files", [("docker-compose.yaml",), ("docker-compose.yaml", "docker-compose.celery.yaml")]
)
def test_docker_compose_1_29_accepts_the_files(files: tuple[str, ...]) -> None:
    options = [word for file in files for word in ("-f", file)]
    subprocess.run(["docker-compose", *options, "config", "-q"], cwd=ROOT, check=True)


def test_compose_test_has_every_base_image_or_its_stand_in(compose: dict, celery: dict) -> None:
    """``make compose-test`` builds a stand-in for each image the files start from, and builds the
    project's images with the tags the compose file runs."""
    from tools.compose_test import BASE_IMAGES, CELERY_IMAGES, PROJECT_IMAGES, STANDINS

    froms = {
        line.split()[1]
        for dockerfile in PROJECT_IMAGES.values()
        for line in (ROOT / dockerfile).read_text().splitlines()
        if line.startswith("FROM ")
    }
    pulled = {service["image"] for service in compose["services"].values() if "build" not in service}
    project = {service["image"] for service in compose["services"].values() if "build" in service}
    assert project == set(PROJECT_IMAGES)
    for name, service in compose["services"].items():
        if "build" in service:
            assert PROJECT_IMAGES[service["image"]] == service["build"]["dockerfile"], name
    default_profile = {
        service["image"] for service in compose["services"].values() if "profiles" not in service
    } - project
    assert froms | default_profile == set(BASE_IMAGES)
    assert pulled - set(PROJECT_IMAGES) - set(BASE_IMAGES) == {"heartexlabs/label-studio:1.23.2"}
    celery_images = {service["image"] for service in celery["services"].values() if "image" in service}
    assert celery_images - set(PROJECT_IMAGES) == set(CELERY_IMAGES)
    for name in [*BASE_IMAGES.values(), *CELERY_IMAGES.values()]:
        assert (STANDINS / f"{name}.Dockerfile").read_text().startswith("# TEST-ONLY stand-in for ")
