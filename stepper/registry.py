"""The provider registry: which class serves which ``(kind, name)``, imported only when first used.

Entries are dotted paths (``"stepper.providers.mock:MockProvider"``), so a provider whose optional
dependency is missing costs nothing until a chain asks for it, and then fails with a message that says
what to install. ``register`` refuses to overwrite an entry unless told to (``clobber=True``).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from stepper.contracts import FAMILY_PROTOCOLS, Provider
from stepper.errors import ConfigError, StepperError
from stepper.schemas import KINDS, Kind
from stepper.settings import DeploymentTarget, ProviderSettings, StepperSettings

Target = str | type[Provider]


@dataclass(frozen=True)
class Capability:
    """What ``stepper providers`` shows: one provider, what it serves and whether it can run here."""

    name: str
    kinds: tuple[Kind, ...]
    models: tuple[str, ...]
    available: bool
    reason: str | None
    #: What the provider has installed, when it says (``Provider.details``): OCR languages, speech voices.
    details: dict[str, Any] = field(default_factory=dict)
    #: Its ``deployments`` (label, weight, whether each can run here) and how calls pick one; empty when it
    #: declares none. Never a key; no URL either (some vendors take keys in URLs).
    deployments: list[dict[str, Any]] = field(default_factory=list)
    strategy: str | None = None


class Registry:
    def __init__(self) -> None:
        self._targets: dict[tuple[Kind, str], Target] = {}

    @property
    def entries(self) -> Mapping[tuple[Kind, str], Target]:
        """A read-only view of every registered ``(kind, name)``."""
        return MappingProxyType(self._targets)

    def register(self, kind: Kind, name: str, target: Target, *, clobber: bool = False) -> None:
        if kind not in KINDS:
            raise ConfigError(f"cannot register {name!r} for unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
        existing = self._targets.get((kind, name))
        if existing is not None and _describe(existing) != _describe(target) and not clobber:
            raise ConfigError(
                f"provider {name!r} is already registered for {kind} ({_describe(existing)}); "
                "pass clobber=True to replace it"
            )
        self._targets[(kind, name)] = target

    def load(self, kind: Kind, name: str) -> type[Provider]:
        """The provider class for ``(kind, name)``, importing it on first use."""
        try:
            target = self._targets[(kind, name)]
        except KeyError:
            served = ", ".join(sorted(n for k, n in self._targets if k == kind)) or "none"
            raise ConfigError(f"no provider {name!r} is registered for {kind} (registered: {served})") from None
        if isinstance(target, str):
            target = import_provider(target)
            self._targets[(kind, name)] = target
        protocol = FAMILY_PROTOCOLS[kind]
        if not issubclass(target, protocol):
            methods = ", ".join(
                sorted(m for m in vars(protocol) if not m.startswith("_") and callable(getattr(protocol, m)))
            )
            raise ConfigError(
                f"provider {name!r} ({_describe(target)}) is registered for {kind} but does not implement "
                f"{protocol.__name__} ({methods}); implement it, or remove {kind} from its kinds"
            )
        return target

    def __iter__(self) -> Iterator[tuple[Kind, str]]:
        return iter(self._targets)


def import_provider(path: str) -> type[Provider]:
    """Import ``"package.module:Class"``; a missing dependency says what to install."""
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"provider class {path} cannot be imported ({exc}); install the package that provides it "
            "into the worker's environment"
        ) from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Provider)):
        raise ConfigError(f"{path} is not a stepper Provider class")
    return cls


def build_registry(settings: StepperSettings) -> Registry:
    """Register every provider the settings declare, for the kinds it declares (or its class serves)."""
    registry = Registry()
    for provider in settings.providers.values():
        kinds = provider.kinds or tuple(sorted(import_provider(provider.target).kinds))
        for kind in kinds:
            registry.register(kind, provider.name, provider.target)
    return registry


def capabilities(registry: Registry, settings: StepperSettings) -> list[Capability]:
    """Every declared provider with its kinds, models and whether it can run on this machine."""
    rows = []
    for name, provider_settings in sorted(settings.providers.items()):
        kinds = tuple(kind for kind in KINDS if (kind, name) in registry.entries)
        targets = deployment_reasons(registry, kinds[0], provider_settings.targets()) if kinds else []
        usable = [target for target, reason in targets if reason is None]
        reason = None if usable else targets[0][1] if targets else "serves no kind"
        details = _details(registry, kinds[0], usable[0].settings) if usable else {}
        deployments = [
            {"label": target.label, "weight": target.weight, "available": why is None, "reason": why}
            for target, why in targets
            if target.label is not None
        ]
        strategy = provider_settings.strategy if deployments else None
        rows.append(
            Capability(name, kinds, provider_settings.models, reason is None, reason, details, deployments, strategy)
        )
    return rows


def deployment_reasons(
    registry: Registry, kind: Kind, targets: Sequence[DeploymentTarget]
) -> list[tuple[DeploymentTarget, str | None]]:
    """Each of a provider's deployments (``ProviderSettings.targets()``), with why it cannot serve ``kind`` here
    (None when it can)."""
    return [(target, unavailable_reason(registry, kind, target.settings)) for target in targets]


def _details(registry: Registry, kind: Kind, settings: ProviderSettings) -> dict[str, Any]:
    try:
        return registry.load(kind, settings.name).details(settings)
    except StepperError as exc:
        return {"error": str(exc)}


def unavailable_reason(registry: Registry, kind: Kind, settings: ProviderSettings) -> str | None:
    """Why the provider cannot serve ``kind`` here, or None when it can."""
    try:
        cls = registry.load(kind, settings.name)
    except ConfigError as exc:
        return str(exc)
    return cls.unavailable_reason(settings)


def _describe(target: Target) -> str:
    return target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}"


def list_voices(settings: StepperSettings, registry: Registry) -> dict[str, Any]:
    """``{provider: {"voices": [...]} | {"unavailable": reason} | {"error": message}}``, in chain order."""
    listing: dict[str, Any] = {}
    for entry in settings.chains["speech"]:
        if entry.provider in listing:
            continue
        provider_settings = settings.providers[entry.provider]
        reason = unavailable_reason(registry, "speech", provider_settings)
        if reason is not None:
            listing[entry.provider] = {"unavailable": reason}
            continue
        provider = registry.load("speech", entry.provider)(provider_settings)
        lister = getattr(provider, "voices", None)
        if lister is None:
            listing[entry.provider] = {"unavailable": "this provider cannot list its voices"}
            continue
        try:
            listing[entry.provider] = {"voices": lister()}
        except StepperError as exc:
            listing[entry.provider] = {"error": f"{type(exc).__name__}: {exc}"}
    return listing
