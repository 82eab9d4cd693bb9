"""Documents made in the tests, never stored: PDFs with a text layer (written by hand), image-only PDFs,
password-protected PDFs (RC4, the standard security handler revision 2), a filled form, a page with /Rotate,
and multi-page TIFFs (Pillow)."""

from __future__ import annotations

import hashlib
import io

from PIL import Image, ImageDraw, ImageFont

#: The standard security handler's password padding (PDF 1.7, 7.6.3.3).
PASSWORD_PADDING = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")
FILE_ID = bytes(range(16))


def text_pdf(pages: list[list[str]]) -> bytes:
    """A PDF whose page ``i`` shows the lines ``pages[i]`` in Helvetica 24 pt: a real text layer."""
    return _pdf(pages)


def encrypted_pdf(lines: list[str], user_password: str) -> bytes:
    """A one-page text PDF that opens only with ``user_password`` (40-bit RC4, revision 2)."""
    return _pdf([lines], user_password=user_password)


def phrase_image(phrase: str, mode: str = "RGB") -> Image.Image:
    """``phrase`` in black on white, large enough for tesseract at its own resolution."""
    image = Image.new("RGB", (1400, 260), "white")
    ImageDraw.Draw(image).text((50, 80), phrase, fill="black", font=ImageFont.load_default(size=64))
    return image.convert(mode)


def image_pdf(phrases: list[str]) -> bytes:
    """A PDF of one image per phrase and no text at all, at 150 dpi (Pillow's PDF writer)."""
    first, *rest = [phrase_image(phrase) for phrase in phrases]
    buffer = io.BytesIO()
    first.save(buffer, "PDF", save_all=True, append_images=rest, resolution=150)
    return buffer.getvalue()


def tiff(phrases: list[str], modes: tuple[str, ...] = ("RGB",)) -> bytes:
    """A TIFF with one page per phrase, cycling through ``modes`` (RGB, L, 1...), deflate-compressed."""
    first, *rest = [phrase_image(phrase, modes[i % len(modes)]) for i, phrase in enumerate(phrases)]
    buffer = io.BytesIO()
    first.save(buffer, "TIFF", save_all=True, append_images=rest, compression="tiff_deflate")
    return buffer.getvalue()


def _pdf(pages: list[list[str]], user_password: str | None = None) -> bytes:
    font = 3 + 2 * len(pages)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>"
        % (" ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages))).encode(), len(pages)),
    ]
    key = None
    trailer = b""
    if user_password is not None:
        owner, user, key = _security(user_password)
        # The Encrypt dictionary is the last object, after the font.
        trailer = b" /Encrypt %d 0 R /ID [<%s> <%s>]" % (font + 1, FILE_ID.hex().encode(), FILE_ID.hex().encode())
    for i, lines in enumerate(pages):
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 %d 0 R >> >> "
            b"/Contents %d 0 R >>" % (font, 4 + 2 * i)
        )
        text = " ".join(f"({line}) Tj T*" for line in lines)
        content = f"BT /F1 24 Tf 72 700 Td 30 TL {text} ET".encode()
        if key is not None:
            content = _rc4(_object_key(key, 4 + 2 * i), content)
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    if key is not None:
        objects.append(
            b"<< /Filter /Standard /V 1 /R 2 /Length 40 /P -4 /O <%s> /U <%s> >>"
            % (owner.hex().encode(), user.hex().encode())
        )
    return _written(objects, trailer)


def form_pdf(value: str, label: str | None = None) -> bytes:
    """A one-page PDF with a filled AcroForm text field showing ``value`` in Helvetica 28 pt, without an
    appearance stream (``/NeedAppearances``: only a viewer that runs the form draws it); ``label``, when
    given, is real text above the field (a text layer that does not hold the value)."""
    content = b"BT /F1 24 Tf 72 700 Td (%s) Tj ET" % label.encode("latin-1") if label else b""
    return _written(
        [
            b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [4 0 R] /NeedAppearances true "
            b"/DA (/Helv 0 Tf 0 g) /DR << /Font << /Helv 5 0 R >> >> >> >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Annots [4 0 R] "
            b"/Resources << /Font << /F1 5 0 R >> >> /Contents 6 0 R >>",
            b"<< /Type /Annot /Subtype /Widget /FT /Tx /T (name) /V (%s) /Rect [72 600 540 660] /F 4 /P 3 0 R "
            b"/DA (/Helv 28 Tf 0 g) >>" % value.encode("latin-1"),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
            b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        ]
    )


def rotated_pdf(phrase: str, rotate: int) -> bytes:
    """An image PDF whose page stores ``phrase`` turned ``rotate`` degrees anticlockwise and says ``/Rotate
    rotate`` (clockwise, for display): a viewer shows it upright, the stored pixels are not."""
    import pypdfium2 as pdfium

    buffer = io.BytesIO()
    phrase_image(phrase).rotate(rotate, expand=True).save(buffer, "PDF", resolution=150)
    document = pdfium.PdfDocument(buffer.getvalue())
    try:
        document[0].set_rotation(rotate)
        out = io.BytesIO()
        document.save(out)
    finally:
        document.close()
    return out.getvalue()


def _written(objects: list[bytes], trailer: bytes = b"") -> bytes:
    """A PDF file of ``objects`` (numbered from 1; the first is the catalog) with its cross-reference table."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, trailer, xref)
    return bytes(out)


def _security(user_password: str) -> tuple[bytes, bytes, bytes]:
    """O, U and the file key of revision 2 (algorithms 2, 3 and 4 of PDF 1.7 7.6.3), owner password = user's."""
    padded = (user_password.encode("latin-1") + PASSWORD_PADDING)[:32]
    owner = _rc4(hashlib.md5(padded).digest()[:5], padded)  # MD5 and RC4: the PDF format's own
    permissions = (-4).to_bytes(4, "little", signed=True)
    key = hashlib.md5(padded + owner + permissions + FILE_ID).digest()[:5]
    return owner, _rc4(key, PASSWORD_PADDING), key


def _object_key(key: bytes, number: int) -> bytes:
    return hashlib.md5(key + number.to_bytes(3, "little") + (0).to_bytes(2, "little")).digest()[:10]


def _rc4(key: bytes, data: bytes) -> bytes:
    state = list(range(256))
    j = 0
    for i in range(256):
        j = (j + state[i] + key[i % len(key)]) % 256
        state[i], state[j] = state[j], state[i]
    out = bytearray()
    i = j = 0
    for byte in data:
        i = (i + 1) % 256
        j = (j + state[i]) % 256
        state[i], state[j] = state[j], state[i]
        out.append(byte ^ state[(state[i] + state[j]) % 256])
    return bytes(out)
