"""Loading settings (defaults, config module, environment) and validating them at start-up."""

from __future__ import annotations

import copy
import importlib
import itertools
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stepper.config import CELERY_DEFAULTS, load_config, parse_stepper_settings
from stepper.errors import ConfigError
from stepper.schemas import KINDS
from stepper.settings import (
    DEFAULT_CHAINS,
    DEFAULT_PROVIDERS,
    DEFAULT_VISIBILITY_TIMEOUT_S,
    BreakerSettings,
    ChainEntry,
    RetrySettings,
)

REPOSITORY = Path(__file__).resolve().parents[2]
ABSENT = {"CELERY_CONFIG_MODULE": "stepper_tests_no_such_config_module"}

_module_numbers = itertools.count()

ConfigModule = Callable[[str], str]


@pytest.fixture
def config_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ConfigModule]:
    """Write a config module under a unique name onto sys.path; returns its name. Removed afterwards."""
    names: list[str] = []
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        name = f"stepper_test_config_{next(_module_numbers)}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


def valid_config(**overrides: Any) -> dict[str, Any]:
    """The package defaults with overrides, as load_config would hand them over."""
    config = load_config(ABSENT)
    config.update(copy.deepcopy(overrides))
    return config


def settings_error(config: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_stepper_settings(config)
    return str(raised.value)


# --- load_config -------------------------------------------------------------------------------------


def test_a_broker_transport_the_deployment_chose_is_kept(config_module: ConfigModule) -> None:
    name = config_module('broker_transport = "redis"  # kombu\'s own Redis transport\n')
    assert load_config({"CELERY_CONFIG_MODULE": name})["broker_transport"] == "redis"


def test_missing_config_module_gives_the_defaults() -> None:
    config = load_config(ABSENT)
    for key, value in CELERY_DEFAULTS.items():
        if key not in {"broker_transport_options", "result_backend_transport_options"}:
            assert config[key] == value, key
    assert (config["stepper_chains"], config["stepper_providers"]) == (DEFAULT_CHAINS, DEFAULT_PROVIDERS)
    settings = parse_stepper_settings(config)
    assert (settings.mode, settings.breaker, settings.retry) == ("live", BreakerSettings(), RetrySettings())


def test_missing_dotted_config_module_gives_the_defaults() -> None:
    config = load_config({"CELERY_CONFIG_MODULE": "stepper_tests_no_such_package.celeryconfig"})
    assert config["stepper_chains"] == DEFAULT_CHAINS


def test_load_config_does_not_modify_the_defaults(config_module: ConfigModule) -> None:
    before = copy.deepcopy((CELERY_DEFAULTS, DEFAULT_CHAINS, DEFAULT_PROVIDERS))
    name = config_module(
        """
        stepper_chains = {"chat": ["mock:m"]}
        stepper_providers = {"extra": {"class": "pkg.mod:Extra"}}
        """
    )
    config = load_config({"CELERY_CONFIG_MODULE": name, "STEPPER_MOCK_BASE_URL": "http://127.0.0.1:1/v1"})
    config["stepper_chains"]["ocr"].append("mutated:after")
    config["broker_transport_options"]["priority_steps"].append(99)
    assert before == (CELERY_DEFAULTS, DEFAULT_CHAINS, DEFAULT_PROVIDERS)


def test_config_module_is_merged_key_by_key(config_module: ConfigModule) -> None:
    name = config_module(
        """
        stepper_chains = {"chat": ["mock:tiny", "local:llama"]}
        stepper_providers = {"local": {"class": "stepper.providers.openai:OpenAIProvider", "kinds": ["chat"]}}
        stepper_retry = {"attempts_per_provider": 3}
        task_soft_time_limit = 150
        task_time_limit = 200
        _private = "ignored"
        UPPER = "ignored"
        """
    )
    config = load_config({"CELERY_CONFIG_MODULE": name})
    assert config["stepper_chains"]["chat"] == ["mock:tiny", "local:llama"]
    for kind in KINDS:
        if kind != "chat":
            assert config["stepper_chains"][kind] == DEFAULT_CHAINS[kind]
    assert config["stepper_providers"]["local"]["class"] == "stepper.providers.openai:OpenAIProvider"
    assert config["stepper_providers"]["mock"] == DEFAULT_PROVIDERS["mock"]
    assert set(DEFAULT_PROVIDERS) < set(config["stepper_providers"])
    assert config["stepper_retry"] == {"attempts_per_provider": 3}
    assert config["task_time_limit"] == 200
    assert "_private" not in config
    assert "UPPER" not in config
    settings = parse_stepper_settings(config)
    assert settings.chains["chat"] == (
        ChainEntry(provider="mock", model="tiny"),
        ChainEntry(provider="local", model="llama"),
    )
    assert settings.retry == RetrySettings(attempts_per_provider=3)  # the other fields keep the model's defaults


def test_config_module_that_imports_a_module(config_module: ConfigModule) -> None:
    name = config_module(
        """
        import os

        stepper_mode = os.environ.get("STEPPER_TEST_UNSET_VARIABLE", "hybrid")
        """
    )
    config = load_config({"CELERY_CONFIG_MODULE": name})
    assert config["stepper_mode"] == "hybrid"
    assert "os" not in config


def test_environment_overrides_the_config_module(config_module: ConfigModule) -> None:
    name = config_module(
        """
        broker_url = "redis://config-module:6379/3"
        stepper_mode = "live"
        """
    )
    config = load_config(
        {
            "CELERY_CONFIG_MODULE": name,
            "STEPPER_REDIS_URL": "redis://127.0.0.1:1/7",
            "STEPPER_MODE": "hybrid",
            "STEPPER_CHAIN_CHAT": "mock:x, mock:y ,",
            "STEPPER_MOCK_BASE_URL": "http://127.0.0.1:8080/v1",
        }
    )
    assert config["broker_url"] == config["result_backend"] == "redis://127.0.0.1:1/7"
    assert config["stepper_mode"] == "hybrid"
    assert config["stepper_providers"]["mock"]["base_url"] == "http://127.0.0.1:8080/v1"
    assert config["stepper_providers"]["mock"]["class"] == DEFAULT_PROVIDERS["mock"]["class"]
    assert config["stepper_chains"]["ocr"] == DEFAULT_CHAINS["ocr"]
    settings = parse_stepper_settings(config)
    assert settings.mode == "hybrid"
    assert settings.chains["chat"] == (ChainEntry(provider="mock", model="x"), ChainEntry(provider="mock", model="y"))
    assert settings.providers["mock"].base_url == "http://127.0.0.1:8080/v1"


def test_environment_base_url_reaches_a_provider_declared_by_the_module(config_module: ConfigModule) -> None:
    name = config_module("""stepper_providers = {"local": {"class": "pkg.mod:Local"}}""")
    config = load_config({"CELERY_CONFIG_MODULE": name, "STEPPER_LOCAL_BASE_URL": "http://127.0.0.1:9/v1"})
    assert config["stepper_providers"]["local"] == {"class": "pkg.mod:Local", "base_url": "http://127.0.0.1:9/v1"}


def test_empty_environment_values_change_nothing() -> None:
    config = load_config({**ABSENT, "STEPPER_REDIS_URL": "", "STEPPER_MODE": "", "STEPPER_CHAIN_CHAT": ""})
    assert config["broker_url"] == CELERY_DEFAULTS["broker_url"]
    assert "stepper_mode" not in config
    assert config["stepper_chains"]["chat"] == DEFAULT_CHAINS["chat"]


def test_visibility_timeout_reaches_both_transports(config_module: ConfigModule) -> None:
    name = config_module(
        """
        stepper_visibility_timeout_s = 7200
        broker_transport_options = {"visibility_timeout": 5, "global_keyprefix": "fleet-a:"}
        """
    )
    config = load_config({"CELERY_CONFIG_MODULE": name})
    assert config["broker_transport_options"]["visibility_timeout"] == 7200
    assert config["result_backend_transport_options"]["visibility_timeout"] == 7200
    assert config["broker_transport_options"]["global_keyprefix"] == "fleet-a:"
    assert config["broker_transport_options"]["priority_steps"] == list(range(10))


def test_dead_connections_are_noticed() -> None:
    config = load_config(ABSENT)
    options = config["broker_transport_options"]
    assert options["socket_keepalive"] is True
    assert 0 < options["socket_connect_timeout"] < options["socket_timeout"]
    assert options["health_check_interval"] > 0
    assert config["redis_socket_keepalive"] is True and config["redis_backend_health_check_interval"] > 0


def test_priority_transport_options() -> None:
    options = load_config(ABSENT)["broker_transport_options"]
    assert options["priority_steps"] == list(range(10))
    assert options["queue_order_strategy"] == "round_robin"
    assert "sep" not in options
    assert options["visibility_timeout"] == DEFAULT_VISIBILITY_TIMEOUT_S


def test_repository_celeryconfig_loads_and_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPOSITORY))
    previous = sys.modules.pop("celeryconfig", None)
    try:
        config = load_config({"CELERY_CONFIG_MODULE": "celeryconfig"})
        module = importlib.import_module("celeryconfig")
        assert module.__file__ == str(REPOSITORY / "celeryconfig.py")
        assert config["stepper_chains"] == {**DEFAULT_CHAINS, **getattr(module, "stepper_chains", {})}
        assert config["task_time_limit"] == module.task_time_limit
        settings = parse_stepper_settings(config)
        assert settings.mode == module.stepper_mode
        assert set(settings.chains) == set(KINDS)
    finally:
        sys.modules.pop("celeryconfig", None)
        if previous is not None:
            sys.modules["celeryconfig"] = previous


