"""Fuzzing through real workers and the real engines: every request ends in a result or an InvalidRequest,
never another failure, a retry or a hang; bad images get errors that say what is wrong with them."""

from __future__ import annotations

import base64
import copy
import os
import struct
import zlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from stepper.errors import InvalidRequest
from stepper.infra import keys
from stepper.samples import sample_requests
from stepper.schemas import KINDS, Kind
from tests.integration.conftest import Fleet
from tests.support.binaries import require_binary
from tests.support.fuzzing import mutate

IMAGE_KINDS: tuple[Kind, ...] = ("ocr", "steps", "vision")
ENGINES = ("tesseract", "opencv", "espeak")


@pytest.fixture(scope="module")
def engine_fleet(start_fleet: Callable[..., Fleet], tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    """Every kind on its real engine (mock for report and chat: no vendor is reachable), as production runs."""
    require_binary("tesseract", "tesseract-ocr")
    require_binary("espeak-ng", "espeak-ng")
    return start_fleet(
        {
            "stepper_chains": {
                "report": ["mock:mock-report"],
                "chat": ["mock:mock-chat"],
                "ocr": ["tesseract:tesseract"],
                "steps": ["opencv:opencv"],
                "vision": ["opencv:opencv"],
                "speech": ["espeak:espeak-ng"],
            },
            "stepper_artifacts": {"directory": str(tmp_path_factory.mktemp("artifacts"))},
        },
        name="fuzz",
        pool="prefork",
        concurrency=2,
    )


def outcome(fleet: Fleet, kind: Kind, kwargs: Any) -> str:
    """``ok``, or the InvalidRequest's message; anything else fails the test."""
    result = fleet.app.send_task(f"stepper.{kind}", kwargs=kwargs)
    try:
        answer = result.get(timeout=60)  # a hang fails here
    except InvalidRequest as exc:
        return str(exc)
    assert answer["kind"] == kind and answer["output"], answer
    return "ok"


@settings(max_examples=120, deadline=None, database=None)
@given(kind=st.sampled_from(KINDS), data=st.data())
def test_mutated_requests_end_in_a_result_or_invalid_request(
    engine_fleet: Fleet, kind: Kind, data: st.DataObject
) -> None:
    kwargs = mutate(data, copy.deepcopy(sample_requests()[kind]))
    assume(isinstance(kwargs, dict))  # Celery sends only a mapping; raw garbage is test_chaos's malformed messages
    kwargs["cache"] = "bypass"  # each example reaches the engine
    outcome(engine_fleet, kind, kwargs)
    assert "goes back to the broker" not in engine_fleet.worker.log()  # no input is worth retrying
    # An input-specific failure never counts against an engine: no breaker opens, whatever was sent.
    states = {engine: engine_fleet.redis.get(f"{keys.breaker(engine)}:pybreaker:state") for engine in ENGINES}
    assert all(state in (None, b"closed") for state in states.values()), states


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, pixels: bytes) -> bytes:
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", zlib.compress(pixels)) + png_chunk(b"IEND", b"")


SAMPLE_PNG = base64.b64decode(sample_requests()["vision"]["image"]["b64"])
BAD_IMAGES = {
    "truncated": (SAMPLE_PNG[: len(SAMPLE_PNG) // 2], "damaged|not an image"),
    "huge declared size": (png(100_000, 100_000, b"\0" * 1024), "pixels"),
    "random bytes": (os.urandom(4096), "not an image"),
    # OCR reads PDFs, so to it this one is a damaged PDF; to the others, not an image.
    "wrong type": (b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n", "not an image|the PDF is damaged"),
    "empty": (b"", "b64: String should have at least 1 character"),
}


def with_image(kind: Kind, data: bytes) -> dict[str, Any]:
    request = copy.deepcopy(sample_requests()[kind])
    image = {"b64": base64.b64encode(data).decode()}
    if kind == "vision":
        request["image"] = image
    elif kind == "ocr":
        request["images"] = [image]
    else:
        request["frames"] = [request["frames"][0], image]  # the first frame is fine: the second is named
    return request


@pytest.mark.parametrize("kind", IMAGE_KINDS)
@pytest.mark.parametrize("name", BAD_IMAGES)
def test_bad_images_get_a_clear_error(engine_fleet: Fleet, kind: Kind, name: str) -> None:
    data, expected = BAD_IMAGES[name]
    with pytest.raises(InvalidRequest, match=expected) as refused:
        engine_fleet.app.send_task(f"stepper.{kind}", kwargs=with_image(kind, data)).get(timeout=60)
    field = {"ocr": "images.0", "steps": "frames.1", "vision": "image"}[kind]
    assert f"{field}: " in str(refused.value) or f"{field}.b64: " in str(refused.value)  # which one, among many
