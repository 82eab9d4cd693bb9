"""A private RabbitMQ node on free ports, with its own data directory, so tests never touch a running broker.

Debian's ``/usr/sbin/rabbitmq-server`` switches to the ``rabbitmq`` user and writes under /var/lib/rabbitmq; the
script it wraps (``/usr/lib/rabbitmq/bin/rabbitmq-server``) runs as whoever starts it, with every path taken
from the environment: the node name, AMQP and distribution ports, data (mnesia), logs, config, enabled plugins,
feature flags, the Erlang cookie (``HOME``) and epmd's port, all private to this node. Its vhosts, user and
permissions come from a definitions file read at boot (no ``rabbitmqctl`` round trips: each costs a second or
more of Erlang start-up). Stopped by its PID, then its private epmd is told to exit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.redis_server import free_port

#: Where Debian's package puts the script that does not switch users.
SERVER_SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"
CTL_SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmqctl"
USER, PASSWORD = "stepper", "stepper-test"
#: Vhosts made at boot: one per test fleet, as the Redis fixture gives one database per fleet.
VHOSTS = 24


def password_hash(password: str, salt: bytes | None = None) -> str:
    """RabbitMQ's ``rabbit_password_hashing_sha256``: base64(salt + sha256(salt + password)), 4-byte salt."""
    salt = salt or os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


@dataclass
class RabbitMQServer:
    directory: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _env: dict[str, str] = field(default_factory=dict)

    def url(self, vhost: int | str = 0) -> str:
        """An AMQP URL of vhost ``fleet-<n>`` (a number) or a vhost by name."""
        name = f"fleet-{vhost}" if isinstance(vhost, int) else vhost
        return f"amqp://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{name}"

    def start(self, timeout_s: float = 60) -> None:
        """Start the node; again after a stop, on the same ports and data (its durable queues come back)."""
        if not self._env:
            self._configure()
        log = (self.directory / "server.log").open("ab")
        self.process = subprocess.Popen(
            [SERVER_SCRIPT], env=self._env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.directory / "server.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"rabbitmq-server did not listen on port {self.port}:\n{tail}")
            time.sleep(0.1)

    def _configure(self) -> None:
        self.port = self.port or free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        definitions = self.directory / "definitions.json"
        vhosts = [f"fleet-{n}" for n in range(VHOSTS)]
        definitions.write_text(
            json.dumps({
                "users": [{
                    "name": USER,
                    "password_hash": password_hash(PASSWORD),
                    "hashing_algorithm": "rabbit_password_hashing_sha256",
                    "tags": ["administrator"],
                }],
                "vhosts": [{"name": name} for name in vhosts],
                "permissions": [
                    {"user": USER, "vhost": name, "configure": ".*", "write": ".*", "read": ".*"} for name in vhosts
                ],
            })
        )  # fmt: skip
        (self.directory / "rabbitmq.conf").write_text(
            f"load_definitions = {definitions}\nloopback_users = none\ndisk_free_limit.absolute = 1MB\n"
        )
        (self.directory / "enabled_plugins").write_text("[].\n")
        self._env = {
            **os.environ,
            "RABBITMQ_NODENAME": f"stepper-test-{self.port}@localhost",
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "ERL_EPMD_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "RABBITMQ_FEATURE_FLAGS_FILE": str(self.directory / "feature_flags"),
            "RABBITMQ_GENERATED_CONFIG_DIR": str(self.directory / "generated"),
            "RABBITMQ_PID_FILE": str(self.directory / "rabbitmq.pid"),
            "HOME": str(self.directory),  # the Erlang cookie
        }

    def _answers(self) -> bool:
        """Whether the AMQP port takes a connection and speaks AMQP (a protocol header gets Connection.Start)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"AMQP\x00\x00\x09\x01")
                return sock.recv(1)[:1] == b"\x01"  # a method frame
        except OSError:
            return False

    def ctl(self, *arguments: str) -> None:
        """Run ``rabbitmqctl`` against this node (Debian's inner script: the outer one switches users)."""
        subprocess.run([CTL_SCRIPT, *arguments], env=self._env, capture_output=True, check=True, timeout=60)

    def restart(self, *, crash: bool, down_s: float = 2.0) -> None:
        """Stop the node (SIGTERM: a clean shutdown; ``crash``: SIGKILL, no goodbye), stay down ``down_s``
        seconds, and start it again on the same ports and data."""
        self._halt(signal.SIGKILL if crash else signal.SIGTERM)
        time.sleep(down_s)
        self.start()

    def stop(self) -> None:
        self._halt(signal.SIGTERM)
        # The node started an epmd on its private port; it outlives the node unless told to go.
        subprocess.run(
            ["epmd", "-kill"], env=self._env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
        )

    def _halt(self, how: signal.Signals) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, how)  # the script and the Erlang VM it runs
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
