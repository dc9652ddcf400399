"""The day's input images: their size limits, and their format and size read from the header.

Pillow is imported where an image is read, never at DAG parse.
"""

from __future__ import annotations

import io
import struct
from typing import Any, NamedTuple

CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png"}
MAX_PAYLOAD_BYTES = 6 * 1024 * 1024  # InvokeEndpoint's limit for real-time inference
# Largest image (width x height) sent to the endpoint. 40 megapixels is above what cameras and phones
# take by default (12-24 MP) and decodes to 120 MB of RGB in the model container; a larger image is a
# scan, a panorama or a decompression bomb: it is quarantined from its header, before any decoding.
MAX_IMAGE_PIXELS = 40_000_000


class Quarantined(Exception):
    """An input image that cannot be used; the reason goes to quarantine.jsonl."""


class ImageProperties(NamedTuple):
    """What the image header says."""

    format: str  # JPEG or PNG
    width: int
    height: int


def _open_header(data: bytes) -> Any:
    """Open an image, reading its header only (a ``PIL.Image.Image``).

    JPEG and PNG are opened with their own Pillow reader rather than ``Image.open``: ``Image.open``
    applies Pillow's decompression-bomb check (a warning from 89 MP, an error from 179 MP) before
    :data:`MAX_IMAGE_PIXELS`, which is lower, could refuse the image with a clear reason.
    """
    from PIL import Image  # about 40 ms: never at DAG parse

    Image.preinit()  # registers the JPEG and PNG readers (once)
    stream = io.BytesIO(data)
    for image_format in CONTENT_TYPES:
        reader, accepts = Image.OPEN[image_format]  # the JPEG reader also reads MPO
        if accepts is not None and accepts(data[:16]) is True:
            return reader(stream, "")
    return Image.open(stream)  # any other format, only to name it


def image_properties(data: bytes) -> ImageProperties:
    """The format and size read from the image header with Pillow.

    :raises Quarantined: when the image is not JPEG/PNG, is larger than :data:`MAX_IMAGE_PIXELS`
        or is not decodable.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with _open_header(data) as image:
            image_format, (width, height) = image.format or "", image.size
            if image_format == "MPO":  # phone/camera photos: a JPEG with more pictures appended
                image_format = "JPEG"
            if image_format not in CONTENT_TYPES:
                raise Quarantined(f"unsupported image format {image_format}: only JPEG and PNG are accepted")
            if width * height > MAX_IMAGE_PIXELS:
                raise Quarantined(
                    f"image is {width}x{height} pixels ({width * height / 1e6:.1f} MP); "
                    f"at most {MAX_IMAGE_PIXELS / 1e6:g} MP are sent to the endpoint"
                )
            if image_format == "JPEG":
                # verify() does not read JPEG data: decode it at 1/8 scale (cheap) to catch truncation
                image.draft(None, (max(width // 8, 1), max(height // 8, 1)))
                image.load()
            else:
                image.verify()
    except UnidentifiedImageError as err:  # its message holds a memory address: keep reasons stable
        raise Quarantined("not a decodable image: not in a format Pillow can identify") from err
    # IndexError, struct.error: what a reader raises on a malformed header (Image.open hides them)
    except (OSError, SyntaxError, ValueError, IndexError, struct.error, Image.DecompressionBombError) as err:
        raise Quarantined(f"not a decodable image: {err}") from err
    return ImageProperties(image_format, width, height)


def read_bounded(body: Any, limit: int) -> bytes | None:
    """The whole stream if it holds at most ``limit`` bytes, else ``None``; reads at most ``limit + 1``.

    :param body: a readable stream (botocore's ``StreamingBody``); it is closed, so what is left
        of a larger object is never downloaded.
    """
    try:
        data = body.read(limit + 1)
    finally:
        body.close()
    return data if len(data) <= limit else None


def _too_large() -> str:
    return f"InvokeEndpoint accepts at most 6 MB ({MAX_PAYLOAD_BYTES} bytes)"


def check_listed_size(size: int) -> None:
    """Quarantine an object from its listed size: one over 6 MB is never downloaded."""
    if size > MAX_PAYLOAD_BYTES:
        raise Quarantined(f"object is {size} bytes; {_too_large()}")


def read_image(s3_client: Any, bucket: str, key: str) -> tuple[bytes, ImageProperties]:
    """The image's bytes (at most 6 MB: it may have grown since it was listed) and properties.

    :raises Quarantined: when it is too large or not a usable image.
    """
    data = read_bounded(s3_client.get_object(Bucket=bucket, Key=key)["Body"], MAX_PAYLOAD_BYTES)
    if data is None:
        raise Quarantined(f"object is over {MAX_PAYLOAD_BYTES} bytes; {_too_large()}")
    return data, image_properties(data)
