"""A fake Hugging Face Space running a Gradio chat app, queried through Gradio's HTTP API.

The two-step call of Gradio's guide "Querying Gradio Apps with Curl", as ``gradio/routes.py`` serves it:
``POST /gradio_api/call/{api_name}`` with ``{"data": [...], "session_hash"?}`` answers ``{"event_id": ...}``;
``GET /gradio_api/call/{api_name}/{event_id}`` streams ``event: generating`` (the whole text so far, one more
word each time), ``heartbeat``, then ``complete`` with the outputs, or ``error`` (``data: null`` unless the app
shows errors, then ``{"error": message}``). Stricter than Gradio in one way, on purpose: a body field Gradio
would ignore is refused with FastAPI's 422, so tests prove the adapter sends only documented fields.

The app is a ChatInterface: its first input is the message (a string, or OpenAI-style messages), followed by
``extra_inputs`` more; a wrong count or shape fails the run with an ``error`` event, as a Space's function
would. ``script.finish_reasons`` picks how a run ends: ``complete`` (default), ``error`` or ``none`` (the
stream stops without a final event).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from tests.support.fake_http import FakeServer, Reply, Request
from tests.support.vendors.common import Script, default_report, words

BODY_FIELDS = {"data", "session_hash"}
ROLES = {"system", "user", "assistant"}
PREFIX = "/gradio_api/call"


@dataclass
class Run:
    api_name: str
    data: list[Any]


class FakeHfSpace(FakeServer):
    def __init__(self, token: str | None = None, name: str = "fake-space", api_name: str = "chat") -> None:
        super().__init__()
        #: A private Space wants this token; a public one (None) takes any request.
        self.token = token
        self.name = name
        self.api_name = api_name
        self.extra_inputs = 0
        self.show_error = True
        #: Appended to every partial text, as Spaces that draw a typing cursor do.
        self.cursor = ""
        #: When set, the outputs of the ``complete`` event (a Space whose first output is a file, say).
        self.final_outputs: list[Any] | None = None
        self.script = Script()
        self.runs: dict[str, Run] = {}
        #: Every event_id handed out, in order.
        self.issued: list[str] = []
        self.route("POST", rf"{PREFIX}/[^/]+/?", self._submit)
        self.route("GET", rf"{PREFIX}/[^/]+/[^/]+", self._results)

    @property
    def base_url(self) -> str:
        return self.url

    def _authorised(self, request: Request) -> bool:
        return self.token is None or request.headers.get("authorization") == f"Bearer {self.token}"

    def _submit(self, request: Request) -> Reply:
        if not self._authorised(request):
            return Reply(401, {"error": "Invalid credentials in Authorization header"})
        api_name = request.path.removeprefix(f"{PREFIX}/").strip("/")
        if api_name != self.api_name:
            return Reply(500, b"Internal Server Error", {"Content-Type": "text/plain"})  # FnIndexInferError
        try:
            body = request.json()
        except json.JSONDecodeError:
            return _unprocessable("body", "JSON decode error")
        if not isinstance(body, dict) or not isinstance(body.get("data"), list):
            return _unprocessable("data", "Input should be a valid list")
        unknown = sorted(set(body) - BODY_FIELDS)
        if unknown:
            return _unprocessable(unknown[0], "Extra inputs are not permitted")
        event_id = uuid.uuid4().hex
        self.runs[event_id] = Run(api_name, body["data"])
        self.issued.append(event_id)
        return Reply(200, {"event_id": event_id})

    def _results(self, request: Request) -> Reply:
        if not self._authorised(request):
            return Reply(401, {"error": "Invalid credentials in Authorization header"})
        match = re.fullmatch(rf"{PREFIX}/([^/]+)/([^/]+)", request.path)
        run = self.runs.pop(match.group(2), None) if match else None
        if run is None or match is None or run.api_name != match.group(1):
            return Reply(404, {"detail": "Not Found"})
        problem = self._check(run.data)
        if problem:
            return Reply(events=[("error", json.dumps({"error": problem} if self.show_error else None))])
        prompt = run.data[0] if isinstance(run.data[0], str) else "\n".join(m["content"] for m in run.data[0])
        last_user = (
            run.data[0].rsplit("User: ", 1)[-1]
            if isinstance(run.data[0], str)
            else next((m["content"] for m in reversed(run.data[0]) if m["role"] == "user"), "")
        )
        default = default_report(prompt, self.name) if "<commit" in prompt else f"{self.name} says: {last_user}"
        content = self.script.next_content(default)
        ending = self.script.next_finish("complete")
        events: list[tuple[str | None, str]] = [("heartbeat", "null")]
        text = ""
        for piece in words(content):
            text += piece
            events.append(("generating", json.dumps([text + self.cursor])))
        if ending == "complete":
            events.append(("complete", json.dumps([content] if self.final_outputs is None else self.final_outputs)))
        elif ending == "error":
            events.append(("error", json.dumps({"error": "CUDA out of memory"} if self.show_error else None)))
        return Reply(events=events)

    def _check(self, data: list[Any]) -> str | None:
        """What the Space's function would raise on: too few or too many inputs, or a malformed message."""
        if len(data) != 1 + self.extra_inputs:
            needed = 1 + self.extra_inputs
            return f"An event handler didn't receive enough input values (needed: {needed}, got: {len(data)})."
        message = data[0]
        if isinstance(message, str):
            return None
        if isinstance(message, list) and all(
            isinstance(m, dict)
            and set(m) == {"role", "content"}
            and m["role"] in ROLES
            and isinstance(m["content"], str)
            for m in message
        ):
            return None
        return "the message must be a string or a list of {role, content} messages"


def _unprocessable(field: str, message: str) -> Reply:
    return Reply(422, {"detail": [{"type": "value_error", "loc": ["body", field], "msg": message, "input": None}]})
