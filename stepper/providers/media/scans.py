"""Making a scanned page easier for tesseract to read: straighten it, enlarge small glyphs, binarise it.

Each step is a pure function on OpenCV arrays (``(h, w)`` gray or ``(h, w, 3)``, uint8); :func:`prepare`
runs the ones stepper_ocr turns on (see :class:`stepper.settings.OcrSettings` for what each was measured to
do) and returns the affine transform it applied, so word boxes found on the prepared page map back to the
page as sent (:func:`box_on_original`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stepper.providers.engines.ocr import TESSERACT_MAX_SIDE_PX, UPSCALE_BELOW_PX
from stepper.settings import OcrSettings

if TYPE_CHECKING:
    import numpy as np

#: The skew is searched on a copy at most this many pixels a side: a text line is still several pixels
#: tall there, and each trial rotation stays cheap.
SKEW_SAMPLE_PX = 1200
#: Coarse search step, then a fine one around the best coarse angle (degrees).
SKEW_COARSE_STEP_DEG = 0.5
SKEW_FINE_STEP_DEG = 0.05
#: Connected components counted as glyphs: at least this tall (dust is smaller)...
GLYPH_MIN_PX = 3
#: ...at most this fraction of the page's height (rules and photos are larger), and at most this many times
#: as wide as tall (underlines, merged words).
GLYPH_MAX_PAGE_FRACTION = 0.1
GLYPH_MAX_ASPECT = 3.0
#: A page is never enlarged more than this many times, whatever its glyphs measure, nor beyond tesseract's
#: side limit (a longer page would be read in strips or shrunk back).
GLYPH_MAX_FACTOR = 8.0
#: OpenCV's warpAffine asserts that both images' sides are below SHRT_MAX (32767): a page that would turn
#: into a larger one is left leaning (tesseract reads it in strips anyway, see engines.ocr.within_limits).
WARP_MAX_SIDE_PX = 32766
WHITE = 255


@dataclass(frozen=True)
class Prepared:
    """A page ready for tesseract and how it was made: ``to_prepared`` maps a point ``(x, y, 1)`` of the page
    as sent to the prepared page (a 2x3 affine matrix); ``skew_deg`` and ``scale`` say what was done."""

    pixels: np.ndarray[Any, Any]
    to_prepared: np.ndarray[Any, Any]
    skew_deg: float = 0.0
    scale: float = 1.0


def gray_of(pixels: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    import cv2

    return pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)


def skew_angle(gray: np.ndarray[Any, Any], max_deg: float) -> float:
    """The rotation (degrees, counter-clockwise positive, OpenCV's sense) within ``±max_deg`` that makes the
    text lines of ``gray`` horizontal: the angle at which the ink's row profile is sharpest (the sum of squared
    differences between neighbouring rows, the measure of Leptonica's ``pixFindSkew``). 0 for a page
    without ink."""
    import cv2
    import numpy as np

    factor = min(1.0, SKEW_SAMPLE_PX / max(gray.shape))
    small = cv2.resize(gray, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA) if factor < 1 else gray
    _, ink = cv2.threshold(small, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    ys, xs = np.nonzero(ink)
    if not len(ys):
        return 0.0
    ys, xs = ys.astype(np.float64), xs.astype(np.float64)

    def sharpness(angle: float) -> float:
        # The row each ink pixel lands on when the page turns by ``angle`` (cv2.getRotationMatrix2D's y').
        radians = math.radians(angle)
        rows = np.rint(ys * math.cos(radians) - xs * math.sin(radians)).astype(np.int64)
        counts = np.bincount(rows - rows.min()).astype(np.float64)
        return float(np.sum(np.diff(counts) ** 2))

    coarse = max(_steps(-max_deg, max_deg, SKEW_COARSE_STEP_DEG), key=sharpness)
    low, high = max(-max_deg, coarse - SKEW_COARSE_STEP_DEG), min(max_deg, coarse + SKEW_COARSE_STEP_DEG)
    fine: float = max(_steps(low, high, SKEW_FINE_STEP_DEG), key=sharpness)
    return round(fine, 2)


def _steps(low: float, high: float, step: float) -> list[float]:
    count = math.floor((high - low) / step + 1e-9)
    return [low + index * step for index in range(count + 1)]


def rotated(pixels: np.ndarray[Any, Any], angle_deg: float) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """``pixels`` turned by ``angle_deg`` (counter-clockwise) on a canvas large enough to keep every corner,
    the new corners white; with the 2x3 matrix that maps the original's points onto it."""
    import cv2

    height, width = pixels.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle_deg, 1.0)
    new_height, new_width = turned_size((height, width), angle_deg)
    matrix[0, 2] += new_width / 2 - width / 2
    matrix[1, 2] += new_height / 2 - height / 2
    fill = WHITE if pixels.ndim == 2 else (WHITE, WHITE, WHITE)
    turned = cv2.warpAffine(
        pixels,
        matrix,
        (new_width, new_height),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill,
    )
    return turned, matrix


