"""scripts/system-deps.sh: which Debian packages a set of tesseract languages becomes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "system-deps.sh"


def wanted(languages: str, *packages: str) -> list[str]:
    environment = {**os.environ, "OCR_LANGUAGES": languages}
    done = subprocess.run(
        [str(SCRIPT), "--list", *packages], env=environment, capture_output=True, text=True, check=True
    )
    return done.stdout.split()


def test_each_language_becomes_its_tesseract_package() -> None:
    assert wanted("eng deu fra ita spa por", "tesseract-ocr") == [
        "tesseract-ocr",
        *(f"tesseract-ocr-{code}" for code in ("eng", "deu", "fra", "ita", "spa", "por")),
    ]


def test_codes_with_a_script_are_spelled_as_debian_names_them() -> None:
    assert wanted("chi_sim deu_latf") == ["tesseract-ocr-chi-sim", "tesseract-ocr-deu-latf"]


def test_no_languages_adds_no_package() -> None:
    assert wanted("", "espeak-ng") == ["espeak-ng"]
