"""Mock mode: a deterministic stand-in for every family.

The same request and model always give the same output, valid against the family's output model, so
tests and dry runs can assert on it. Outputs are derived from the request where that is cheap (a report
lists the commit's files, a chat reply quotes the last user message) and from a hash of it otherwise.
Every result is labelled ``provider: "mock"`` by the chain.

Chat tries the whole OpenAI flow offline: given ``tools`` (and ``tool_choice`` other than ``none``), the mock
calls one (the named one, else the first) with arguments built from its parameter schema (strings quote the
last user message), unless the conversation ends with a tool result, which it then reports back in words
(``required`` or a named function always calls). A JSON ``response_format`` gets a JSON answer (an instance of
the ``json_schema``); ``stop`` cuts the text at the first stop sequence.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, ClassVar

from pydantic import BaseModel

from stepper.contracts import Provider, Reply
from stepper.schemas import (
    KINDS,
    ChatOutput,
    ChatRequest,
    Kind,
    OcrOutput,
    OcrRequest,
    ReportOutput,
    ReportRequest,
    SpeechOutput,
    SpeechRequest,
    StepsOutput,
    StepsRequest,
    VisionOutput,
    VisionRequest,
)
from stepper.schemas.chat import NamedToolChoice, tool_name
from stepper.schemas.common import TaskRequest

#: Rough speaking rate used to give mock audio a plausible duration.
WORDS_PER_SECOND = 2.5
#: Bytes per second of the 16 kHz, 16-bit mono WAV a real engine would produce.
WAV_BYTES_PER_SECOND = 32_000
ACTIONS = ("click", "type", "scroll", "navigate")


def fingerprint(request: BaseModel, model: str) -> bytes:
    """A stable digest of a request and model: the seed of every mock output."""
    content = request.content() if isinstance(request, TaskRequest) else request.model_dump(mode="json")
    canonical = json.dumps([model, content], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).digest()


class MockProvider(Provider):
    kinds: ClassVar[frozenset[Kind]] = frozenset(KINDS)

    def generate_report(self, request: ReportRequest, model: str) -> Reply[ReportOutput]:
        commit = request.commit
        subject = (commit.message.strip().splitlines() or [f"Commit {commit.sha[:7]}"])[0][:120]
        changed_lines = sum(file.additions + file.deletions for file in commit.files)
        impact = "low" if changed_lines < 50 else "medium" if changed_lines < 500 else "high"
        extensions = sorted({os.path.splitext(file.path)[1].lstrip(".") for file in commit.files} - {""})
        output = ReportOutput(
            title=subject,
            summary=(
                f"Commit {commit.sha[:7]} touches {len(commit.files)} file(s), "
                f"+{sum(f.additions for f in commit.files)}/-{sum(f.deletions for f in commit.files)} lines."
            ),
            changes=[
                {"path": file.path, "description": f"{file.status}: +{file.additions}/-{file.deletions}"}
                for file in commit.files
            ],
            impact=impact,
            tags=["mock", *extensions],
        )
        return Reply(output, {"input_tokens": len(commit.message) // 4, "output_tokens": 64})

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        seed = fingerprint(request, model).hex()
        prompt_tokens = sum(len(m.budget_text()) for m in request.messages) // 4
        if (call := _tool_call(request, seed, last_user)) is not None:
            output = ChatOutput(message={"content": None, "tool_calls": [call]}, finish_reason="tool_calls")
            return Reply(
                output, {"input_tokens": prompt_tokens, "output_tokens": len(call["function"]["arguments"]) // 4}
            )
        content = _text(request, seed, last_user)
        words = content.split()
        finish_reason = "stop"
        if request.max_tokens is not None and len(words) > request.max_tokens:
            content, finish_reason = " ".join(words[: request.max_tokens]), "length"
        for stop in request.stop or ():
            content = content.split(stop, 1)[0]
        output = ChatOutput(message={"role": "assistant", "content": content}, finish_reason=finish_reason)
        return Reply(output, {"input_tokens": prompt_tokens, "output_tokens": len(content.split())})

    def read(self, request: OcrRequest, model: str) -> Reply[OcrOutput]:
        pages = []
        for number, _image in enumerate(request.images):
            seed = fingerprint(request, f"{model}/{number}").hex()
            words = ["mock", "page", str(number + 1), seed[:6]]
            pages.append(
                {
                    "image": number,
                    "text": " ".join(words),
                    "confidence": 90.0,
                    "words": [
                        {"text": word, "confidence": 90.0, "box": [10 + 60 * i, 10, 50, 20]}
                        for i, word in enumerate(words)
                    ],
                }
            )
        return Reply(OcrOutput(pages=pages))

    def detect_steps(self, request: StepsRequest, model: str) -> Reply[StepsOutput]:
        seed = fingerprint(request, model)
        # A video: as if three frames were sampled, one a second.
        frames = len(request.frames) if request.video is None else 3
        steps = [
            {
                "index": index,
                "frame": frame,
                "box": [seed[frame % 32], seed[(frame + 1) % 32], 100, 40],
                "change_ratio": round(0.05 + seed[(frame + 2) % 32] / 1000, 3),
                "action": ACTIONS[seed[(frame + 3) % 32] % len(ACTIONS)],
                "caption": f"mock step {index + 1}",
            }
            for index, frame in enumerate(range(1, frames))
        ]
        return Reply(StepsOutput(steps=steps, frames_read=frames, seconds_read=None if request.video is None else 2.0))

    def analyse(self, request: VisionRequest, model: str) -> Reply[VisionOutput]:
        seed = fingerprint(request, model)
        wanted = set(request.features)
        box = [seed[0], seed[1], 64, 64]
        output = VisionOutput(
            width=640,
            height=480,
            faces=[{"box": box, "confidence": 0.9}] if "faces" in wanted else None,
            people=[] if "people" in wanted else None,
            codes=[] if "codes" in wanted else None,
            colors=[{"hex": f"#{seed[2:5].hex()}", "ratio": 1.0}] if "colors" in wanted else None,
            quality={"sharpness": float(seed[5]), "brightness": float(seed[6]), "contrast": float(seed[7] % 128)}
            if "quality" in wanted
            else None,
            has_text=bool(seed[8] % 2) if "text" in wanted else None,
        )
        return Reply(output)

    def synthesise(self, request: SpeechRequest, model: str) -> Reply[SpeechOutput]:
        digest = fingerprint(request, model).hex()
        duration_s = round(max(0.5, len(request.text.split()) / WORDS_PER_SECOND), 2)
        output = SpeechOutput(
            audio={
                "uri": f"mock://speech/{digest}.{request.format}",
                "bytes": int(duration_s * WAV_BYTES_PER_SECOND) + 44,
                "sha256": digest,
                "format": request.format,
                "duration_s": duration_s,
            },
            voice=request.voice or "mock-default",
        )
        return Reply(output, {"characters": len(request.text)})


def _tool_call(request: ChatRequest, seed: str, last_user: str) -> dict[str, Any] | None:
    """The call the mock makes, if it makes one (see the module's docstring)."""
    choice = request.tool_choice
    if not request.tools or choice == "none":
        return None
    if choice in (None, "auto") and request.messages[-1].role == "tool":
        return None  # the result is in: answer in words
    named = choice.function.name if isinstance(choice, NamedToolChoice) else None
    function = next(tool.function for tool in request.tools if named in (None, tool.function.name))
    arguments = example_of(function.parameters or {"type": "object"}, last_user)
    return {
        "id": f"call_{seed[:24]}",
        "type": "function",
        "function": {"name": function.name, "arguments": json.dumps(arguments)},
    }


def _text(request: ChatRequest, seed: str, last_user: str) -> str:
    last = request.messages[-1]
    if request.response_format is not None and request.response_format.json_schema is not None:
        return json.dumps(example_of(request.response_format.json_schema.json_schema, last_user))
    if request.response_format is not None and request.response_format.type == "json_object":
        return json.dumps({"mock": seed[:8], "you_said": last_user[:200]})
    if last.role == "tool" and last.tool_call_id is not None:
        return f"[mock {seed[:8]}] {tool_name(request.messages, last.tool_call_id)} returned: {last.content[:200]}"
    return f"[mock {seed[:8]}] You said: {last_user[:200]}"


def example_of(schema: Any, text: str) -> Any:
    """A value valid against a plain JSON schema (types, properties, items, enum, const, anyOf): the first
    enum value, the text for a string, 1 for a number, every property of an object."""
    if not isinstance(schema, dict):
        return None
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if isinstance(schema.get("anyOf"), list) and schema["anyOf"]:
        return example_of(schema["anyOf"][0], text)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        return {name: example_of(sub, text) for name, sub in (schema.get("properties") or {}).items()}
    return {"string": text[:100] or "mock", "integer": 1, "number": 1, "boolean": True, "null": None}.get(
        str(kind), [example_of(schema.get("items"), text)] if kind == "array" else None
    )
