"""The ``howto`` workflow through real workers: OpenCV finds the steps of a recorded screencast, tesseract
captions them, a loopback OpenAI-compatible server writes the instructions, espeak-ng speaks them.

A piece that failed for good leaves the workflow waiting, with the other pieces kept; ``resume`` computes
only what is missing, which the writer's request count proves. The HTML guide is opened in Debian's chromium."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
import sys
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from celery.result import AsyncResult

from stepper.errors import Cancelled, WorkflowFailed
from stepper.gateway.auth import key_digest
from stepper.infra.artifacts import load_artifact
from stepper.ops.deadletters import DeadLetterStore
from stepper.samples import HOWTO_CLICKS, howto_request
from stepper.settings import DeadLetterSettings
from stepper.workflows.api import WorkflowHandle, workflow
from stepper.workflows.assemble import PAUSE_BETWEEN_STEPS_S
from stepper.workflows.schemas import Guide, WorkflowStatus
from tests.integration.conftest import GATEWAY_KEY, Fleet, producer_app
from tests.integration.test_webhooks import SECRET, WEBHOOK_SETTINGS, assert_signed, receiver
from tests.support.binaries import require_binary
from tests.support.fake_http import FakeServer, running
from tests.support.gateway import RunningGateway, running_gateway
from tests.support.screencasts import TOOLBAR_LABELS, encode_webm, toolbar_screencast
from tests.support.vendors.writer import FakeGuideWriter
from tests.support.waiting import wait_until
from tests.support.workers import REPO_ROOT, write_config

__all__ = ["receiver"]  # a fixture, used by name

WAIT_S = 240.0


@pytest.fixture(scope="module")
def writer() -> Iterator[FakeGuideWriter]:
    yield from running(FakeGuideWriter())  # type: ignore[misc]


@pytest.fixture(autouse=True)
def healthy(writer: FakeGuideWriter) -> None:
    writer.requests.clear()
    writer.failing_step = writer.failures_left = None
    writer.first_byte_delay_s = 0.0


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="module")
def fleet(start_fleet: Callable[..., Fleet], writer: FakeGuideWriter, artifacts: Path) -> Fleet:
    for binary, package in (("tesseract", "tesseract-ocr"), ("espeak-ng", "espeak-ng")):
        require_binary(binary, package)
    writing = {
        "class": "stepper.providers.openai:OpenAIProvider",
        "kinds": ["chat"],
        "base_url": writer.base_url,
        "models": ["guide-7b"],
    }
    return start_fleet(
        {
            "stepper_providers": {"writer": writing},
            "stepper_chains": {"steps": ["opencv:opencv"], "chat": ["writer:guide-7b"], "speech": ["espeak:espeak-ng"]},
            "stepper_artifacts": {"directory": str(artifacts), "inline_max_bytes": 1024},
            # One more broker run after a failure: a blip is retried, an outage fails the piece for good.
            "stepper_retry": {"attempts_per_provider": 1, "task_max_retries": 1, "backoff_base_s": 0.05},
            "stepper_breaker": {"fail_max": 50, "reset_timeout_s": 300},
            "stepper_webhooks": WEBHOOK_SETTINGS,
        },
        name="workflows",
        concurrency=4,
        env={"OMP_THREAD_LIMIT": "1", "STEPPER_WEBHOOK_SECRET": SECRET},
    )


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    path = tmp_path_factory.mktemp("recording") / "toolbar.webm"
    return {"b64": base64.b64encode(encode_webm(toolbar_screencast(), path, streamed=False)).decode()}


@pytest.fixture(scope="module")
def guide(fleet: Fleet, recording: dict[str, str]) -> Guide:
    return workflow("howto", {"video": recording}, app=fleet.app).get(timeout=WAIT_S)


def test_a_recording_becomes_a_guide_of_its_steps_in_order(guide: Guide, artifacts: Path) -> None:
    assert len(guide.steps) == len(TOOLBAR_LABELS)
    for step, label in zip(guide.steps, TOOLBAR_LABELS, strict=True):
        assert step.action == "click"
        assert label in (step.caption or "")
        assert f"**{label}**" in step.instruction  # the writer named the element the caption gave it
        assert step.thumbnail is not None and step.thumbnail.startswith("data:image/png;base64,")
    assert guide.title == "How to share a document"
    assert [f"**{label}**" in guide.markdown for label in TOOLBAR_LABELS] == [True] * len(TOOLBAR_LABELS)


def test_the_shipped_sample_recording_gives_its_three_clicks(fleet: Fleet) -> None:
    guide = workflow("howto", howto_request(), app=fleet.app).get(timeout=WAIT_S)
    assert [step.action for step in guide.steps] == ["click"] * len(HOWTO_CLICKS)
    for step, label in zip(guide.steps, HOWTO_CLICKS, strict=True):
        assert label in (step.caption or "") and f"**{label}**" in step.instruction


def test_the_narration_is_every_steps_audio_joined(guide: Guide, artifacts: Path) -> None:
    spoken = [step.audio.duration_s for step in guide.steps]
    assert all(duration > 0.5 for duration in spoken)
    with wave.open(io.BytesIO(load_artifact(guide.narration.uri, artifacts))) as joined:
        measured_s = joined.getnframes() / joined.getframerate()
    expected_s = sum(spoken) + PAUSE_BETWEEN_STEPS_S * (len(spoken) - 1)
    assert measured_s == pytest.approx(expected_s, abs=0.01)
    assert guide.narration.duration_s == pytest.approx(measured_s, abs=0.001)


def test_a_failed_step_waits_for_resume_which_calls_only_for_what_is_missing(
    fleet: Fleet, recording: dict[str, str], writer: FakeGuideWriter, receiver: FakeServer
) -> None:
    writer.failing_step = 2
    producer = producer_app(fleet.url)
    producer.conf.stepper_webhooks = WEBHOOK_SETTINGS  # the producer checks callback URLs as the workers do
    handle = workflow("howto", {"video": recording, "callback_url": f"{receiver.url}/hook"}, app=producer)
    with pytest.raises(WorkflowFailed, match="write:1"):
        handle.get(timeout=WAIT_S)
    stopped = _settled(handle)
    assert stopped.state == "WAITING" and stopped.stage == "write"
    assert stopped.pieces["steps"].state == "done" and stopped.pieces["write:0"].state == "done"
    assert stopped.pieces["write:1"].state == "failed" and "ChainExhausted" in (stopped.pieces["write:1"].error or "")
    assert all(stopped.pieces[f"narrate:{i}"].state == "pending" for i in range(3))
    pointer = _dead_letter_of(fleet, handle.id)
    assert pointer["piece"] == "write:1" and pointer["resume"] == f"stepper workflow resume {handle.id}"
    wait_until(lambda: len(receiver.requests) == 1, "the failure's callback")

    missing = sorted(p for p, s in stopped.pieces.items() if p.startswith(("write", "title")) and s.state != "done")
    asked_before = len(writer.requests)
    writer.failing_step = None
    guide = handle.resume().get(timeout=WAIT_S)
    asked = [request.json()["messages"][-1]["content"] for request in writer.requests[asked_before:]]
    assert len(asked) == len(missing)  # exactly one more call per missing piece: step 1's is never sent again
    assert sum("Write the instruction for step 2:" in prompt for prompt in asked) == 1
    assert not any("Write the instruction for step 1:" in prompt for prompt in asked)
    assert [f"**{label}**" in step.instruction for step, label in zip(guide.steps, TOOLBAR_LABELS, strict=True)] == [
        True
    ] * 3
    assert handle.status().state == "SUCCESS"
    wait_until(lambda: len(receiver.requests) == 2, "the success's callback")
    for request, event in zip(receiver.requests, ("workflow.failed", "workflow.succeeded"), strict=True):
        assert_signed(request)
        body = json.loads(request.body)
        assert request.headers["stepper-event"] == event and body["event"] == event
        assert body["workflow_id"] == handle.id
    failed, succeeded = (json.loads(request.body) for request in receiver.requests)
    assert failed["error"]["type"] == "WorkflowFailed" and "write:1" in failed["error"]["message"]
    assert succeeded["status"] == "SUCCESS" and len(succeeded["result"]["steps"]) == len(TOOLBAR_LABELS)


def test_a_piece_that_failed_once_is_retried_like_any_task(
    fleet: Fleet, recording: dict[str, str], writer: FakeGuideWriter
) -> None:
    writer.failing_step, writer.failures_left = 2, 1
    guide = workflow("howto", {"video": recording}, app=fleet.app).get(timeout=WAIT_S)
    assert "**Save**" in guide.steps[1].instruction
    asked = [request.json()["messages"][-1]["content"] for request in writer.requests]
    assert sum("Write the instruction for step 2:" in prompt for prompt in asked) == 2  # the blip, then the retry
    assert len(asked) == len(TOOLBAR_LABELS) + 2  # every other piece once, the title included


def test_a_cancelled_workflow_stops_its_pieces(
    fleet: Fleet, recording: dict[str, str], writer: FakeGuideWriter
) -> None:
    writer.first_byte_delay_s = 5.0  # the writing stage is under way when the cancel comes
    handle = workflow("howto", {"video": recording}, app=fleet.app)
    status = _wait_for(handle, lambda s: s.stage == "write" and any(p.state == "running" for p in s.pieces.values()))
    pieces = {name: piece.task_id for name, piece in status.pieces.items() if piece.state == "running"}
    handle.cancel()
    for task_id in pieces.values():
        _wait_until(lambda: AsyncResult(task_id, app=fleet.app).state == "REVOKED")  # noqa: B023  (waited here)
    with pytest.raises(Cancelled):
        handle.get(timeout=5)
    after = handle.status()
    assert after.state == "CANCELLED"
    assert all(after.pieces[f"narrate:{i}"].state == "pending" for i in range(3))  # nothing dispatched after it
    assert all(after.pieces[name].state != "done" for name in pieces)


def test_the_html_guide_opens_in_a_real_browser_with_three_steps(guide: Guide, artifacts: Path, tmp_path: Path) -> None:
    chromium = require_binary("chromium", "chromium")
    page = tmp_path / "guide.html"
    page.write_bytes(load_artifact(guide.html, artifacts))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    assert dom.count('<li class="step"') == 3
    for label in TOOLBAR_LABELS:
        assert f"<strong>{label}</strong>" in dom
    assert dom.count('class="narration"') == 3 and dom.count('id="narration"') == 1, re.findall("<audio[^>]{0,60}", dom)
    assert dom.count('<img src="data:image/png;base64,') == 3
    shot = tmp_path / "guide.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={shot}", "--window-size=1000,1400", page.as_uri()],
        capture_output=True,
        check=True,
        timeout=120,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    _assert_not_blank(shot)


@pytest.fixture(scope="module")
def gateway(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningGateway]:
    settings = {"stepper_gateway": {"key_hashes": [key_digest(GATEWAY_KEY)]}}
    with running_gateway(fleet.url, tmp_path_factory.mktemp("gateway"), settings) as running_:
        yield running_


def test_the_gateway_starts_a_workflow_and_streams_its_progress(
    gateway: RunningGateway, recording: dict[str, str]
) -> None:
    auth = {"Authorization": f"Bearer {GATEWAY_KEY}"}
    accepted = requests.post(
        f"{gateway.url}/api/v1/workflows/howto", json={"video": recording}, headers=auth, timeout=30
    )
    assert accepted.status_code == 202, accepted.text
    links = accepted.json()
    events = []
    with requests.get(links["eventsUrl"], headers=auth, stream=True, timeout=WAIT_S) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    assert events[-1] == ("end", {"state": "SUCCESS"})
    stages = [data["stage"] for name, data in events if name == "status"]
    assert stages == sorted(stages, key=["steps", "write", "narrate", "assemble", "done"].index)  # forward only
    assert stages[-1] == "done"
    status = requests.get(links["statusUrl"], headers=auth, timeout=30).json()
    assert status["state"] == "SUCCESS" and len(status["result"]["steps"]) == len(TOOLBAR_LABELS)
    resumed = requests.post(f"{links['statusUrl']}/resume", headers=auth, timeout=30)
    cancelled = requests.delete(links["statusUrl"], headers=auth, timeout=30)
    assert (resumed.status_code, cancelled.status_code) == (202, 202)
    assert requests.get(links["statusUrl"], headers=auth, timeout=30).json()["state"] == "SUCCESS"  # a done guide stays
    missing = requests.get(f"{gateway.url}/api/v1/workflows/no-such-workflow", headers=auth, timeout=30)
    assert missing.status_code == 404
    refused = requests.post(f"{gateway.url}/api/v1/workflows/howto", json={"frames": []}, headers=auth, timeout=30)
    assert refused.status_code in {400, 422} and "video" in refused.text


def test_the_cli_runs_a_workflow_with_a_bar_per_stage_and_writes_the_guide(
    fleet: Fleet, recording: dict[str, str], artifacts: Path, tmp_path: Path
) -> None:
    video = tmp_path / "toolbar.webm"
    video.write_bytes(base64.b64decode(recording["b64"]))
    module = write_config(tmp_path, {"stepper_artifacts": {"directory": str(artifacts)}})
    env = {**os.environ, "STEPPER_REDIS_URL": fleet.url, "CELERY_CONFIG_MODULE": module}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(REPO_ROOT)])
    out = tmp_path / "guide"
    command = [sys.executable, "-m", "stepper", "workflow", "run", "howto", str(video), "--out", str(out)]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=WAIT_S, check=False)
    assert run.returncode == 0, run.stderr
    for stage in ("steps", "write", "narrate", "assemble"):
        assert stage in run.stdout
    assert f"HTML guide: {out / 'guide.html'}" in run.stdout
    written = sorted(path.name for path in out.iterdir())
    assert written == sorted(
        ["guide.html", "guide.json", "guide.md", "narration.wav"]
        + [f"step-{n}.{ext}" for n in (1, 2, 3) for ext in ("png", "wav")]
    )
    assert "(step-2.png)" in (out / "guide.md").read_text()
    workflow_id = run.stdout.split()[1]
    status = subprocess.run(
        [sys.executable, "-m", "stepper", "workflow", "status", workflow_id],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert f"workflow {workflow_id} (howto): SUCCESS, stage done" in status


def _assert_not_blank(png: Path) -> None:
    import cv2

    image = cv2.imread(str(png))
    assert image is not None and image.shape[0] > 100
    assert int(image.std()) > 5  # text and thumbnails drawn, not an empty page


def _dead_letter_of(fleet: Fleet, workflow_id: str) -> dict[str, str]:
    store = DeadLetterStore(fleet.redis, DeadLetterSettings())
    entries = [entry for entry in store.entries() if entry.task_id == workflow_id]
    assert len(entries) == 1 and entries[0].kind == "workflow.howto"
    return entries[0].request


def _settled(handle: WorkflowHandle) -> WorkflowStatus:
    """The status once no piece runs any more (the pieces beside the failed one finish their own work)."""
    return _wait_for(handle, lambda s: not any(p.state == "running" for p in s.pieces.values()))


def _wait_for(handle: WorkflowHandle, condition: Callable[[WorkflowStatus], bool]) -> WorkflowStatus:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        status = handle.status()
        if condition(status):
            return status
        time.sleep(0.1)
    raise AssertionError(f"workflow {handle.id} never got there: {handle.status()}")


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.1)
