"""docker-compose.yaml cannot run here (no container engine): check its structure instead."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import yaml

from active_learning.settings import EnvironmentDefaults, LoopSettings

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def test_services(compose: dict) -> None:
    assert set(compose["services"]) == {
        "postgres",
        "aws",
        "aws-seed",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "label-studio",
    }
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"):
        service = compose["services"][name]
        assert service["image"].startswith("apache/airflow:3.3")
        assert service["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["aws"]["condition"] == "service_healthy"


def test_init_migrates_and_creates_the_admin_user(compose: dict) -> None:
    script = "\n".join(compose["services"]["airflow-init"]["command"])
    assert "airflow db migrate" in script
    assert "airflow users create" in script
    assert "--role Admin" in script


def test_project_folders_are_mounted(compose: dict) -> None:
    volumes = compose["services"]["airflow-scheduler"]["volumes"]
    for folder in ("dags", "plugins", "include"):
        assert f"./{folder}:/opt/airflow/{folder}" in volumes
    assert "./emulator:/opt/emulator/emulator" in compose["services"]["aws"]["volumes"]


def test_aws_connection_points_at_the_emulator_service(compose: dict) -> None:
    environment = compose["services"]["airflow-scheduler"]["environment"]
    connection = urlparse(environment["AIRFLOW_CONN_AWS_DEFAULT"])
    assert connection.scheme == "aws"
    extra = parse_qs(connection.query)
    assert unquote(extra["endpoint_url"][0]) == "http://aws:4566"
    assert extra["region_name"] == ["us-east-1"]
    assert "--port 4566" in compose["services"]["aws"]["command"]


def test_ports(compose: dict) -> None:
    assert "8080:8080" in compose["services"]["airflow-apiserver"]["ports"]
    assert "4566:4566" in compose["services"]["aws"]["ports"]


def test_the_emulator_service_installs_only_what_it_needs(compose: dict) -> None:
    assert "emulator/requirements.txt" in compose["services"]["aws"]["command"]
    assert (ROOT / "emulator" / "requirements.txt").exists()


def test_the_local_aws_is_seeded_with_the_data_the_dag_needs(compose: dict) -> None:
    seed = compose["services"]["aws-seed"]
    assert "python -m emulator.seed --url http://aws:4566" in seed["command"]
    assert seed["depends_on"]["aws"]["condition"] == "service_healthy"
    environment = compose["services"]["airflow-scheduler"]["environment"]
    assert environment["AL_INITIAL_MODEL_DATA_URL"] == "s3://active-learning-demo/models/initial/model.tar.gz"


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
