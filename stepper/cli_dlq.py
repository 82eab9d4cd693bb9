"""``stepper dlq``: list, show, replay and purge the dead letters of the fleet (see stepper.ops.deadletters)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stepper.errors import StepperError
from stepper.schemas import KINDS

if TYPE_CHECKING:
    from stepper.ops.deadletters import DeadLetters, Entry

#: Characters of an error message shown in the table; `stepper dlq show ID` has all of it.
MESSAGE_CHARS = 60


def add_dlq_parser(commands: Any) -> None:
    """Add ``stepper dlq`` and its actions to the ``stepper`` command's subparsers."""
    dlq = commands.add_parser("dlq", help="tasks that failed for good: list, show, replay, purge")
    actions = dlq.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", help="the newest dead letters, newest first")
    listing.add_argument("--kind", choices=KINDS)
    listing.add_argument("--limit", type=_positive_int, default=50, help="how many (default 50)")
    listing.add_argument("--json", action="store_true", help="the whole entries, as JSON")
    listing.set_defaults(run=lambda args: _with_store(lambda store: _list(store, args.kind, args.limit, args.json)))

    show = actions.add_parser("show", help="one dead letter, whole, as JSON")
    show.add_argument("id")
    show.set_defaults(run=lambda args: _with_store(lambda store: _show(store, args.id)))

    replay = actions.add_parser("replay", help="submit a dead letter's request again, as a new task")
    replay.add_argument("id", nargs="?", help="the entry to replay (see `stepper dlq list`)")
    replay.add_argument("--all", action="store_true", help="replay every entry not replayed yet, oldest first")
    replay.add_argument("--kind", choices=KINDS, help="with --all: only entries of this kind")
    replay.set_defaults(run=_replay_command)

    purge = actions.add_parser("purge", help="remove every dead letter")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(run=lambda args: _with_store(lambda store: _purge(store, args.yes)))


def _with_store(action: Callable[[DeadLetters], int]) -> int:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from stepper.ops.deadletters import open_store

    try:
        return action(open_store())
    except (RedisConnectionError, RedisTimeoutError) as exc:
        print(
            f"stepper: Redis unreachable ({type(exc).__name__}); check STEPPER_REDIS_URL and that redis-server runs",
            file=sys.stderr,
        )
        return 1
    except RedisError as exc:
        print(f"stepper: Redis refused the dead-letter store's command ({exc}); check the server", file=sys.stderr)
        return 1


def _list(store: DeadLetters, kind: str | None, limit: int, as_json: bool) -> int:
    entries = store.list(limit=limit, kind=kind)
    if as_json:
        print(json.dumps([entry.model_dump(mode="json") for entry in entries], indent=2))
        return 0
    if not entries:
        print(f"no dead letters of kind {kind}" if kind else "no dead letters")
        return 0
    id_width = max(len("ID"), *(len(entry.id) for entry in entries))
    print(f"{'ID':<{id_width}}  {'FAILED AT (UTC)':<24}  {'KIND':<6}  {'REPLAYS':>7}  ERROR")
    for entry in entries:
        print(
            f"{entry.id:<{id_width}}  {entry.failed_at:<24}  {entry.kind:<6}  {len(entry.replays):>7}  {_error(entry)}"
        )
    total = store.size()
    if kind is None and total > len(entries):
        print(f"{len(entries)} of {total} shown, newest first; --limit {total} shows them all")
    return 0


def _show(store: DeadLetters, entry_id: str) -> int:
    print(json.dumps(store.require(entry_id).model_dump(mode="json"), indent=2))
    return 0


def _replay_command(args: argparse.Namespace) -> int:
    if args.all == (args.id is not None):
        print("stepper: give either an entry id or --all (see `stepper dlq list`)", file=sys.stderr)
        return 2
    if args.kind and not args.all:
        print("stepper: --kind selects entries for --all; give it with --all, or give only the id", file=sys.stderr)
        return 2
    if args.all:
        return _with_store(lambda store: _replay_all(store, args.kind))
    return _with_store(lambda store: _replay_one(store, args.id))


def _replay_one(store: DeadLetters, entry_id: str) -> int:
    from stepper.ops.deadletters import replay
    from stepper.producer import submit

    print(replay(store, entry_id, submit))
    return 0


def _replay_all(store: DeadLetters, kind: str | None) -> int:
    """Entries replayed before are left out: a second ``--all`` must not run the same work twice."""
    from stepper.ops.deadletters import replay
    from stepper.producer import submit

    pending, done_before = [], 0
    for entry in store.entries(kind, oldest_first=True):
        if entry.replays:
            done_before += 1
        else:
            pending.append(entry.id)
    skipped = f" ({done_before} replayed before; replay one again with `stepper dlq replay ID`)" if done_before else ""
    if not pending:
        print(f"nothing to replay{skipped}")
        return 0
    failed = 0
    for number, entry_id in enumerate(pending, start=1):
        try:
            new_task_id = replay(store, entry_id, submit)
        except StepperError as exc:
            failed += 1
            print(f"not replayed {number}/{len(pending)}: {exc}", file=sys.stderr, flush=True)
            continue
        print(f"replayed {number}/{len(pending)}: {entry_id} -> {new_task_id}", flush=True)
    print(f"{len(pending) - failed} of {len(pending)} replayed{skipped}")
    if failed:
        print(f"stepper: {failed} not replayed (reasons above); `stepper dlq show ID` shows each", file=sys.stderr)
        return 1
    return 0


def _purge(store: DeadLetters, yes: bool) -> int:
    if not yes:
        if not sys.stdin.isatty():
            print("stepper: not a terminal, so nobody can confirm: pass --yes to purge", file=sys.stderr)
            return 2
        try:
            answer = input(f"remove all {store.size()} dead letters? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in {"y", "yes"}:
            print("nothing removed")
            return 1
    print(f"removed {store.purge()} dead letters")
    return 0


def _error(entry: Entry) -> str:
    message = " ".join(entry.error.message.split())
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    return f"{entry.error.type}: {message}" if message else entry.error.type


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return value
