"""Two versions of stepper side by side: the streamed chat's first token of this working tree against a git ref's.

On a small, noisy machine two runs of ``bench.stream_latency`` a few minutes apart differ by more than most
changes move the first token. This runs both versions at once instead: a worker and a gateway from each (the
ref checked out in a temporary ``git worktree``, each process importing its own tree through ``PYTHONPATH``),
on one Redis and one loopback vendor, and alternates streamed chats between them (which goes first changes
every round), asking the vendor directly after each pair. It prints each side's p50 overhead over the vendor,
the difference of the two medians, and the median of the paired differences (positive: the working tree is
slower). Run it with ``--ref`` naming the working tree's own commit first, to see what difference the method
shows between a version and itself: nothing smaller than that means anything.

    python -m bench.side_by_side --ref HEAD~1 --requests 150
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from bench import stream_latency
from bench.harness import private_redis, progress, redis_url
from tests.support.fake_http import serving
from tests.support.gateway import running_gateway
from tests.support.vendors.openai_compatible import FakeOpenAICompatible
from tests.support.workers import REPO_ROOT, start_worker

WARM_UP = 10
#: Streamed chats between two progress lines.
PROGRESS_EVERY = 25


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ref", default="HEAD", help="the git ref to compare the working tree with (HEAD)")
    parser.add_argument("--requests", type=int, default=150, help="streamed chats through each side (150)")
    options = parser.parse_args(argv)
    if options.requests < 1:
        parser.error("--requests takes a count of streamed chats, 1 or more (at 150, the method's noise is 0.4 ms)")
    with checked_out(options.ref) as other:
        ms = compare({"working tree": REPO_ROOT, options.ref: other}, options.requests)
    tree, ref = ms["working tree"], ms[options.ref]
    direct = statistics.median(ms["direct"])
    paired = statistics.median(a - b for a, b in zip(tree, ref, strict=True))
    print(f"first token added over the vendor (p50): working tree {statistics.median(tree) - direct:+.2f} ms, "
          f"{options.ref} {statistics.median(ref) - direct:+.2f} ms")  # fmt: skip
    print(f"working tree minus {options.ref}: {statistics.median(tree) - statistics.median(ref):+.2f} ms between "
          f"medians, {paired:+.2f} ms paired (median)")  # fmt: skip
    return 0


@contextmanager
def checked_out(ref: str) -> Iterator[Path]:
    """``ref`` in a temporary git worktree, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="stepper-side-by-side-") as directory:
        tree = Path(directory) / "tree"
        git = ["git", "-C", str(REPO_ROOT), "worktree"]
        added = subprocess.run(  # noqa: S603  (git, with a ref the user named)
            [*git, "add", "--detach", str(tree), ref], check=False, capture_output=True, text=True
        )
        if added.returncode != 0:
            raise SystemExit(
                f"cannot check {ref!r} out ({added.stderr.strip()}): name a commit, branch or tag of this repository"
            )
        try:
            yield tree
        finally:
            subprocess.run([*git, "remove", "--force", str(tree)], check=False, capture_output=True)  # noqa: S603


def compare(trees: dict[str, Path], requests: int) -> dict[str, list[float]]:
    """Milliseconds to the first token through each tree's gateway and worker, and from the vendor directly
    (``direct``), ``requests`` of each, alternated."""
    progress(f"side_by_side: a worker and a gateway of each of {', '.join(trees)}, then {requests} chats each")
    vendor = FakeOpenAICompatible("vllm")
    vendor.first_byte_delay_s = stream_latency.FIRST_BYTE_S
    vendor.chunks = stream_latency.CHUNKS
    config = stream_latency.settings(vendor.base_url)
    with private_redis() as redis, serving(vendor), ExitStack() as fleets:
        urls: dict[str, str] = {}
        for database, (name, tree) in enumerate(trees.items(), start=10):
            directory = Path(fleets.enter_context(tempfile.TemporaryDirectory()))
            url = redis_url(redis, database)

            def environment(config_dir: Path, tree: Path = tree) -> dict[str, str]:
                path = os.pathsep.join([str(config_dir), str(tree)])  # this tree's stepper, not the installed one
                return {**stream_latency.KEY_ENVIRONMENT, "PYTHONPATH": path}

            worker = start_worker(
                url,
                directory / "worker",
                config,
                name=f"side-{database}",
                env=environment(directory / "worker"),
                pool="threads",
                concurrency=8,
                queues=["chat"],
            )
            fleets.callback(worker.stop)
            gateway = fleets.enter_context(
                running_gateway(url, directory / "gateway", config, env=environment(directory / "gateway"))
            )
            urls[name] = f"{gateway.url}/v1/chat/completions"
        urls["direct"] = f"{vendor.base_url}/chat/completions"
        return _alternated(urls, requests)


def _alternated(urls: dict[str, str], requests: int) -> dict[str, list[float]]:
    headers = {"Authorization": f"Bearer {stream_latency.KEY}"}
    sides = [name for name in urls if name != "direct"]
    ms: dict[str, list[float]] = {name: [] for name in urls}
    for index in range(-WARM_UP, requests):
        order = sides if index % 2 == 0 else sides[::-1]
        for name in [*order, "direct"]:
            seconds = stream_latency.first_token_s(urls[name], headers if name != "direct" else {}, index)
            if index >= 0:
                ms[name].append(seconds * 1000)
        if index > 0 and index % PROGRESS_EVERY == 0:
            progress(f"side_by_side: {index} of {requests}")
    return ms


if __name__ == "__main__":
    sys.exit(main())
