"""An OpenAI-compatible chat server that writes how-to guides as an instructed model would: it reads the element
named in the workflow's prompt and answers the JSON asked for. ``failing_step`` (1-based) makes it answer 503
to the instruction request of that step, as a vendor outage would: always, or ``failures_left`` times (a
blip); every request is counted in ``requests``."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.support.fake_http import Reply, Request
from tests.support.vendors.openai_compatible import FakeOpenAICompatible

_ELEMENT = re.compile(r"^Clicked element: (.+)$", re.MULTILINE)
_STEP = re.compile(r"^Write the instruction for step (\d+):", re.MULTILINE)


class FakeGuideWriter(FakeOpenAICompatible):
    def __init__(self) -> None:
        super().__init__("openai")
        self.failing_step: int | None = None
        self.failures_left: int | None = None

    def _completions(self, request: Request) -> Reply:
        prompt = _prompt(request.json())
        step = _STEP.search(prompt)
        if step is not None and self.failing_step == int(step.group(1)) and self.failures_left != 0:
            if self.failures_left is not None:
                self.failures_left -= 1
            error = {"message": "The server is overloaded", "type": "server_error", "param": None, "code": None}
            return Reply(503, {"error": error})
        return super()._completions(request)

    def _default_content(self, body: dict[str, Any]) -> str:
        prompt = _prompt(body)
        element = _ELEMENT.search(prompt)
        if element is not None:
            return json.dumps({"instruction": f"Click **{element.group(1).strip()}** in the toolbar."})
        return json.dumps({"title": "How to share a document", "summary": "Open it, save it, then share it."})


def _prompt(body: dict[str, Any]) -> str:
    return "\n".join(str(message.get("content", "")) for message in body.get("messages", []))
