"""OCR with tesseract: many images per task, optional preprocessing, words with boxes and confidences."""

from __future__ import annotations

from typing import Any, ClassVar

from stepper.config import current_settings
from stepper.contracts import Provider, Reply
from stepper.providers.engines.failures import input_specific
from stepper.providers.engines.ocr import best_engine, check_languages
from stepper.providers.media.images import read_image
from stepper.schemas import Kind, OcrOutput, OcrRequest
from stepper.schemas.ocr import Preprocessing
from stepper.settings import ProviderSettings

#: Images whose shorter side is below this many pixels are enlarged when ``upscale`` is asked for:
#: tesseract reads glyphs best at 20-30 pixels of height.
UPSCALE_BELOW_PX = 800
UPSCALE_FACTOR = 2


class TesseractProvider(Provider):
    kinds: ClassVar[frozenset[Kind]] = frozenset({"ocr"})

    @classmethod
    def unavailable_reason(cls, settings: ProviderSettings) -> str | None:
        if best_engine() is None:
            return "tesseract is not installed (Debian: apt-get install tesseract-ocr)"
        return super().unavailable_reason(settings)

    def read(self, request: OcrRequest, model: str) -> Reply[OcrOutput]:
        engine = best_engine()
        assert engine is not None  # unavailable_reason keeps the chain from calling us otherwise
        check_languages(request.lang)
        images = current_settings().images
        pages = []
        for number, image in enumerate(request.images):
            pixels = read_image(image, images, f"images.{number}")
            with input_specific(f"tesseract ({engine.name})"):
                pixels, scale = preprocess(pixels, request.preprocess)
                page = engine.recognise(pixels, request.lang, request.psm, request.oem)
            pages.append(
                {
                    "text": page.text,
                    "confidence": page.confidence,
                    "words": [
                        {"text": w.text, "confidence": w.confidence, "box": [round(v / scale) for v in w.box]}
                        for w in page.words
                    ],
                }
            )
        return Reply(OcrOutput(pages=pages), {"images": len(pages)})


def preprocess(pixels: Any, steps: list[Preprocessing]) -> tuple[Any, float]:
    """Apply the requested steps; returns RGB or grayscale pixels and the scale applied (to map boxes back)."""
    import cv2

    scale = 1.0
    if "grayscale" in steps or "binarize" in steps:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
    else:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if "upscale" in steps and min(pixels.shape[:2]) < UPSCALE_BELOW_PX:
        scale = float(UPSCALE_FACTOR)
        pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    if "binarize" in steps:
        _, pixels = cv2.threshold(pixels, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return pixels, scale
