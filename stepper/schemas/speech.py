"""``stepper.speech``: text to speech, returned as a reference to an audio artifact."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from stepper.schemas.common import Strict, TaskRequest

#: ``ogg`` is Ogg Vorbis.
AudioFormat = Literal["wav", "mp3", "ogg"]


class SpeechRequest(TaskRequest):
    #: Any length up to 20 000 characters: providers split it at sentence boundaries within their per-call
    #: limit and join the pieces' audio into one file.
    text: str = Field(min_length=1, max_length=20_000)
    voice: str | None = Field(default=None, min_length=1, max_length=200)
    format: AudioFormat = "wav"
    #: Speaking rate in words per minute (espeak-ng's ``-s``; 175 is its default). Providers that cannot
    #: honour it refuse with UnsupportedInput, so the chain moves on to one that can.
    speed: int | None = Field(default=None, ge=80, le=450)
    #: Pitch, 0 (low) to 99 (high), 50 being the voice's own (espeak-ng's ``-p``).
    pitch: int | None = Field(default=None, ge=0, le=99)


class Audio(Strict):
    uri: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    format: AudioFormat
    #: Seconds of audio, measured from the file produced (decoded frames / sample rate), not estimated.
    duration_s: float = Field(ge=0)


class SpeechOutput(Strict):
    audio: Audio
    voice: str