# --- ChainEntry -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "provider", "model"),
    [
        ("openai:gpt-4o-mini", "openai", "gpt-4o-mini"),
        ("  openai:gpt-4o  ", "openai", "gpt-4o"),
        ("tesseract", "tesseract", "tesseract"),
        ("hf:org/model:tag", "hf", "org/model:tag"),
    ],
)
def test_chain_entry_parse(text: str, provider: str, model: str) -> None:
    entry = ChainEntry.parse(text)
    assert (entry.provider, entry.model) == (provider, model)
    assert ChainEntry.parse(str(entry)) == entry


# --- parse_stepper_settings -------------------------------------------------------------------------------


def test_defaults_validate() -> None:
    settings = parse_stepper_settings(valid_config())
    assert (settings.breaker.fail_max, settings.breaker.reset_timeout_s) == (5, 30.0)
    assert (settings.retry.attempts_per_provider, settings.retry.task_max_retries) == (2, 5)
    assert "mock" in settings.providers


def test_unknown_provider_in_a_chain() -> None:
    chains = {**DEFAULT_CHAINS, "ocr": ["mock:mock-ocr", "nosuch:model"]}
    message = settings_error(valid_config(stepper_chains=chains))
    assert "'nosuch'" in message
    assert "ocr" in message
    assert "stepper_providers" in message


