"""Every language `make` installs by default reads its own letters, with the real tesseract (skipped without
it, or without a language, locally; failed in CI, where `make` installs them)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFont

from stepper.errors import InvalidRequest
from stepper.providers.engines.ocr import best_engine, check_languages, installed_languages, language_package
from tests.support.binaries import require_binary

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
#: The Makefile's OCR_LANGUAGES default, each with a line and a word in it that English alone misreads
#: (eng gives "Straf&e", "gargon", "cosi", "nino", "aGao"), so the right language must have been used.
PAGES = {
    "eng": ("thoroughly", "She thoroughly enjoyed the weather."),
    "deu": ("Straße", "Die Straße ist schön und groß."),
    "fra": ("garçon", "Le garçon a mangé à côté."),
    "ita": ("così", "Non so perché è così."),
    "spa": ("niño", "El niño come piña mañana."),
    "por": ("ação", "A ação da nação começou."),
}


def page(text: str) -> NDArray[np.uint8]:
    """``text`` in black DejaVu Sans, 40 px, on a white page: RGB pixels, height x width x 3."""
    if not FONT.exists():
        pytest.skip(f"{FONT} is missing (Debian package fonts-dejavu-core)")
    font = ImageFont.truetype(str(FONT), 40)
    image = Image.new("RGB", (60 + round(font.getlength(text)), 120), "white")
    ImageDraw.Draw(image).text((30, 30), text, fill="black", font=font)
    return np.asarray(image)


def require_language(code: str) -> None:
    require_binary("tesseract", "tesseract-ocr")
    if code not in installed_languages():
        message = f"tesseract has no {code!r} ({language_package(code)}; `make test` installs it)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message)
        pytest.skip(message)


def read(text: str, lang: str) -> set[str]:
    """The words tesseract reads on a page of ``text`` with ``lang``, without punctuation around them."""
    check_languages(lang)
    engine = best_engine()
    assert engine is not None
    return {word.strip(".,;:!?") for word in engine.recognise(page(text), lang, None, None).text.split()}


@pytest.mark.parametrize("code", list(PAGES))
def test_each_default_language_reads_its_own_word(code: str) -> None:
    require_language(code)
    word, line = PAGES[code]
    assert word in read(line, code)


def test_a_combination_reads_both_languages() -> None:
    require_language("eng")
    require_language("deu")
    text = read("The street is called Straße in German.", "eng+deu")
    assert {"Straße", "street"} <= text


def test_a_made_up_language_is_refused_naming_its_package() -> None:
    require_binary("tesseract", "tesseract-ocr")
    with pytest.raises(InvalidRequest) as raised:
        check_languages("eng+xyz")
    message = str(raised.value)
    assert "xyz not installed" in message and "tesseract-ocr-xyz" in message
    assert "eng" in message.split("installed: ", 1)[1]
    assert "eng," not in message.split(" not installed", maxsplit=1)[0]  # only the missing part is blamed


def test_a_real_language_not_installed_is_refused_naming_its_package() -> None:
    require_binary("tesseract", "tesseract-ocr")
    code = next(code for code in ("nld", "jpn", "chi_sim", "ukr", "swe") if code not in installed_languages())
    with pytest.raises(InvalidRequest, match=f"install the Debian package\\(s\\) {language_package(code)} "):
        check_languages(f"deu+{code}+{code}" if "deu" in installed_languages() else code)
