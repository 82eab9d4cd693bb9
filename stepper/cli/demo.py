"""``stepper demo``: one sample request of each kind through the running fleet, each result in a few lines."""

from __future__ import annotations

import json
import time
from typing import Any

import click


@click.command("demo")
@click.option("--timeout", "timeout_s", type=float, default=60.0, help="seconds to wait for all six results")
def demo_command(timeout_s: float) -> int:
    """submit one sample request of each kind and print the results"""
    from celery.exceptions import TimeoutError as CeleryTimeout

    from stepper.producer import submit
    from stepper.samples import sample_requests

    pending = {kind: submit(kind, request, priority="interactive") for kind, request in sample_requests().items()}
    click.echo(f"submitted {len(pending)} sample jobs ({', '.join(pending)}); waiting for results...")
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
    return 1 if failed else 0


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
