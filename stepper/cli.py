"""The ``stepper`` command: inspect providers, submit work, run the demo."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepper.cli_batch import add_batch_parser
from stepper.cli_dlq import add_dlq_parser
from stepper.cli_gateway import add_gateway_parser
from stepper.errors import StepperError
from stepper.priorities import PRIORITIES, priority_value
from stepper.schemas import KINDS, Kind

if TYPE_CHECKING:
    from stepper.ops.alerts import AlertSink
    from stepper.settings import AlertSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stepper", description="A Celery worker fleet for AI inference.")
    commands = parser.add_subparsers(dest="command", required=True)

    providers = commands.add_parser("providers", help="list providers, the kinds they serve and whether they can run")
    providers.add_argument("--json", action="store_true", help="machine-readable output")
    providers.set_defaults(run=lambda args: _providers(args.json))

    submit = commands.add_parser("submit", help="submit one request and print its result")
    submit.add_argument("kind", choices=KINDS)
    submit.add_argument("request", help="the request as JSON, or @path/to/request.json")
    submit.add_argument("--priority", default="normal", help=f"{', '.join(PRIORITIES)} or 0-9 (0 most urgent)")
    submit.add_argument("--no-wait", action="store_true", help="print the task id and return at once")
    submit.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the result")
    submit.set_defaults(run=lambda args: _submit(args.kind, args.request, args.priority, args.no_wait, args.timeout))

    voices = commands.add_parser("voices", help="list the voices of the speech providers on this machine")
    voices.add_argument("--json", action="store_true", help="machine-readable output")
    voices.set_defaults(run=lambda args: _voices(args.json))

    worker = commands.add_parser("worker", help="run one worker of a profile (llm, cpu, ops)")
    worker.add_argument("--profile", required=True, help="llm (report, chat), cpu (ocr, steps, vision, speech), ops")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(run=lambda args: _worker(args.profile, args.loglevel))

    fleet = commands.add_parser("fleet", help="run a local fleet: one worker per profile")
    fleet.add_argument("action", choices=["up"])
    fleet.add_argument("--profiles", default="llm,cpu,ops", help="comma-separated profiles (default: all)")
    fleet.add_argument("--loglevel", default="INFO")
    fleet.set_defaults(run=lambda args: _fleet(args.profiles, args.loglevel))

    fleet_status = commands.add_parser("status", help="queues by priority, workers, breakers, rate limits")
    fleet_status.add_argument("--json", action="store_true", help="machine-readable output")
    fleet_status.set_defaults(run=lambda args: _status(args.json))

    health = commands.add_parser("health", help="exit non-zero when Redis, a queue's consumers or a breaker is down")
    health.add_argument("--json", action="store_true", help="machine-readable output")
    health.set_defaults(run=lambda args: _health(args.json))

    exporter = commands.add_parser("metrics", help="serve Prometheus metrics of this host's workers and the fleet")
    exporter.add_argument("--port", type=int, default=9808)
    exporter.set_defaults(run=lambda args: _metrics(args.port))

    flower = commands.add_parser("flower", help="run Flower with basic auth (STEPPER_FLOWER_USER, _PASSWORD)")
    flower.add_argument("--port", type=int, default=5555)
    flower.add_argument("--address", default="127.0.0.1")
    flower.add_argument("--unauthenticated", action="store_true", help="serve without auth (local use only)")
    flower.set_defaults(run=lambda args: _flower(args.port, args.address, args.unauthenticated))

    _add_alerts_parser(commands)
    add_dlq_parser(commands)
    add_batch_parser(commands)
    add_gateway_parser(commands)

    demo = commands.add_parser("demo", help="submit one sample request of each kind and print the results")
    demo.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for all six results")
    demo.set_defaults(run=lambda args: _demo(args.timeout))

    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
        return status
    except StepperError as exc:
        print(f"stepper: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2


def _providers(as_json: bool) -> int:
    from stepper.config import current_settings
    from stepper.registry import build_registry, capabilities

    settings = current_settings()
    rows = capabilities(build_registry(settings), settings)
    if as_json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
        return 0
    print(f"mode: {settings.mode}")
    for row in rows:
        status = "ready" if row.available else f"unavailable: {row.reason}"
        print(f"  {row.name:<12} kinds={','.join(row.kinds):<36} models={','.join(row.models) or '-'}  {status}")
    print("chains:")
    for kind, chain in settings.chains.items():
        print(f"  {kind:<7} {' -> '.join(str(entry) for entry in chain)}")
    return 0


def _fleet_state() -> Any:
    from stepper.celery import app
    from stepper.infra.connections import state_redis
    from stepper.ops.fleet import read_fleet

    return read_fleet(app, state_redis(), [queue.name for queue in app.conf.task_queues])


def _status(as_json: bool) -> int:
    state = _fleet_state()
    if as_json:
        print(json.dumps(asdict(state), indent=2))
        return 0 if state.redis_ok else 1
    if not state.redis_ok:
        print(f"Redis unreachable ({state.error}); check STEPPER_REDIS_URL and that redis-server runs")
        return 1
    print("queues (messages waiting by priority, 0 most urgent):")
    for queue, levels in state.queues.items():
        waiting = ", ".join(f"{level}:{count}" for level, count in levels.items() if count) or "empty"
        print(f"  {queue:<10} {sum(levels.values()):>6}   {waiting}")
    print("workers:" if state.workers else "workers: none answered")
    for worker in state.workers:
        print(f"  {worker.name:<28} {worker.pool:<8} x{worker.concurrency:<4} active {worker.active:<3} "
              f"queues {','.join(worker.queues)}")  # fmt: skip
    print("breakers:" if state.breakers else "breakers: none used yet")
    for name, breaker in state.breakers.items():
        print(f"  {name:<12} {breaker}")
    for name, buckets in state.buckets.items():
        print(f"  rate {name:<8} " + ", ".join(f"{kind} tokens left {left:g}" for kind, left in buckets.items()))
    return 0


def _health(as_json: bool) -> int:
    state = _fleet_state()
    problems = state.problems()
    if as_json:
        print(json.dumps({"healthy": not problems, "problems": problems}))
    else:
        print("healthy" if not problems else "\n".join(f"unhealthy: {problem}" for problem in problems))
    return 1 if problems else 0


def _add_alerts_parser(commands: Any) -> None:
    alerts = commands.add_parser("alerts", help="send Slack/Discord alerts when breakers open, queues grow...")
    actions = alerts.add_subparsers(dest="action", required=True)
    watch = actions.add_parser("watch", help="check every --interval seconds until stopped")
    watch.add_argument("--interval", type=float, default=None, help="seconds (default: stepper_alerts interval_s)")
    watch.set_defaults(run=lambda args: _alerts_watch(args.interval))
    check = actions.add_parser("check", help="check once and print what fired or resolved")
    check.set_defaults(run=lambda args: _alerts_check())


def _alert_sinks() -> tuple[AlertSettings, list[AlertSink]]:
    from stepper.config import current_settings
    from stepper.ops.alerts import build_sinks

    settings = current_settings().alerts
    sinks = build_sinks(settings)
    if not sinks:
        print(
            f"no alert sink configured: set {settings.slack_webhook_url_env} or {settings.discord_webhook_url_env}; "
            "alerts are only printed",
            file=sys.stderr,
        )
    return settings, sinks


def _alerts_watch(interval_s: float | None) -> int:
    from stepper.ops.alerts import watch

    settings, sinks = _alert_sinks()
    interval_s = settings.interval_s if interval_s is None else interval_s
    print(f"checking alerts every {interval_s:g}s (Ctrl-C to stop)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends
        watch(interval_s, settings=settings, sinks=sinks, on_message=lambda message: print(message.line, flush=True))
    return 0


def _alerts_check() -> int:
    from stepper.celery import app
    from stepper.infra.connections import state_redis
    from stepper.ops.alerts import run_checks

    settings, sinks = _alert_sinks()
    messages = run_checks(app, state_redis(), settings, sinks)
    print("\n".join(message.line for message in messages) or "nothing fired or resolved")
    return 0


def _metrics(port: int) -> int:
    from stepper.celery import app
    from stepper.infra.connections import state_redis
    from stepper.infra.metrics import process_registry, serve
    from stepper.ops.exporter import FleetCollector

    registry = process_registry()
    registry.register(FleetCollector(app, state_redis()))
    serve(port, registry)
    print(f"serving metrics on http://0.0.0.0:{port}/metrics (Ctrl-C to stop)", flush=True)
    while True:
        time.sleep(3600)


def _flower(port: int, address: str, unauthenticated: bool) -> int:
    """Flower shows every task's arguments: it must not be open to whoever reaches the port."""
    user, password = os.environ.get("STEPPER_FLOWER_USER"), os.environ.get("STEPPER_FLOWER_PASSWORD")
    env = dict(os.environ)
    if user and password:
        env["FLOWER_BASIC_AUTH"] = f"{user}:{password}"  # the environment, not argv: ps shows argv to everyone
    elif unauthenticated:
        env["FLOWER_UNAUTHENTICATED_API"] = "true"
    else:
        print(
            "stepper: refusing to start Flower without authentication: set STEPPER_FLOWER_USER and "
            "STEPPER_FLOWER_PASSWORD, or pass --unauthenticated for local use",
            file=sys.stderr,
        )
        return 2
    argv = [sys.executable, "-m", "celery", "-A", "stepper", "flower", f"--port={port}", f"--address={address}"]
    os.execve(argv[0], argv, env)  # noqa: S606  (become Flower)
    return 0  # not reached


