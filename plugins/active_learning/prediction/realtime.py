"""Real-time prediction: each image read from S3, checked, and sent to the endpoint."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from active_learning.hooks.errors import error_code, error_message
from active_learning.hooks.sagemaker_runtime import SageMakerRuntimeHook
from active_learning.images import CONTENT_TYPES, Quarantined, check_listed_size, read_image
from active_learning.prediction.day import ImagePrediction, Predictor
from active_learning.settings import LoopSettings


def endpoint_predictor(runtime: SageMakerRuntimeHook, s3_client: Any, settings: LoopSettings) -> Predictor:
    """A predictor that checks each image (listed size, header) and invokes the endpoint with it.

    An image the model rejects (``ModelError``) is quarantined; any other error (endpoint missing,
    access denied, retries exhausted) fails the run.
    """
    runtime.get_conn()  # create the client once, before the worker threads share it

    def predict(key: str, size: int) -> ImagePrediction:
        check_listed_size(size)
        data, image = read_image(s3_client, settings.bucket, key)
        try:
            body = runtime.invoke_endpoint(settings.endpoint_name, data, CONTENT_TYPES[image.format])
        except ClientError as err:
            if error_code(err) != "ModelError":
                raise
            raise Quarantined(f"the model rejected the image: {error_message(err)}") from err
        return ImagePrediction(body, image)

    return predict
