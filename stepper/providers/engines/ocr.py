"""Tesseract, kept loaded: tesserocr in-process when it imports, the tesseract command through pytesseract
otherwise. Both return the same shape.

pytesseract starts a process and reloads the language model for every image (about 250 ms for a small
screenshot here); tesserocr keeps one loaded engine per thread and language (about 25 ms for the same image).
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
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
        import tesserocr
        from PIL import Image

        api = self._api(lang, 3 if psm is None else psm, 3 if oem is None else oem)
        api.SetImage(Image.fromarray(pixels))
        api.Recognize()
        words = []
        iterator = api.GetIterator()
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