def _worker(profile_name: str, loglevel: str) -> int:
    from stepper.workers.profiles import profile_named

    argv = profile_named(profile_name).worker_argv(loglevel)
    os.execv(argv[0], argv)  # noqa: S606  (become the worker: signals and exit status are Celery's own)
    return 0  # not reached


def _fleet(profile_names: str, loglevel: str) -> int:
    from stepper.workers.fleet import run_fleet
    from stepper.workers.profiles import profile_named

    return run_fleet([profile_named(name.strip()) for name in profile_names.split(",") if name.strip()], loglevel)


def _voices(as_json: bool) -> int:
    from stepper.config import current_settings
    from stepper.registry import build_registry, list_voices

    settings = current_settings()
    listing = list_voices(settings, build_registry(settings))
    if as_json:
        print(json.dumps(listing, indent=2))
        return 0
    for provider, answer in listing.items():
        if "voices" not in answer:
            print(f"{provider}: {answer.get('unavailable') or answer.get('error')}")
            continue
        print(f"{provider}: {len(answer['voices'])} voices")
        for voice in answer["voices"]:
            print(f"  {voice['id']:<24} {voice.get('name') or '':<28} {voice.get('language') or ''}")
    return 0


def _submit(kind: Kind, text: str, priority: str, no_wait: bool, timeout_s: float) -> int:
    from stepper.producer import submit

    raw = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    try:
        request = json.loads(raw)
    except json.JSONDecodeError as exc:
        print(f"stepper: the request is not valid JSON ({exc}); pass a JSON object or @file.json", file=sys.stderr)
        return 2
    result = submit(kind, request, priority=_priority_arg(priority))
    if no_wait:
        print(result.id)
        return 0
    print(json.dumps(result.get(timeout=timeout_s), indent=2))
    return 0


def _demo(timeout_s: float) -> int:
    from celery.exceptions import TimeoutError as CeleryTimeout

    from stepper.producer import submit
    from stepper.samples import sample_requests

    pending = {kind: submit(kind, request, priority="interactive") for kind, request in sample_requests().items()}
    print(f"submitted {len(pending)} sample jobs ({', '.join(pending)}); waiting for results...", flush=True)
    deadline = time.monotonic() + timeout_s
    failed = 0
    for kind, result in pending.items():
        try:
            value = result.get(timeout=max(0.1, deadline - time.monotonic()))
        except CeleryTimeout:
            print(f"\n[{kind}] no result within {timeout_s:g}s: is a worker consuming the '{kind}' queue?")
            failed += 1
            continue
        except Exception as exc:  # noqa: BLE001  (any error the task raised, rebuilt from the result backend)
            print(f"\n[{kind}] FAILED {type(exc).__name__}: {exc}")
            failed += 1
            continue
        print(_describe(kind, value))
    print(f"\n{len(pending) - failed} of {len(pending)} kinds answered.")
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


def _priority_arg(text: str) -> int:
    return priority_value(int(text) if text.isdigit() else text)


if __name__ == "__main__":
    sys.exit(main())
