"""A private redis-server on a free port, so tests never touch a developer's data."""

from __future__ import annotations

import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

#: One database per test fleet; the last few are reserved for tests that need one no worker consumes.
DATABASES = 128  # the broker matrix runs fleets on RabbitMQ too, each with its results and state here
RESERVED_DATABASES = {"status": 127, "fleet": 126, "gateway-idle": 125, "revokes": 124, "budgets": 123, "acl": 122}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class RedisServer:
    binary: str
    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    #: Append-only file, synced on every write: a restart keeps every message, as production Redis should.
    appendonly: bool = False
    #: More redis-server arguments (``--replicaof host port``, say).
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.port = self.port or free_port()
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
                "--maxmemory-policy",
                "noeviction",
                "--databases",
                str(DATABASES),
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def crash_and_restart(self, down_s: float = 0.0) -> None:
        """SIGKILL the server (no goodbye to its clients), stay down ``down_s`` seconds, and start it again on the
        same port and files: with ``appendonly`` it comes back with every write it acknowledged."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)
        time.sleep(down_s)
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)
