"""The ElevenLabs adapter against a fake that checks ElevenLabs' documented request shape."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import soundfile

from stepper.errors import AuthError, RateLimited, Unavailable, UnsupportedInput
from stepper.providers.elevenlabs import ElevenLabsProvider
from stepper.providers.media.audio import PAUSE_BETWEEN_PIECES_S
from stepper.schemas import SpeechRequest
from stepper.schemas.speech import Audio
from stepper.settings import ProviderSettings
from tests.support.fake_http import Fault, running
from tests.support.vendors.elevenlabs import VOICES, FakeElevenLabs, seconds_for

KEY = "xi-fake-elevenlabs-key-123"
RACHEL = VOICES[0]["voice_id"]
MODEL = "eleven_multilingual_v2"


@pytest.fixture
def fake() -> Iterator[FakeElevenLabs]:
    yield from running(FakeElevenLabs(KEY))  # type: ignore[misc]


@pytest.fixture
def artifacts(artifact_dir: Callable[[int], Path]) -> Path:
    """Artifacts under a temporary directory, inline up to 16 KiB."""
    return artifact_dir(16 * 1024)


def make_provider(fake: FakeElevenLabs, monkeypatch: pytest.MonkeyPatch, **options: Any) -> ElevenLabsProvider:
    monkeypatch.setenv("TEST_ELEVENLABS_KEY", KEY)
    settings = ProviderSettings.model_validate(
        {
            "name": "elevenlabs",
            "class": "stepper.providers.elevenlabs:ElevenLabsProvider",
            "base_url": fake.url,
            "api_key_env": "TEST_ELEVENLABS_KEY",
            "first_token_timeout_s": 2,
            "options": {"default_voice_id": RACHEL, **options},
        }
    )
    return ElevenLabsProvider(settings)


@pytest.fixture
def provider(fake: FakeElevenLabs, monkeypatch: pytest.MonkeyPatch, artifacts: Path) -> ElevenLabsProvider:
    return make_provider(fake, monkeypatch)


def speech(text: str = "Hello from stepper.", **extra: object) -> SpeechRequest:
    return SpeechRequest.model_validate({"text": text, **extra})


def audio_bytes(audio: Audio) -> bytes:
    if audio.uri.startswith("data:"):
        return base64.b64decode(audio.uri.partition(",")[2])
    return Path(unquote(urlsplit(audio.uri).path)).read_bytes()


def test_mp3_request_shape_and_measured_duration(provider: ElevenLabsProvider, fake: FakeElevenLabs) -> None:
    reply = provider.synthesise(speech("Hi there.", format="mp3"), MODEL)
    sent = fake.requests[0]
    assert sent.method == "POST" and sent.path == f"/v1/text-to-speech/{RACHEL}"
    assert sent.query == {"output_format": ["wav_16000"]}  # PCM in, encoded here: pieces join exactly
    assert sent.headers["xi-api-key"] == KEY
    assert sent.json() == {"text": "Hi there.", "model_id": MODEL}
    audio = reply.output.audio
    data = audio_bytes(audio)
    assert audio.format == "mp3" and audio.uri.startswith("data:audio/mpeg;base64,")
    assert soundfile.info(io.BytesIO(data)).format == "MP3"
    assert audio.duration_s == pytest.approx(seconds_for("Hi there."), abs=0.001)
    assert reply.output.voice == RACHEL and reply.usage == {"characters": len("Hi there.")}


def test_text_over_the_limit_is_sent_in_sentences_and_joined(
    fake: FakeElevenLabs, monkeypatch: pytest.MonkeyPatch, artifacts: Path
) -> None:
    provider = make_provider(fake, monkeypatch, max_characters=200)
    text = " ".join(["This sentence, e.g. about Dr. Who, costs 3.5 pounds."] * 12)
    reply = provider.synthesise(speech(text, format="ogg"), MODEL)
    sent = [request.json()["text"] for request in fake.requests]
    assert len(sent) == 4 and all(len(piece) <= 200 for piece in sent)
    assert " ".join(sent) == text and all(piece.endswith("pounds.") for piece in sent)
    expected_s = sum(seconds_for(piece) for piece in sent) + PAUSE_BETWEEN_PIECES_S * (len(sent) - 1)
    assert reply.output.audio.duration_s == pytest.approx(expected_s, abs=0.01)
    assert soundfile.info(io.BytesIO(audio_bytes(reply.output.audio))).format == "OGG"
    assert reply.usage == {"characters": len(text)}


@pytest.mark.parametrize(
    ("model", "limit"),
    [(MODEL, 10_000), ("eleven_v3", 5_000), ("eleven_flash_v2_5", 40_000), ("eleven_turbo_v2", 30_000)],
)
def test_each_model_gets_its_documented_per_request_limit(provider: ElevenLabsProvider, model: str, limit: int) -> None:
    assert provider.max_characters(model) == limit
    assert provider.max_characters("a-model-not-listed") == 5_000  # the smallest current limit


def test_wav_uses_the_wav_output_format_and_measures_the_header(
    provider: ElevenLabsProvider, fake: FakeElevenLabs
) -> None:
    text = "A sentence long enough to last a few seconds of speech."
    reply = provider.synthesise(speech(text, voice=VOICES[1]["voice_id"]), MODEL)
    assert fake.requests[0].query == {"output_format": ["wav_16000"]}
    assert fake.requests[0].path.endswith(VOICES[1]["voice_id"])
    with wave.open(io.BytesIO(audio_bytes(reply.output.audio))) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        assert wav.getnframes() / 16000 == pytest.approx(seconds_for(text), abs=0.001)
    assert reply.output.audio.duration_s == pytest.approx(seconds_for(text), abs=0.001)


def test_pcm_output_format_is_wrapped_into_a_valid_wav(
    fake: FakeElevenLabs, monkeypatch: pytest.MonkeyPatch, artifacts: Path
) -> None:
    provider = make_provider(fake, monkeypatch, wav_output_format="pcm_22050")
    text = "Raw PCM from the vendor, wrapped in a RIFF header by the adapter."
    reply = provider.synthesise(speech(text), MODEL)
    assert fake.requests[0].query == {"output_format": ["pcm_22050"]}
    data = audio_bytes(reply.output.audio)
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (22050, 1, 2)
        assert wav.getnframes() == round(seconds_for(text) * 22050)
    assert reply.output.audio.duration_s == pytest.approx(seconds_for(text), abs=0.001)
    # over 16 KiB: a file in the artifact directory, named by its digest
    assert reply.output.audio.uri.startswith("file://")
    assert (artifacts / reply.output.audio.sha256[:2] / f"{reply.output.audio.sha256}.wav").read_bytes() == data


def test_speed_becomes_voice_settings_and_pitch_is_refused(provider: ElevenLabsProvider, fake: FakeElevenLabs) -> None:
    provider.synthesise(speech(speed=210), MODEL)
    assert fake.requests[0].json()["voice_settings"] == {"speed": 1.2}
    with pytest.raises(UnsupportedInput, match="words per minute"):
        provider.synthesise(speech(speed=300), MODEL)
    with pytest.raises(UnsupportedInput, match="pitch"):
        provider.synthesise(speech(pitch=70), MODEL)
    assert len(fake.requests) == 1  # refused before any call


def test_voices_lists_the_account_voices(provider: ElevenLabsProvider, fake: FakeElevenLabs) -> None:
    assert provider.voices() == [
        {"id": "21m00Tcm4TlvDq8ikWAM", "name": "Rachel", "language": "en"},
        {"id": "AZnzlk1XvdvUeBnXmlld", "name": "Domi", "language": None},
    ]
    assert fake.requests[0].method == "GET" and fake.requests[0].headers["xi-api-key"] == KEY


def test_unknown_voice_is_unsupported_input(provider: ElevenLabsProvider) -> None:
    with pytest.raises(UnsupportedInput, match="was not found"):
        provider.synthesise(speech(voice="no-such-voice"), MODEL)


def test_wrong_key_is_auth_error_without_the_key(provider: ElevenLabsProvider, fake: FakeElevenLabs) -> None:
    fake.api_key = "another"
    with pytest.raises(AuthError) as caught:
        provider.synthesise(speech(), MODEL)
    assert "Invalid API key" in str(caught.value)
    assert KEY not in str(caught.value) and KEY not in repr(caught.value.args)


def test_a_key_echoed_by_the_vendor_is_redacted(provider: ElevenLabsProvider, fake: FakeElevenLabs) -> None:
    fake.inject(Fault(status=401, body={"detail": {"status": "invalid_api_key", "message": f"Bad key {KEY}"}}))
    with pytest.raises(AuthError) as caught:
        provider.synthesise(speech(), MODEL)
    assert KEY not in repr(caught.value.args) and "[redacted]" in str(caught.value)


def test_missing_key_is_reported_by_name(
    fake: FakeElevenLabs, monkeypatch: pytest.MonkeyPatch, artifacts: Path
) -> None:
    provider = make_provider(fake, monkeypatch)
    monkeypatch.delenv("TEST_ELEVENLABS_KEY")
    assert ElevenLabsProvider.unavailable_reason(provider.settings) == (
        "TEST_ELEVENLABS_KEY is not set (nor TEST_ELEVENLABS_KEY_FILE)"
    )
    with pytest.raises(AuthError, match="TEST_ELEVENLABS_KEY is not set"):
        provider.synthesise(speech(), MODEL)
    assert fake.requests == []


def test_429_carries_retry_after(provider: ElevenLabsProvider, fake: FakeElevenLabs) -> None:
    body = {"detail": {"status": "too_many_concurrent_requests", "message": "Too many concurrent requests"}}
    fake.inject(Fault(status=429, body=body, headers={"Retry-After": "2"}))
    with pytest.raises(RateLimited) as caught:
        provider.synthesise(speech(), MODEL)
    assert caught.value.retry_after_s == 2.0


def test_422_moves_on_and_5xx_is_unavailable(provider: ElevenLabsProvider, fake: FakeElevenLabs) -> None:
    fake.inject(
        Fault(status=422, body={"detail": [{"loc": ["body", "text"], "msg": "Field required", "type": "missing"}]}),
        Fault(status=503, body={"detail": {"status": "service_unavailable", "message": "Try again"}}),
    )
    # ElevenLabs refusing what stepper built says nothing about the caller's text: another voice engine may speak it.
    with pytest.raises(UnsupportedInput, match=r"body\.text: Field required"):
        provider.synthesise(speech(), MODEL)
    with pytest.raises(Unavailable):
        provider.synthesise(speech(), MODEL)


def test_the_fake_refuses_fields_elevenlabs_does_not_define(fake: FakeElevenLabs) -> None:
    import requests

    answer = requests.post(
        f"{fake.url}/v1/text-to-speech/{RACHEL}",
        params={"output_format": "mp3_44100_128"},
        json={"text": "hi", "model_id": MODEL, "voice": RACHEL},
        headers={"xi-api-key": KEY},
        timeout=2,
    )
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "voice"]
