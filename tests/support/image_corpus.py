"""Images of a known phrase in every mode and format a user sends, generated with Pillow (no binary fixtures).

Each ``Sample`` is encoded bytes plus what a reader should find in them. The phrase is drawn black on white
(or as the mode allows: light on transparent for the light-content rule) with DejaVu Sans when installed
(Debian ``fonts-dejavu-core``), else Pillow's built-in font at the same size.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PHRASE = "INVOICE 2024"
FONT_PATH = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
#: Glyph size of the phrase: about 26 px capitals, comfortably what tesseract reads.
FONT_PX = 36
#: EXIF tag 0x0112: 6 means "rotate 90 degrees clockwise to display".
ORIENTATION_TAG = 0x0112


@dataclass(frozen=True)
class Sample:
    name: str
    data: bytes
    #: Words OCR must find, in order.
    expected: tuple[str, ...] = (PHRASE,)
    #: Size of the upright image, width x height, as a person sees it.
    size: tuple[int, int] = field(default=(0, 0))


@cache
def font(size_px: int = FONT_PX) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if FONT_PATH.exists():
        return ImageFont.truetype(str(FONT_PATH), size_px)
    return ImageFont.load_default(size_px)


def page(width: int = 400, height: int = 100, text: str = PHRASE) -> Image.Image:
    """``text`` drawn black on white, mode L, at (20, 30)."""
    image = Image.new("L", (width, height), 255)
    ImageDraw.Draw(image).text((20, 30), text, font=font(), fill=0)
    return image


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def transparent_png(ink: tuple[int, int, int] = (0, 0, 0), fmt: str = "PNG") -> bytes:
    """RGBA, background (0, 0, 0, 0): the phrase lives in the alpha band only, as design tools export it."""
    alpha = Image.eval(page(), lambda value: 255 - value)  # glyphs opaque, antialiased edges partly
    rgba = Image.new("RGBA", alpha.size, (*ink, 0))
    rgba.putalpha(alpha)
    return encode(rgba, fmt, **({"lossless": True} if fmt == "WEBP" else {}))


def light_on_transparent_png() -> bytes:
    """White text on a transparent background: readable only when composited onto black."""
    return transparent_png(ink=(255, 255, 255))


def exif_rotated_jpeg() -> bytes:
    """Pixels stored rotated 90 degrees counter-clockwise with Orientation 6, as a phone held upright saves them."""
    stored = page().convert("RGB").transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


def png_16_bit() -> bytes:
    """Mode I;16, values 0-65535: scaled to 8 bits, not clipped (clipping turns the paper and the ink white)."""
    values = np.asarray(page(), dtype=np.uint16) * 257
    return encode(Image.fromarray(values), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(page().convert("RGB").convert("CMYK"), "JPEG", quality=95)


def palette_png_with_transparency() -> bytes:
    """Mode P: a gray palette with index 255 (white paper) transparent, its colour black: antialiased ink on
    transparent paper, which reads as white paper only when composited."""
    paletted = page().convert("P")  # index = gray level, ink and antialiased edges kept
    paletted.putpalette([value for gray in range(255) for value in (gray, gray, gray)] + [0, 0, 0])
    return encode(paletted, "PNG", transparency=255)


def la_png() -> bytes:
    """Mode LA: gray ink, alpha carrying the glyphs, the gray band black everywhere."""
    la = Image.merge("LA", (Image.new("L", page().size, 0), Image.eval(page(), lambda value: 255 - value)))
    return encode(la, "PNG")


def one_bit_png() -> bytes:
    return encode(page().point(lambda value: 255 if value >= 128 else 0).convert("1"), "PNG")


def tall_page(height: int = 40_000) -> Sample:
    """600 px wide and taller than tesseract's 32767 px limit, a phrase at the top and another at the bottom."""
    image = Image.new("L", (600, height), 255)
    draw = ImageDraw.Draw(image)
    draw.text((20, 30), PHRASE, font=font(), fill=0)
    draw.text((20, height - 80), "TOTAL 99", font=font(), fill=0)
    return Sample("tall PNG", encode(image, "PNG"), (PHRASE, "TOTAL 99"), image.size)


def tiny_crop() -> Sample:
    """A 60x12 crop cut tight around one word (capitals 9 px high, touching the edges): tesseract alone reads
    nothing in it."""
    image = Image.new("L", (60, 12), 255)
    ImageDraw.Draw(image).text((1, -1), "TOTAL", font=font(12), fill=0)
    return Sample("tiny crop", encode(image, "PNG"), ("TOTAL",), image.size)


def heic() -> bytes | None:
    """A HEIC of the phrase when pillow-heif is installed to write one, else None."""
    try:
        import pillow_heif
    except ImportError:
        return None
    pillow_heif.register_heif_opener()
    return encode(page().convert("RGB"), "HEIF", quality=95)


def heic_header() -> bytes:
    """The first bytes of an iPhone photo: enough to be recognised as HEIC whatever is installed."""
    return b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64


SIZE = page().size

#: Every mode and format, each reading PHRASE: (name, bytes maker).
PHRASE_SAMPLES: dict[str, Callable[[], bytes]] = {
    "PNG L": lambda: encode(page(), "PNG"),
    "PNG RGB": lambda: encode(page().convert("RGB"), "PNG"),
    "PNG RGBA transparent background": transparent_png,
    "PNG RGBA light text, transparent background": light_on_transparent_png,
    "PNG LA": la_png,
    "PNG P with transparency": palette_png_with_transparency,
    "PNG 1-bit": one_bit_png,
    "PNG 16-bit": png_16_bit,
    "JPEG": lambda: encode(page().convert("RGB"), "JPEG", quality=95),
    "JPEG CMYK": cmyk_jpeg,
    "JPEG EXIF-rotated": exif_rotated_jpeg,
    "WebP lossless": lambda: encode(page().convert("RGBA"), "WEBP", lossless=True),
    "WebP lossless RGBA transparent background": lambda: transparent_png(fmt="WEBP"),
    "BMP": lambda: encode(page().convert("RGB"), "BMP"),
    "GIF": lambda: encode(page().convert("P"), "GIF"),
    "TIFF": lambda: encode(page(), "TIFF"),
    "TIFF 16-bit": lambda: encode(Image.fromarray(np.asarray(page(), dtype=np.uint16) * 257), "TIFF"),
}


def phrase_samples() -> list[Sample]:
    return [Sample(name, make(), (PHRASE,), SIZE) for name, make in PHRASE_SAMPLES.items()]
