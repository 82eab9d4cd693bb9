"""A fake Gemini API: ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``.

Checked like the real API (its REST reference and googleapis/python-genai): the ``x-goog-api-key`` header, the
``GenerateContentRequest`` body (``contents`` with roles ``user``/``model`` and text parts, ``systemInstruction``,
``generationConfig`` field names, ``responseSchema`` as Gemini's OpenAPI subset with ``required`` naming defined
properties). Errors use Google's shape ``{"error": {"code", "message", "status", "details"}}`` and its messages:
a bad key is 400 INVALID_ARGUMENT with ``ErrorInfo.reason`` API_KEY_INVALID, a missing one 403 PERMISSION_DENIED.
Stricter than Google in one way, on purpose: a ``key`` query parameter is refused, so tests prove the adapter
never puts the key in a URL. Streams send one chunk per word, ``finishReason`` and full usage on the last one.

Function calling as the reference describes it (``Tool.functionDeclarations``, ``ToolConfig.functionCallingConfig``,
``Part.functionCall``/``functionResponse``): declarations are checked (names, ``parameters`` as a Schema), a
``functionResponse`` must answer a ``functionCall`` of the model turn before it, by name, with an object. Given
tools in mode AUTO or ANY, the fake calls one (the first allowed) with an argument per declared property, as a
whole ``functionCall`` part (streamed in one chunk too) and ``finishReason`` STOP, unless the conversation ends
with function responses (AUTO), which it then quotes in text. Its function calls carry a ``thoughtSignature``,
and for ``gemini-3`` models a replayed model turn's first function call must bring one back, as Google requires.
"""

from __future__ import annotations

import json
import re
from collections import deque
from typing import Any

from tests.support.fake_http import FakeServer, Reply, Request
from tests.support.vendors.common import Script, default_report, words

