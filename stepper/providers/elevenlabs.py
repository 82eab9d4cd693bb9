"""ElevenLabs text to speech: natural voices over HTTPS, first in the speech chain while the key has credit.

Wire format (ElevenLabs' API reference and its Python SDK): ``POST /v1/text-to-speech/{voice_id}`` with
``?output_format=`` and a JSON body ``{text, model_id[, voice_settings]}``, the key in ``xi-api-key``; the
answer is the audio itself. ``GET /v1/voices`` lists the account's voices. Errors are ``{"detail": ...}``
bodies, mapped by :class:`~stepper.providers.http.HttpClient` (401 auth, 422 invalid, 429 rate limit, 5xx).
Text longer than the model takes in one request is sent in pieces of whole sentences; every piece is asked
for as PCM (``wav_output_format``) so the pieces join exactly and are encoded once, as WAV, MP3 or Ogg Vorbis.
Options: ``default_voice_id`` (used when a request names no voice), ``wav_output_format`` (``wav_16000``;
a ``pcm_<rate>`` value is read as raw PCM, for gateways that predate the ``wav_*`` formats) and
``max_characters`` (per request; by default the model's documented limit).
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from stepper.contracts import Provider, Reply
from stepper.errors import AuthError, TruncatedOutput, UnsupportedInput
from stepper.providers.http import HttpClient
from stepper.providers.media.audio import Pcm, join_pcm, store_pcm, wav_to_pcm
from stepper.providers.media.sentences import split_for_engine
from stepper.schemas import Kind, SpeechOutput, SpeechRequest
from stepper.settings import ProviderSettings

DEFAULT_BASE_URL = "https://api.elevenlabs.io"
#: Characters one request may carry, by model (ElevenLabs' models overview).
MAX_CHARACTERS_BY_MODEL = {
    "eleven_v3": 5_000,
    "eleven_multilingual_v2": 10_000,
    "eleven_flash_v2_5": 40_000,
    "eleven_turbo_v2_5": 40_000,
    "eleven_flash_v2": 30_000,
    "eleven_turbo_v2": 30_000,
}
#: For a model not listed: the smallest limit of the current models.
DEFAULT_MAX_CHARACTERS = 5_000
#: 16 kHz mono 16-bit: plenty for speech, and 44.1 kHz PCM/WAV needs the Pro tier.
DEFAULT_WAV_OUTPUT_FORMAT = "wav_16000"
#: ``voice_settings.speed`` is a multiple of the voice's own pace, accepted from 0.7 to 1.2; a request's
#: words per minute are read against espeak-ng's default pace, so both providers mean about the same.
SPEED_RANGE = (0.7, 1.2)
NORMAL_WORDS_PER_MINUTE = 175


class ElevenLabsProvider(Provider):
    kinds: ClassVar[frozenset[Kind]] = frozenset({"speech"})

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self.http = HttpClient(settings, DEFAULT_BASE_URL, self.api_key)

    def synthesise(self, request: SpeechRequest, model: str) -> Reply[SpeechOutput]:
        voice = request.voice or self.settings.options.get("default_voice_id")
        if not voice:
            raise UnsupportedInput(f"no voice: name one in the request or set {self.settings.name}'s default_voice_id")
        if request.pitch is not None:
            raise UnsupportedInput("ElevenLabs has no pitch control; leave pitch out or use espeak")
        voice_settings = {"voice_settings": {"speed": voice_speed(request.speed)}} if request.speed is not None else {}
        wav_format = str(self.settings.options.get("wav_output_format", DEFAULT_WAV_OUTPUT_FORMAT))
        pieces = split_for_engine(request.text, self.max_characters(model)) or [request.text]
        pcm = join_pcm(
            [self._speak(voice, {"text": piece, "model_id": model, **voice_settings}, wav_format) for piece in pieces]
        )
        output = SpeechOutput(audio=store_pcm(pcm, request.format, self.settings.name), voice=voice)
        return Reply(output, {"characters": len(request.text)})

    def max_characters(self, model: str) -> int:
        """Characters one request may carry: the ``max_characters`` option, else the model's documented limit."""
        default = MAX_CHARACTERS_BY_MODEL.get(model, DEFAULT_MAX_CHARACTERS)
        return int(self.settings.options.get("max_characters", default))

    def _speak(self, voice: str, payload: dict[str, Any], output_format: str) -> Pcm:
        """One request: ``payload`` spoken by ``voice`` as ``output_format`` (``wav_<hz>`` or ``pcm_<hz>``).

        Raises TruncatedOutput for an empty or unreadable answer, and the HTTP client's errors.
        """
        data, _ = self.http.post_bytes(
            f"/v1/text-to-speech/{quote(voice, safe='')}", payload, self._headers(), {"output_format": output_format}
        )
        if not data:
            raise TruncatedOutput(f"{self.settings.name} answered 200 without audio")
        if output_format.startswith("pcm_"):
            return Pcm(data[: len(data) - len(data) % 2], int(output_format.removeprefix("pcm_")))
        return wav_to_pcm(data, self.settings.name)

    def voices(self) -> list[dict[str, str | None]]:
        """The account's voices: ``id`` (what ``voice`` accepts), ``name`` and ``language`` when labelled."""
        body = self.http.get_json("/v1/voices", self._headers())
        try:
            return [
                {"id": v["voice_id"], "name": v.get("name"), "language": (v.get("labels") or {}).get("language")}
                for v in body["voices"]
            ]
        except (KeyError, TypeError, AttributeError):
            raise TruncatedOutput(f"{self.settings.name} listed voices without voices[].voice_id") from None

    def _headers(self) -> dict[str, str]:
        key = self.api_key
        if not key:
            raise AuthError(f"{self.settings.api_key_env} is not set; set it or remove {self.settings.name!r}")
        return {"xi-api-key": key}


def voice_speed(words_per_minute: int) -> float:
    """The request's words per minute as ElevenLabs' speed multiple, or UnsupportedInput outside its range."""
    speed = round(words_per_minute / NORMAL_WORDS_PER_MINUTE, 2)
    low, high = SPEED_RANGE
    if not low <= speed <= high:
        raise UnsupportedInput(
            f"ElevenLabs speaks at {low:g}-{high:g}x normal pace, about "
            f"{round(low * NORMAL_WORDS_PER_MINUTE)}-{round(high * NORMAL_WORDS_PER_MINUTE)} words per minute; "
            f"{words_per_minute} is outside it"
        )
    return speed
