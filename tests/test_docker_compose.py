"""docker-compose.yaml cannot run here (no container engine): check it against what runs here instead.

Its services must run the commands and settings that ``make airflow`` (``tools/stack.py``) runs
and the system tests exercise, from images built with their requirements, and every command must
exist in the project or in Airflow's CLI.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from airflow.cli.cli_parser import get_parser

from active_learning.settings import EnvironmentDefaults, LoopSettings
from tools.airflow_runs import airflow_env
from tools.stack import (
    AIRFLOW_COMPONENTS,
    AIRFLOW_INIT,
    PLACE_SETTINGS,
    Stack,
    emulator_command,
    init_script,
    seed_command,
    shared_settings,
)

ROOT = Path(__file__).parents[1]
AIRFLOW_SERVICES = {f"airflow-{name}": command for name, command in AIRFLOW_COMPONENTS.items()}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_services(compose: dict) -> None:
    assert set(compose["services"]) == {
        "postgres",
        "aws",
        "aws-seed",
        "airflow-init",
        *AIRFLOW_SERVICES,
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
    assert compose["services"]["airflow-init"]["command"] == ["bash", "-c", init_script()]


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
        assert set(environment) - set(shared) == set(PLACE_SETTINGS), name
    stack = Stack(Path("/tmp/airflow-home"), sql_alchemy_conn="sqlite:////tmp/airflow-home/airflow.db")
    assert set(PLACE_SETTINGS) <= set(stack.airflow_environment())


def test_the_connection_points_at_the_aws_service_as_the_stack_at_its_own(compose: dict) -> None:
    environment = compose["services"]["airflow-scheduler"]["environment"]
    local_aws = airflow_env(Path("/airflow-home"), "http://aws:4566")["AIRFLOW_CONN_AWS_DEFAULT"]
    assert environment["AIRFLOW_CONN_AWS_DEFAULT"] == local_aws
    assert "4566:4566" in compose["services"]["aws"]["ports"]
    assert "8080:8080" in compose["services"]["airflow-api-server"]["ports"]
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
    for name in ("airflow-init", *AIRFLOW_SERVICES):
        assert compose["services"][name]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    for name in ("aws", "aws-seed"):
        assert compose["services"][name]["build"] == {"context": ".", "dockerfile": "emulator/Dockerfile"}


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


def test_label_studio_runs_the_pinned_release_beside_airflow(compose: dict) -> None:
    service = compose["services"]["label-studio"]
    assert service["image"] == "heartexlabs/label-studio:1.23.2"
    assert "8081:8080" in service["ports"]  # 8080 is Airflow's
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
