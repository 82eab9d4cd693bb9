"""Turning a request's ``image`` into checked bytes, and checked bytes into pixels.

Every failure is an ``InvalidRequest`` saying what was wrong and what the limit is. Order matters: bytes are
counted while they arrive, the header is read for the format and the pixel count before anything is
decoded (a small PNG can declare a billion pixels), and only then does Pillow decode it.

Decoding gives what a person sees (:func:`visible_pixels`): phone photos turned upright by their EXIF
orientation, transparency composited onto a background (a dark-text PNG on a transparent background decoded
by OpenCV alone turns black on black), 16-bit, CMYK, palette and 1-bit images brought to 8-bit BGR or gray.
HEIC (iPhone photos) decodes when pillow-heif is installed (``pip install stepper-fleet[heic]``); otherwise
it is refused with a message saying to convert it.
"""

from __future__ import annotations

import base64
import io
import os
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
from PIL import Image as PILImage
from PIL import ImageOps, UnidentifiedImageError

from stepper.errors import InvalidRequest, Timeout, Unavailable
from stepper.infra.net import BlockedAddress, parse_networks, process_session
from stepper.schemas import Image
from stepper.settings import ImageSettings

if TYPE_CHECKING:
    import numpy as np

#: Formats Pillow sizes from the header alone and decodes (GIF and TIFF: the first frame or page).
FORMATS = {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"}
#: ISO base media ``ftyp`` brands of HEIF/HEIC images (iPhone photos), at bytes 8-12.
HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
CHUNK = 64 * 1024
#: Alpha-weighted mean luminance (0-255) above which visible content counts as light, and transparency is
#: composited onto black instead of white.
LIGHT_CONTENT_ABOVE = 127.5
#: ...measured on a copy at most this many pixels a side.
LUMINANCE_SAMPLE_PX = 512


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
    heif = is_heif(data)
    if heif and not heif_available():
        raise InvalidRequest(
            "HEIC/HEIF images are not supported on this worker (pillow-heif is not installed); convert the image "
            "to PNG or JPEG, or install stepper-fleet[heic] on the worker"
        )
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
    if info.format not in FORMATS and not (heif and info.format == "HEIF"):
        raise InvalidRequest(f"{info.format} images are not supported; use {', '.join(sorted(FORMATS))}")
    if info.width * info.height > settings.max_pixels:
        raise InvalidRequest(
            f"the image is {info.width}x{info.height} = {info.width * info.height:,} pixels; the limit is "
            f"{settings.max_pixels:,}"
        )
    return info


def decode_image(data: bytes, settings: ImageSettings, grayscale: bool = False) -> np.ndarray[Any, Any]:
    """Checked bytes to what a person sees, as an OpenCV array: ``(height, width, 3)`` uint8 BGR, or
    ``(height, width)`` uint8 gray. The header is checked (format, pixel limit) before anything is decoded;
    the first frame of a GIF or page of a TIFF is taken. Raises InvalidRequest for a damaged image."""
    info = inspect_image(data, settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)  # our limit was checked above
        try:
            with PILImage.open(io.BytesIO(data)) as image:
                image.seek(0)
                return visible_pixels(image, grayscale)
        except (OSError, ValueError, SyntaxError, EOFError):
            # Pillow's decoders report truncated or corrupt data as OSError (or ValueError/SyntaxError in some
            # plugins), after the header already passed.
            raise InvalidRequest(f"the {info.format} image is damaged and cannot be decoded") from None


def visible_pixels(image: PILImage.Image, grayscale: bool = False) -> np.ndarray[Any, Any]:
    """One Pillow image (a frame or a page) as a person sees it, as an OpenCV array (BGR ``(h, w, 3)`` or gray
    ``(h, w)``, uint8): the EXIF orientation applied, any mode brought to 8 bits, transparency composited.

    Transparency rule: transparent pixels show the background a viewer would draw, white, unless the visible
    content is itself light (alpha-weighted mean luminance of the content above 127.5 of 255, e.g. white text on
    a transparent PNG), when it is composited onto black so it stays readable. Reused for document pages.
    Raises OSError/ValueError from Pillow when the pixel data is damaged.
    """
    import numpy as np

    try:
        upright = ImageOps.exif_transpose(image) or image
    except (SyntaxError, ValueError, TypeError, KeyError):  # EXIF Pillow cannot parse: shown as stored
        upright = image
    rgb = _composited(_eight_bit(upright))
    if grayscale:
        gray: np.ndarray[Any, Any] = np.asarray(rgb.convert("L"))
        return gray
    bgr: np.ndarray[Any, Any] = np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])
    return bgr


def _eight_bit(image: PILImage.Image) -> PILImage.Image:
    """Modes with more than 8 bits a channel (``I;16*``, ``I``, ``F``: 16-bit PNG and TIFF) scaled to ``L``.

    Pillow's own ``convert("L")`` clips such values at 255 instead of scaling them: a 16-bit scan turns white.
    Integer values are taken as 16-bit (their high byte kept); floats as 0-1, or 0-255 when larger.
    """
    import numpy as np

    if image.mode.startswith("I;16") or image.mode == "I":
        values = np.asarray(image)
        return PILImage.fromarray((np.clip(values, 0, 65535) >> 8).astype(np.uint8))
    if image.mode == "F":
        floats = np.asarray(image, dtype=np.float32)
        peak = 1.0 if floats.size and float(floats.max()) <= 1.0 else 255.0
        return PILImage.fromarray(np.clip(floats * (255.0 / peak), 0, 255).round().astype(np.uint8))
    return image


def _composited(image: PILImage.Image) -> PILImage.Image:
    """RGB, with any transparency (an alpha band, or a palette's or a colour's ``transparency``) composited
    onto the background the module's rule picks (see :func:`visible_pixels`)."""
    import numpy as np

    has_alpha = image.mode in {"RGBA", "LA", "PA", "RGBa", "La"} or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")  # 1, L, P, CMYK (Pillow undoes Adobe's inverted CMYK), YCbCr, LAB...
    rgba = image.convert("RGBA")
    lowest_alpha, _ = rgba.getchannel("A").getextrema()
    if lowest_alpha == 255:
        return rgba.convert("RGB")
    # The rule's mean is measured on a small copy: Pillow resizes RGBA premultiplied, so the copy keeps the
    # alpha-weighted sums (up to rounding) without a full-size float array of a 40-megapixel image.
    sample = rgba.copy()
    sample.thumbnail((LUMINANCE_SAMPLE_PX, LUMINANCE_SAMPLE_PX), PILImage.Resampling.BOX)
    alpha = np.asarray(sample.getchannel("A"), dtype=np.float64)
    luminance = np.asarray(sample.convert("RGB").convert("L"), dtype=np.float64)
    weight = float(alpha.sum())
    light_content = weight > 0 and float((luminance * alpha).sum()) / weight > LIGHT_CONTENT_ABOVE
    background = PILImage.new("RGBA", rgba.size, (0, 0, 0, 255) if light_content else (255, 255, 255, 255))
    return PILImage.alpha_composite(background, rgba).convert("RGB")


def is_heif(data: bytes) -> bool:
    """Whether the bytes start like a HEIF/HEIC file: an ISO base media ``ftyp`` box with a HEIF brand."""
    return data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS


@cache
def heif_available() -> bool:
    """Registers pillow-heif's opener with Pillow once, when it is installed; False when it is not."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


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
