"""The provider registry: lazy dotted paths, no silent overwrites, clear errors, capabilities."""

from __future__ import annotations

import sys
from typing import ClassVar

import pytest

from stepper.contracts import Provider, Reply
from stepper.errors import ConfigError
from stepper.providers.mock import MockProvider
from stepper.registry import Registry, build_registry, capabilities, import_provider, unavailable_reason
from stepper.schemas import KINDS, ChatOutput, ChatRequest, Kind
from tests.unit.factories import provider_settings, stepper_settings

MOCK_PATH = "stepper.providers.mock:MockProvider"
MISSING_PATH = "stepper_tests_no_such_vendor_sdk.adapter:VendorProvider"


class OtherProvider(Provider):
    kinds: ClassVar[frozenset[Kind]] = frozenset({"chat"})

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        raise NotImplementedError


class NoChatProvider(Provider):
    """Declares chat but has no ``complete``: a third-party adapter with a typo."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"chat"})

    def compete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        raise NotImplementedError


def test_dotted_path_is_stored_until_loaded() -> None:
    registry = Registry()
    registry.register("chat", "mock", MOCK_PATH)
    before: object = registry.entries[("chat", "mock")]
    assert before == MOCK_PATH
    assert registry.load("chat", "mock") is MockProvider
    after: object = registry.entries[("chat", "mock")]
    assert after is MockProvider
    assert registry.load("chat", "mock") is MockProvider


def test_a_broken_path_costs_nothing_until_loaded() -> None:
    registry = Registry()
    registry.register("speech", "vendor", MISSING_PATH)
    assert MISSING_PATH.partition(":")[0] not in sys.modules
    assert list(registry) == [("speech", "vendor")]
    with pytest.raises(ConfigError):
        registry.load("speech", "vendor")


def test_entries_are_read_only() -> None:
    registry = Registry()
    registry.register("chat", "mock", MockProvider)
    with pytest.raises(TypeError):
        registry.entries[("chat", "other")] = OtherProvider  # type: ignore[index]
    assert ("chat", "other") not in registry.entries


def test_register_refuses_a_different_target() -> None:
    registry = Registry()
    registry.register("chat", "mock", MOCK_PATH)
    with pytest.raises(ConfigError) as raised:
        registry.register("chat", "mock", OtherProvider)
    assert "clobber=True" in str(raised.value)
    assert MOCK_PATH in str(raised.value)
    assert registry.entries[("chat", "mock")] == MOCK_PATH


def test_register_with_clobber_replaces() -> None:
    registry = Registry()
    registry.register("chat", "mock", MOCK_PATH)
    registry.register("chat", "mock", OtherProvider, clobber=True)
    assert registry.load("chat", "mock") is OtherProvider


def test_loading_a_class_without_the_family_method_says_which_method() -> None:
    registry = Registry()
    registry.register("chat", "typo", NoChatProvider)
    with pytest.raises(ConfigError, match=r"does not implement ChatProvider \(complete\)"):
        registry.load("chat", "typo")


def test_same_name_for_another_kind_is_not_an_overwrite() -> None:
    registry = Registry()
    registry.register("ocr", "mock", MockProvider)
    registry.register("chat", "mock", OtherProvider)
    assert registry.load("chat", "mock") is OtherProvider
    assert registry.load("ocr", "mock") is MockProvider


def test_registering_the_same_target_again_is_allowed() -> None:
    registry = Registry()
    registry.register("chat", "mock", MOCK_PATH)
    registry.register("chat", "mock", MOCK_PATH)
    registry.register("ocr", "mock", MockProvider)
    registry.register("ocr", "mock", MockProvider)


def test_registering_the_same_path_after_load_is_allowed() -> None:
    registry = Registry()
    registry.register("chat", "mock", MOCK_PATH)
    registry.load("chat", "mock")
    registry.register("chat", "mock", MOCK_PATH)


def test_unknown_kind() -> None:
    with pytest.raises(ConfigError) as raised:
        Registry().register("chta", "mock", MOCK_PATH)  # type: ignore[arg-type]
    assert "'chta'" in str(raised.value)
    for kind in KINDS:
        assert kind in str(raised.value)


def test_load_unregistered_lists_what_is_registered() -> None:
    registry = Registry()
    registry.register("chat", "openai", MOCK_PATH)
    registry.register("chat", "mock", MOCK_PATH)
    registry.register("ocr", "tesseract", MOCK_PATH)
    with pytest.raises(ConfigError) as raised:
        registry.load("chat", "gemini")
    message = str(raised.value)
    assert "'gemini'" in message
    assert "registered: mock, openai" in message
    assert "tesseract" not in message


def test_load_when_nothing_serves_the_kind() -> None:
    with pytest.raises(ConfigError, match=r"registered: none"):
        Registry().load("speech", "espeak")


def test_import_provider() -> None:
    assert import_provider(MOCK_PATH) is MockProvider


def test_import_provider_of_a_missing_module_says_what_to_install() -> None:
    with pytest.raises(ConfigError) as raised:
        import_provider(MISSING_PATH)
    message = str(raised.value)
    assert MISSING_PATH in message
    assert "stepper_tests_no_such_vendor_sdk" in message
    assert "install" in message
    assert raised.value.__cause__ is None


@pytest.mark.parametrize(
    "path",
    [
        "stepper.config:ProviderSettings",
        "stepper.providers.mock:fingerprint",
        "stepper.providers.mock:NoSuchClass",
        "stepper.providers.mock",
    ],
)
def test_import_provider_of_something_that_is_not_a_provider(path: str) -> None:
    with pytest.raises(ConfigError, match="is not a stepper Provider class"):
        import_provider(path)


def test_build_registry_registers_declared_kinds_and_class_kinds() -> None:
    settings = stepper_settings(
        providers={
            "chatty": {"class": "tests.unit.test_registry:OtherProvider"},
            "narrow": {"class": MOCK_PATH, "kinds": ["ocr", "speech"]},
        },
    )
    registry = build_registry(settings)
    for kind in KINDS:
        assert registry.entries[(kind, "mock")] == MOCK_PATH
    assert registry.load("chat", "chatty") is OtherProvider
    assert [kind for kind in KINDS if (kind, "chatty") in registry.entries] == ["chat"]
    assert [kind for kind in KINDS if (kind, "narrow") in registry.entries] == ["ocr", "speech"]


def test_capabilities(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STEPPER_TEST_UNSET_KEY", raising=False)
    monkeypatch.delenv("STEPPER_TEST_UNSET_KEY_FILE", raising=False)
    monkeypatch.setenv("STEPPER_TEST_SET_KEY", "sk-test-value")
    settings = stepper_settings(
        providers={
            "keyless": {"class": MOCK_PATH, "kinds": ["chat"], "api_key_env": "STEPPER_TEST_UNSET_KEY"},
            "keyed": {"class": MOCK_PATH, "kinds": ["chat"], "api_key_env": "STEPPER_TEST_SET_KEY", "models": ["m1"]},
            "missing": {"class": MISSING_PATH, "kinds": ["speech"]},
        },
    )
    rows = {row.name: row for row in capabilities(build_registry(settings), settings)}
    assert sorted(rows) == ["keyed", "keyless", "missing", "mock"]
    assert rows["keyless"].available is False
    assert rows["keyless"].reason is not None
    assert "STEPPER_TEST_UNSET_KEY" in rows["keyless"].reason
    assert rows["keyed"].available is True
    assert rows["keyed"].reason is None
    assert rows["keyed"].models == ("m1",)
    assert "sk-test-value" not in repr(rows)
    assert rows["missing"].available is False
    assert rows["missing"].reason is not None
    assert MISSING_PATH in rows["missing"].reason
    assert rows["mock"].kinds == KINDS
    assert rows["mock"].available is True


def test_unavailable_reason_of_a_provider_not_registered_for_the_kind() -> None:
    registry = Registry()
    registry.register("chat", "mock", MockProvider)
    reason = unavailable_reason(registry, "ocr", provider_settings("mock", **{"class": MOCK_PATH}))
    assert reason is not None
    assert "no provider 'mock' is registered for ocr" in reason
