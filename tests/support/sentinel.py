"""A Sentinel-managed Redis on loopback: one master, one replica and three sentinels (``redis-server --sentinel``),
every one a process of the test's own on a free port, so that a test can kill the master and watch a failover."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.support.redis_server import RedisServer, free_port

MASTER_NAME = "stepper"
#: Sentinels agreeing that the master is down before a failover starts.
QUORUM = 2


@dataclass
class SentinelGroup:
    binary: str
    directory: Path
    master: RedisServer | None = None
    replica: RedisServer | None = None
    sentinel_ports: list[int] = field(default_factory=list)
    sentinels: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The stepper URL of database ``0`` through the three sentinels."""
        return self.url_of(0)

    def url_of(self, database: int) -> str:
        addresses = ";".join(f"sentinel://127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"{addresses}/{database}?master_name={MASTER_NAME}"

    def start(self) -> None:
        self.master = self._redis("master", [])
        self.replica = self._redis("replica", ["--replicaof", "127.0.0.1", str(self.master.port)])
        wait_for(
            lambda: self.replica is not None and _replication(self.replica.client()).get("master_link_status") == "up"
        )
        for number in range(3):
            port = free_port()
            conf = self.directory / f"sentinel-{number}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master.port} {QUORUM}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [self.binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
                )
            )
            self.sentinel_ports.append(port)
        self._wait_until_all_name(self.master.port, timeout_s=20)

    def _redis(self, name: str, extra: list[str]) -> RedisServer:
        server = RedisServer(self.binary, self.directory / name, extra_args=extra)
        server.directory.mkdir(parents=True, exist_ok=True)
        server.start()
        return server

    def master_port(self, sentinel_port: int) -> int | None:
        """The master's port as one sentinel sees it (None while it cannot answer)."""
        try:
            found = redis.Redis(port=sentinel_port).sentinel_get_master_addr_by_name(MASTER_NAME)
        except redis.RedisError:
            return None
        return int(found[1]) if isinstance(found, tuple) else None

    def replication_lag_bytes(self) -> int:
        """At most how far the replica is behind the master now, in bytes of the replication stream: the replica's
        offset is read first, so what the master wrote between the two reads counts too (0 when idle)."""
        assert self.master is not None and self.replica is not None
        replica = int(_replication(self.replica.client())["slave_repl_offset"])
        master = int(_replication(self.master.client())["master_repl_offset"])
        return max(0, master - replica)

    def kill_master(self) -> None:
        """SIGKILL the master (no goodbye to anyone), as a crashed host would go."""
        assert self.master is not None and self.master.process is not None
        self.master.process.kill()
        self.master.process.wait(timeout=10)

    def wait_for_failover(self, timeout_s: float = 30) -> float:
        """Seconds until every sentinel names the replica as the master."""
        assert self.replica is not None
        started = time.monotonic()
        self._wait_until_all_name(self.replica.port, timeout_s)
        return time.monotonic() - started

    def _wait_until_all_name(self, master_port: int, timeout_s: float) -> None:
        wait_for(lambda: all(self.master_port(port) == master_port for port in self.sentinel_ports), timeout_s)

    def stop(self) -> None:
        for process in self.sentinels:
            process.terminate()
        for process in self.sentinels:
            process.wait(timeout=10)
        for server in (self.master, self.replica):
            if server is not None:
                server.stop()


def _replication(client: redis.Redis) -> dict[str, str]:
    return {key: str(value) for key, value in client.info("replication").items()}


def wait_for(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("the Sentinel group did not reach the expected state in time")
        time.sleep(0.05)
