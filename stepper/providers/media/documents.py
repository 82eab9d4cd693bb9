"""Documents given to OCR: a PDF's pages (their text layer, or rendered by PDFium) and a TIFF's pages.

A PDF is rendered as a viewer shows it: upright as its ``/Rotate`` says, with its AcroForm fields drawn
(``init_forms``). A filled text field is no part of the page's text layer, so a page that has one is
rendered and read instead, and its note says why.

An ``images`` entry is a document when its first bytes say so (``%PDF-``; ``II*\\0`` or ``MM\\0*``); anything
else is an image and is decoded as one. The page count and the DPI are checked when a document is opened,
before any page is read, and each page's pixel count before it is rendered or decoded. PDFium's and Pillow's
own exceptions never leave this module: input they refuse is an InvalidRequest, a page PDFium fails on an
UnprocessableInput.
"""

from __future__ import annotations

import io
import math
import re
import threading
import warnings
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from stepper.errors import InvalidRequest
from stepper.providers.engines.failures import input_specific
from stepper.providers.engines.ocr import OcrPage, OcrWord
from stepper.providers.media.images import decode_image
from stepper.schemas.ocr import PageSource, TextLayer, select_pages
from stepper.settings import DocumentSettings, ImageSettings

if TYPE_CHECKING:
    import numpy as np
    import pypdfium2 as pdfium
    from PIL import Image as PILImage

PDF_MAGIC = b"%PDF-"
TIFF_MAGICS = (b"II*\0", b"MM\0*")
POINTS_PER_INCH = 72
#: PDFium's FPDF_ERR_PASSWORD: the document needs a password we do not have.
PDFIUM_PASSWORD_ERROR = 4
#: PDFium's FPDF_FORMFIELD_TEXTFIELD, _COMBOBOX and _LISTBOX: form fields whose value is text.
TEXT_FIELD_TYPES = frozenset({6, 4, 5})
#: Pillow's ways of saying that data is not what it claims (truncated, bad tags, a bad frame index).
PILLOW_FAILURES = (OSError, ValueError, SyntaxError, EOFError, IndexError)

#: PDFium is not thread-safe: with a threads pool, one call into it at a time per process.
_pdfium_lock = threading.Lock()


@dataclass(frozen=True)
class PageOptions:
    """How to read documents: ``dpi`` (dots per inch, PDF rendering and text-layer boxes), ``pages`` (a
    selection as in OcrRequest.pages, None for all) and whether to use a PDF page's text layer."""

    dpi: int
    pages: str | None = None
    text_layer: TextLayer = "use"


@dataclass(frozen=True)
class DocumentPage:
    """One page to read. ``source`` "ocr": ``pixels`` (BGR) for tesseract; "text_layer": ``text``, its word
    boxes in pixels at ``dpi``. ``dpi`` is None for images and TIFF pages (their own pixels)."""

    number: int
    source: PageSource
    pixels: np.ndarray[Any, Any] | None = None
    text: OcrPage | None = None
    dpi: int | None = None
    note: str | None = None


def document_kind(data: bytes) -> Literal["pdf", "tiff"] | None:
    """ "pdf" or "tiff" from the first bytes, None for anything else (an image)."""
    if data.startswith(PDF_MAGIC):
        return "pdf"
    if data.startswith(TIFF_MAGICS):
        return "tiff"
    return None


def read_pages(
    data: bytes, options: PageOptions, documents: DocumentSettings, images: ImageSettings
) -> Generator[DocumentPage, None, None]:
    """The pages of ``data`` in order, one at a time (a rendered page is dropped before the next is made): a
    PDF's or TIFF's selected pages, or an image as page 1. Raises InvalidRequest before the first page when the
    document is damaged, password-protected, or over stepper_documents max_pages / max_dpi."""
    kind = document_kind(data)
    if kind == "pdf":
        yield from _pdf_pages(data, options, documents, images)
    elif kind == "tiff":
        yield from _tiff_pages(data, options, documents, images)
    else:
        yield DocumentPage(1, "ocr", pixels=decode_image(data, images))


