"""ElevenLabs text to speech: natural voices over HTTPS, first in the speech chain while the key has credit.

Wire format (ElevenLabs' API reference and its Python SDK): ``POST /v1/text-to-speech/{voice_id}`` with
``?output_format=`` and a JSON body ``{text, model_id[, voice_settings]}``, the key in ``xi-api-key``; the
answer is the audio itself. ``GET /v1/voices`` lists the account's voices. Errors are ``{"detail": ...}``
bodies, mapped by :class:`~stepper.providers.http.HttpClient` (401 auth, 422 invalid, 429 rate limit, 5xx).
Options: ``default_voice_id`` (used when a request names no voice) and ``wav_output_format`` (``wav_16000``;
a ``pcm_<rate>`` value is wrapped in a WAV header here, for gateways that predate the ``wav_*`` formats).
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from stepper.contracts import Provider, Reply
from stepper.errors import AuthError, TruncatedOutput, UnsupportedInput
from stepper.providers.http import HttpClient
from stepper.providers.media.audio import pcm_to_wav, store_audio, wav_duration_s
from stepper.schemas import Kind, SpeechOutput, SpeechRequest
from stepper.settings import ProviderSettings

DEFAULT_BASE_URL = "https://api.elevenlabs.io"
#: The API's own default format; its bitrate gives the duration without decoding the MP3.
MP3_OUTPUT_FORMAT = "mp3_44100_128"
MP3_BITS_PER_S = 128_000
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
        payload: dict[str, Any] = {"text": request.text, "model_id": model}
        if request.speed is not None:
            payload["voice_settings"] = {"speed": voice_speed(request.speed)}
        wav_format = str(self.settings.options.get("wav_output_format", DEFAULT_WAV_OUTPUT_FORMAT))
        output_format = MP3_OUTPUT_FORMAT if request.format == "mp3" else wav_format
        data, _ = self.http.post_bytes(
            f"/v1/text-to-speech/{quote(voice, safe='')}", payload, self._headers(), {"output_format": output_format}
        )
        if not data:
            raise TruncatedOutput(f"{self.settings.name} answered 200 without audio")
        if request.format == "mp3":
            duration_s = round(len(data) * 8 / MP3_BITS_PER_S, 3)
        else:
            if output_format.startswith("pcm_"):
                data = pcm_to_wav(data, int(output_format.removeprefix("pcm_")))
            duration_s = wav_duration_s(data, self.settings.name)
        output = SpeechOutput(audio=store_audio(data, request.format, duration_s), voice=voice)
        return Reply(output, {"characters": len(request.text)})

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
