"""Redis Lua scripts, one file each beside this module, read once per process.

Each script says in its first lines what its KEYS and ARGV are. A script that builds on another (the
dead-letter store's add and remove both use its ``drop`` function) is sent as the files joined in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

from redis import Redis
from redis.commands.core import Script


@cache
def source(*names: str) -> str:
    """The text of the scripts ``names`` (file names without ``.lua``), joined in order."""
    folder = resources.files(__name__)
    return "\n".join(folder.joinpath(f"{name}.lua").read_text(encoding="utf-8") for name in names)


@cache
def script(client: Redis, *names: str) -> Script:
    """The scripts ``names`` registered on ``client``, once per client: callers on a hot path (every
    submission) must not hash the text again at each call. The script loads itself on first use."""
    return client.register_script(source(*names))


@dataclass(frozen=True)
class ScriptCall:
    """A call of a script's function (admission.lua's ``admit``, say) for another script to make in its own round
    trip: the function's keys and arguments."""

    keys: list[str]
    args: list[str | int | float]
