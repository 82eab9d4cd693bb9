"""Tesseract, kept loaded: tesserocr in-process when it imports, the tesseract command through pytesseract
otherwise. Both return the same shape, and both read any image within tesseract's limits (see
:func:`within_limits`): a page longer than tesseract accepts is read in strips, a tiny crop is enlarged, an
image too small to hold a glyph is refused, and an empty page is a page with no words.

pytesseract starts a process and reloads the language model for every image (about 250 ms for a small
screenshot here); tesserocr keeps one loaded engine per thread and language (about 25 ms for the same image).
"""

from __future__ import annotations

import math
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from stepper.errors import InvalidRequest

#: Where Debian, Ubuntu and source builds put traineddata files.
TESSDATA_DIRS = (
    "/usr/share/tesseract-ocr/5/tessdata",
    "/usr/share/tesseract-ocr/4.00/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
)

#: Tesseract refuses a page with a side over MAX_INT16 (32767) pixels: ``TessBaseAPI::FindLines`` in
#: src/api/baseapi.cpp prints "Image too large: (w, h)" and fails (tesserocr then has no result iterator,
#: the tesseract command exits 1).
TESSERACT_MAX_SIDE_PX = 32767
#: A page taller than the limit is read in strips this tall that overlap by more than a line of text; each
#: word is kept from the one strip whose middle part (all but half the overlap at each inner edge) holds its
#: centre, so a line cut by one strip's edge is read whole in the next and never twice. Strips keep every
#: glyph at its own size, where downscaling a 600x40000 page to fit would shrink its text by a fifth or more.
#: A page wider than the limit is downscaled to fit instead: strips side by side would cut every line.
STRIP_HEIGHT_PX = 8192
STRIP_OVERLAP_PX = 512
#: Fewer pixels than this on a side cannot hold a legible glyph: such an image is refused.
MIN_SIDE_PX = 6
#: A crop whose shorter side is below this is enlarged (at most UPSCALE_MAX_FACTOR times) so its text reaches
#: the 20-30 px that tesseract's models read best, and given a margin of its background colour: glyphs
#: that touch the edge are missed.
UPSCALE_BELOW_PX = 48
UPSCALE_MAX_FACTOR = 8
MARGIN_PX = 10
#: Block numbers of strip ``i`` start at ``i * STRIP_BLOCKS``: strips never share a line or a paragraph.
STRIP_BLOCKS = 1_000_000


@dataclass(frozen=True)
class OcrWord:
    text: str
    confidence: float
    box: tuple[int, int, int, int]
    line: tuple[int, int, int]  # block, paragraph, line: where the word sits in the page


@dataclass(frozen=True)
class OcrPage:
    text: str
    confidence: float
    words: list[OcrWord]


class OcrEngine(Protocol):
    name: str

    def recognise(self, pixels: Any, lang: str, psm: int | None, oem: int | None) -> OcrPage: ...


@cache
def tessdata_dir() -> Path | None:
    candidates = [os.environ.get("TESSDATA_PREFIX", ""), *TESSDATA_DIRS]
    return next((Path(c) for c in candidates if c and any(Path(c).glob("*.traineddata"))), None)


def installed_languages() -> set[str]:
    """Tesseract's codes (``eng``, ``deu``, ``chi_sim``) of the traineddata files in :func:`tessdata_dir`."""
    directory = tessdata_dir()
    return {path.stem for path in directory.glob("*.traineddata")} if directory else set()


def language_package(code: str) -> str:
    """The Debian package holding a tesseract language: ``chi_sim`` is ``tesseract-ocr-chi-sim``."""
    return f"tesseract-ocr-{code.lower().replace('_', '-')}"


def check_languages(lang: str) -> None:
    """Raise InvalidRequest naming each language of ``lang`` (``eng+deu``) that is not installed, its Debian
    package, and the languages that are installed."""
    installed = installed_languages()
    missing = list(dict.fromkeys(code for code in lang.split("+") if code not in installed))
    if missing:
        packages = " ".join(language_package(code) for code in missing)
        raise InvalidRequest(
            f"tesseract language(s) {', '.join(missing)} not installed on this worker "
            f"(installed: {', '.join(sorted(installed)) or 'none'}); "
            f"use an installed one, or install the Debian package(s) {packages} "
            "(make and the image take them from OCR_LANGUAGES)"
        )


