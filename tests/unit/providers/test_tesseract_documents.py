"""OCR of documents with the real tesseract: a PDF's text layer comes back as it is, an image PDF's and a
TIFF's pages are read, one output page per page, each saying where it came from."""

from __future__ import annotations

import base64
import io
from typing import Any

import pypdfium2 as pdfium
import pytest

from stepper.config import current_settings
from stepper.errors import InvalidRequest, UnprocessableInput
from stepper.providers import tesseract
from stepper.providers.engines.ocr import OcrPage
from stepper.providers.tesseract import TesseractProvider
from stepper.schemas import OcrOutput, OcrRequest
from stepper.settings import DocumentSettings, ProviderSettings
from tests.support.binaries import require_binary
from tests.support.documents import encrypted_pdf, form_pdf, image_pdf, phrase_image, rotated_pdf, text_pdf, tiff

PHRASES = ["Quiet harbour lights", "Seven amber kites", "Lemon orchard path"]


@pytest.fixture(autouse=True)
def _tesseract() -> None:
    require_binary("tesseract", "tesseract-ocr")


def entry(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def read(*documents: bytes, **options: Any) -> tuple[OcrOutput, dict[str, int]]:
    provider = TesseractProvider(ProviderSettings.model_validate({"name": "tesseract", "class": "x.y:Z"}))
    request = OcrRequest.model_validate({"images": [entry(data) for data in documents], **options})
    reply = provider.read(request, "tesseract")
    return reply.output, reply.usage


def test_a_text_layer_pdf_comes_back_as_its_own_text() -> None:
    output, usage = read(text_pdf([["Hello from page one"], ["Second page", "two lines"]]))
    assert [(p.image, p.page, p.source, p.dpi, p.confidence) for p in output.pages] == [
        (0, 1, "text_layer", 300, 100.0),
        (0, 2, "text_layer", 300, 100.0),
    ]
    assert [page.text for page in output.pages] == ["Hello from page one", "Second page\ntwo lines"]
    assert usage == {"images": 1, "pages": 2, "text_layer_pages": 2}


def test_ignoring_the_text_layer_reads_the_rendered_page() -> None:
    output, usage = read(text_pdf([["Hello from page one"]]), text_layer="ignore", dpi=200)
    (page,) = output.pages
    assert (page.source, page.dpi) == ("ocr", 200)
    assert "Hello from page one" in page.text
    assert usage["text_layer_pages"] == 0


def test_an_image_pdf_is_rendered_and_read_page_by_page() -> None:
    output, _ = read(image_pdf(PHRASES))
    assert [(p.page, p.source, p.dpi) for p in output.pages] == [(1, "ocr", 300), (2, "ocr", 300), (3, "ocr", 300)]
    for phrase, page in zip(PHRASES, output.pages, strict=True):
        assert phrase in page.text
        assert page.words and all(word.box[2] > 0 for word in page.words)


def test_only_the_selected_pages_are_read() -> None:
    output, _ = read(image_pdf(PHRASES), pages="3,1")
    assert [page.page for page in output.pages] == [1, 3]
    assert PHRASES[0] in output.pages[0].text and PHRASES[2] in output.pages[1].text


def test_a_three_page_tiff_gives_three_pages_in_order() -> None:
    output, usage = read(tiff(PHRASES, modes=("RGB", "L", "1")))
    assert [(p.page, p.source, p.dpi) for p in output.pages] == [(1, "ocr", None), (2, "ocr", None), (3, "ocr", None)]
    for phrase, page in zip(PHRASES, output.pages, strict=True):
        assert phrase in page.text
    assert usage == {"images": 1, "pages": 3, "text_layer_pages": 0}


def test_images_and_documents_mix_and_each_page_names_its_entry() -> None:
    png = io.BytesIO()
    phrase_image(PHRASES[0]).save(png, "PNG")
    output, _ = read(png.getvalue(), text_pdf([["a"], ["b"]]), tiff(PHRASES[1:]))
    assert [(p.image, p.page, p.source) for p in output.pages] == [
        (0, 1, "ocr"),
        (1, 1, "text_layer"),
        (1, 2, "text_layer"),
        (2, 1, "ocr"),
        (2, 2, "ocr"),
    ]
    assert PHRASES[0] in output.pages[0].text


def test_a_document_over_the_page_limit_is_refused_naming_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = current_settings().model_copy(update={"documents": DocumentSettings(max_pages=2)})
    monkeypatch.setattr(tesseract, "current_settings", lambda: settings)
    with pytest.raises(InvalidRequest, match=r"^images\.1: the PDF has 3 pages; the limit is 2 \(stepper_documents"):
        read(text_pdf([["a"]]), image_pdf(PHRASES))
    output, _ = read(image_pdf(PHRASES), pages="2-3")
    assert [page.page for page in output.pages] == [2, 3]


class Counting:
    """An engine that counts the pages it is given and reads nothing."""

    name = "tesserocr"

    def __init__(self) -> None:
        self.calls = 0

    def recognise(self, pixels: Any, lang: str, psm: int | None, oem: int | None) -> OcrPage:
        self.calls += 1
        return OcrPage("", 0.0, [])


def test_a_request_over_the_total_page_limit_is_refused_before_any_page_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = current_settings().model_copy(update={"documents": DocumentSettings(max_request_pages=5)})
    monkeypatch.setattr(tesseract, "current_settings", lambda: settings)
    engine = Counting()
    monkeypatch.setattr(tesseract, "best_engine", lambda: engine)
    png = io.BytesIO()
    phrase_image(PHRASES[0]).save(png, "PNG")
    expected = (
        r"^the request's 3 images entries hold 7 pages to read; the limit is 5 a request "
        r"\(stepper_documents max_request_pages\): send the documents in several requests, or select fewer"
    )
    with pytest.raises(InvalidRequest, match=expected):
        read(png.getvalue(), image_pdf(PHRASES), tiff(PHRASES))
    assert engine.calls == 0
    output, _ = read(png.getvalue(), image_pdf(PHRASES), tiff(PHRASES), pages="1,3")  # 1 + 2 + 2 pages
    assert len(output.pages) == 5 and engine.calls == 5


def test_a_page_with_rotate_is_read_as_shown_upright() -> None:
    for rotate in (90, 270):
        (page,) = read(rotated_pdf(PHRASES[1], rotate))[0].pages
        assert page.source == "ocr" and PHRASES[1] in page.text


def test_a_filled_form_field_is_drawn_and_read() -> None:
    (page,) = read(form_pdf("Margaret Hamilton"))[0].pages
    assert page.source == "ocr"  # a field's value is no text layer
    assert "Margaret Hamilton" in page.text


def test_a_page_whose_text_layer_lacks_its_filled_fields_reads_both() -> None:
    (page,) = read(form_pdf("Margaret Hamilton", label="Applicant name"))[0].pages
    assert page.source == "ocr" and page.note is not None
    assert "Applicant name" in page.text and "Margaret Hamilton" in page.text


def test_a_password_protected_pdf_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match=r"^images\.0: the PDF is password-protected; send it decrypted$"):
        read(encrypted_pdf(["Locked words"], "secret"))


