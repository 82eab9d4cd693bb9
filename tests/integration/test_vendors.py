"""A chain across every LLM vendor, through a real worker: each vendor's fake checks its own wire format."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest

from stepper.samples import sample_requests
from tests.integration.conftest import Fleet
from tests.support.fake_http import FakeServer, Fault, serving
from tests.support.vendors.cohere import FakeCohere
from tests.support.vendors.gemini import FakeGemini
from tests.support.vendors.hf_space import FakeHfSpace
from tests.support.vendors.openai import FakeOpenAI

KEYS = {"OPENAI_API_KEY": "sk-x-openai-123456", "GEMINI_API_KEY": "AIza-x-gemini-123456",
        "COHERE_API_KEY": "co-x-cohere-123456"}  # fmt: skip
HELLO = {"messages": [{"role": "user", "content": "who answers?"}]}


@pytest.fixture(scope="module")
def vendors() -> Iterator[dict[str, FakeServer]]:
    fakes: dict[str, FakeServer] = {
        "openai": FakeOpenAI(KEYS["OPENAI_API_KEY"]),
        "gemini": FakeGemini(KEYS["GEMINI_API_KEY"]),
        "cohere": FakeCohere(KEYS["COHERE_API_KEY"]),
        "hf_space": FakeHfSpace(),
    }
    with ExitStack() as started:
        for fake in fakes.values():
            started.enter_context(serving(fake))
        yield fakes


@pytest.fixture(scope="module")
def vendor_fleet(start_fleet: Callable[..., Fleet], vendors: dict[str, FakeServer]) -> Fleet:
    chain = ["openai:gpt-4o-mini", "gemini:gemini-2.0-flash", "cohere:command-r-plus-08-2024", "hf_space:space"]
    return start_fleet(
        {
            "stepper_chains": {"chat": chain, "report": chain[:3]},
            "stepper_retry": {"attempts_per_provider": 1, "max_inline_wait_s": 0.5},
            "stepper_breaker": {"fail_max": 100, "reset_timeout_s": 300},
        },
        name="vendors",
        env={
            **KEYS,
            **{f"STEPPER_{name.upper()}_BASE_URL": fake.base_url for name, fake in vendors.items()},  # type: ignore[attr-defined]
        },
    )


def test_each_vendor_answers_in_turn_as_the_ones_before_fail(
    vendor_fleet: Fleet, vendors: dict[str, FakeServer]
) -> None:
    order = ["openai", "gemini", "cohere", "hf_space"]
    for position, expected in enumerate(order):
        for failing in order[:position]:
            vendors[failing].inject(Fault(status=503, body={"error": {"message": "down"}}))
        result = vendor_fleet.app.send_task("stepper.chat", kwargs=HELLO).get(timeout=60)
        assert result["provider"] == expected
        assert [a["provider"] for a in result["attempts"]] == order[: position + 1]
        assert "who answers?" in result["output"]["message"]["content"]


def test_a_long_retry_after_moves_on_instead_of_waiting(vendor_fleet: Fleet, vendors: dict[str, FakeServer]) -> None:
    vendors["openai"].inject(Fault(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "30"}))
    result = vendor_fleet.app.send_task("stepper.chat", kwargs=HELLO).get(timeout=60)
    assert [(a["provider"], a["outcome"]) for a in result["attempts"]] == [("openai", "rate_limited"), ("gemini", "ok")]


def test_reports_through_three_vendors_and_no_key_in_the_log(
    vendor_fleet: Fleet, vendors: dict[str, FakeServer]
) -> None:
    for fake in (vendors["openai"], vendors["gemini"]):
        fake.inject(Fault(status=500, body={"error": {"message": "boom"}}))
    request = {**sample_requests()["report"], "cache": "bypass"}
    result = vendor_fleet.app.send_task("stepper.report", kwargs=request).get(timeout=60)
    assert result["provider"] == "cohere"
    assert [change["path"] for change in result["output"]["changes"]] == ["stepper/chain.py", "tests/test_chain.py"]
    log = vendor_fleet.worker.log()
    assert not [key for key in KEYS.values() if key in log]
