"""Fixtures the adapters' tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stepper.infra.capabilities import MemoryCapabilities, set_capabilities


@pytest.fixture
def memory() -> Iterator[MemoryCapabilities]:
    """The fleet-wide memory of refused parameters, in memory for this test (no Redis), forgotten after it."""
    capabilities = MemoryCapabilities()
    set_capabilities(capabilities)
    yield capabilities
    set_capabilities(None)
