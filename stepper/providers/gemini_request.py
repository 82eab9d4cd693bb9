"""stepper's chat call as Gemini's ``GenerateContentRequest`` (v1beta REST reference, ai.google.dev/api).

Turns become ``contents`` (``assistant`` is ``model``; consecutive turns of one speaker are merged, as
multi-turn chat expects), ``system`` messages ``systemInstruction``; tool calls and results become
``functionCall`` and ``functionResponse`` parts, tools ``functionDeclarations`` and ``tool_choice``
``toolConfig.functionCallingConfig``; sampling fields, ``response_format`` and ``logprobs`` go into
``generationConfig``. JSON schemas are turned into Gemini's ``Schema`` subset.
"""

from __future__ import annotations

import json
import re
from typing import Any

from stepper.providers.llm.call import LlmCall, tool_choice_function
from stepper.schemas.chat import FunctionDefinition, Message, arguments_object, tool_name

#: Keywords of Gemini's ``Schema`` (an OpenAPI 3.0 subset) copied as they are; ``type`` is upper-cased to its enum.
SCHEMA_KEYWORDS = frozenset({"description", "enum", "format", "nullable", "required", "minItems", "maxItems"})
ROLES = {"user": "user", "assistant": "model", "tool": "user"}
#: ``tool_choice`` as ``functionCallingConfig.mode``.
CALLING_MODES = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
#: Sampling fields of ``generationConfig``, by stepper's (OpenAI's) names.
#: Models that require thought signatures on replayed function calls, and the documented stand-in for a missing one.
SIGNING_MODELS = re.compile(r"gemini-3[.-]")
UNSIGNED_CALL = "skip_thought_signature_validator"
GENERATION_FIELDS = {"top_p": "topP", "seed": "seed", "presence_penalty": "presencePenalty",
                     "frequency_penalty": "frequencyPenalty", "stop": "stopSequences"}  # fmt: skip


def request_body(call: LlmCall) -> dict[str, Any]:
    """The JSON body of ``generateContent`` for ``call``; ValueError when it has nothing Gemini can answer."""
    contents: list[dict[str, Any]] = []
    for message in call.messages:
        if message.role == "system":
            continue
        role = ROLES[message.role]
        parts = _parts(message, call.messages)
        if contents and contents[-1]["role"] == role:  # one turn per speaker, as multi-turn chat expects
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if not contents:
        raise ValueError("needs at least one user or assistant message")
    if SIGNING_MODELS.match(call.model.removeprefix("models/")):
        _sign_replayed_calls(contents)
    payload: dict[str, Any] = {"contents": contents, "generationConfig": _generation_config(call)}
    if system := "\n\n".join(m.content for m in call.messages if m.role == "system"):
        payload["systemInstruction"] = {"parts": [{"text": system}]}
    if call.tools:
        payload["tools"] = [{"functionDeclarations": [_declaration(tool.function) for tool in call.tools]}]
        payload["toolConfig"] = {"functionCallingConfig": _calling_config(call)}
    return payload


def gemini_schema(node: dict[str, Any]) -> dict[str, Any]:
    """A self-contained JSON schema as Gemini's ``Schema``: keywords it rejects (``additionalProperties``,
    ``title``, ``default``...) dropped, property names kept, and ``propertyOrdering`` so fields come out in order."""
    schema: dict[str, Any] = {key: value for key, value in node.items() if key in SCHEMA_KEYWORDS}
    if isinstance(node.get("type"), str):
        schema["type"] = node["type"].upper()
    if isinstance(node.get("items"), dict):
        schema["items"] = gemini_schema(node["items"])
    if isinstance(node.get("anyOf"), list):
        schema["anyOf"] = [gemini_schema(option) for option in node["anyOf"]]
    if isinstance(node.get("properties"), dict):
        schema["properties"] = {name: gemini_schema(sub) for name, sub in node["properties"].items()}
        schema["propertyOrdering"] = list(node["properties"])
    return schema


def _parts(message: Message, messages: list[Message]) -> list[dict[str, Any]]:
    """One turn's parts: its text, its function calls, or the function response it carries."""
    if message.tool_call_id is not None:  # a tool turn (the schema ties the id to the role)
        name = tool_name(messages, message.tool_call_id)
        try:
            result = json.loads(message.content)
        except ValueError:
            result = None
        response = result if isinstance(result, dict) else {"output": message.content}
        return [{"functionResponse": {"name": name, "response": response}}]
    parts: list[dict[str, Any]] = [{"text": message.content}] if message.content or not message.tool_calls else []
    for call in message.tool_calls or ():
        part: dict[str, Any] = {"functionCall": {"name": call.function.name, "args": arguments_object(call)}}
        signature = ((call.extra_content or {}).get("google") or {}).get("thought_signature")
        if isinstance(signature, str):
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _sign_replayed_calls(contents: list[dict[str, Any]]) -> None:
    """Gemini 3 refuses a replayed model turn whose first function call has no thought signature; a call that
    came without one (from another vendor, or rebuilt by the caller) gets the value Google documents for that
    case (ai.google.dev/gemini-api/docs/thought-signatures)."""
    for content in contents:
        calls = [part for part in content["parts"] if "functionCall" in part]
        if content["role"] == "model" and calls and "thoughtSignature" not in calls[0]:
            calls[0]["thoughtSignature"] = UNSIGNED_CALL


def _generation_config(call: LlmCall) -> dict[str, Any]:
    config: dict[str, Any] = {"maxOutputTokens": call.max_tokens}
    if call.temperature is not None:
        config["temperature"] = call.temperature
    for name, wire in GENERATION_FIELDS.items():
        if getattr(call, name) is not None:
            config[wire] = getattr(call, name)
    if call.logprobs:
        config["responseLogprobs"] = True
        if call.top_logprobs:
            config["logprobs"] = call.top_logprobs
    if call.response_format is not None:
        config["responseMimeType"] = "application/json"
        if call.response_format.json_schema is not None:
            config["responseSchema"] = gemini_schema(call.response_format.json_schema.json_schema)
    return config


def _calling_config(call: LlmCall) -> dict[str, Any]:
    """``tool_choice`` as ``functionCallingConfig``: a named function is ANY, allowed that function alone."""
    forced = tool_choice_function(call.tool_choice)
    if forced:
        return {"mode": "ANY", "allowedFunctionNames": [forced]}
    return {"mode": CALLING_MODES.get(str(call.tool_choice or "auto"), "AUTO")}


def _declaration(function: FunctionDefinition) -> dict[str, Any]:
    """A ``FunctionDeclaration``; parameters without properties are left out (Gemini refuses an empty OBJECT)."""
    declaration: dict[str, Any] = {"name": function.name}
    if function.description:
        declaration["description"] = function.description
    if function.parameters and function.parameters.get("properties"):
        declaration["parameters"] = gemini_schema(function.parameters)
    return declaration
