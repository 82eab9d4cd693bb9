"""The public surface: ``stepper.__all__`` lists exactly what the package exports, and every name resolves."""

from __future__ import annotations

import importlib.metadata
import types

import pytest

import stepper
from stepper import errors

#: Names bound in stepper/__init__.py that are plumbing, not API.
NOT_EXPORTED = {"annotations", "TYPE_CHECKING", "Any"}
#: Resolved on first use through the module's __getattr__.
LAZY = {"app", "stream", "submit"}


def test_all_lists_what_the_module_binds() -> None:
    bound = {
        name
        for name, value in vars(stepper).items()
        if not name.startswith("__") and not isinstance(value, types.ModuleType) and name not in NOT_EXPORTED
    }
    assert bound | {"__version__"} | LAZY == set(stepper.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(stepper.__all__) == len(set(stepper.__all__))


@pytest.mark.parametrize("name", sorted(stepper.__all__))
def test_every_name_resolves(name: str) -> None:
    assert getattr(stepper, name) is not None


def test_every_error_is_public() -> None:
    assert set(errors.__all__) <= set(stepper.__all__)
    for name in errors.__all__:
        assert getattr(stepper, name) is getattr(errors, name)


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        getattr(stepper, "no_such_thing")  # noqa: B009  (the name is the point)


def test_version_matches_the_installed_distribution() -> None:
    assert stepper.__version__ == importlib.metadata.version("stepper-fleet")
