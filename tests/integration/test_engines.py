"""Local engines through real prefork workers: tesseract reads the sample screenshot, espeak-ng speaks."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from stepper.errors import InvalidRequest
from stepper.samples import sample_requests
from tests.integration.conftest import Fleet
from tests.support.binaries import require_binary
from tests.support.documents import image_pdf, text_pdf


@pytest.fixture(scope="module")
def engine_fleet(start_fleet: Callable[..., Fleet], tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    require_binary("tesseract", "tesseract-ocr")
    require_binary("espeak-ng", "espeak-ng")
    artifacts = tmp_path_factory.mktemp("artifacts")
    return start_fleet(
        {
            "stepper_chains": {"ocr": ["tesseract:tesseract"], "speech": ["espeak:espeak-ng"]},
            "stepper_artifacts": {"directory": str(artifacts), "inline_max_bytes": 1024},
        },
        name="engines",
        pool="prefork",
        concurrency=2,
        queues=["ocr", "speech"],
    )


def test_ocr_reads_the_sample_screenshot(engine_fleet: Fleet) -> None:
    result = engine_fleet.app.send_task("stepper.ocr", kwargs=sample_requests()["ocr"]).get(timeout=60)
    assert result["provider"] == "tesseract"
    page = result["output"]["pages"][0]
    assert "Hello from stepper" in page["text"]
    hello = next(word for word in page["words"] if word["text"] == "Hello")
    x, y, width, height = hello["box"]
    assert 30 <= x <= 60 and 80 <= y <= 110 and width > 40 and height > 15  # where the sample drew it


def test_ocr_refuses_a_decompression_bomb(engine_fleet: Fleet) -> None:
    # A well-formed PNG of a few hundred bytes that declares 100000 x 100000 pixels.
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 6, 0, 0, 0))
    png = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    bomb = {"images": [{"b64": base64.b64encode(png).decode()}]}
    with pytest.raises(InvalidRequest, match="pixels"):
        engine_fleet.app.send_task("stepper.ocr", kwargs=bomb).get(timeout=60)


def test_ocr_reads_documents_page_by_page(engine_fleet: Fleet) -> None:
    documents = [text_pdf([["Hello from page one"], ["Page two"]]), image_pdf(["Quiet harbour lights"])]
    request = {"images": [{"b64": base64.b64encode(data).decode()} for data in documents], "pages": "1"}
    result = engine_fleet.app.send_task("stepper.ocr", kwargs=request).get(timeout=60)
    text_page, image_page = result["output"]["pages"]
    assert (text_page["image"], text_page["page"], text_page["source"]) == (0, 1, "text_layer")
    assert text_page["text"] == "Hello from page one"
    assert (image_page["image"], image_page["page"], image_page["source"], image_page["dpi"]) == (1, 1, "ocr", 300)
    assert "Quiet harbour lights" in image_page["text"]
    assert result["usage"] == {"images": 2, "pages": 2, "text_layer_pages": 1}


def test_speech_is_stored_as_an_artifact(engine_fleet: Fleet) -> None:
    result = engine_fleet.app.send_task("stepper.speech", kwargs=sample_requests()["speech"]).get(timeout=60)
    audio = result["output"]["audio"]
    assert result["provider"] == "espeak" and audio["format"] == "wav" and audio["duration_s"] > 0.5
    path = Path(unquote(urlsplit(audio["uri"]).path))
    assert audio["uri"].startswith("file://") and path.read_bytes()[:4] == b"RIFF"
    assert path.stat().st_size == audio["bytes"]


def test_the_voices_task_lists_what_the_workers_have(engine_fleet: Fleet) -> None:
    listing = engine_fleet.app.send_task("stepper.voices").get(timeout=60)
    assert "en" in {voice["id"] for voice in listing["espeak"]["voices"]}
