"""Audio helpers the speech providers share: PCM from WAV, joining pieces, encoding, storing the result.

A provider turns each piece of text into :class:`Pcm`, :func:`join_pcm` makes one track of them, and
:func:`encode` writes the requested format: WAV with the standard library, MP3 (LAME) and Ogg Vorbis with
``soundfile``, whose wheels bundle libsndfile built with both, so no system codec is needed.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence
from dataclasses import dataclass

from stepper.errors import TruncatedOutput
from stepper.infra.artifacts import artifact_store
from stepper.schemas.speech import Audio, AudioFormat

MIME_TYPES: dict[AudioFormat, str] = {"wav": "audio/wav", "mp3": "audio/mpeg", "ogg": "audio/ogg"}
#: libsndfile's ``(format, subtype)`` for the compressed formats. Vorbis rather than Opus in the Ogg: Opus only
#: takes 8, 12, 16, 24 or 48 kHz, and espeak-ng speaks at 22 050 Hz, so Vorbis needs no resampling.
SOUNDFILE_FORMATS: dict[AudioFormat, tuple[str, str]] = {"mp3": ("MP3", "MPEG_LAYER_III"), "ogg": ("OGG", "VORBIS")}
SAMPLE_BYTES = 2  # signed 16-bit little-endian, what espeak-ng and ElevenLabs' pcm_*/wav_* formats give
#: Frames handed to libsndfile per write. libvorbis allocates its work buffer on the stack, sized by what one
#: write holds: a minute of audio in one call overflows it and kills the process (libsndfile issue #1095,
#: python-soundfile #396); small blocks keep every write's buffer small.
ENCODE_BLOCK_FRAMES = 16_384
#: Silence put between pieces spoken separately, about espeak-ng's own pause after a full stop.
PAUSE_BETWEEN_PIECES_S = 0.3


@dataclass(frozen=True)
class Pcm:
    """Interleaved signed 16-bit little-endian samples: ``frames`` bytes at ``rate_hz``, ``channels`` wide."""

    frames: bytes
    rate_hz: int
    channels: int = 1

    @property
    def frame_count(self) -> int:
        return len(self.frames) // (SAMPLE_BYTES * self.channels)

    @property
    def duration_s(self) -> float:
        """Seconds of audio: frames / sample rate."""
        return self.frame_count / self.rate_hz


def wav_to_pcm(data: bytes, source: str) -> Pcm:
    """The frames really present in a 16-bit WAV (a streamed header may claim more); TruncatedOutput otherwise."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            if wav.getsampwidth() != SAMPLE_BYTES:
                raise TruncatedOutput(f"{source} produced {8 * wav.getsampwidth()}-bit audio; 16-bit was expected")
            channels: int = wav.getnchannels()
            rate: int = wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise TruncatedOutput(f"{source} produced audio that is not a readable WAV ({exc})") from None
    if rate <= 0 or channels <= 0:
        raise TruncatedOutput(f"{source} produced a WAV with {rate} Hz and {channels} channels")
    return Pcm(frames[: len(frames) - len(frames) % (SAMPLE_BYTES * channels)], rate, channels)


def wav_duration_s(data: bytes, source: str) -> float:
    """Seconds of audio in a 16-bit WAV, counting the frames really present, to the millisecond."""
    return round(wav_to_pcm(data, source).duration_s, 3)


def join_pcm(pieces: Sequence[Pcm], pause_s: float = PAUSE_BETWEEN_PIECES_S) -> Pcm:
    """One track of ``pieces`` in order, ``pause_s`` seconds of silence between them.

    Raises ValueError for no pieces, or pieces of different sample rates or channel counts (a provider asks
    every piece of one request in the same format, so this is a bug, not bad input).
    """
    if not pieces:
        raise ValueError("join_pcm needs at least one piece")
    first = pieces[0]
    shapes = {(piece.rate_hz, piece.channels) for piece in pieces}
    if len(shapes) > 1:
        raise ValueError(f"audio pieces differ in sample rate or channels: {sorted(shapes)}")
    silence = bytes(round(pause_s * first.rate_hz) * SAMPLE_BYTES * first.channels)
    return Pcm(silence.join(piece.frames for piece in pieces), first.rate_hz, first.channels)


def encode(pcm: Pcm, audio_format: AudioFormat) -> bytes:
    """``pcm`` as a ``wav``, ``mp3`` (LAME) or ``ogg`` (Vorbis) file's bytes."""
    if audio_format == "wav":
        return encode_wav(pcm)
    import numpy as np
    import soundfile

    container, subtype = SOUNDFILE_FORMATS[audio_format]
    samples = np.frombuffer(pcm.frames, dtype="<i2").reshape(-1, pcm.channels)
    if not len(samples):  # an MP3 of no frames has no frame header, and no decoder opens it: one silent frame
        samples = np.zeros((1, pcm.channels), dtype="<i2")
    buffer = io.BytesIO()
    with soundfile.SoundFile(buffer, "w", pcm.rate_hz, pcm.channels, subtype, format=container) as encoder:
        for start in range(0, len(samples), ENCODE_BLOCK_FRAMES):
            encoder.write(samples[start : start + ENCODE_BLOCK_FRAMES])
    return buffer.getvalue()


def encode_wav(pcm: Pcm) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(pcm.channels)
        wav.setsampwidth(SAMPLE_BYTES)
        wav.setframerate(pcm.rate_hz)
        wav.writeframes(pcm.frames)
    return buffer.getvalue()


def decoded_duration_s(data: bytes, audio_format: AudioFormat, source: str) -> float:
    """Seconds of audio in an encoded file, read back by its decoder (frames / sample rate), to the millisecond.

    Raises TruncatedOutput when the bytes do not decode as ``audio_format``.
    """
    if audio_format == "wav":
        return wav_duration_s(data, source)
    import soundfile

    try:
        info = soundfile.info(io.BytesIO(data))
    except soundfile.SoundFileError as exc:
        raise TruncatedOutput(f"{source} produced {audio_format} that does not decode ({exc})") from None
    return round(float(info.frames) / float(info.samplerate), 3)


def store_pcm(pcm: Pcm, audio_format: AudioFormat, source: str) -> Audio:
    """Encode ``pcm`` as ``audio_format`` and store it, with the duration measured from the encoded audio."""
    data = encode(pcm, audio_format)
    return store_audio(data, audio_format, decoded_duration_s(data, audio_format, source))


def store_audio(data: bytes, audio_format: AudioFormat, duration_s: float) -> Audio:
    """Keep the audio out of the result backend: inline when small, in the artifact store otherwise."""
    ref = artifact_store().save(data, audio_format, MIME_TYPES[audio_format])
    return Audio(uri=ref.uri, bytes=ref.bytes, sha256=ref.sha256, format=audio_format, duration_s=duration_s)