def count_pages(data: bytes, options: PageOptions, documents: DocumentSettings, images: ImageSettings) -> int:
    """How many pages :func:`read_pages` would give for ``data`` (an image: 1), read from the document's
    page count alone; raises what :func:`read_pages` raises before its first page for a document that is
    damaged, password-protected or over stepper_documents max_pages."""
    kind = document_kind(data)
    if kind == "pdf":
        document = _open_pdf(data)
        try:
            with _pdfium_lock, input_specific("PDFium"):
                count = len(document)
        finally:
            with _pdfium_lock:
                document.close()
        return len(_selected(options.pages, count, "PDF", documents))
    if kind == "tiff":
        with _open_tiff(data, images) as tiff:
            return len(_selected(options.pages, getattr(tiff, "n_frames", 1), "TIFF", documents))
    return 1


def _selected(spec: str | None, count: int, what: str, documents: DocumentSettings) -> list[int]:
    if count == 0:
        raise InvalidRequest(f"the {what} has no pages")
    try:
        numbers = select_pages(spec, count)
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None
    if len(numbers) > documents.max_pages:
        counted = f"pages {spec!r} selects {len(numbers)} of its {count}" if spec else f"has {count}"
        raise InvalidRequest(
            f"the {what} {counted} pages; the limit is {documents.max_pages} (stepper_documents max_pages): "
            f'select fewer with pages, e.g. "1-{documents.max_pages}"'
        )
    return numbers


def _pdf_pages(
    data: bytes, options: PageOptions, documents: DocumentSettings, images: ImageSettings
) -> Generator[DocumentPage, None, None]:
    if options.dpi > documents.max_dpi:
        raise InvalidRequest(f"dpi {options.dpi} is over the limit of {documents.max_dpi} (stepper_documents max_dpi)")
    document = _open_pdf(data)
    try:
        with _pdfium_lock, input_specific("PDFium"):
            count = len(document)
        for number in _selected(options.pages, count, "PDF", documents):
            with _pdfium_lock, input_specific(f"PDFium (page {number})"):
                page = document[number - 1]
                try:
                    result = _read_pdf_page(page, number, options, documents, images)
                finally:
                    page.close()
            yield result
    finally:
        with _pdfium_lock:
            document.close()


def _open_pdf(data: bytes) -> pdfium.PdfDocument:
    import pypdfium2 as pdfium

    with input_specific("PDFium"):
        try:
            with _pdfium_lock:
                document = pdfium.PdfDocument(data)
                with warnings.catch_warnings():
                    # PDFium warns when a document's XFA forms fail to load; its AcroForm fields still draw.
                    warnings.simplefilter("ignore", pdfium.PdfiumWarning)
                    document.init_forms()  # before any page is loaded, so that rendering draws form fields
                return document
        except pdfium.PdfiumError as exc:
            if exc.err_code == PDFIUM_PASSWORD_ERROR:
                raise InvalidRequest("the PDF is password-protected; send it decrypted") from None
            # PDFium says "Failed to load document (PDFium: Data format error)."; the cause is what matters.
            found = re.search(r"\(PDFium: ([^)]+)\)", str(exc))
            raise InvalidRequest(
                f"the PDF is damaged and cannot be opened (PDFium: {found[1] if found else str(exc).strip()})"
            ) from None


