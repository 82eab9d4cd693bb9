"""An engine's exception on one input is that input's failure (UnprocessableInput), never the provider's."""

from __future__ import annotations

import base64
from typing import Any

import cv2
import numpy as np
import pytest

from stepper.errors import InvalidRequest, UnprocessableInput
from stepper.guards.breaker import is_not_provider_failure
from stepper.providers import tesseract
from stepper.providers.engines.failures import input_specific
from stepper.providers.engines.ocr import OcrPage
from stepper.providers.tesseract import TesseractProvider
from stepper.schemas import OcrRequest
from stepper.settings import ProviderSettings


def test_an_engine_exception_becomes_unprocessable_input_naming_the_engine() -> None:
    expected = r"^OpenCV failed on this input \(error: bad step\)$"
    with pytest.raises(UnprocessableInput, match=expected) as raised, input_specific("OpenCV"):
        raise cv2.error("bad step\nsecond line of a C++ backtrace")
    assert is_not_provider_failure(raised.value)


@pytest.mark.parametrize("error", [InvalidRequest("images.0: not an image"), OSError(28, "No space left on device")])
def test_stepper_errors_and_the_machine_s_own_pass_unchanged(error: Exception) -> None:
    with pytest.raises(type(error)) as raised, input_specific("OpenCV"):
        raise error
    assert raised.value is error


class ExplodingEngine:
    name = "tesserocr"

    def recognise(self, pixels: Any, lang: str, psm: int | None, oem: int | None) -> OcrPage:
        raise RuntimeError("Failed to init API, possibly an invalid tessdata path")


def test_tesseract_raising_on_an_image_fails_that_request_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tesseract, "best_engine", ExplodingEngine)
    monkeypatch.setattr(tesseract, "check_languages", lambda lang: None)
    ok, png = cv2.imencode(".png", np.full((40, 120, 3), 255, dtype=np.uint8))
    assert ok
    request = OcrRequest.model_validate({"images": [{"b64": base64.b64encode(png.tobytes()).decode()}]})
    provider = TesseractProvider(ProviderSettings.model_validate({"name": "tesseract", "class": "x.y:Z"}))
    with pytest.raises(UnprocessableInput, match=r"tesseract \(tesserocr\) failed on this input \(RuntimeError"):
        provider.read(request, "tesseract")
