"""The breaker measures the provider, not the input: through real workers, an engine crashing on one input
and a vendor asking the fleet to wait never open a breaker, and other requests are served meanwhile."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stepper.errors import RateLimited, UnprocessableInput
from stepper.infra import keys
from tests.integration.conftest import Fleet
from tests.integration.test_llm import HELLO, LLM_SETTINGS, MISTRAL_KEY, OPENAI_KEY
from tests.support.crashing import CRASH, crashing_espeak
from tests.support.fake_http import Fault, running
from tests.support.vendors.openai import FakeOpenAI


def test_an_engine_crashing_on_one_text_fails_that_text_only(start_fleet: Callable[..., Fleet], tmp_path: Path) -> None:
    fleet = start_fleet(
        {"stepper_chains": {"speech": ["espeak:espeak-ng"]}, "stepper_breaker": {"fail_max": 3}},
        name="crashing-engine",
        pool="prefork",
        concurrency=2,
        queues=["speech"],
        env=crashing_espeak(tmp_path / "bin"),
    )
    crashes = [fleet.app.send_task("stepper.speech", kwargs={"text": f"{CRASH} {n}"}) for n in range(8)]
    for result in crashes:
        with pytest.raises(UnprocessableInput, match="crashed"):
            result.get(timeout=60)
    state = fleet.redis.get(f"{keys.breaker('espeak')}:pybreaker:state")
    assert state in (None, b"closed"), state  # eight crashes, fail_max 3: still closed
    spoken = [fleet.app.send_task("stepper.speech", kwargs={"text": f"sentence {n}"}) for n in range(3)]
    assert all(result.get(timeout=60)["provider"] == "espeak" for result in spoken)


@pytest.fixture
def vendors() -> Iterator[tuple[FakeOpenAI, FakeOpenAI]]:
    openai, mistral = FakeOpenAI(OPENAI_KEY, "fake-openai"), FakeOpenAI(MISTRAL_KEY, "fake-mistral")
    for _ in running(openai):
        for _ in running(mistral):
            yield openai, mistral


def test_a_retry_after_cools_the_provider_down_for_the_whole_fleet(
    start_fleet: Callable[..., Fleet], vendors: tuple[FakeOpenAI, FakeOpenAI]
) -> None:
    openai, mistral = vendors
    env = {
        "OPENAI_API_KEY": OPENAI_KEY,
        "MISTRAL_KEY": MISTRAL_KEY,
        "STEPPER_OPENAI_BASE_URL": openai.base_url,
        "STEPPER_MISTRAL_BASE_URL": mistral.base_url,
    }
    settings = {**LLM_SETTINGS, "stepper_breaker": {"fail_max": 1, "reset_timeout_s": 300}}
    first = start_fleet(settings, name="cooling-a", concurrency=2, env=env)
    start_fleet(settings, name="cooling-b", concurrency=2, env=env, database=int(first.url.rsplit("/", 1)[1]))
    openai.inject(Fault(status=429, body={"error": {"message": "Rate limit reached"}}, headers={"Retry-After": "20"}))

    answers = [first.app.send_task("stepper.chat", kwargs=HELLO).get(timeout=60)]  # meets the 429
    results = [first.app.send_task("stepper.chat", kwargs=HELLO) for _ in range(11)]  # over both workers
    answers += [result.get(timeout=60) for result in results]

    assert len(openai.requests) == 1  # one 429, then every worker of the fleet kept away for the 20 s asked
    assert all(answer["provider"] == "mistral" for answer in answers)
    skipped = [answer["attempts"][0] for answer in answers if len(answer["attempts"]) == 2]
    assert skipped and all(attempt["outcome"] == "rate_limited" for attempt in skipped)
    assert any("asked the fleet to wait" in attempt["error"] for attempt in skipped)
    state = first.redis.get(f"{keys.breaker('openai')}:pybreaker:state")
    assert state in (None, b"closed"), state  # fail_max 1, yet a busy provider is not a broken one
    assert RateLimited.trips_breaker is False
