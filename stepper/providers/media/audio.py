"""Audio helpers the speech providers share: WAV durations, PCM wrapping, storing the result."""

from __future__ import annotations

import io
import wave

from stepper.errors import TruncatedOutput
from stepper.infra.artifacts import artifact_store
from stepper.schemas.speech import Audio, AudioFormat

MIME_TYPES: dict[AudioFormat, str] = {"wav": "audio/wav", "mp3": "audio/mpeg"}


def wav_duration_s(data: bytes, source: str) -> float:
    """Seconds of audio in a WAV, counting the frames really present (a streamed header may claim more)."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            frame_bytes: int = wav.getsampwidth() * wav.getnchannels()
            rate: int = wav.getframerate()
            return round(len(wav.readframes(wav.getnframes())) // frame_bytes / rate, 3)
    except (wave.Error, EOFError, ZeroDivisionError) as exc:
        raise TruncatedOutput(f"{source} produced audio that is not a readable WAV ({exc})") from None


def pcm_to_wav(pcm: bytes, rate_hz: int) -> bytes:
    """Wrap raw 16-bit little-endian mono PCM in a WAV container."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate_hz)
        wav.writeframes(pcm[: len(pcm) - len(pcm) % 2])  # an odd trailing byte is half a sample: drop it
    return buffer.getvalue()


def store_audio(data: bytes, audio_format: AudioFormat, duration_s: float) -> Audio:
    """Keep the audio out of the result backend: inline when small, in the artifact store otherwise."""
    ref = artifact_store().save(data, audio_format, MIME_TYPES[audio_format])
    return Audio(uri=ref.uri, bytes=ref.bytes, sha256=ref.sha256, format=audio_format, duration_s=duration_s)
