"""Pages made like scans in the tests, never stored: lines of text drawn with the corpus font, then tilted,
shrunk as a low-resolution scanner would, or shadowed as a phone photo is."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from tests.support.image_corpus import font

LINES = (
    "Quarterly invoice for harbour supplies",
    "Seven amber kites over the orchard",
    "Payment due within thirty days",
    "Thank you for your custom",
)
#: The one word drawn in red (the rest black), so that where it lands after a tilt can be measured.
MARKED = "amber"
LINE_PX = 60


def text_page(lines: tuple[str, ...] = LINES, size_px: int = 32) -> Image.Image:
    """The lines in black on white, RGB, about ``size_px`` tall glyphs, with ``MARKED`` in red."""
    glyphs = font(size_px)
    image = Image.new("RGB", (1300, 120 + LINE_PX * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for index, line in enumerate(lines):
        x, y = 60, 60 + LINE_PX * index
        for word in line.split():
            draw.text((x, y), word, font=glyphs, fill=(220, 0, 0) if word == MARKED else (0, 0, 0))
            x += round(draw.textlength(word + " ", font=glyphs))
    return image


def tilted(image: Image.Image, degrees: float) -> Image.Image:
    """``image`` turned ``degrees`` counter-clockwise on a larger white canvas, as a sheet fed askew."""
    return image.rotate(degrees, Image.Resampling.BICUBIC, expand=True, fillcolor="white")


def shrunk(image: Image.Image, factor: float) -> Image.Image:
    """``image`` at ``factor`` of its size (a 300 dpi page at 0.33 is a 100 dpi scan of it)."""
    return image.resize((round(image.width * factor), round(image.height * factor)), Image.Resampling.LANCZOS)


def shadowed(image: Image.Image) -> Image.Image:
    """``image`` in gray under light falling off from left (paper 250) to right (paper 90), as a photo of a
    page lit from one side: no single threshold separates ink from paper across it."""
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    light = np.linspace(250, 90, gray.shape[1])[np.newaxis, :] / 255
    return Image.fromarray((gray * light).clip(0, 255).astype(np.uint8))


def marked_box(image: Image.Image) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the red pixels: where ``MARKED`` is in ``image``."""
    pixels = np.asarray(image.convert("RGB")).astype(np.int16)
    red = (pixels[:, :, 0] > 150) & (pixels[:, :, 1] < 110) & (pixels[:, :, 2] < 110)
    ys, xs = np.nonzero(red)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)
