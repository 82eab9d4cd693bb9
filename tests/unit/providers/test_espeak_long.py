"""Long text and every output format, with the real espeak-ng (skipped without it locally, failed in CI)."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import soundfile

from stepper.providers.espeak import MAX_BYTES_PER_CALL, EspeakProvider, utf8_length
from stepper.providers.media.audio import PAUSE_BETWEEN_PIECES_S, Pcm, decoded_duration_s, encode
from stepper.providers.media.sentences import split_for_engine
from stepper.schemas import SpeechRequest
from stepper.schemas.speech import Audio
from stepper.settings import ProviderSettings
from tests.support.binaries import require_binary

SENTENCES = [f"Sentence number {n} says that Dr. Brown paid 3.5 euros, e.g. for tea." for n in range(1, 41)]


@pytest.fixture
def provider(artifact_dir: Callable[[int], Path]) -> EspeakProvider:
    require_binary("espeak-ng", "espeak-ng")
    artifact_dir(64 * 1024 * 1024)  # inline: the tests read the bytes back from the URI
    spec = {"name": "espeak", "class": "stepper.providers.espeak:EspeakProvider", "total_timeout_s": 120}
    return EspeakProvider(ProviderSettings.model_validate(spec))


def speak(provider: EspeakProvider, text: str, **extra: object) -> Audio:
    return provider.synthesise(SpeechRequest.model_validate({"text": text, **extra}), "espeak-ng").output.audio


def audio_bytes(audio: Audio) -> bytes:
    if audio.uri.startswith("data:"):
        return base64.b64decode(audio.uri.partition(",")[2])
    return Path(unquote(urlsplit(audio.uri).path)).read_bytes()


def decoded_seconds(data: bytes) -> float:
    """Decode the whole file and count its frames: what a player would play."""
    samples, rate = soundfile.read(io.BytesIO(data), dtype="int16")
    return float(len(samples)) / float(rate)


def test_a_long_text_is_one_file_as_long_as_its_pieces(provider: EspeakProvider) -> None:
    text = " ".join(SENTENCES)
    pieces = split_for_engine(text, MAX_BYTES_PER_CALL, utf8_length)
    assert utf8_length(text) > MAX_BYTES_PER_CALL and len(pieces) > 2  # over one call's limit
    whole = speak(provider, text)
    parts = [speak(provider, piece).duration_s for piece in pieces]
    expected_s = sum(parts) + PAUSE_BETWEEN_PIECES_S * (len(pieces) - 1)
    assert whole.duration_s == pytest.approx(expected_s, abs=0.01 * len(pieces))
    assert whole.duration_s > 20 * speak(provider, SENTENCES[0]).duration_s
    assert decoded_seconds(audio_bytes(whole)) == pytest.approx(whole.duration_s, abs=0.002)


@pytest.mark.parametrize(("audio_format", "magic"), [("wav", b"RIFF"), ("mp3", b""), ("ogg", b"OggS")])
def test_every_format_decodes_back_to_its_stated_duration(
    provider: EspeakProvider, audio_format: str, magic: bytes
) -> None:
    text = " ".join(SENTENCES[:15])  # two pieces: the join is encoded too
    reference = speak(provider, text).duration_s
    audio = speak(provider, text, format=audio_format)
    data = audio_bytes(audio)
    assert audio.format == audio_format and audio.bytes == len(data) and data.startswith(magic)
    info = soundfile.info(io.BytesIO(data))
    assert info.format == {"wav": "WAV", "mp3": "MP3", "ogg": "OGG"}[audio_format]
    assert info.samplerate == 22050 and info.channels == 1
    assert decoded_seconds(data) == pytest.approx(audio.duration_s, abs=0.05)
    assert audio.duration_s == pytest.approx(reference, abs=0.1)  # the same speech, whatever the container
    if audio_format != "wav":
        assert len(data) < len(audio_bytes(speak(provider, text))) / 4  # compressed, not WAV renamed


def test_mp3_and_ogg_uris_carry_their_mime_types(provider: EspeakProvider) -> None:
    assert speak(provider, "Hello.", format="mp3").uri.startswith("data:audio/mpeg;base64,")
    assert speak(provider, "Hello.", format="ogg").uri.startswith("data:audio/ogg;base64,")


def test_a_text_with_no_words_still_gives_a_valid_file(provider: EspeakProvider) -> None:
    audio = speak(provider, "   ", format="ogg")
    assert decoded_seconds(audio_bytes(audio)) == pytest.approx(audio.duration_s, abs=0.05)


def test_five_minutes_of_audio_encode_without_crashing_the_process() -> None:
    """libvorbis overflows its stack when one write holds over a minute of audio; encode writes in blocks."""
    pcm = Pcm(b"\x10\x20" * (22050 * 300), 22050)  # one write of two minutes crashed here
    for audio_format in ("mp3", "ogg"):
        data = encode(pcm, audio_format)
        assert decoded_duration_s(data, audio_format, "test") == pytest.approx(300, abs=0.05)


def test_no_frames_still_encode_to_a_file_that_opens() -> None:
    for audio_format in ("wav", "mp3", "ogg"):
        assert decoded_duration_s(encode(Pcm(b"", 22050), audio_format), audio_format, "test") < 0.01
