"""Documents into pages: PDF text layers and renderings, TIFF pages, page selection, and every limit checked
before a page is made. PDFium's and Pillow's own exceptions never get out."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from stepper.config import parse_stepper_settings
from stepper.errors import ConfigError, InvalidRequest
from stepper.providers.media.documents import DocumentPage, PageOptions, count_pages, document_kind, read_pages
from stepper.schemas import OcrRequest
from stepper.schemas.ocr import parse_pages, select_pages
from stepper.settings import DocumentSettings, ImageSettings
from tests.support.documents import encrypted_pdf, form_pdf, image_pdf, phrase_image, rotated_pdf, text_pdf, tiff

DOCUMENTS = DocumentSettings()
IMAGES = ImageSettings()
LETTER_PT = (612, 792)  # a US Letter page, in points


def pages_of(
    data: bytes, documents: DocumentSettings = DOCUMENTS, images: ImageSettings = IMAGES, **options: Any
) -> list[DocumentPage]:
    return list(read_pages(data, PageOptions(**{"dpi": 300, **options}), documents, images))


def test_documents_are_told_from_images_by_their_first_bytes() -> None:
    png = io.BytesIO()
    phrase_image("x").save(png, "PNG")
    assert document_kind(text_pdf([["a"]])) == "pdf"
    assert document_kind(tiff(["a"])) == "tiff"
    assert document_kind(b"MM\0*" + bytes(8)) == "tiff"
    assert document_kind(png.getvalue()) is None


def test_a_text_layer_is_taken_as_it_is_with_word_boxes_in_pixels_at_the_dpi() -> None:
    first, second = pages_of(text_pdf([["Hello from page one"], ["Second page", "two lines"]]), dpi=144)
    assert (first.number, first.source, first.dpi, first.pixels) == (1, "text_layer", 144, None)
    assert first.text is not None and first.text.text == "Hello from page one"
    assert [word.text for word in first.text.words] == ["Hello", "from", "page", "one"]
    x, y, width, height = first.text.words[0].box
    # "Hello" starts an inch from the left, its top 75 points below the page's: 2 px a point at 144 dpi; at
    # 24 points it is about 52 points wide and its capitals about 17 high.
    assert 140 <= x <= 152 and 140 <= y <= 160 and 95 < width < 115 and 25 < height < 45
    assert second.text is not None and second.text.text == "Second page\ntwo lines"
    assert [word.line for word in second.text.words] == [(1, 1, 1), (1, 1, 1), (1, 1, 2), (1, 1, 2)]


def test_ignoring_the_text_layer_renders_every_page_at_the_dpi() -> None:
    (page,) = pages_of(text_pdf([["Hello"]]), dpi=100, text_layer="ignore")
    assert page.source == "ocr" and page.text is None and page.pixels is not None
    assert page.pixels.shape == (math.ceil(792 * 100 / 72), math.ceil(612 * 100 / 72), 3)


def test_a_page_without_a_text_layer_is_rendered() -> None:
    pages = pages_of(image_pdf(["one", "two"]), dpi=72)
    assert [(page.number, page.source, page.dpi) for page in pages] == [(1, "ocr", 72), (2, "ocr", 72)]


def test_pages_are_selected_in_document_order_each_once() -> None:
    data = text_pdf([[f"page {n}"] for n in range(1, 7)])
    pages = pages_of(data, pages="5-,2,1-2")
    assert [page.number for page in pages] == [1, 2, 5, 6]
    assert [page.text.text for page in pages if page.text] == ["page 1", "page 2", "page 5", "page 6"]
    with pytest.raises(InvalidRequest, match="asks for page 7 of a 6-page document"):
        pages_of(data, pages="2,7")


def test_a_document_over_the_page_limit_is_refused_before_any_page_is_read() -> None:
    data = text_pdf([["a"], ["b"], ["c"]])
    limited = DocumentSettings(max_pages=2)
    with pytest.raises(InvalidRequest, match=r"the PDF has 3 pages; the limit is 2 \(stepper_documents max_pages\)"):
        next(read_pages(data, PageOptions(300), limited, IMAGES))
    assert [page.number for page in pages_of(data, limited, pages="2-")] == [2, 3]  # only the selection counts
    with pytest.raises(InvalidRequest, match="pages '1-3' selects 3 of its 3 pages; the limit is 2"):
        pages_of(data, limited, pages="1-3")
    with pytest.raises(InvalidRequest, match="the TIFF has 3 pages; the limit is 2"):
        pages_of(tiff(["a", "b", "c"]), limited)


def test_form_fields_are_drawn_where_pdfium_alone_draws_nothing() -> None:
    import pypdfium2 as pdfium

    data = form_pdf("Margaret Hamilton")
    bare = pdfium.PdfDocument(data)  # without init_forms, as a plain render
    try:
        assert not (bare[0].render(scale=1).to_numpy()[:, :, :3] < 128).any()
    finally:
        bare.close()
    (page,) = pages_of(data, dpi=100)
    assert page.source == "ocr" and page.pixels is not None
    rows = np.flatnonzero((page.pixels < 128).any(axis=(1, 2)))
    # The field's box is 600 to 660 points up a 792-point page: 183 to 267 px down at 100 dpi.
    assert rows.size and rows.min() >= 183 and rows.max() <= 267


def test_a_text_layer_page_with_filled_fields_is_rendered_and_says_why() -> None:
    (page,) = pages_of(form_pdf("Margaret Hamilton", label="Applicant name"), dpi=100)
    assert page.source == "ocr" and page.pixels is not None
    assert page.note == "rendered and read: its 1 filled form field(s) are not in its text layer"
    (empty,) = pages_of(form_pdf("", label="Applicant name"), dpi=100)
    assert empty.source == "text_layer" and empty.text is not None and empty.text.text == "Applicant name"


def test_a_page_with_rotate_is_rendered_as_shown() -> None:
    (page,) = pages_of(rotated_pdf("a", 90), dpi=72)
    stored = phrase_image("a")  # stored turned, shown upright: the rendering is as wide as the phrase image
    assert page.pixels is not None
    height, width = page.pixels.shape[:2]
    assert width > height and width / height == pytest.approx(stored.width / stored.height, rel=0.02)


def test_pages_are_counted_before_reading_as_read_pages_gives_them() -> None:
    options = PageOptions(dpi=100, pages="2-")
    for data in (image_pdf(["a", "b", "c"]), tiff(["a", "b", "c"])):
        assert (
            count_pages(data, options, DOCUMENTS, IMAGES)
            == 2
            == len(list(read_pages(data, options, DOCUMENTS, IMAGES)))
        )
    png = io.BytesIO()
    phrase_image("x").save(png, "PNG")
    assert count_pages(png.getvalue(), options, DOCUMENTS, IMAGES) == 1
    with pytest.raises(InvalidRequest, match="the PDF has 3 pages; the limit is 2"):
        count_pages(image_pdf(["a", "b", "c"]), PageOptions(dpi=100), DocumentSettings(max_pages=2), IMAGES)


def test_a_dpi_over_the_limit_is_refused() -> None:
    with pytest.raises(InvalidRequest, match=r"dpi 700 is over the limit of 600 \(stepper_documents max_dpi\)"):
        pages_of(text_pdf([["a"]]), dpi=700)


def test_a_page_too_large_at_the_dpi_is_rendered_lower_and_says_so() -> None:
    at_150_dpi = 1400 * 260  # the image PDF's page: 1400x260 pixels at 150 dpi
    (page,) = pages_of(image_pdf(["big"]), images=ImageSettings(max_pixels=at_150_dpi + 2000), dpi=300)
    assert page.dpi == 150
    assert page.pixels is not None and page.pixels.shape == (261, 1400, 3)  # 260.000001 rows, rounded up
    assert page.note == (
        "rendered at 150 dpi instead of 300: page 1 (9.3x1.7 in) at 300 dpi would be 2800x521 = 1,458,800 "
        "pixels; the limit is 366,000 (stepper_images max_pixels)"
    )


def test_a_page_that_fits_only_below_min_dpi_is_refused_saying_why() -> None:
    tiny = ImageSettings(max_pixels=round(612 * 50 / 72) * round(792 * 50 / 72))  # fits at 50 dpi, min is 100
    with pytest.raises(InvalidRequest, match=r"page 1 \(8.5x11.0 in\) at 300 dpi would be 2550x3300") as raised:
        pages_of(text_pdf([["a"]]), images=tiny, text_layer="ignore")
    assert "below stepper_documents min_dpi (100): the page is refused" in str(raised.value)
    assert pages_of(text_pdf([["a"]]), images=tiny)[0].source == "text_layer"  # nothing rendered: no limit


def test_a_password_protected_pdf_is_refused_saying_so() -> None:
    with pytest.raises(InvalidRequest, match=r"^the PDF is password-protected; send it decrypted$"):
        pages_of(encrypted_pdf(["Locked words"], "secret"))


@pytest.mark.parametrize("keep", [0.5, 0.2, 0.05])
def test_a_truncated_pdf_is_refused_as_damaged(keep: float) -> None:
    data = text_pdf([["Hello"], ["World"]])
    with pytest.raises(InvalidRequest, match="the PDF is damaged and cannot be opened"):
        pages_of(data[: int(len(data) * keep)])


@pytest.mark.parametrize(
    "data",
    [b"%PDF-1.7\n" + bytes(range(256)) * 4, b"II*\0" + bytes(64), b"MM\0*\0\0\0\x08" + b"\xff" * 40],
    ids=["pdf header then noise", "tiff header then zeros", "tiff with a broken directory"],
)
def test_noise_behind_a_document_header_is_an_invalid_request(data: bytes) -> None:
    with pytest.raises(InvalidRequest, match="damaged"):
        pages_of(data)


def test_a_tiff_gives_each_page_in_order_whatever_its_mode() -> None:
    pages = pages_of(tiff(["one", "two", "three"], modes=("RGB", "L", "1")))
    assert [(page.number, page.source, page.dpi) for page in pages] == [
        (1, "ocr", None),
        (2, "ocr", None),
        (3, "ocr", None),
    ]
    assert all(page.pixels is not None and page.pixels.shape == (260, 1400, 3) for page in pages)
    assert [page.number for page in pages_of(tiff(["one", "two", "three"]), pages="3,1")] == [1, 3]


def test_a_tiff_page_over_the_pixel_limit_is_refused_naming_it() -> None:
    with pytest.raises(InvalidRequest, match="page 2 of the TIFF is 1400x260 = 364,000 pixels; the limit is 1,000"):
        pages_of(tiff(["one", "two"]), images=ImageSettings(max_pixels=1000), pages="2")


def test_an_image_is_one_page_whatever_the_selection() -> None:
    png = io.BytesIO()
    phrase_image("x").save(png, "PNG")
    (page,) = pages_of(png.getvalue(), pages="2-")
    assert (page.number, page.source, page.dpi) == (1, "ocr", None)


@pytest.mark.parametrize("spec", ["0", "3-1", "a", "1,,2", "-2", ""])
def test_a_bad_page_selection_is_refused_by_the_request(spec: str) -> None:
    with pytest.raises(ValidationError, match="pages"):
        OcrRequest.model_validate({"images": [{"b64": "AAAA"}], "pages": spec})


@given(
    st.lists(st.tuples(st.integers(1, 30), st.one_of(st.none(), st.integers(0, 10))), min_size=1, max_size=5),
    st.integers(1, 40),
)
def test_a_selection_is_the_union_of_its_ranges(ranges: list[tuple[int, int | None]], count: int) -> None:
    spec = ",".join(str(start) if length is None else f"{start}-{start + length}" for start, length in ranges)
    spec += ",1-" if count % 2 else ""
    parsed = parse_pages(spec)
    try:
        chosen = select_pages(spec, count)
    except ValueError:
        assert any(start > count or (end is not None and end > count) for start, end in parsed)
        return
    expected = {n for start, end in parsed for n in range(start, (count if end is None else end) + 1)}
    assert chosen == sorted(expected)


def test_document_limits_are_settings_checked_at_start_up() -> None:
    settings = parse_stepper_settings({"stepper_documents": {"max_pages": 9, "max_dpi": 400}})
    assert (settings.documents.max_pages, settings.documents.max_dpi, settings.documents.default_dpi) == (9, 400, 300)
    with pytest.raises(ConfigError, match=r"min_dpi \(100\) <= default_dpi \(300\) <= max_dpi \(200\)"):
        parse_stepper_settings({"stepper_documents": {"max_dpi": 200}})
