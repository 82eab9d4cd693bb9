"""The espeak-ng provider, running the real espeak-ng (skipped without it locally, failed without it in CI)."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from stepper.errors import Timeout, UnprocessableInput, UnsupportedInput
from stepper.providers.espeak import EspeakProvider
from stepper.schemas import SpeechRequest
from stepper.schemas.speech import Audio
from stepper.settings import ProviderSettings
from tests.support.binaries import require_binary
from tests.support.crashing import CRASH, crashing_espeak

SetArtifacts = Callable[[int], Path]


@pytest.fixture
def set_artifacts(artifact_dir: SetArtifacts) -> SetArtifacts:
    """Artifacts in a temporary directory, inline up to 1 MiB unless a test says otherwise."""
    artifact_dir(1024 * 1024)
    return artifact_dir


def make_provider(**fields: object) -> EspeakProvider:
    require_binary("espeak-ng", "espeak-ng")
    spec = {"name": "espeak", "class": "stepper.providers.espeak:EspeakProvider", "total_timeout_s": 60, **fields}
    return EspeakProvider(ProviderSettings.model_validate(spec))


@pytest.fixture
def provider(set_artifacts: SetArtifacts) -> EspeakProvider:
    return make_provider()


def speech(text: str, **extra: object) -> SpeechRequest:
    return SpeechRequest.model_validate({"text": text, **extra})


def audio_bytes(audio: Audio) -> bytes:
    if audio.uri.startswith("data:"):
        return base64.b64decode(audio.uri.partition(",")[2])
    return Path(unquote(urlsplit(audio.uri).path)).read_bytes()


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as wav:
        frames: int = wav.getnframes()
        rate: int = wav.getframerate()
        return frames / rate


def test_speaks_a_valid_wav(provider: EspeakProvider) -> None:
    reply = provider.synthesise(speech("Hello world, this is stepper."), "espeak-ng")
    audio = reply.output.audio
    data = audio_bytes(audio)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE" and audio.format == "wav"
    assert audio.bytes == len(data)
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2 and wav.getframerate() > 0
    assert audio.duration_s > 0
    assert audio.duration_s == pytest.approx(wav_seconds(data), abs=0.001)  # the header is not a streamed guess
    assert reply.output.voice == "en" and reply.usage == {"characters": 29}


def test_duration_grows_with_the_text(provider: EspeakProvider) -> None:
    short = provider.synthesise(speech("One sentence."), "espeak-ng").output.audio
    long = provider.synthesise(speech("One sentence. " * 6), "espeak-ng").output.audio
    assert long.duration_s > 3 * short.duration_s > 0


def test_speed_and_pitch_reach_espeak(provider: EspeakProvider) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    slow = provider.synthesise(speech(text, speed=100), "espeak-ng").output.audio
    fast = provider.synthesise(speech(text, speed=350), "espeak-ng").output.audio
    assert slow.duration_s > 2 * fast.duration_s
    plain = provider.synthesise(speech(text), "espeak-ng").output.audio
    high = provider.synthesise(speech(text, pitch=90), "espeak-ng").output.audio
    assert high.sha256 != plain.sha256


def test_text_that_looks_like_an_option_is_spoken(provider: EspeakProvider, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.wav"
    audio = provider.synthesise(speech(f"--help -v xx --version -w {elsewhere}"), "espeak-ng").output.audio
    assert audio_bytes(audio)[:4] == b"RIFF"
    assert audio.duration_s > 1.0  # every word spoken, nothing parsed as a flag
    assert not elsewhere.exists()


def test_voices_lists_installed_voices_with_en(provider: EspeakProvider) -> None:
    voices = provider.voices()
    assert "en" in {voice["id"] for voice in voices}
    assert all(set(voice) == {"id", "name", "language"} and all(voice.values()) for voice in voices)
    english = next(voice for voice in voices if voice["id"] == "en")
    assert str(english["language"]).startswith("en") and "English" in str(english["name"])


def test_voice_from_request_or_options(set_artifacts: SetArtifacts) -> None:
    provider = make_provider(options={"default_voice": "fr"})
    assert provider.synthesise(speech("Bonjour"), "espeak-ng").output.voice == "fr"
    assert provider.synthesise(speech("Hello", voice="en-US"), "espeak-ng").output.voice == "en-US"


def test_unknown_voice_is_unsupported_and_suggests_real_ones(provider: EspeakProvider) -> None:
    with pytest.raises(UnsupportedInput, match="no voice 'elvish'") as caught:
        provider.synthesise(speech("Mae govannen", voice="elvish"), "espeak-ng")
    assert "en" in str(caught.value).split("try ", 1)[1]
    with pytest.raises(UnsupportedInput, match="no voice 'adam'"):  # a variant alone crashes espeak-ng
        provider.synthesise(speech("Hello", voice="adam"), "espeak-ng")


def test_small_audio_is_inline_and_large_audio_a_file(set_artifacts: SetArtifacts) -> None:
    provider = make_provider()
    directory = set_artifacts(1024 * 1024)
    small = provider.synthesise(speech("Hi."), "espeak-ng").output.audio
    assert small.uri.startswith("data:audio/wav;base64,") and not list(directory.glob("*/*.wav"))
    directory = set_artifacts(1024)
    large = provider.synthesise(speech("Hi."), "espeak-ng").output.audio
    path = directory / large.sha256[:2] / f"{large.sha256}.wav"
    assert large.uri == path.resolve().as_uri() and path.read_bytes() == audio_bytes(small)


def test_timeout_comes_from_settings(set_artifacts: SetArtifacts) -> None:
    provider = make_provider(total_timeout_s=0.001)
    with pytest.raises(Timeout, match="espeak-ng took longer than"):
        provider.synthesise(speech("A long text to speak. " * 500), "espeak-ng")


def test_unavailable_without_the_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ProviderSettings.model_validate({"name": "espeak", "class": "stepper.providers.espeak:EspeakProvider"})
    monkeypatch.setattr("stepper.providers.espeak.shutil.which", lambda name: None)
    assert EspeakProvider.unavailable_reason(settings) == (
        "espeak-ng is not installed (Debian: apt-get install espeak-ng)"
    )


def test_a_crash_on_one_text_is_unprocessable_input_not_a_provider_failure(
    provider: EspeakProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in crashing_espeak(tmp_path / "bin").items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UnprocessableInput, match=r"crashed \(SIGSEGV\) on this text") as raised:
        provider.synthesise(speech(f"this text makes it {CRASH}"), "espeak-ng")
    assert raised.value.stops_chain and not raised.value.trips_breaker
    reply = provider.synthesise(speech("the next text is spoken as before"), "espeak-ng")  # the same binary
    assert reply.output.audio.duration_s > 0.5
