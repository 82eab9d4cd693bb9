"""``stepper status``, ``health``, ``metrics``, ``flower`` and ``alerts``: watching a running fleet."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from stepper.cli.common import echo_json, fail, json_option

if TYPE_CHECKING:
    from stepper.ops.alerts import AlertSink
    from stepper.ops.fleet import FleetState
    from stepper.settings import AlertSettings


@click.command("status")
@json_option
def status_command(as_json: bool) -> int:
    """queues by priority, workers, breakers, rate limits, spend against budgets"""
    state = _fleet_state()
    if as_json:
        echo_json(asdict(state))
        return 0 if state.redis_ok else 1
    if not state.redis_ok:
        click.echo(
            f"Redis or the broker unreachable ({state.error}); check STEPPER_REDIS_URL (or STEPPER_BROKER_URL, "
            "STEPPER_STATE_REDIS_URL) and that the servers run"
        )
        return 1
    click.echo("queues (messages waiting by priority, 0 most urgent):")
    for queue, levels in state.queues.items():
        waiting = ", ".join(f"{level}:{count}" for level, count in levels.items() if count) or "empty"
        click.echo(f"  {queue:<10} {sum(levels.values()):>6}   {waiting}")
    click.echo("workers:" if state.workers else "workers: none answered")
    for worker in state.workers:
        click.echo(f"  {worker.name:<28} {worker.pool:<8} x{worker.concurrency:<4} active {worker.active:<3} "
                   f"queues {','.join(worker.queues)}")  # fmt: skip
    click.echo("breakers:" if state.breakers else "breakers: none used yet")
    for name, breaker in state.breakers.items():
        click.echo(f"  {name:<12} {breaker}")
    for name, buckets in state.buckets.items():
        click.echo(f"  rate {name:<8} " + ", ".join(f"{kind} tokens left {left:g}" for kind, left in buckets.items()))
    click.echo("budgets:" if state.spend else "budgets: none configured")
    for use in state.spend:
        click.echo(f"  {use.scope} {use.name:<24} {use.window:<5} spent {use.spent:.4f} of {use.limit:g} "
                   f"{use.currency} ({use.fraction:.0%}), resets {use.resets_at}")  # fmt: skip
    return 0


@click.command("health")
@json_option
def health_command(as_json: bool) -> int:
    """exit 1 when Redis, a queue's consumers or a breaker is down"""
    problems = _fleet_state().problems()
    if as_json:
        echo_json({"healthy": not problems, "problems": problems}, indent=None)
    else:
        click.echo("healthy" if not problems else "\n".join(f"unhealthy: {problem}" for problem in problems))
    return 1 if problems else 0


def _fleet_state() -> FleetState:
    from stepper.celery import app
    from stepper.config import current_settings
    from stepper.infra.connections import state_redis
    from stepper.ops.fleet import read_fleet

    queues = [queue.name for queue in app.conf.task_queues]
    return read_fleet(app, state_redis(), queues, settings=current_settings())


@click.command("metrics")
@click.option("--port", type=int, default=9808)
def metrics_command(port: int) -> int:
    """serve Prometheus metrics of this host's workers and the fleet"""
    from stepper.celery import app
    from stepper.config import current_settings
    from stepper.infra.connections import state_redis
    from stepper.infra.metrics import process_registry, serve
    from stepper.ops.exporter import FleetCollector

    registry = process_registry()
    registry.register(FleetCollector(app, state_redis(), current_settings()))
    serve(port, registry)
    click.echo(f"serving metrics on http://0.0.0.0:{port}/metrics (Ctrl-C to stop)")
    while True:
        time.sleep(3600)


@click.command("flower")
@click.option("--port", type=int, default=5555)
@click.option("--address", default="127.0.0.1")
@click.option("--unauthenticated", is_flag=True, help="serve without auth (local use only)")
def flower_command(port: int, address: str, unauthenticated: bool) -> int:
    """run Flower with basic auth (STEPPER_FLOWER_USER, _PASSWORD)"""
    # Flower shows every task's arguments: it must not be open to whoever reaches the port.
    user, password = os.environ.get("STEPPER_FLOWER_USER"), os.environ.get("STEPPER_FLOWER_PASSWORD")
    env = dict(os.environ)
    if user and password:
        env["FLOWER_BASIC_AUTH"] = f"{user}:{password}"  # the environment, not argv: ps shows argv to everyone
    elif unauthenticated:
        env["FLOWER_UNAUTHENTICATED_API"] = "true"
    else:
        return fail(
            "refusing to start Flower without authentication: set STEPPER_FLOWER_USER and "
            "STEPPER_FLOWER_PASSWORD, or pass --unauthenticated for local use"
        )
    argv = [sys.executable, "-m", "celery", "-A", "stepper", "flower", f"--port={port}", f"--address={address}"]
    os.execve(argv[0], argv, env)  # noqa: S606  (become Flower)
    return 0  # not reached


@click.group("alerts")
def alerts_group() -> None:
    """send Slack/Discord alerts when breakers open, queues grow..."""


@alerts_group.command("watch")
@click.option("--interval", "interval_s", type=float, default=None, help="seconds (default: stepper_alerts interval_s)")
def watch_command(interval_s: float | None) -> int:
    """check every --interval seconds until stopped"""
    from stepper.config import current_settings
    from stepper.ops.alerts import watch

    settings, sinks = _alert_sinks()
    interval_s = settings.interval_s if interval_s is None else interval_s
    click.echo(f"checking alerts every {interval_s:g}s (Ctrl-C to stop)")
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends
        watch(
            interval_s,
            settings=settings,
            sinks=sinks,
            on_message=lambda message: click.echo(message.line),
            budgets_of=current_settings(),
        )
    return 0


@alerts_group.command("check")
def check_command() -> int:
    """check once and print what fired or resolved"""
    from stepper.celery import app
    from stepper.config import current_settings
    from stepper.infra.connections import state_redis
    from stepper.ops.alerts import run_checks

    settings, sinks = _alert_sinks()
    messages = run_checks(app, state_redis(), settings, sinks, budgets_of=current_settings())
    click.echo("\n".join(message.line for message in messages) or "nothing fired or resolved")
    return 0


def _alert_sinks() -> tuple[AlertSettings, list[AlertSink]]:
    from stepper.config import current_settings
    from stepper.ops.alerts import build_sinks

    settings = current_settings().alerts
    sinks = build_sinks(settings)
    if not sinks:
        click.echo(
            f"no alert sink configured: set {settings.slack_webhook_url_env} or {settings.discord_webhook_url_env}; "
            "alerts are only printed",
            err=True,
        )
    return settings, sinks