@pytest.mark.parametrize(("soft", "hard"), [(300, 300), (301, 300)])
def test_soft_time_limit_must_be_below_hard(soft: int, hard: int) -> None:
    message = settings_error(valid_config(task_soft_time_limit=soft, task_time_limit=hard))
    assert "task_soft_time_limit" in message
    assert "task_time_limit" in message


def test_soft_time_limit_alone_is_fine() -> None:
    parse_stepper_settings(valid_config(task_soft_time_limit=100, task_time_limit=None))


@pytest.mark.parametrize("visibility", [300, 299, 10])
def test_visibility_timeout_must_exceed_hard_time_limit(visibility: int) -> None:
    config = valid_config(task_time_limit=300, task_soft_time_limit=200, stepper_visibility_timeout_s=visibility)
    config["stepper_retry"] = {"task_countdown_cap_s": 5.0}
    message = settings_error(config)
    assert "stepper_visibility_timeout_s" in message
    assert f"({visibility}s)" in message


def test_visibility_timeout_must_exceed_the_retry_countdown_cap() -> None:
    config = valid_config(task_time_limit=300, task_soft_time_limit=200, stepper_visibility_timeout_s=400)
    config["stepper_retry"] = {"task_countdown_cap_s": 500.0}
    message = settings_error(config)
    assert "task_countdown_cap_s" in message
    config["stepper_retry"]["task_countdown_cap_s"] = 399.0
    parse_stepper_settings(config)


