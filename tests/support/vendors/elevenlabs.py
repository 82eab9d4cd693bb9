"""A fake ElevenLabs: ``POST /v1/text-to-speech/{voice_id}`` answering audio, and ``GET /v1/voices``.

Checked like the real API (its reference and the elevenlabs-python SDK): the ``xi-api-key`` header, the voice,
``output_format`` among the documented values, and the JSON body. Errors use ElevenLabs' shapes:
``{"detail": {"status", "message"}}`` for 401/404, FastAPI's ``{"detail": [{"loc", "msg", "type"}]}`` for 422.
Unknown body fields get a 422 (stricter than the documented API promises) so an adapter typo cannot pass.
The audio is deterministic: ``seconds_for(text)`` of a 440 Hz tone for ``pcm_*``/``wav_*``, MP3-like frames
sized for 128 kbps for ``mp3_*`` (they need not decode).
"""

from __future__ import annotations

import io
import math
import struct
import wave
from typing import Any

from tests.support.fake_http import FakeServer, Reply, Request

#: ``output_format`` values of ``POST /v1/text-to-speech/{voice_id}`` (elevenlabs-python, January 2026).
OUTPUT_FORMATS = {
    "alaw_8000",
    "ulaw_8000",
    "mp3_22050_32",
    "mp3_24000_48",
    *(f"mp3_44100_{kbps}" for kbps in (32, 64, 96, 128, 192)),
    *(f"opus_48000_{kbps}" for kbps in (32, 64, 96, 128, 192)),
    *(f"{codec}_{hz}" for codec in ("pcm", "wav") for hz in (8000, 16000, 22050, 24000, 32000, 44100, 48000)),
}
BODY_FIELDS = {
    "text",
    "model_id",
    "language_code",
    "voice_settings",
    "pronunciation_dictionary_locators",
    "seed",
    "previous_text",
    "next_text",
    "previous_request_ids",
    "next_request_ids",
    "use_pvc_as_ivc",
    "apply_text_normalization",
    "apply_language_text_normalization",
}
VOICE_SETTINGS = {"stability", "use_speaker_boost", "similarity_boost", "style", "speed"}
VOICES: list[dict[str, Any]] = [
    {
        "voice_id": "21m00Tcm4TlvDq8ikWAM",
        "name": "Rachel",
        "category": "premade",
        "labels": {"accent": "american", "gender": "female", "language": "en"},
        "preview_url": "https://example.invalid/rachel.mp3",
    },
    {
        "voice_id": "AZnzlk1XvdvUeBnXmlld",
        "name": "Domi",
        "category": "premade",
        "labels": {"accent": "american", "gender": "female"},
        "preview_url": "https://example.invalid/domi.mp3",
    },
]
#: One MPEG-1 layer III frame header (128 kbps, 44.1 kHz) and the bytes such a frame spans.
MP3_FRAME_HEADER = b"\xff\xfb\x90\x64"
MP3_FRAME_BYTES = 417


def seconds_for(text: str) -> float:
    """How long the fake 'speaks' ``text``: 15 characters a second, at least half a second."""
    return max(0.5, len(text) / 15)


def detail(status: int, code: str, message: str) -> Reply:
    return Reply(status, {"detail": {"status": code, "message": message}})


def invalid(location: list[str], message: str, kind: str = "value_error") -> Reply:
    return Reply(422, {"detail": [{"loc": location, "msg": message, "type": kind}]})


def tone(seconds: float, rate_hz: int) -> bytes:
    """16-bit little-endian mono PCM, what ElevenLabs' ``pcm_*`` formats answer."""
    count = round(seconds * rate_hz)
    return struct.pack(f"<{count}h", *(round(8000 * math.sin(2 * math.pi * 440 * i / rate_hz)) for i in range(count)))


class FakeElevenLabs(FakeServer):
    def __init__(self, api_key: str) -> None:
        super().__init__()
        self.api_key = api_key
        self.route("POST", r"/v1/text-to-speech/(?P<voice_id>[^/]+)", self._speech)
        self.route("GET", "/v1/voices", self._voices)

    def _authorised(self, request: Request) -> bool:
        return request.headers.get("xi-api-key") == self.api_key

    def _voices(self, request: Request) -> Reply:
        if not self._authorised(request):
            return detail(401, "invalid_api_key", "Invalid API key")
        return Reply(200, {"voices": VOICES})

    def _speech(self, request: Request) -> Reply:
        if not self._authorised(request):
            return detail(401, "invalid_api_key", "Invalid API key")
        voice_id = request.path.rsplit("/", 1)[-1]
        if voice_id not in {voice["voice_id"] for voice in VOICES}:
            return detail(404, "voice_not_found", f"A voice with the voice_id {voice_id} was not found.")
        output_format = request.query.get("output_format", ["mp3_44100_128"])[-1]
        if output_format not in OUTPUT_FORMATS:
            return invalid(["query", "output_format"], f"Input should be one of {sorted(OUTPUT_FORMATS)}", "enum")
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return invalid(["body"], "Input should be a valid dictionary", "dict_type")
        problem = self._check(request.json())
        if problem:
            return invalid(*problem)
        return self._audio(output_format, seconds_for(request.json()["text"]))

    @staticmethod
    def _check(body: Any) -> tuple[list[str], str] | None:
        if not isinstance(body, dict):
            return ["body"], "Input should be a valid dictionary"
        unknown = sorted(set(body) - BODY_FIELDS)
        if unknown:
            return ["body", unknown[0]], "Extra inputs are not permitted"
        if not isinstance(body.get("text"), str) or not body["text"].strip():
            return ["body", "text"], "Field required: a non-empty string"
        if "model_id" in body and not isinstance(body["model_id"], str):
            return ["body", "model_id"], "Input should be a valid string"
        settings = body.get("voice_settings")
        if settings is not None:
            if not isinstance(settings, dict) or set(settings) - VOICE_SETTINGS:
                return ["body", "voice_settings"], f"Input should be an object with only {sorted(VOICE_SETTINGS)}"
            speed = settings.get("speed")
            if speed is not None and not (isinstance(speed, int | float) and 0.7 <= speed <= 1.2):
                return ["body", "voice_settings", "speed"], "Input should be between 0.7 and 1.2"
        return None

    @staticmethod
    def _audio(output_format: str, seconds: float) -> Reply:
        codec, rate, *_ = output_format.split("_")
        if codec == "mp3":
            frames = math.ceil(seconds * 128_000 / 8 / MP3_FRAME_BYTES)
            frame = MP3_FRAME_HEADER + bytes(MP3_FRAME_BYTES - len(MP3_FRAME_HEADER))
            return Reply(200, b"ID3\x04\x00\x00\x00\x00\x00\x00" + frame * frames, {"Content-Type": "audio/mpeg"})
        pcm = tone(seconds, int(rate))
        if codec == "pcm":
            return Reply(200, pcm, {"Content-Type": "audio/pcm"})
        if codec == "wav":
            buffer = io.BytesIO()
            with wave.open(buffer, "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(int(rate))
                wav.writeframes(pcm)
            return Reply(200, buffer.getvalue(), {"Content-Type": "audio/wav"})
        return Reply(200, bytes(round(seconds * int(rate))), {"Content-Type": "audio/basic"})