class TesserocrEngine:
    name = "tesserocr"

    def __init__(self) -> None:
        self._local = threading.local()

    def recognise(self, pixels: Any, lang: str, psm: int | None, oem: int | None) -> OcrPage:
        return within_limits(lambda part: self._read(part, lang, psm, oem), pixels)

    def _read(self, pixels: Any, lang: str, psm: int | None, oem: int | None) -> OcrPage:
        import tesserocr
        from PIL import Image

        api = self._api(lang, 3 if psm is None else psm, 3 if oem is None else oem)
        api.SetImage(Image.fromarray(pixels))
        if not api.Recognize():
            api.Clear()
            height, width = pixels.shape[:2]
            raise RuntimeError(f"tesseract could not recognise the {width}x{height} page")
        words = []
        iterator = api.GetIterator()
        if iterator is None:  # recognised, and nothing there
            api.Clear()
            return page_from_words([])
        level = tesserocr.RIL.WORD
        block = paragraph = line = 0
        for word in tesserocr.iterate_level(iterator, level):
            if word.IsAtBeginningOf(tesserocr.RIL.BLOCK):
                block, paragraph, line = block + 1, 0, 0
            if word.IsAtBeginningOf(tesserocr.RIL.PARA):
                paragraph, line = paragraph + 1, 0
            if word.IsAtBeginningOf(tesserocr.RIL.TEXTLINE):
                line += 1
            if word.Empty(level):  # a page without words still yields one empty element
                continue
            text = word.GetUTF8Text(level)
            box = word.BoundingBox(level)
            if text and text.strip() and box:
                x1, y1, x2, y2 = box
                words.append(
                    OcrWord(
                        text.strip(),
                        round(word.Confidence(level), 2),
                        (x1, y1, x2 - x1, y2 - y1),
                        (block, paragraph, line),
                    )
                )
        api.Clear()
        return page_from_words(words)

    def _api(self, lang: str, psm: int, oem: int) -> Any:
        import tesserocr

        apis: dict[tuple[str, int, int], Any] = self._local.__dict__.setdefault("apis", {})
        key = (lang, psm, oem)
        if key not in apis:
            apis[key] = tesserocr.PyTessBaseAPI(path=str(tessdata_dir()), lang=lang, psm=psm, oem=oem)
        return apis[key]


class PytesseractEngine:
    name = "pytesseract"

    def recognise(self, pixels: Any, lang: str, psm: int | None, oem: int | None) -> OcrPage:
        return within_limits(lambda part: self._read(part, lang, psm, oem), pixels)

    def _read(self, pixels: Any, lang: str, psm: int | None, oem: int | None) -> OcrPage:
        import pytesseract

        config = " ".join(
            part
            for part in (f"--psm {psm}" if psm is not None else "", f"--oem {oem}" if oem is not None else "")
            if part
        )
        data = pytesseract.image_to_data(pixels, lang=lang, config=config, output_type=pytesseract.Output.DICT)
        words = [
            OcrWord(
                text.strip(),
                round(float(conf), 2),
                (int(data["left"][i]), int(data["top"][i]), int(data["width"][i]), int(data["height"][i])),
                (int(data["block_num"][i]), int(data["par_num"][i]), int(data["line_num"][i])),
            )
            for i, (text, conf) in enumerate(zip(data["text"], data["conf"], strict=True))
            if text.strip() and float(conf) >= 0
        ]
        return page_from_words(words)


def page_from_words(words: list[OcrWord]) -> OcrPage:
    """Page text from words: a space within a line, a newline between lines, a blank line between paragraphs."""
    parts: list[str] = []
    previous: tuple[int, int, int] | None = None
    for word in words:
        if previous is not None:
            if word.line[:2] != previous[:2]:
                parts.append("\n\n")
            elif word.line != previous:
                parts.append("\n")
            else:
                parts.append(" ")
        parts.append(word.text)
        previous = word.line
    confidence = sum(word.confidence for word in words) / len(words) if words else 0.0
    return OcrPage("".join(parts), round(confidence, 2), words)


