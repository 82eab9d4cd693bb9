"""One sample request per kind: what ``stepper demo`` (and ``make run``) submits."""

from __future__ import annotations

import base64
from importlib.resources import files
from typing import Any

from stepper.schemas import Kind


def _image(name: str) -> dict[str, str]:
    return {"b64": base64.b64encode(files(__package__).joinpath(name).read_bytes()).decode()}


def sample_requests() -> dict[Kind, dict[str, Any]]:
    return {
        "report": {
            "commit": {
                "sha": "3f2c9a1d7e5b4c6a8f0e1d2c3b4a59687766554f",
                "message": "Retry provider calls that time out\n\nTimeouts now move on to the next provider.",
                "author": "Ada Lovelace",
                "files": [
                    {"path": "stepper/chain.py", "status": "modified", "additions": 42, "deletions": 7},
                    {"path": "tests/test_chain.py", "status": "added", "additions": 88, "deletions": 0},
                ],
            },
            "repository": "example/stepper",
            "audience": "release notes",
        },
        "chat": {"messages": [{"role": "user", "content": "In one sentence, what is a circuit breaker?"}]},
        "ocr": {"images": [_image("screen-1.png")], "lang": "eng"},
        "steps": {"frames": [_image("screen-1.png"), _image("screen-2.png")]},
        "vision": {"image": _image("screen-2.png"), "features": ["faces", "colors", "quality"]},
        "speech": {"text": "Your settings were saved.", "format": "wav"},
    }


#: The buttons clicked in ``howto.webm``, in order (scripts/samples/make_howto_recording.py records them).
HOWTO_CLICKS = ("Preview", "Save", "Send")


def howto_request() -> dict[str, Any]:
    """The ``howto`` workflow's sample: a short recording of a web form whose toolbar buttons are clicked."""
    return {"video": _image("howto.webm"), "audience": "someone new to the invoice editor"}