def _read_pdf_page(
    page: pdfium.PdfPage, number: int, options: PageOptions, documents: DocumentSettings, images: ImageSettings
) -> DocumentPage:
    fields_note = None
    if options.text_layer == "use":
        text = _text_layer(page, options.dpi)
        fields = _filled_fields(page)
        if text is not None and not fields:
            return DocumentPage(number, "text_layer", text=text, dpi=options.dpi)
        if text is not None:
            fields_note = f"rendered and read: its {fields} filled form field(s) are not in its text layer"
    dpi, note = _fitting_dpi(page.get_size(), options.dpi, number, documents, images)
    note = "; ".join(part for part in (fields_note, note) if part) or None
    bitmap = page.render(scale=dpi / POINTS_PER_INCH)
    try:
        pixels = bitmap.to_numpy()[:, :, :3].copy()  # BGR (PDFium's order); the copy outlives the bitmap
    finally:
        bitmap.close()
    return DocumentPage(number, "ocr", pixels=pixels, dpi=dpi, note=note)


def _filled_fields(page: pdfium.PdfPage) -> int:
    """How many of the page's form fields hold text (text fields, combo and list boxes with a value): their
    values are drawn when the page is rendered but are no part of its text layer."""
    import pypdfium2.raw as pdfium_c

    formenv = page.pdf.formenv
    if formenv is None:
        return 0
    filled = 0
    for index in range(pdfium_c.FPDFPage_GetAnnotCount(page)):
        annot = pdfium_c.FPDFPage_GetAnnot(page, index)
        try:
            if (
                pdfium_c.FPDFAnnot_GetSubtype(annot) == pdfium_c.FPDF_ANNOT_WIDGET
                and pdfium_c.FPDFAnnot_GetFormFieldType(formenv, annot) in TEXT_FIELD_TYPES
                # The value's length in bytes, UTF-16LE with its terminating NUL: 2 for an empty one.
                and pdfium_c.FPDFAnnot_GetFormFieldValue(formenv, annot, None, 0) > 2
            ):
                filled += 1
        finally:
            pdfium_c.FPDFPage_CloseAnnot(annot)
    return filled


def _size_px(size_pt: tuple[float, float], dpi: int) -> tuple[int, int]:
    """The page's pixels at ``dpi``, rounded up as PDFium's rendering does."""
    width_pt, height_pt = size_pt
    return math.ceil(width_pt * dpi / POINTS_PER_INCH), math.ceil(height_pt * dpi / POINTS_PER_INCH)


def _fitting_dpi(
    size_pt: tuple[float, float], dpi: int, number: int, documents: DocumentSettings, images: ImageSettings
) -> tuple[int, str | None]:
    """``dpi``, or the highest lower one at which the page fits stepper_images max_pixels, with a note saying
    so; InvalidRequest when even stepper_documents min_dpi does not fit."""
    width_pt, height_pt = size_pt
    if width_pt <= 0 or height_pt <= 0:
        raise InvalidRequest(f"page {number} of the PDF has no area ({width_pt:g}x{height_pt:g} points)")
    width, height = _size_px(size_pt, dpi)
    if width * height <= images.max_pixels:
        return dpi, None
    described = (
        f"page {number} ({width_pt / POINTS_PER_INCH:.1f}x{height_pt / POINTS_PER_INCH:.1f} in) at {dpi} dpi "
        f"would be {width}x{height} = {width * height:,} pixels; the limit is {images.max_pixels:,} "
        "(stepper_images max_pixels)"
    )
    fitting = math.floor(POINTS_PER_INCH * math.sqrt(images.max_pixels / (width_pt * height_pt)))
    while fitting > 0 and math.prod(_size_px(size_pt, fitting)) > images.max_pixels:
        fitting -= 1
    if fitting < documents.min_dpi:
        raise InvalidRequest(
            f"{described}, and it fits only below stepper_documents min_dpi ({documents.min_dpi}): the page is "
            "refused; send it smaller, or an operator can raise max_pixels"
        )
    return fitting, f"rendered at {fitting} dpi instead of {dpi}: {described}"


