"""The guide's pages: escaped, bold made strong, every step and its audio present, the narration joined."""

from __future__ import annotations

import io
import wave
from collections.abc import Callable
from pathlib import Path

from stepper.infra.artifacts import load_artifact
from stepper.providers.media.audio import Pcm, store_pcm
from stepper.schemas.steps import Step
from stepper.workflows.assemble import PAUSE_BETWEEN_STEPS_S, assemble
from stepper.workflows.schemas import Heading

HEADING = Heading(title="How to <save>", summary="Save & share.")


def tone(seconds: float, rate_hz: int = 22_050) -> Pcm:
    return Pcm(b"\x10\x00" * round(seconds * rate_hz), rate_hz)


def step(index: int, caption: str) -> Step:
    return Step.model_validate(
        {
            "index": index,
            "frame": index,
            "box": [0, 0, 10, 10],
            "change_ratio": 0.1,
            "action": "click",
            "caption": caption,
        }
    )


def test_the_guide_joins_the_narration_and_renders_each_step(artifact_dir: Callable[[int], Path]) -> None:
    directory = artifact_dir(0)  # every artifact a file
    audio = [store_pcm(tone(seconds), "wav", "test") for seconds in (1.0, 0.5)]
    instructions = ["Click **Save** <now>.", "Click **Share**."]
    guide = assemble(HEADING, "English", [step(0, "Save"), step(1, "Share")], instructions, audio)

    with wave.open(io.BytesIO(load_artifact(guide.narration.uri, directory))) as joined:
        assert joined.getnframes() / joined.getframerate() == 1.5 + PAUSE_BETWEEN_STEPS_S
    page = load_artifact(guide.html, directory).decode()
    assert "<title>How to &lt;save&gt;</title>" in page
    assert "Click <strong>Save</strong> &lt;now&gt;." in page  # the writer's words are text, never markup
    assert page.count('<li class="step"') == 2 and page.count('class="narration"') == 2
    assert page.count("data:audio/wav;base64,") == 3  # each step's audio and the whole narration, inlined
    assert "## Step 2\n\nClick **Share**." in guide.markdown and "(step-2.wav)" in guide.markdown
