"""Turning a request's ``image`` into checked bytes, and checked bytes into pixels.

Every failure is an ``InvalidRequest`` saying what was wrong and what the limit is. Order matters: bytes are
counted while they arrive, the header is read for the format and the pixel count before anything is
decoded (a small PNG can declare a billion pixels), and only then does OpenCV decode it.
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from stepper.errors import InvalidRequest, Timeout, Unavailable
from stepper.infra.net import BlockedAddress, parse_networks, process_session
from stepper.schemas import Image
from stepper.settings import ImageSettings

if TYPE_CHECKING:
    import numpy as np

#: Formats OpenCV decodes and Pillow can size from the header alone.
FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"}
CHUNK = 64 * 1024


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def read_image(image: Image, settings: ImageSettings, field: str) -> np.ndarray[Any, Any]:
    """Load and decode the image the request names at ``field`` (``frames.3``): an error says which image."""
    try:
        return decode_image(load_image(image, settings), settings)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{field}: {exc}") from None


def load_image(image: Image, settings: ImageSettings) -> bytes:
    """The image's bytes, from whichever source it names, within the byte limit."""
    if image.b64 is not None:
        data = base64.b64decode(image.b64)
        _check_size(len(data), settings, "inline image")
        return data
    if image.path is not None:
        return _read_path(image.path, settings)
    assert image.url is not None  # the model guarantees exactly one source
    return _fetch(image.url, settings)


def inspect_image(data: bytes, settings: ImageSettings) -> ImageInfo:
    """Format and size from the header, refusing non-images and decompression bombs before decoding."""
    try:
        with warnings.catch_warnings():
            # Opening reads only the header; the pixel limit is ours (below), not Pillow's global one.
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as header:
                info = ImageInfo(header.format or "unknown", header.width, header.height)
    except PILImage.DecompressionBombError:
        raise InvalidRequest(f"the image declares too many pixels (limit {settings.max_pixels:,})") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InvalidRequest(
            f"the data is not an image ({len(data)} bytes; use {', '.join(sorted(FORMATS))})"
        ) from None
    if info.format not in FORMATS:
        raise InvalidRequest(f"{info.format} images are not supported; use {', '.join(sorted(FORMATS))}")
    if info.width * info.height > settings.max_pixels:
        raise InvalidRequest(
            f"the image is {info.width}x{info.height} = {info.width * info.height:,} pixels; the limit is "
            f"{settings.max_pixels:,}"
        )
    return info


def decode_image(data: bytes, settings: ImageSettings, grayscale: bool = False) -> np.ndarray[Any, Any]:
    """Checked bytes to an OpenCV array (BGR, or grayscale)."""
    import cv2
    import numpy as np

    info = inspect_image(data, settings)
    flag = cv2.IMREAD_GRAYSCALE if grayscale else cv2.IMREAD_COLOR
    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flag)
    if pixels is None:
        raise InvalidRequest(f"the {info.format} image is damaged and cannot be decoded")
    result: np.ndarray[Any, Any] = pixels
    return result


def _check_size(size: int, settings: ImageSettings, what: str) -> None:
    if size > settings.max_bytes:
        raise InvalidRequest(f"the {what} is {size:,} bytes; the limit is {settings.max_bytes:,}")


def _read_path(raw: str, settings: ImageSettings) -> bytes:
    if not settings.roots:
        raise InvalidRequest(
            "image paths are not accepted here (no stepper_images['roots'] configured); send b64 or url"
        )
    resolved = Path(os.path.realpath(raw))  # follows every symlink, so an escape is caught below
    roots = [Path(os.path.realpath(root)) for root in settings.roots]
    if not any(resolved.is_relative_to(root) for root in roots):
        raise InvalidRequest(f"image path {raw!r} is outside the allowed roots ({', '.join(map(str, roots))})")
    try:
        size = resolved.stat().st_size
        _check_size(size, settings, f"image file {raw!r}")
        return resolved.read_bytes()
    except FileNotFoundError:
        raise InvalidRequest(f"image path {raw!r} does not exist") from None
    except IsADirectoryError:
        raise InvalidRequest(f"image path {raw!r} is a directory") from None
    except PermissionError:
        raise InvalidRequest(f"image path {raw!r} cannot be read by the worker") from None


def _fetch(url: str, settings: ImageSettings) -> bytes:
    session = process_session(parse_networks(settings.allowed_networks))
    for _hop in range(settings.max_redirects + 1):
        if urlsplit(url).scheme not in {"http", "https"}:
            raise InvalidRequest(f"image URLs must be http or https, not {url.split(':', 1)[0]!r}")
        try:
            response = session.get(url, stream=True, timeout=settings.fetch_timeout_s, allow_redirects=False)
        except BlockedAddress as exc:
            raise InvalidRequest(
                f"{exc} (an operator can allow networks with stepper_images['allowed_networks'])"
            ) from None
        except requests.exceptions.Timeout:
            raise Timeout(f"the image URL did not answer within {settings.fetch_timeout_s:g}s") from None
        except requests.exceptions.RequestException as exc:
            raise Unavailable(f"the image URL could not be fetched ({type(exc).__name__})") from None
        with response:
            if response.is_redirect:
                url = urljoin(url, response.headers["Location"])
                continue
            if response.status_code != 200:
                raise InvalidRequest(f"the image URL answered {response.status_code}, not an image")
            declared = int(response.headers.get("Content-Length") or 0)
            _check_size(declared, settings, "image at the URL")
            data = bytearray()
            for chunk in response.iter_content(CHUNK):
                data += chunk
                _check_size(len(data), settings, "image at the URL (so far)")
            return bytes(data)
    raise InvalidRequest(f"the image URL redirected more than {settings.max_redirects} times")