def within_limits(read: Callable[[Any], OcrPage], pixels: Any) -> OcrPage:
    """``read`` (one tesseract call on a numpy page, ``(h, w)`` gray or ``(h, w, 3)`` RGB, uint8) applied so
    that any page within the pixel limit reads: too wide downscaled, too tall read in strips, tiny enlarged
    with a margin. Word boxes come back in ``pixels``' own coordinates.

    Raises InvalidRequest when a side is under MIN_SIDE_PX, naming the size and the limit.
    """
    import cv2

    height, width = pixels.shape[:2]
    if min(height, width) < MIN_SIDE_PX:
        raise InvalidRequest(
            f"the image is {width}x{height} pixels; reading text needs at least {MIN_SIDE_PX} pixels a side"
        )
    if width > TESSERACT_MAX_SIDE_PX:
        scale = TESSERACT_MAX_SIDE_PX / width
        smaller = cv2.resize(
            pixels, (TESSERACT_MAX_SIDE_PX, max(MIN_SIDE_PX, round(height * scale))), interpolation=cv2.INTER_AREA
        )
        return _mapped(within_limits(read, smaller), scale, 0, 0)
    if height > TESSERACT_MAX_SIDE_PX:
        return _in_strips(read, pixels)
    if min(height, width) < UPSCALE_BELOW_PX:
        factor = min(UPSCALE_MAX_FACTOR, math.ceil(UPSCALE_BELOW_PX / min(height, width)))
        larger = cv2.resize(pixels, None, fx=factor, fy=factor, interpolation=cv2.INTER_CUBIC)
        return _mapped(read(_with_margin(larger)), factor, MARGIN_PX, 0)
    return read(pixels)


def _in_strips(read: Callable[[Any], OcrPage], pixels: Any) -> OcrPage:
    """A tall page read strip by strip, top to bottom (see STRIP_HEIGHT_PX)."""
    height = pixels.shape[0]
    step = STRIP_HEIGHT_PX - STRIP_OVERLAP_PX
    words: list[OcrWord] = []
    for index, top in enumerate(range(0, height - STRIP_OVERLAP_PX, step)):
        bottom = min(top + STRIP_HEIGHT_PX, height)
        own_top = top + STRIP_OVERLAP_PX // 2 if top > 0 else 0
        own_bottom = bottom - STRIP_OVERLAP_PX // 2 if bottom < height else height
        strip = _mapped(read(pixels[top:bottom]), 1.0, 0, top)
        words += [
            replace(word, line=(word.line[0] + index * STRIP_BLOCKS, *word.line[1:]))
            for word in strip.words
            if own_top <= word.box[1] + word.box[3] / 2 < own_bottom
        ]
    return page_from_words(words)


def _with_margin(pixels: Any) -> Any:
    """MARGIN_PX more on every side, in the median colour of the image's edge (its background, usually)."""
    import cv2
    import numpy as np

    edge = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    colour = np.median(edge, axis=0)
    value = [float(colour)] * 3 if pixels.ndim == 2 else [float(c) for c in colour]
    return cv2.copyMakeBorder(pixels, MARGIN_PX, MARGIN_PX, MARGIN_PX, MARGIN_PX, cv2.BORDER_CONSTANT, value=value)


def _mapped(page: OcrPage, scale: float, margin_px: int, top_px: int) -> OcrPage:
    """The page's boxes from a copy (``scale`` times larger, with ``margin_px`` around it, cut ``top_px`` down
    the original) back to the original's coordinates."""
    if scale == 1.0 and margin_px == 0 and top_px == 0:
        return page
    words = []
    for word in page.words:
        x, y, w, h = word.box
        box = (
            max(0, round((x - margin_px) / scale)),
            max(0, round((y - margin_px) / scale)) + top_px,
            max(1, round(w / scale)),
            max(1, round(h / scale)),
        )
        words.append(replace(word, box=box))
    return OcrPage(page.text, page.confidence, words)


@cache
def best_engine() -> OcrEngine | None:
    """tesserocr when it imports and finds traineddata, else pytesseract when the command exists, else None."""
    try:
        import tesserocr  # noqa: F401
    except ImportError:
        pass
    else:
        if tessdata_dir() is not None:
            return TesserocrEngine()
    if shutil.which("tesseract"):
        return PytesseractEngine()
    return None
