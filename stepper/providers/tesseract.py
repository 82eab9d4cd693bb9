"""OCR with tesseract: many images per task, optional preprocessing, words with boxes and confidences. A PDF
or TIFF among the images gives one page per page read; a PDF page's text layer is used as it is, unless the
request says ``text_layer: "ignore"``."""

from __future__ import annotations

from contextlib import closing
from dataclasses import replace
from typing import Any, ClassVar

from stepper.config import current_settings
from stepper.contracts import Provider, Reply
from stepper.errors import InvalidRequest
from stepper.providers.engines.failures import input_specific
from stepper.providers.engines.ocr import OcrEngine, OcrPage, best_engine, check_languages, installed_languages
from stepper.providers.media.documents import DocumentPage, PageOptions, count_pages, document_kind, read_pages
from stepper.providers.media.images import load_image
from stepper.providers.media.scans import box_on_original, prepare
from stepper.schemas import Image, Kind, OcrOutput, OcrRequest
from stepper.schemas.ocr import Preprocessing
from stepper.settings import OcrSettings, ProviderSettings

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

    @classmethod
    def details(cls, settings: ProviderSettings) -> dict[str, Any]:
        """``{"languages": [code, ...]}``: what ``lang`` accepts here, alone or ``+``-combined (tessdata's
        ``*.traineddata``; ``OCR_LANGUAGES`` in the Makefile and the image installs more)."""
        return {"languages": sorted(installed_languages())}

    def read(self, request: OcrRequest, model: str) -> Reply[OcrOutput]:
        """Every entry's pages in order. The entries are all loaded and their pages counted first, so that a
        request over stepper_documents max_request_pages is refused before any page is read (their bytes
        are held together meanwhile: inline ones are in the request anyway)."""
        engine = best_engine()
        assert engine is not None  # unavailable_reason keeps the chain from calling us otherwise
        check_languages(request.lang)
        settings = current_settings()
        options = PageOptions(request.dpi or settings.documents.default_dpi, request.pages, request.text_layer)
        loaded = [self._loaded(index, image, options) for index, image in enumerate(request.images)]
        total = sum(count for _, count in loaded)
        if total > settings.documents.max_request_pages:
            raise InvalidRequest(
                f"the request's {len(loaded)} images entries hold {total} pages to read; the limit is "
                f"{settings.documents.max_request_pages} a request (stepper_documents max_request_pages): send "
                "the documents in several requests, or select fewer with pages"
            )
        pages: list[dict[str, Any]] = []
        for index, (data, _) in enumerate(loaded):
            try:
                is_document = document_kind(data) is not None
                # closing: a page that fails closes its document now, not when the generator is collected.
                with closing(read_pages(data, options, settings.documents, settings.images)) as document:
                    for page in document:
                        where = f", page {page.number}" if is_document else ""
                        pages.append({**self._read_page(page, request, engine, where), "image": index})
            except InvalidRequest as exc:
                raise InvalidRequest(f"images.{index}: {exc}") from None
        from_text_layer = sum(page["source"] == "text_layer" for page in pages)
        usage = {"images": len(request.images), "pages": len(pages), "text_layer_pages": from_text_layer}
        return Reply(OcrOutput.model_validate({"pages": pages}), usage)

    @staticmethod
    def _loaded(index: int, image: Image, options: PageOptions) -> tuple[bytes, int]:
        """Entry ``index``'s bytes and how many pages it gives; an InvalidRequest names the entry."""
        settings = current_settings()
        try:
            data = load_image(image, settings.images)
            return data, count_pages(data, options, settings.documents, settings.images)
        except InvalidRequest as exc:
            raise InvalidRequest(f"images.{index}: {exc}") from None

    @staticmethod
    def _read_page(page: DocumentPage, request: OcrRequest, engine: OcrEngine, where: str) -> dict[str, Any]:
        """One output page (without its ``image`` index): the text layer as it is, or tesseract's reading of
        the page prepared as stepper_ocr says (boxes mapped back onto the page as sent); a failure of
        tesseract names ``where`` (", page 3" in a document)."""
        if page.text is not None:
            read = page.text
        else:
            assert page.pixels is not None  # an "ocr" page always has pixels
            with input_specific(f"tesseract ({engine.name}{where})"):
                read = read_prepared(page.pixels, request, engine, current_settings().ocr)
        return {
            "text": read.text,
            "confidence": read.confidence,
            "words": [{"text": w.text, "confidence": w.confidence, "box": list(w.box)} for w in read.words],
            "page": page.number,
            "source": page.source,
            "dpi": page.dpi,
            "note": page.note,
        }


def read_prepared(pixels: Any, request: OcrRequest, engine: OcrEngine, settings: OcrSettings) -> OcrPage:
    """``engine``'s reading of one page (BGR or gray numpy pixels) prepared as ``settings`` (stepper_ocr) and
    the request's ``preprocess`` say, its word boxes on ``pixels`` as given."""
    height, width = pixels.shape[:2]
    prepared = prepare(pixels, settings)
    ready, scale = preprocess(prepared.pixels, request.preprocess)
    to_prepared = prepared.to_prepared * scale
    read = engine.recognise(ready, request.lang, request.psm, request.oem)
    return replace(
        read, words=[replace(w, box=box_on_original(w.box, to_prepared, (width, height))) for w in read.words]
    )


def preprocess(pixels: Any, steps: list[Preprocessing]) -> tuple[Any, float]:
    """Apply the request's steps to BGR or gray pixels; returns RGB or gray pixels and the scale applied."""
    import cv2

    scale = 1.0
    if pixels.ndim == 3:
        gray = "grayscale" in steps or "binarize" in steps
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY if gray else cv2.COLOR_BGR2RGB)
    if "upscale" in steps and min(pixels.shape[:2]) < UPSCALE_BELOW_PX:
        scale = float(UPSCALE_FACTOR)
        pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    if "binarize" in steps:
        _, pixels = cv2.threshold(pixels, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return pixels, scale
