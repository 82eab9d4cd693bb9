"""The fleet's state on a Redis Cluster, where its keys allow it (README, "Redis Cluster for the state"): three
masters on loopback (``redis-server --cluster-enabled yes``, joined by ``redis-cli --cluster create``) and
redis-py's cluster client. The guards' script (seven keys under one ``{provider}`` tag) and the cache's probe
(an entry and its claim under one ``{digest}`` tag) run on it; the dead-letter store, whose keys share no tag,
is refused by the cluster, as documented."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, ResponseError

from stepper.guards.admission import Limits, RedisGuardBackend
from stepper.infra import keys
from stepper.ops.deadletters import DeadLetterStore
from stepper.reuse.cache import ResultCache
from stepper.settings import CacheSettings, DeadLetterSettings
from tests.support.binaries import require_binary
from tests.support.redis_server import RedisServer, free_port

PROVIDERS = ("openai", "gemini", "cohere", "mistral", "elevenlabs")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    binary = require_binary("redis-server", "redis-server")
    directory = Path(tmp_path_factory.mktemp("cluster"))
    servers = []
    try:
        for number in range(3):
            server = RedisServer(
                binary,
                directory / f"node-{number}",
                # The bus port's default (port + 10000) may not exist for a high free port.
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-port",
                    str(free_port()),
                ],
            )
            server.directory.mkdir()
            server.start()
            servers.append(server)
        addresses = [f"127.0.0.1:{server.port}" for server in servers]
        subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "--cluster", "create", *addresses, "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while servers[0].client().cluster("info").get("cluster_state") != "ok":
            assert time.monotonic() < deadline, "the cluster did not come up"
            time.sleep(0.1)
        client = RedisCluster(host="127.0.0.1", port=servers[0].port, decode_responses=False)
        yield client
        client.close()
    finally:
        for server in servers:
            server.stop()


def test_the_providers_guard_keys_spread_over_the_nodes_yet_each_script_runs(cluster: RedisCluster) -> None:
    slots = {key_slot(keys.rate_bucket(provider, "rpm").encode()) for provider in PROVIDERS}
    assert len({cluster.nodes_manager.get_node_from_slot(slot).name for slot in slots}) > 1  # really spread
    guards = RedisGuardBackend(cluster)  # type: ignore[arg-type]  # a cluster client serves the same commands
    for provider in PROVIDERS:
        assert guards.admit(provider, Limits(rpm=600), 0, reset_timeout_s=30).verdict == "closed"
    guards.cool_down("gemini", 30)
    assert guards.admit("gemini", Limits(), 0, reset_timeout_s=30).verdict == "cooldown"


def test_a_cache_entry_and_its_claim_share_a_slot(cluster: RedisCluster) -> None:
    cache = ResultCache(cluster, CacheSettings())  # type: ignore[arg-type]
    key = keys.cache_entry("chat", "9f" * 32)
    assert key_slot(key.encode()) == key_slot(keys.flight(key).encode()) == key_slot(keys.refreshing(key).encode())
    assert cache.probe(key, "worker-a", lease_s=5).claimed
    assert not cache.probe(key, "worker-b", lease_s=5).claimed  # single flight, on the cluster
    # Renewed together though their claims live on different nodes; released only by the run holding it.
    elsewhere = next(n for n in range(256) if _node(cluster, n) != _node(cluster, 0x9F))
    other = keys.cache_entry("chat", f"{elsewhere:02x}" * 32)
    assert cache.probe(other, "worker-a", lease_s=5).claimed
    assert cache.renew([(key, "worker-a"), (other, "worker-a"), (key, "worker-b")], lease_s=60) == [True, True, False]
    assert cluster.pttl(keys.flight(other)) > 5_000
    cache.land(key, "worker-b")
    assert not cache.probe(key, "worker-c", lease_s=5).claimed
    cache.land(key, "worker-a")
    assert cache.probe(key, "worker-c", lease_s=5).claimed


def _node(cluster: RedisCluster, byte: int) -> str:
    """The node holding the claim of the cache entry whose digest repeats ``byte``."""
    flight = keys.flight(keys.cache_entry("chat", f"{byte:02x}" * 32))
    return str(cluster.get_node_from_key(flight).name)  # type: ignore[no-untyped-call]


def test_the_dead_letter_store_is_not_cluster_safe(cluster: RedisCluster) -> None:
    """Its four keys carry no shared tag: a cluster refuses the script (README says so, and why)."""
    store = DeadLetterStore(cluster, DeadLetterSettings())  # type: ignore[arg-type]
    with pytest.raises((RedisClusterException, ResponseError)):
        store.add("task-1", "chat", {"messages": []}, "ChainExhausted", "every provider failed", [], 0)
