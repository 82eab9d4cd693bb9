"""``stepper dlq``: list, show, replay and purge the dead letters of the fleet (see stepper.ops.deadletters)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import click

from stepper.cli.common import echo_json, fail
from stepper.errors import StepperError
from stepper.schemas import KINDS

if TYPE_CHECKING:
    from stepper.ops.deadletters import DeadLetters, Entry

#: Characters of an error message shown in the table; `stepper dlq show ID` has all of it.
MESSAGE_CHARS = 60


@click.group("dlq")
def dlq_group() -> None:
    """tasks that failed for good: list, show, replay, purge"""


@dlq_group.command("list")
@click.option("--kind", type=click.Choice(KINDS))
@click.option("--limit", type=click.IntRange(min=1), default=50, help="how many (default 50)")
@click.option("--json", "as_json", is_flag=True, help="the whole entries, as JSON")
def list_command(kind: str | None, limit: int, as_json: bool) -> int:
    """the newest dead letters, newest first"""
    return _with_store(lambda store: _list(store, kind, limit, as_json))


@dlq_group.command("show")
@click.argument("entry_id", metavar="ID")
def show_command(entry_id: str) -> int:
    """one dead letter, whole, as JSON"""
    return _with_store(lambda store: _show(store, entry_id))


@dlq_group.command("replay")
@click.argument("entry_id", metavar="[ID]", required=False)
@click.option("--all", "replay_all", is_flag=True, help="replay every entry not replayed yet, oldest first")
@click.option("--kind", type=click.Choice(KINDS), help="with --all: only entries of this kind")
def replay_command(entry_id: str | None, replay_all: bool, kind: str | None) -> int:
    """submit a dead letter's request again, as a new task

    ID is the entry to replay (see `stepper dlq list`).
    """
    if replay_all == (entry_id is not None):
        return fail("give either an entry id or --all (see `stepper dlq list`)")
    if kind and not replay_all:
        return fail("--kind selects entries for --all; give it with --all, or give only the id")
    if entry_id is None:
        return _with_store(lambda store: _replay_all(store, kind))
    return _with_store(lambda store: _replay_one(store, entry_id))


@dlq_group.command("purge")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
def purge_command(yes: bool) -> int:
    """remove every dead letter"""
    return _with_store(lambda store: _purge(store, yes))


def _with_store(action: Callable[[DeadLetters], int]) -> int:
    """Run ``action`` on the fleet's store; Redis errors become a message and exit status 1."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    from stepper.ops.deadletters import open_store

    try:
        return action(open_store())
    except (RedisConnectionError, RedisTimeoutError) as exc:
        message = f"Redis unreachable ({type(exc).__name__}); check STEPPER_REDIS_URL and that redis-server runs"
        return fail(message, status=1)
    except RedisError as exc:
        return fail(f"Redis refused the dead-letter store's command ({exc}); check the server", status=1)


def _list(store: DeadLetters, kind: str | None, limit: int, as_json: bool) -> int:
    entries = store.list(limit=limit, kind=kind)
    if as_json:
        echo_json([entry.model_dump(mode="json") for entry in entries])
        return 0
    if not entries:
        click.echo(f"no dead letters of kind {kind}" if kind else "no dead letters")
        return 0
    id_width = max(len("ID"), *(len(entry.id) for entry in entries))
    click.echo(f"{'ID':<{id_width}}  {'FAILED AT (UTC)':<24}  {'KIND':<6}  {'REPLAYS':>7}  ERROR")
    for entry in entries:
        click.echo(
            f"{entry.id:<{id_width}}  {entry.failed_at:<24}  {entry.kind:<6}  {len(entry.replays):>7}  {_error(entry)}"
        )
    total = store.size()
    if kind is None and total > len(entries):
        click.echo(f"{len(entries)} of {total} shown, newest first; --limit {total} shows them all")
    return 0


def _show(store: DeadLetters, entry_id: str) -> int:
    echo_json(store.require(entry_id).model_dump(mode="json"))
    return 0


def _replay_one(store: DeadLetters, entry_id: str) -> int:
    from stepper.ops.deadletters import replay
    from stepper.producer import submit

    click.echo(replay(store, entry_id, submit))
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
        click.echo(f"nothing to replay{skipped}")
        return 0
    failed = 0
    for number, entry_id in enumerate(pending, start=1):
        try:
            new_task_id = replay(store, entry_id, submit)
        except StepperError as exc:
            failed += 1
            click.echo(f"not replayed {number}/{len(pending)}: {exc}", err=True)
            continue
        click.echo(f"replayed {number}/{len(pending)}: {entry_id} -> {new_task_id}")
    click.echo(f"{len(pending) - failed} of {len(pending)} replayed{skipped}")
    if failed:
        return fail(f"{failed} not replayed (reasons above); `stepper dlq show ID` shows each", status=1)
    return 0


def _purge(store: DeadLetters, yes: bool) -> int:
    if not yes:
        if not sys.stdin.isatty():
            return fail("not a terminal, so nobody can confirm: pass --yes to purge")
        try:
            confirmed = click.confirm(f"remove all {store.size()} dead letters?", prompt_suffix=" ")
        except click.Abort:  # end of input or Ctrl-C at the question: a no
            confirmed = False
        if not confirmed:
            click.echo("nothing removed")
            return 1
    click.echo(f"removed {store.purge()} dead letters")
    return 0


def _error(entry: Entry) -> str:
    message = " ".join(entry.error.message.split())
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    return f"{entry.error.type}: {message}" if message else entry.error.type
