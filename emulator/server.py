"""One HTTP server on 127.0.0.1: moto for what moto implements, our handlers for the rest."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import boto3
from botocore.config import Config
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.sagemaker.models import sagemaker_backends
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from emulator.a2i import A2IRuntime, ReviewerConfig
from emulator.protocol import (
    ACCOUNT_ID,
    AwsError,
    conform_sagemaker_response,
    credential_scope,
    json_response,
)
from emulator.sagemaker_ext import SageMakerExtensions, json_body
from emulator.transform import TransformJobs
from world import REFERENCE_METADATA

ADMIN = "/_emulator"


@dataclass(frozen=True)
class EmulatorConfig:
    """Timings of simulated state changes (seconds)."""

    activation_delay: float = 1.0
    update_delay: float = 2.0
    training_start_delay: float = 1.0
    invoke_latency: float = 0.0  # added to every InvokeEndpoint, like a remote endpoint's round trip


class Emulator:
    """The embedded local AWS. ``start()`` serves on 127.0.0.1 (a free port by default)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        reviewer: ReviewerConfig | None = None,
        config: EmulatorConfig | None = None,
    ) -> None:
        from emulator.training import train_job

        self.host, self.port = host, port
        self.config = config or EmulatorConfig()
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.sagemaker = SageMakerExtensions(
            self.config,
            self.later,
            self.moto_sagemaker,
            self.model_data_url,
            self.load_model,
            trainer=lambda job: train_job(job, self.get_object, self.put_object),
            task_ui_url=lambda name: f"{self.url}{ADMIN}/task-uis/{name}",
        )
        self.a2i = A2IRuntime(
            reviewer or ReviewerConfig(),
            self.later,
            self.sagemaker.flow_definition_by_arn,
            self.reference_of,
            self.put_object,
        )
        self.transforms = TransformJobs(
            lambda: self.client("s3"), self.model_predictor, self.config.invoke_latency
        )
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._timers: list[threading.Timer] = []
        self._models: dict[str, Any] = {}
        self._models_lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self._clients_lock = threading.Lock()

    # Lifecycle -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> Emulator:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
        self._server = make_server(self.host, self.port, self, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *_: Any) -> None:
        self.stop()

    def later(self, delay: float, function: Callable[..., Any], *args: Any) -> None:
        """Run a simulated state change after ``delay`` seconds, in the background."""
        timer = threading.Timer(delay, function, args)
        timer.daemon = True
        self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    # Access to what moto and S3 hold -------------------------------------------------------------
    def client(self, service: str, region: str = "us-east-1") -> Any:
        """A boto3 client talking to this server (cached: clients are thread-safe, creating one is slow)."""
        with self._clients_lock:
            key = (service, region)
            if key not in self._clients:
                self._clients[key] = boto3.session.Session().client(
                    service,
                    endpoint_url=self.url,
                    region_name=region,
                    aws_access_key_id="emulator",
                    aws_secret_access_key="emulator",
                    # shared by the threads of transform jobs and reviewers: one connection each
                    config=Config(max_pool_connections=64),
                )
            return self._clients[key]

    def moto_sagemaker(self, region: str) -> Any:
        return sagemaker_backends[ACCOUNT_ID][region]

    def get_object(self, uri: str) -> bytes:
        bucket, key = _split(uri)
        return self.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()

    def put_object(self, uri: str, data: bytes) -> None:
        bucket, key = _split(uri)
        self.client("s3").put_object(Bucket=bucket, Key=key, Body=data)

    def reference_of(self, uri: str) -> tuple[list[dict[str, Any]], int, int]:
        """An image's reference boxes and size, from its S3 object metadata (set by the data generator)."""
        from PIL import Image

        bucket, key = _split(uri)
        s3 = self.client("s3")
        metadata = s3.head_object(Bucket=bucket, Key=key)["Metadata"]
        if REFERENCE_METADATA not in metadata:
            raise ValueError(f"{uri} has no {REFERENCE_METADATA} metadata")
        with Image.open(io.BytesIO(self.get_object(uri))) as image:
            width, height = image.size
        return json.loads(metadata[REFERENCE_METADATA]), width, height

    def model_data_url(self, region: str, model_name: str) -> str:
        model = self.moto_sagemaker(region).describe_model(model_name)
        container = model.primary_container or model.containers[0]
        return container["ModelDataUrl"]

    def model_predictor(self, model_name: str, region: str) -> Callable[[bytes], dict[str, Any]]:
        """The predict function of a SageMaker model's local artifact (transform jobs run it)."""
        try:
            url = self.model_data_url(region, model_name)
        except Exception as err:
            raise AwsError("ValidationException", f"Could not find model {model_name!r}") from err
        return self.load_model(url, region).predict

    def load_model(self, model_data_url: str, region: str = "us-east-1") -> Any:
        """The local model of an artifact, cached by URL (artifacts are immutable once written)."""
        from world.model import LocalDetector

        with self._models_lock:
            if model_data_url not in self._models:
                self._models[model_data_url] = LocalDetector.from_artifact(self.get_object(model_data_url))
            return self._models[model_data_url]

    # Requests ------------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        try:
            response = self._dispatch(request, environ)
        except AwsError as err:
            response = err.response()
        if response is None:  # everything moto implements
            return self.moto(environ, start_response)
        return response(environ, start_response)

    def _dispatch(self, request: Request, environ: dict[str, Any]) -> Response | None:
        path = request.path
        region, service = credential_scope(request.headers.get("Authorization", ""))
        if path.startswith(ADMIN):
            return self._admin(request, path.removeprefix(ADMIN))
        if service != "sagemaker":  # S3 and the rest: a bucket may well be named "endpoints"
            return None
        if path.startswith("/human-loops"):
            status, body = self.a2i.handle(
                request.method,
                path,
                dict(parse_qsl(request.query_string.decode())),
                request.get_data(),
                region,
            )
            return json_response(body, status, "application/json")
        if path.startswith("/endpoints/") and path.endswith("/invocations"):
            return self._invoke(path.split("/")[2], request.get_data(), region)
        target = request.headers.get("X-Amz-Target", "")
        if target.startswith("SageMaker."):
            operation = target.removeprefix("SageMaker.")
            raw = request.get_data()
            environ["wsgi.input"] = io.BytesIO(raw)  # moto reads the body again when we pass
            if self.sagemaker.handles(operation, lambda: json_body(raw)):
                return json_response(self.sagemaker.handle(operation, json_body(raw), region))
            if operation in self.transforms.handlers:
                return json_response(self.transforms.handlers[operation](json_body(raw), region))
            return conform_sagemaker_response(operation, Response.from_app(self.moto, environ))
        return None

    def _invoke(self, endpoint_name: str, body: bytes, region: str) -> Response:
        endpoint = self.moto_sagemaker(region).endpoints.get(endpoint_name)
        if endpoint is None:
            raise AwsError("ValidationError", f"Endpoint {endpoint_name} of account {ACCOUNT_ID} not found.")
        if endpoint.endpoint_status not in ("InService", "Updating", "RollingBack"):
            raise AwsError("ValidationError", f"Endpoint {endpoint_name} is {endpoint.endpoint_status}")
        config = self.moto_sagemaker(region).endpoint_configs[endpoint.endpoint_config_name]
        model = self.load_model(
            self.model_data_url(region, config.production_variants[0]["ModelName"]), region
        )
        time.sleep(self.config.invoke_latency)
        try:
            prediction = model.predict(body)
        except ValueError as err:
            raise AwsError("ModelError", f"Received client error (400) from primary: {err}", 424) from err
        return Response(
            json.dumps(prediction),
            content_type="application/json",
            headers={"x-Amzn-Invoked-Production-Variant": config.production_variants[0]["VariantName"]},
        )

    def _admin(self, request: Request, path: str) -> Response:
        if path == "/health":
            return json_response({"status": "ok"}, content_type="application/json")
        if path == "/human-loops" and request.method == "GET":
            return json_response({"pending": self.a2i.pending()}, content_type="application/json")
        if path.startswith("/human-loops/") and path.endswith("/answer") and request.method == "POST":
            name = path.split("/")[2]
            answers = json.loads(request.get_data() or b"{}").get("humanAnswers")
            if not isinstance(answers, list) or not answers:
                raise AwsError("ValidationException", 'body must be {"humanAnswers": [answer, ...]}')
            return json_response(
                {"OutputS3Uri": self.a2i.complete(name, answers)}, content_type="application/json"
            )
        if path.startswith("/task-uis/"):
            ui = self.sagemaker.task_uis.get(path.split("/")[2])
            if ui is not None:
                return Response(ui["content"], content_type="text/html")
        raise AwsError("NotFound", f"no emulator route {request.method} {path}", 404)


def _split(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"not an S3 URI: {uri}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key
