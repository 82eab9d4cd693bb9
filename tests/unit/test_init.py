"""The public surface: ``stepper.__all__`` lists exactly what the package exports, and every name resolves."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import stepper
from stepper import errors

#: Names bound in stepper/__init__.py that are plumbing, not API.
NOT_EXPORTED = {"annotations", "TYPE_CHECKING", "Any"}
#: Resolved on first use through the module's __getattr__.
#: Names under ``stepper.`` in the README that are task or trace-span names, not attributes.
TASK_NAMES = {"chat", "report", "ocr", "steps", "vision", "speech", "voices", "deliver_webhook"}
SPAN_NAMES = {"task", "provider"}
LAZY = {
    "app", "cancel", "stream", "submit", "submit_many", "load_jobs", "on_success", "on_failure", "verify_webhook",
    "workflow", "resume_workflow", "cancel_workflow",
}  # fmt: skip


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


def test_the_readme_uses_only_the_public_surface() -> None:
    """Every ``stepper.<name>`` the README calls or decorates with is exported; nothing deeper is promised."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    calls = set(re.findall(r"(?<![\w.])@?stepper\.(\w+)(?:\.\w+)*\(", readme))
    documented = set(re.findall(r"`@?stepper\.(\w+)[`(]", readme)) - TASK_NAMES - SPAN_NAMES
    assert "submit" in calls
    assert calls | documented <= set(stepper.__all__), (calls | documented) - set(stepper.__all__)


def test_submitting_loads_neither_the_tasks_nor_the_guards() -> None:
    """A web app that only submits pays for Celery and the producer, not pybreaker, Prometheus or the chain."""
    code = (
        "import sys, stepper; stepper.submit; "
        "heavy = [m for m in ('pybreaker', 'prometheus_client', 'stepper.guards.admission', 'stepper.chain', "
        "'stepper.tasks') "
        "if m in sys.modules]; print(heavy)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
