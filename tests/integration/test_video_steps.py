"""A browser-streamed WebM (no duration in its header) through a real prefork worker: read to the end, both
steps found, and a bound from the request cuts it and says so."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest

from stepper.errors import InvalidRequest
from tests.integration.conftest import Fleet
from tests.support.screencasts import FPS, PRESSED_AT_S, SECONDS, encode_webm, probed_duration, screencast


@pytest.fixture(scope="module")
def steps_fleet(start_fleet: Callable[..., Fleet], tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    artifacts = tmp_path_factory.mktemp("artifacts")
    return start_fleet(
        {
            "stepper_chains": {"steps": ["opencv:opencv"]},
            "stepper_artifacts": {"directory": str(artifacts), "inline_max_bytes": 1024},
        },
        name="video-steps",
        pool="prefork",
        concurrency=1,
        queues=["steps"],
    )


@pytest.fixture(scope="module")
def streamed_webm(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("webm") / "streamed.webm"
    encode_webm(screencast(), path, streamed=True)
    assert probed_duration(path) == "N/A"
    return {"b64": base64.b64encode(path.read_bytes()).decode()}


def test_a_streamed_webm_is_read_to_the_end(steps_fleet: Fleet, streamed_webm: dict[str, str]) -> None:
    result = steps_fleet.app.send_task("stepper.steps", kwargs={"video": streamed_webm}).get(timeout=120)
    output = result["output"]
    assert result["provider"] == "opencv"
    assert len(output["steps"]) == 2 and output["steps"][1]["frame"] >= PRESSED_AT_S * FPS
    assert (output["frames_read"], output["truncated"]) == (SECONDS * 10, False)


def test_a_bound_from_the_request_says_truncated(steps_fleet: Fleet, streamed_webm: dict[str, str]) -> None:
    kwargs = {"video": streamed_webm, "max_frames": 20}
    output = steps_fleet.app.send_task("stepper.steps", kwargs=kwargs).get(timeout=120)["output"]
    assert (output["frames_read"], output["seconds_read"], output["truncated"]) == (20, 1.9, True)


def test_garbage_with_a_webm_signature_is_refused(steps_fleet: Fleet) -> None:
    garbage = {"b64": base64.b64encode(b"\x1a\x45\xdf\xa3" + bytes(range(256)) * 16).decode()}
    with pytest.raises(InvalidRequest, match=r"cannot be opened|no frame"):
        steps_fleet.app.send_task("stepper.steps", kwargs={"video": garbage}).get(timeout=120)
