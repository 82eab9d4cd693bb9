"""The OCR engine's language check: a language this worker lacks is the caller's to change, named with its package."""

from __future__ import annotations

import pytest

from stepper.errors import InvalidRequest
from stepper.providers.engines.ocr import check_languages, installed_languages
from tests.support.binaries import require_binary


def test_a_missing_language_is_refused_naming_its_debian_package() -> None:
    require_binary("tesseract", "tesseract-ocr")
    assert "eng" in installed_languages()
    check_languages("eng")
    with pytest.raises(InvalidRequest) as raised:
        check_languages("eng+zzz+chi_sim")
    message = str(raised.value)
    assert "zzz, chi_sim not installed" in message
    assert "tesseract-ocr-zzz tesseract-ocr-chi-sim" in message
    assert "eng" in message.split("installed: ", 1)[1]