def _text_layer(page: pdfium.PdfPage, dpi: int) -> OcrPage | None:
    """The page's own text with word boxes in pixels at ``dpi``, or None when it has no text layer."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    textpage = page.get_textpage()
    try:
        text = textpage.get_text_range().replace("\r\n", "\n").strip()
        if not text:
            return None
        width, height = _size_px(page.get_size(), dpi)
        to_pixels = pdfium.PdfPosConv(page, (0, 0, width, height, 0))
        words: list[OcrWord] = []
        units: list[int] = []
        box = [math.inf, math.inf, -math.inf, -math.inf]
        line = 1
        for index in range(textpage.count_chars()):
            unit = pdfium_c.FPDFText_GetUnicode(textpage, index)
            if chr(unit).isspace():
                if units:
                    words.append(_word(units, box, line))
                    units, box = [], [math.inf, math.inf, -math.inf, -math.inf]
                line += chr(unit) == "\n"
                continue
            units.append(unit)
            left, bottom, right, top = textpage.get_charbox(index)
            (x1, y1), (x2, y2) = to_pixels.to_bitmap(left, top), to_pixels.to_bitmap(right, bottom)
            box = [min(box[0], x1, x2), min(box[1], y1, y2), max(box[2], x1, x2), max(box[3], y1, y2)]
        if units:
            words.append(_word(units, box, line))
        return OcrPage(text, 100.0, words)
    finally:
        textpage.close()


def _word(units: list[int], box: list[float], line: int) -> OcrWord:
    # PDFium gives UTF-16 code units: a character beyond the BMP comes as a surrogate pair.
    text = "".join(map(chr, units)).encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    x1, y1, x2, y2 = (int(value) for value in box)
    return OcrWord(text, 100.0, (x1, y1, x2 - x1, y2 - y1), (1, 1, line))


def _tiff_pages(
    data: bytes, options: PageOptions, documents: DocumentSettings, images: ImageSettings
) -> Generator[DocumentPage, None, None]:
    with _open_tiff(data, images) as tiff:
        count = getattr(tiff, "n_frames", 1)
        numbers = _selected(options.pages, count, "TIFF", documents)
        for number in numbers:
            # One page: the bytes as they came, decoded as any image; more: each page on its own.
            page = data if count == 1 else _tiff_page(tiff, number, images)
            try:
                pixels = decode_image(page, images)
            except InvalidRequest as exc:
                raise InvalidRequest(f"page {number} of the TIFF: {exc}") from None
            yield DocumentPage(number, "ocr", pixels=pixels)


def _open_tiff(data: bytes, images: ImageSettings) -> PILImage.Image:
    """The TIFF opened by Pillow with its page count read; InvalidRequest when Pillow cannot."""
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)  # our pixel limit, per page
            tiff = PILImage.open(io.BytesIO(data))
            getattr(tiff, "n_frames", 1)  # walks the page directory: a damaged one fails here
    except PILImage.DecompressionBombError:
        raise InvalidRequest(f"the TIFF declares too many pixels (limit {images.max_pixels:,})") from None
    except PILLOW_FAILURES as exc:
        raise InvalidRequest(f"the TIFF is damaged and cannot be opened ({type(exc).__name__})") from None
    return tiff


def _tiff_page(tiff: PILImage.Image, number: int, images: ImageSettings) -> bytes:
    """Page ``number`` as a one-page TIFF (its mode and orientation kept), so that decoding it is the images
    module's one way of decoding; its size is checked from its header before anything is decoded."""
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            tiff.seek(number - 1)
            if tiff.width * tiff.height > images.max_pixels:
                raise InvalidRequest(
                    f"page {number} of the TIFF is {tiff.width}x{tiff.height} = {tiff.width * tiff.height:,} "
                    f"pixels; the limit is {images.max_pixels:,}"
                )
            buffer = io.BytesIO()
            tiff.save(buffer, "TIFF", exif=tiff.getexif())
    except PILImage.DecompressionBombError:
        raise InvalidRequest(f"page {number} of the TIFF declares too many pixels") from None
    except PILLOW_FAILURES as exc:
        raise InvalidRequest(f"page {number} of the TIFF is damaged ({type(exc).__name__}: {exc})") from None
    return buffer.getvalue()
