"""A finished guide as files in a directory: what ``stepper workflow run --out`` and ``make run`` write."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from stepper.infra.artifacts import load_artifact
from stepper.workflows.assemble import MOCK_AUDIO
from stepper.workflows.schemas import Guide


def write_guide(guide: Guide, directory: Path) -> Path:
    """Write ``guide.html`` (self-contained), ``guide.md`` with ``step-N.png``/``step-N.<audio>`` beside it,
    ``narration.wav`` and ``guide.json``; return the HTML page's path. The artifacts are read from the
    configured artifact directory, so run this where the workers' artifacts are readable."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "guide.html").write_bytes(load_artifact(guide.html))
    (directory / "guide.md").write_text(guide.markdown)
    (directory / "narration.wav").write_bytes(load_artifact(guide.narration.uri))
    for number, step in enumerate(guide.steps, 1):
        if step.thumbnail is not None:
            (directory / f"step-{number}.png").write_bytes(base64.b64decode(step.thumbnail.partition(",")[2]))
        if not step.audio.uri.startswith(MOCK_AUDIO):  # the mock speaks no file
            (directory / f"step-{number}.{step.audio.format}").write_bytes(load_artifact(step.audio.uri))
    (directory / "guide.json").write_text(json.dumps(guide.model_dump(mode="json"), indent=2))
    return directory / "guide.html"