def test_a_truncated_pdf_is_an_invalid_request() -> None:
    data = image_pdf(PHRASES[:1])
    with pytest.raises(
        InvalidRequest, match=r"^images\.0: the PDF is damaged and cannot be opened \(PDFium: Data format error\)$"
    ):
        read(data[: len(data) // 3])


def test_pdfium_failing_on_a_page_fails_that_input_naming_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise pdfium.PdfiumError("Failed to render")

    monkeypatch.setattr(pdfium.PdfPage, "render", fail)
    expected = r"^PDFium \(page 1\) failed on this input \(PdfiumError: Failed to render\)$"
    with pytest.raises(UnprocessableInput, match=expected):
        read(image_pdf(PHRASES[:1]))


class FailingOnSecondPage:
    """tesseract failing on the second page it is given, reading nothing from the first."""

    name = "tesserocr"

    def __init__(self) -> None:
        self.calls = 0

    def recognise(self, pixels: Any, lang: str, psm: int | None, oem: int | None) -> OcrPage:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("Failed to recognise")
        return OcrPage("", 0.0, [])


def test_tesseract_failing_on_a_page_names_the_page_and_closes_the_document(monkeypatch: pytest.MonkeyPatch) -> None:
    engine = FailingOnSecondPage()
    monkeypatch.setattr(tesseract, "best_engine", lambda: engine)
    closed: list[int] = []
    close = pdfium.PdfDocument.close

    def counted_close(self: pdfium.PdfDocument) -> None:
        closed.append(1)
        close(self)

    monkeypatch.setattr(pdfium.PdfDocument, "close", counted_close)
    try:
        read(image_pdf(PHRASES))
    except UnprocessableInput as exc:
        assert str(exc).startswith("tesseract (tesserocr, page 2) failed on this input (RuntimeError")
        assert exc.__traceback__ is not None and closed  # at once, not when the traceback's frames go
    else:
        pytest.fail("the failing page did not fail the request")
    assert engine.calls == 2  # the third page was never rendered