@pytest.mark.parametrize("missing", KINDS)
def test_every_kind_needs_a_chain_a_deployment_cannot_empty_one(missing: str) -> None:
    message = settings_error(valid_config(stepper_chains={**DEFAULT_CHAINS, missing: []}))
    assert f"no chain for {missing}" in message


def test_a_kind_left_out_keeps_its_default_chain() -> None:
    settings = parse_stepper_settings(valid_config(stepper_chains={"chat": ["mock:m"]}))
    assert [str(entry) for entry in settings.chains["ocr"]] == DEFAULT_CHAINS["ocr"]
    assert [str(entry) for entry in settings.chains["chat"]] == ["mock:m"]


def test_unknown_kind_in_chains() -> None:
    message = settings_error(valid_config(stepper_chains={**DEFAULT_CHAINS, "chta": ["mock:m"]}))
    assert "chta" in message


def test_typo_in_a_provider_spec() -> None:
    providers = {**DEFAULT_PROVIDERS, "mock": {"class": "stepper.providers.mock:MockProvider", "rmp": 5}}
    message = settings_error(valid_config(stepper_providers=providers))
    assert "rmp" in message
    assert "Extra inputs are not permitted" in message


def test_typo_in_a_provider_spec_names_the_provider() -> None:
    providers = {**DEFAULT_PROVIDERS, "acme_vendor": {"class": "acme.stepper:AcmeProvider", "rmp": 5}}
    assert "acme_vendor" in settings_error(valid_config(stepper_providers=providers))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"class": "not a dotted path"}, "class"),
        ({"class": "pkg.mod:Cls", "rpm": -1}, "rpm"),
        ({"class": "pkg.mod:Cls", "first_token_timeout_s": 0}, "first_token_timeout_s"),
        ({"class": "pkg.mod:Cls", "kinds": ["chta"]}, "kinds.0"),
        ({}, "class"),
    ],
)
def test_bad_provider_values(spec: dict[str, Any], field: str) -> None:
    message = settings_error(valid_config(stepper_providers={**DEFAULT_PROVIDERS, "bad": spec}))
    assert message.startswith("invalid stepper_providers['bad']: ")
    assert f"{field}: " in message


def test_the_old_timeout_s_names_its_replacements() -> None:
    spec = {"class": "pkg.mod:Cls", "timeout_s": 30}
    message = settings_error(valid_config(stepper_providers={**DEFAULT_PROVIDERS, "old": spec}))
    assert "timeout_s was split in two: first_token_timeout_s" in message and "total_timeout_s" in message


def test_bad_mode() -> None:
    message = settings_error(valid_config(stepper_mode="mocked"))
    assert "mode" in message
    assert "'live', 'mock' or 'hybrid'" in message


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("stepper_breaker", {"fail_max": 0, "reset_timeout_s": 30.0}, "breaker.fail_max"),
        ("stepper_breaker", {"fail_max": 5, "reset_timeout_s": 0}, "breaker.reset_timeout_s"),
        ("stepper_retry", {"attempts_per_provider": 0}, "retry.attempts_per_provider"),
        ("stepper_retry", {"backof_base_s": 1}, "retry.backof_base_s"),
    ],
)
def test_bad_breaker_and_retry_settings(key: str, value: dict[str, Any], field: str) -> None:
    assert f"{field}: " in settings_error(valid_config(**{key: value}))


def test_settings_are_frozen() -> None:
    settings = parse_stepper_settings(valid_config())
    with pytest.raises(ValueError, match="frozen"):
        settings.mode = "mock"  # type: ignore[misc]
