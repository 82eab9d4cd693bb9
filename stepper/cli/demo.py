"""``stepper demo``: one sample request of each kind through the running fleet, each result in a few lines."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from stepper.schemas import Kind


@click.command("demo")
@click.option("--timeout", "timeout_s", type=float, default=60.0, help="seconds to wait for all six results")
@click.option(
    "--guide-out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("stepper-guide"),
    show_default=True,
    help="where the how-to guide of the sample recording is written",
)
@click.option("--no-guide", is_flag=True, help="skip the how-to workflow")
def demo_command(timeout_s: float, guide_out: Path, no_guide: bool) -> int:
    """submit one sample request of each kind and print the results, then build a how-to guide"""
    from stepper.producer import submit
    from stepper.samples import sample_requests

    pending = {kind: submit(kind, request, priority="interactive") for kind, request in sample_requests().items()}
    click.echo(f"submitted {len(pending)} sample jobs ({', '.join(pending)}); waiting for results...")
    try:
        failed = _wait_for(pending, timeout_s)
    finally:
        _stop_waiting(pending.values())
    if not no_guide:
        failed += _guide(guide_out, timeout_s)
    return 1 if failed else 0


def _stop_waiting(results: Iterable[Any]) -> None:
    """Stop listening for the results not read (timed out, or Ctrl-C): now, while the interpreter is whole. Left
    to Celery's ``AsyncResult.__del__`` at exit, the unsubscription would reconnect as the interpreter shuts
    down and print its traceback. A cached answer (an ``EagerResult``, no backend) and a Redis unreachable leave
    nothing to stop."""
    from redis.exceptions import RedisError

    for result in results:
        backend = getattr(result, "backend", None)
        if backend is None:
            continue
        with contextlib.suppress(RedisError, OSError):
            backend.remove_pending_result(result)


def _wait_for(pending: Mapping[Kind, Any], timeout_s: float) -> int:
    """Print each result as it comes, within ``timeout_s`` in all; the number of kinds that did not answer."""
    from celery.exceptions import TimeoutError as CeleryTimeout

    deadline = time.monotonic() + timeout_s
    failed = 0
    for kind, result in pending.items():
        try:
            value = result.get(timeout=max(0.1, deadline - time.monotonic()))
        except CeleryTimeout:
            click.echo(f"\n[{kind}] no result within {timeout_s:g}s: is a worker consuming the '{kind}' queue?")
            failed += 1
            continue
        except Exception as exc:  # noqa: BLE001  (any error the task raised, rebuilt from the result backend)
            click.echo(f"\n[{kind}] FAILED {type(exc).__name__}: {exc}")
            failed += 1
            continue
        click.echo(_describe(kind, value))
    click.echo(f"\n{len(pending) - failed} of {len(pending)} kinds answered.")
    return failed


def _guide(out: Path, timeout_s: float) -> int:
    """The howto workflow on the sample recording; its files written to ``out``. 1 when it failed."""
    from stepper.errors import StepperError
    from stepper.samples import howto_request
    from stepper.workflows.api import workflow
    from stepper.workflows.export import write_guide

    handle = workflow("howto", howto_request(), priority="interactive")
    click.echo(f"\n[howto] workflow {handle.id}: a narrated guide from stepper/samples/howto.webm...")
    try:
        guide = handle.get(timeout=timeout_s)
    except (StepperError, TimeoutError) as exc:
        click.echo(f"[howto] FAILED {type(exc).__name__}: {exc}")
        return 1
    for number, step in enumerate(guide.steps, 1):
        click.echo(f"    {number}. {step.instruction}  ({step.audio.duration_s:.1f} s of narration)")
    click.echo(f"    HTML guide: {write_guide(guide, out).resolve()}")
    return 0


def _describe(kind: str, result: dict[str, Any]) -> str:
    mocked = " (MOCK: a deterministic stand-in, no real provider configured)" if result["provider"] == "mock" else ""
    head = f"\n[{kind}] answered by {result['provider']}:{result['model']}{mocked} in {result['elapsed_ms']:.1f} ms"
    return "\n".join([head, *(f"    {line}" for line in _summarise(kind, result["output"]))])


def _summarise(kind: str, output: dict[str, Any]) -> list[str]:
    """A few readable lines per kind; the full JSON is one `stepper submit` away."""
    if kind == "report":
        changes = [f"  - {change['path']}: {change['description']}" for change in output["changes"]]
        return [
            f"title:   {output['title']}",
            f"summary: {output['summary']}",
            f"impact:  {output['impact']}",
            f"tags:    {', '.join(output['tags'])}",
            "changes:",
            *changes,
        ]
    if kind == "chat":
        return [f"assistant: {output['message']['content']}", f"finish_reason: {output['finish_reason']}"]
    if kind == "ocr":
        return [
            f"page {n + 1} ({page['confidence']:.0f}% confidence): {page['text']!r}"
            for n, page in enumerate(output["pages"])
        ]
    if kind == "steps":
        return [
            f"step {step['index'] + 1}: frame {step['frame']}, {step['action']} in box {step['box']} "
            f"({step['change_ratio']:.1%} changed) {step['caption'] or ''}".rstrip()
            for step in output["steps"]
        ]
    if kind == "vision":
        found = {
            name: output[name] for name in ("faces", "people", "codes", "colors", "quality") if output[name] is not None
        }
        return [
            f"size: {output['width']}x{output['height']}",
            *(f"{name}: {json.dumps(value)}" for name, value in found.items()),
        ]
    audio = output["audio"]
    return [
        f"voice {output['voice']}: {audio['duration_s']} s of {audio['format']}, {audio['bytes']} bytes",
        f"uri: {audio['uri']}",
    ]