def turned_size(shape: tuple[int, ...], angle_deg: float) -> tuple[int, int]:
    """``(height, width)`` of the canvas that holds a ``(height, width)`` page turned by ``angle_deg``."""
    height, width = shape[:2]
    cos, sin = abs(math.cos(math.radians(angle_deg))), abs(math.sin(math.radians(angle_deg)))
    return math.ceil(height * cos + width * sin), math.ceil(height * sin + width * cos)


def glyph_height_px(gray: np.ndarray[Any, Any]) -> float:
    """Median height of the page's glyphs (connected components of ink that look like characters), in
    pixels; 0 when there are none. At 300 dpi, 10-point text measures about 20."""
    import cv2
    import numpy as np

    _, ink = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    _, _, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    heights, widths = stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_WIDTH]
    glyphs = (
        (heights >= GLYPH_MIN_PX)
        & (heights < gray.shape[0] * GLYPH_MAX_PAGE_FRACTION)
        & (widths <= heights * GLYPH_MAX_ASPECT)
    )
    return float(np.median(heights[glyphs])) if glyphs.any() else 0.0


def binarised(gray: np.ndarray[Any, Any], block_px: int, offset: float) -> np.ndarray[Any, Any]:
    """Ink black, paper white, by comparing each pixel with the Gaussian-weighted mean of its ``block_px``
    neighbourhood less ``offset`` (OpenCV's adaptive threshold)."""
    import cv2

    result: np.ndarray[Any, Any] = cv2.adaptiveThreshold(
        gray, WHITE, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, block_px, offset
    )
    return result


def prepare(pixels: np.ndarray[Any, Any], settings: OcrSettings) -> Prepared:
    """The steps stepper_ocr turns on, in order: deskew, enlarge small glyphs, adaptive binarisation (which
    leaves the page gray). ``pixels`` stay colour unless binarised; an image under the engine's tiny-crop
    size (engines.ocr.UPSCALE_BELOW_PX a side) is left as it is."""
    import cv2
    import numpy as np

    transform = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    if min(pixels.shape[:2]) < UPSCALE_BELOW_PX:
        # A crop this small holds a word or two: the engine enlarges it itself (or refuses a speck), and a
        # lean measured on it means nothing.
        return Prepared(pixels, transform)
    skew = 0.0
    if settings.deskew:
        angle = skew_angle(gray_of(pixels), settings.max_skew_deg)
        if abs(angle) >= settings.min_skew_deg and max(turned_size(pixels.shape[:2], angle)) <= WARP_MAX_SIDE_PX:
            pixels, transform = rotated(pixels, angle)
            skew = angle
    scale = 1.0
    if settings.enlarge_glyphs_below_px > 0:
        glyphs = glyph_height_px(gray_of(pixels))
        if 0 < glyphs < settings.enlarge_glyphs_below_px:
            fitting = TESSERACT_MAX_SIDE_PX / max(pixels.shape[:2])
            scale = max(1.0, min(GLYPH_MAX_FACTOR, fitting, settings.glyph_target_px / glyphs))
            if scale > 1.0:
                pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
                transform = transform * scale
    if settings.adaptive_binarisation:
        pixels = binarised(gray_of(pixels), settings.binarisation_block_px, settings.binarisation_offset)
    return Prepared(pixels, transform, skew, scale)


def box_on_original(
    box: tuple[int, int, int, int], to_prepared: np.ndarray[Any, Any], size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A box ``(x, y, w, h)`` found on the prepared page as the box on the page as sent (width, height
    ``size``) that holds its four corners, clipped to the page."""
    import cv2
    import numpy as np

    x, y, w, h = box
    corners = np.array([[[x, y]], [[x + w, y]], [[x, y + h]], [[x + w, y + h]]], dtype=np.float64)
    back = cv2.transform(corners, cv2.invertAffineTransform(to_prepared))[:, 0, :]
    width, height = size
    left, top = max(0, math.floor(back[:, 0].min())), max(0, math.floor(back[:, 1].min()))
    right, bottom = min(width, math.ceil(back[:, 0].max())), min(height, math.ceil(back[:, 1].max()))
    return left, top, max(1, right - left), max(1, bottom - top)