#: Fields of ``GenerateContentRequest`` (the model comes from the path).
REQUEST_FIELDS = {
    "contents",
    "systemInstruction",
    "generationConfig",
    "safetySettings",
    "tools",
    "toolConfig",
    "cachedContent",
}
#: Fields of ``GenerationConfig`` in the REST reference (camelCase, as the JSON mapping of the proto).
GENERATION_FIELDS = {
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "responseModalities",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "enableEnhancedCivicAnswers",
    "speechConfig",
    "thinkingConfig",
    "mediaResolution",
}
#: Fields of ``Schema`` (an OpenAPI 3.0 subset); ``additionalProperties`` is not accepted by the Gemini API.
SCHEMA_FIELDS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
}
CALLING_MODES = {"AUTO", "ANY", "NONE", "VALIDATED"}
#: The ``thoughtSignature`` the fake puts on its function calls (base64, as Google's bytes are in JSON).
SIGNATURE = "ZmFrZS10aG91Z2h0LXNpZ25hdHVyZQ=="
FUNCTION_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_.-]{0,63}$")
TYPES = {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}
MIME_TYPES = {"text/plain", "application/json", "application/xml", "application/yaml", "text/x.enum"}
#: Finish reasons with which Google sends no content at all.
WITHHELD = {"SAFETY", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
_PATH = re.compile(r"/v1beta/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent)")


def error(code: int, message: str, status: str, *details: dict[str, Any]) -> Reply:
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        body["details"] = list(details)
    return Reply(code, {"error": body})


def invalid(message: str) -> Reply:
    return error(400, message, "INVALID_ARGUMENT")


class FakeGemini(FakeServer):
    def __init__(self, api_key: str, name: str = "fake-gemini") -> None:
        super().__init__()
        self.api_key = api_key
        self.name = name
        self.script = Script()
        #: Prompt blocks for the next requests: each answers ``promptFeedback.blockReason`` and no candidates.
        self.block_reasons: deque[str] = deque()
        #: Thought summaries the next answers start with (parts with ``"thought": true``).
        self.thoughts: deque[str] = deque()
        #: Answer 403 as Google does for a suspended key, naming the key in the message (it must be redacted).
        self.suspended = False
        #: ``usageMetadata.cachedContentTokenCount`` of the next answers, when set.
        self.cached_tokens: int | None = None
        self.route("POST", _PATH.pattern, self._generate)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1beta"

    def _generate(self, request: Request) -> Reply:
        match = _PATH.fullmatch(request.path)
        assert match is not None
        streaming = match["method"] == "streamGenerateContent"
        refusal = self._refuse(request, streaming)
        if refusal:
            return refusal
        try:
            body = request.json()
        except ValueError:
            return invalid("Invalid JSON payload received. Unexpected token.")
        problem = self._check(body) or _check_signatures(body, match["model"])
        if problem:
            return invalid(problem)
        reply = self._answer(body, match["model"])
        if not streaming:
            return Reply(200, reply)
        return Reply(events=[(None, json.dumps(chunk)) for chunk in self._chunks(reply)])

    def _refuse(self, request: Request, streaming: bool) -> Reply | None:
        if "key" in request.query:
            return invalid(f"{self.name}: send the API key in the x-goog-api-key header, not in the URL")
        key = request.headers.get("x-goog-api-key")
        if key is None:
            return error(
                403,
                "Method doesn't allow unregistered callers (callers without established identity). "
                "Please use API Key or other form of API consumer identity to call this API.",
                "PERMISSION_DENIED",
            )
        if key != self.api_key:
            return error(
                400,
                "API key not valid. Please pass a valid API key.",
                "INVALID_ARGUMENT",
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                },
            )
        if self.suspended:
            return error(403, f"Permission denied: Consumer 'api_key:{key}' has been suspended.", "PERMISSION_DENIED")
        if streaming and request.query.get("alt") != ["sse"]:
            return invalid(f"{self.name} streams only as server-sent events: add ?alt=sse")
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return invalid("Invalid JSON payload received. Content-Type must be application/json.")
        return None

    def _answer(self, body: dict[str, Any], model: str) -> dict[str, Any]:
        system = " ".join(part["text"] for part in (body.get("systemInstruction") or {}).get("parts", ()))
        turns = [" ".join(map(_part_text, content["parts"])) for content in body["contents"]]
        prompt = "\n".join([system, *turns])
        prompt_tokens = max(1, len(prompt) // 4)
        usage: dict[str, Any] = {
            "promptTokenCount": prompt_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
        }
        if self.block_reasons:
            usage["totalTokenCount"] = usage["promptTokenCount"]
            feedback = {"blockReason": self.block_reasons.popleft(), "safetyRatings": _ratings(blocked=True)}
            return {"promptFeedback": feedback, "usageMetadata": usage, "modelVersion": model}
        config = body.get("generationConfig") or {}
        users = [text for content, text in zip(body["contents"], turns, strict=True) if content["role"] == "user"]
        last_user = users[-1] if users else ""
        default = (
            default_report(prompt, self.name)
            if config.get("responseMimeType") == "application/json"
            else f"{self.name} says: {last_user}"
        )
        if self.cached_tokens is not None:
            usage["cachedContentTokenCount"] = self.cached_tokens
        call = _function_call(body)
        responses = [p["functionResponse"] for p in body["contents"][-1]["parts"] if "functionResponse" in p]
        if responses:
            default = f"{self.name} read the tools: " + json.dumps([[r["name"], r["response"]] for r in responses])
        text = self.script.next_content(default)
        finish = self.script.next_finish("STOP")
        candidate: dict[str, Any] = {"finishReason": finish, "index": 0, "safetyRatings": _ratings(finish == "SAFETY")}
        if finish not in WITHHELD:
            thought = [{"text": self.thoughts.popleft(), "thought": True}] if self.thoughts else []
            answer = {"functionCall": call, "thoughtSignature": SIGNATURE} if call is not None else {"text": text}
            candidate["content"] = {"parts": [*thought, answer], "role": "model"}
            if config.get("responseLogprobs") and call is None:
                candidate["logprobsResult"] = _logprobs_result(text, int(config.get("logprobs", 0)))
        usage["candidatesTokenCount"] = max(1, len(text) // 4) if "content" in candidate else 0
        usage["totalTokenCount"] = usage["promptTokenCount"] + usage["candidatesTokenCount"]
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": "fake-gemini"}

    @staticmethod
    def _chunks(reply: dict[str, Any]) -> list[dict[str, Any]]:
        """The answer as Google streams it: a chunk per piece of text, every chunk with the prompt's usage, the
        last with ``finishReason`` and the candidates' usage too."""
        if "candidates" not in reply or "content" not in reply["candidates"][0]:
            return [reply]
        final = reply["candidates"][0]
        parts = final["content"]["parts"]
        last = [{"text": piece} for piece in words(parts[-1]["text"])] if "text" in parts[-1] else [parts[-1]]
        pieces = [dict(part) for part in parts[:-1]] + last
        partial_usage = {key: reply["usageMetadata"][key] for key in ("promptTokenCount", "promptTokensDetails")}
        chunks = []
        for piece in pieces:
            candidate = {"content": {"parts": [piece], "role": "model"}, "index": 0}
            chunks.append(
                {"candidates": [candidate], "usageMetadata": partial_usage, "modelVersion": reply["modelVersion"]}
            )
        if "logprobsResult" in final:  # each chunk carries the steps of its own text
            for chunk in chunks:
                parts = chunk["candidates"][0]["content"]["parts"]
                if "text" in parts[0] and not parts[0].get("thought"):
                    chunk["candidates"][0]["logprobsResult"] = _logprobs_result(parts[0]["text"], 0)
        chunks[-1]["candidates"][0] |= {"finishReason": final["finishReason"], "safetyRatings": final["safetyRatings"]}
        chunks[-1]["usageMetadata"] = reply["usageMetadata"]
        return chunks

    @classmethod
    def _check(cls, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "Invalid JSON payload received. Expected an object."
        for name in body:
            if name not in REQUEST_FIELDS:
                return f'Invalid JSON payload received. Unknown name "{name}": Cannot find field.'
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return "* GenerateContentRequest.contents: contents is not specified\n"
        for index, content in enumerate(contents):
            if not isinstance(content, dict) or content.get("role") not in {"user", "model"}:
                return "Please use a valid role: user, model."
            problem = cls._check_parts(content, f"contents[{index}]", {"role", "parts"})
            if problem:
                return problem
            problem = _check_responses(content, contents[index - 1] if index else None, f"contents[{index}]")
            if problem:
                return problem
        if "systemInstruction" in body:
            problem = cls._check_parts(body["systemInstruction"], "system_instruction", {"role", "parts"})
            if problem:
                return problem
        return cls._check_tools(body) or cls._check_config(body.get("generationConfig", {}))

    @classmethod
    def _check_tools(cls, body: dict[str, Any]) -> str | None:
        names: list[str] = []
        for index, tool in enumerate(body.get("tools") or ()):
            if not isinstance(tool, dict) or set(tool) - {"functionDeclarations", "codeExecution", "googleSearch"}:
                return f"Invalid JSON payload received. Unknown name at 'tools[{index}]': Cannot find field."
            for number, declaration in enumerate(tool.get("functionDeclarations") or ()):
                where = f"tools[{index}].function_declarations[{number}]"
                if set(declaration) - {"name", "description", "parameters", "parametersJsonSchema", "response"}:
                    return f"Invalid JSON payload received. Unknown name at '{where}': Cannot find field."
                if not FUNCTION_NAME.match(str(declaration.get("name", ""))):
                    return f"* GenerateContentRequest.{where}.name: Invalid function name."
                if "parameters" in declaration:
                    problem = cls._check_schema(declaration["parameters"], f"{where}.parameters")
                    if problem:
                        return problem
                names.append(declaration["name"])
        calling = (body.get("toolConfig") or {}).get("functionCallingConfig")
        if calling is not None:
            if not names:
                return (
                    "* GenerateContentRequest.tool_config: function calling config is set without function declarations"
                )
            if calling.get("mode", "AUTO") not in CALLING_MODES or set(calling) - {"mode", "allowedFunctionNames"}:
                return "Invalid value at 'tool_config.function_calling_config.mode'"
            allowed = calling.get("allowedFunctionNames")
            if allowed is not None and (calling.get("mode") not in {"ANY", "VALIDATED"} or set(allowed) - set(names)):
                return (
                    "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names: only set "
                    "when the Mode is ANY, naming declared functions"
                )
        return None

    @staticmethod
    def _check_parts(content: Any, where: str, fields: set[str]) -> str | None:
        if not isinstance(content, dict):
            return f"Invalid value at '{where}': expected a Content object."
        for name in content:
            if name not in fields:
                return f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field."
        parts = content.get("parts")
        if not isinstance(parts, list) or not parts:
            return f"* GenerateContentRequest.{where}.parts: contents.parts must not be empty.\n"
        for index, part in enumerate(parts):
            if not isinstance(part, dict) or not _valid_part(part):
                return (
                    f"* GenerateContentRequest.{where}.parts[{index}]: a part is exactly a string 'text', a "
                    "'functionCall' {name, args} or a 'functionResponse' {name, response}\n"
                )
        return None

    @classmethod
    def _check_config(cls, config: Any) -> str | None:
        if not isinstance(config, dict):
            return "Invalid value at 'generation_config': expected a GenerationConfig object."
        for name in config:
            if name not in GENERATION_FIELDS:
                return (
                    f"Invalid JSON payload received. Unknown name \"{name}\" at 'generation_config': Cannot find field."
                )
        max_tokens = config.get("maxOutputTokens", 1)
        if not isinstance(max_tokens, int) or max_tokens < 1:
            return "* GenerateContentRequest.generation_config.max_output_tokens: must be a positive integer\n"
        temperature = config.get("temperature", 1.0)
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 2:
            return "* GenerateContentRequest.generation_config.temperature: must be in [0.0, 2.0]\n"
        mime = config.get("responseMimeType", "text/plain")
        if mime not in MIME_TYPES:
            return f"* GenerateContentRequest.generation_config.response_mime_type: unsupported value {mime!r}\n"
        if "responseSchema" in config and "responseJsonSchema" in config:
            return "* GenerateContentRequest.generation_config: set response_schema or response_json_schema, not both\n"
        if "responseSchema" in config:
            if mime not in {"application/json", "text/x.enum"}:
                return (
                    "* GenerateContentRequest.generation_config.response_schema: response_mime_type must be "
                    "application/json or text/x.enum when response_schema is set\n"
                )
            return cls._check_schema(config["responseSchema"], "generation_config.response_schema")
        return None

    @classmethod
    def _check_schema(cls, schema: Any, where: str) -> str | None:
        if not isinstance(schema, dict):
            return f"Invalid value at '{where}': expected a Schema object."
        for name in schema:
            if name not in SCHEMA_FIELDS:
                return f"Invalid JSON payload received. Unknown name \"{name}\" at '{where}': Cannot find field."
        if schema.get("type") not in TYPES:
            enum = "type.googleapis.com/google.ai.generativelanguage.v1beta.Type"
            return f"Invalid value at '{where}.type' ({enum}), {json.dumps(schema.get('type'))}"
        properties = schema.get("properties", {})
        if schema["type"] == "OBJECT" and not properties:
            return f"* GenerateContentRequest.{where}.properties: should be non-empty for OBJECT type\n"
        for index, name in enumerate(schema.get("required", ())):
            if name not in properties:
                return f"* GenerateContentRequest.{where}.required[{index}]: property is not defined\n"
        for index, name in enumerate(schema.get("propertyOrdering", ())):
            if name not in properties:
                return f"* GenerateContentRequest.{where}.property_ordering[{index}]: property is not defined\n"
        if "enum" in schema and not all(isinstance(value, str) for value in schema["enum"]):
            return f"Invalid value at '{where}.enum': enum values must be strings"
        if schema["type"] == "ARRAY" and "items" not in schema:
            return f"* GenerateContentRequest.{where}.items: missing field.\n"
        nested = [(sub, f"{where}.properties[{name}].value") for name, sub in properties.items()]
        nested += [(schema["items"], f"{where}.items")] if "items" in schema else []
        nested += [(sub, f"{where}.any_of[{i}]") for i, sub in enumerate(schema.get("anyOf", ()))]
        for sub, path in nested:
            problem = cls._check_schema(sub, path)
            if problem:
                return problem
        return None


def _ratings(blocked: bool) -> list[dict[str, Any]]:
    categories = ("HARM_CATEGORY_HATE_SPEECH", "HARM_CATEGORY_DANGEROUS_CONTENT", "HARM_CATEGORY_HARASSMENT")
    ratings: list[dict[str, Any]] = [{"category": category, "probability": "NEGLIGIBLE"} for category in categories]
    if blocked:
        ratings[0] = {"category": categories[0], "probability": "HIGH", "blocked": True}
    return ratings


def _valid_part(part: dict[str, Any]) -> bool:
    if not isinstance(part.get("thoughtSignature", ""), str):
        return False
    part = {key: value for key, value in part.items() if key != "thoughtSignature"}
    if "text" in part:
        return isinstance(part["text"], str) and not set(part) - {"text", "thought"}
    if set(part) == {"functionCall"}:
        call = part["functionCall"]
        return isinstance(call, dict) and isinstance(call.get("name"), str) and isinstance(call.get("args", {}), dict)
    if set(part) == {"functionResponse"}:
        response = part["functionResponse"]
        return (
            isinstance(response, dict)
            and isinstance(response.get("name"), str)
            and isinstance(response.get("response"), dict)
        )
    return False


def _check_responses(content: dict[str, Any], before: dict[str, Any] | None, where: str) -> str | None:
    """A turn of function responses answers, by name, the function calls of the model turn before it."""
    answered = [part["functionResponse"]["name"] for part in content["parts"] if "functionResponse" in part]
    if not answered:
        return None
    called = [part["functionCall"]["name"] for part in (before or {}).get("parts", ()) if "functionCall" in part]
    if content["role"] != "user" or sorted(answered) != sorted(called):
        return (
            f"* GenerateContentRequest.{where}: Please ensure that function response turn comes immediately after "
            "a function call turn, with as many function response parts as function call parts."
        )
    return None


def _part_text(part: dict[str, Any]) -> str:
    if "text" in part:
        return str(part["text"])
    return json.dumps(part.get("functionCall") or part.get("functionResponse"))


def _function_call(body: dict[str, Any]) -> dict[str, Any] | None:
    """The call the fake makes (see the module's docstring), with an argument per declared property."""
    declarations = [d for tool in body.get("tools") or () for d in tool.get("functionDeclarations") or ()]
    calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
    mode = calling.get("mode", "AUTO")
    answered = any("functionResponse" in part for part in body["contents"][-1]["parts"])
    if not declarations or mode == "NONE" or (mode == "AUTO" and answered):
        return None
    name = (calling.get("allowedFunctionNames") or [declarations[0]["name"]])[0]
    declaration = next(d for d in declarations if d["name"] == name)
    properties = (declaration.get("parameters") or {}).get("properties") or {}
    return {"name": name, "args": {prop: f"{prop} value" for prop in properties}}


def _logprobs_result(text: str, top: int) -> dict[str, Any]:
    """``LogprobsResult``: a chosen candidate per word, and ``top`` candidates per step."""
    steps = words(text)
    chosen = [{"token": piece, "tokenId": index, "logProbability": -0.25} for index, piece in enumerate(steps)]
    tops = [{"candidates": [dict(item) for _ in range(top)]} for item in chosen]
    return {"chosenCandidates": chosen, "topCandidates": tops, "logProbabilitySum": -0.25 * len(steps)}


def _check_signatures(body: dict[str, Any], model: str) -> str | None:
    """Gemini 3 refuses a model turn whose first function call comes back without its ``thoughtSignature``
    (ai.google.dev/gemini-api/docs/thought-signatures)."""
    if not model.startswith("gemini-3"):
        return None
    for index, content in enumerate(body["contents"]):
        calls = [part for part in content["parts"] if "functionCall" in part]
        if content["role"] == "model" and calls and "thoughtSignature" not in calls[0]:
            return (
                f"Function call is missing a thought_signature in functionCall parts. This is required for tools "
                f"to work correctly (contents[{index}])."
            )
    return None
