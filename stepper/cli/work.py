"""``stepper providers``, ``voices``, ``submit``, ``cancel``, ``worker`` and ``fleet``: what can run, and running it."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from stepper.cli.common import echo_json, json_option
from stepper.priorities import PRIORITIES, priority_from_text
from stepper.schemas import KINDS, Kind


@click.command("providers")
@json_option
def providers_command(as_json: bool) -> int:
    """list providers, the kinds they serve, whether they can run, and the local engines' languages and voices"""
    from stepper.config import current_settings
    from stepper.registry import build_registry, capabilities

    settings = current_settings()
    rows = capabilities(build_registry(settings), settings)
    if as_json:
        echo_json([row.__dict__ for row in rows])
        return 0
    click.echo(f"mode: {settings.mode}")
    for row in rows:
        status = "ready" if row.available else f"unavailable: {row.reason}"
        extra = "".join(
            f"  {key}={','.join(value) if isinstance(value, list) else value}" for key, value in row.details.items()
        )
        click.echo(
            f"  {row.name:<12} kinds={','.join(row.kinds):<36} models={','.join(row.models) or '-'}  {status}{extra}"
        )
        for deployment in row.deployments:
            state = "ready" if deployment["available"] else f"unavailable: {deployment['reason']}"
            click.echo(
                f"    deployment {deployment['label']:<10} weight={deployment['weight']:g} ({row.strategy})  {state}"
            )
    click.echo("chains:")
    for kind, chain in settings.chains.items():
        click.echo(f"  {kind:<7} {' -> '.join(str(entry) for entry in chain)}")
    return 0


@click.command("voices")
@json_option
def voices_command(as_json: bool) -> int:
    """list the voices of the speech providers on this machine"""
    from stepper.config import current_settings
    from stepper.registry import build_registry, list_voices

    settings = current_settings()
    listing = list_voices(settings, build_registry(settings))
    if as_json:
        echo_json(listing)
        return 0
    for provider, answer in listing.items():
        if "voices" not in answer:
            click.echo(f"{provider}: {answer.get('unavailable') or answer.get('error')}")
            continue
        click.echo(f"{provider}: {len(answer['voices'])} voices")
        for voice in answer["voices"]:
            click.echo(f"  {voice['id']:<24} {voice.get('name') or '':<28} {voice.get('language') or ''}")
    return 0


class JsonOrFile(click.ParamType[Any, str]):
    """A JSON value given inline, or as ``@path`` to a file holding it; converts to the parsed value."""

    name = "json"

    def convert(self, value: str, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return json.loads(Path(value[1:]).read_text(encoding="utf-8") if value.startswith("@") else value)
        except OSError as exc:
            self.fail(f"cannot read {value[1:]} ({exc.strerror})", param, ctx)
        except json.JSONDecodeError as exc:
            self.fail(f"not valid JSON ({exc}); pass a JSON object or @file.json", param, ctx)


@click.command("submit")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("request", type=JsonOrFile())
@click.option("--priority", default="normal", help=f"{', '.join(PRIORITIES)} or 0-9 (0 most urgent)")
@click.option("--no-wait", is_flag=True, help="print the task id and return at once")
@click.option("--timeout", "timeout_s", type=float, default=60.0, help="seconds to wait for the result")
def submit_command(kind: Kind, request: Any, priority: str, no_wait: bool, timeout_s: float) -> int:
    """submit one request and print its result

    REQUEST is the request as JSON, or @path/to/request.json.
    """
    from stepper.producer import submit

    result = submit(kind, request, priority=priority_from_text(priority))
    if no_wait:
        click.echo(result.id)
        return 0
    echo_json(result.get(timeout=timeout_s))
    return 0


@click.command("cancel")
@click.argument("task_ids", nargs=-1, required=True)
def cancel_command(task_ids: tuple[str, ...]) -> int:
    """cancel tasks: queued ones never run, running ones stop within a second

    The revoke is recorded in Redis, so workers started later honour it too.
    """
    from stepper.producer import cancel

    for task_id in task_ids:
        cancel(task_id)
        click.echo(f"cancelled {task_id}")
    return 0


@click.command("worker")
@click.option("--profile", required=True, help="llm (report, chat), cpu (ocr, steps, vision, speech), ops")
@click.option("--loglevel", default="INFO")
@click.option(
    "--pool",
    type=click.Choice(["threads", "gevent", "prefork"]),
    help="Celery's pool instead of the profile's (gevent needs the [gevent] extra)",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    help="tasks (vendor calls) in flight per process instead of the profile's, e.g. 1000 for long calls",
)
def worker_command(profile: str, loglevel: str, pool: str | None, concurrency: int | None) -> int:
    """run one worker of a profile (llm, cpu, ops)"""
    from stepper.workers.profiles import profile_named

    chosen = profile_named(profile)
    if pool == "gevent" and importlib.util.find_spec("gevent") is None:
        raise click.UsageError("the gevent pool needs gevent: pip install 'stepper-fleet[gevent]'")
    argv = replace(chosen, pool=pool or chosen.pool, concurrency=concurrency or chosen.concurrency).worker_argv(
        loglevel
    )
    os.execv(argv[0], argv)  # noqa: S606  (become the worker: signals and exit status are Celery's own)
    return 0  # not reached


@click.command("fleet")
@click.argument("action", type=click.Choice(["up"]))
@click.option("--profiles", default="llm,cpu,ops", help="comma-separated profiles (default: all)")
@click.option("--loglevel", default="INFO")
def fleet_command(action: str, profiles: str, loglevel: str) -> int:
    """run a local fleet: one worker per profile"""
    # ACTION is always "up" (click.Choice), the only action there is.
    from stepper.workers.fleet import run_fleet
    from stepper.workers.profiles import profile_named

    return run_fleet([profile_named(name.strip()) for name in profiles.split(",") if name.strip()], loglevel)
