"""Which deployment of a provider takes the next call: ``weighted``, ``least-busy`` or ``latency``, fleet-wide.

A provider that declares several ``deployments`` (replicas behind different URLs, or several keys of one vendor)
has each call routed to one of those still available to this call (the chain drops a deployment whose breaker is
open, that is cooling down or that just failed):

- ``weighted``: at random, in proportion to the weights; needs no shared state to be fleet-wide.
- ``least-busy``: the one with the fewest calls in flight across the fleet. Picking and counting the call are one
  Lua script (``route_least_busy.lua``), so two workers choosing at once never both see the same idle deployment;
  each call holds a lease of ``total_timeout_s`` plus a margin, so a worker that dies mid-call does not leave its
  deployment looking busy for longer than that.
- ``latency``: the one with the lowest recent time to first byte (the mean of its last ``LATENCY_SAMPLES``
  successful calls, the whole call when no first byte was seen), kept in Redis for the whole fleet. A deployment
  with no samples yet goes first, and ``EXPLORE_SHARE`` of calls go to a random deployment, so a deployment that
  was slow once is measured again (epsilon-greedy).

A provider without ``deployments`` has one, and is routed without touching Redis. When Redis is unreachable,
routing falls back to ``weighted`` in this process (logged once per outage): the guards protect the vendors,
routing only spreads the load.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

from redis import Redis
from redis.exceptions import RedisError

from stepper.infra import keys, lua
from stepper.settings import DeploymentTarget, Strategy

log = logging.getLogger(__name__)

#: Successful calls per deployment whose latency ``latency`` averages.
LATENCY_SAMPLES = 20
#: Samples of a deployment unused for this long are forgotten (it is explored again).
LATENCY_TTL_S = 3600
#: The share of ``latency`` calls sent to a random deployment rather than the fastest.
EXPLORE_SHARE = 0.1
#: Added to a call's ``total_timeout_s`` for its in-flight lease.
LEASE_MARGIN_S = 30.0


class RouteBackend(Protocol):
    """Fleet-wide routing state: calls in flight and recent latencies per deployment."""

    def claim_least_busy(self, provider: str, labels: Sequence[str], call_id: str, lease_s: float) -> int:
        """Count ``call_id`` on the deployment among ``labels`` with the fewest calls in flight (the first of equals)
        and return its index."""

    def release(self, provider: str, label: str, call_id: str) -> None: ...

    def latencies(self, provider: str, labels: Sequence[str]) -> list[list[float]]:
        """Recent latencies (seconds, newest first) of each of ``labels``."""

    def observe(self, provider: str, label: str, seconds: float) -> None: ...


class RedisRouteBackend:
    def __init__(self, client: Redis) -> None:
        self._client = client
        self._claim = lua.script(client, "route_least_busy")

    def claim_least_busy(self, provider: str, labels: Sequence[str], call_id: str, lease_s: float) -> int:
        chosen = self._claim(
            keys=[keys.in_flight(provider, label) for label in labels], args=[call_id, max(1, int(lease_s * 1000))]
        )
        return int(cast(int, chosen)) - 1

    def release(self, provider: str, label: str, call_id: str) -> None:
        self._client.zrem(keys.in_flight(provider, label), call_id)

    def latencies(self, provider: str, labels: Sequence[str]) -> list[list[float]]:
        pipe = self._client.pipeline(transaction=False)
        for label in labels:
            pipe.lrange(keys.latency(provider, label), 0, LATENCY_SAMPLES - 1)
        return [[int(sample) / 1000 for sample in samples] for samples in pipe.execute()]

    def observe(self, provider: str, label: str, seconds: float) -> None:
        key = keys.latency(provider, label)
        pipe = self._client.pipeline(transaction=True)
        pipe.lpush(key, max(0, round(seconds * 1000)))
        pipe.ltrim(key, 0, LATENCY_SAMPLES - 1)
        pipe.expire(key, LATENCY_TTL_S)
        pipe.execute()


class MemoryRouteBackend:
    """The same state in one process: for tests and a single-process development worker."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._latencies: dict[tuple[str, str], deque[float]] = defaultdict(lambda: deque(maxlen=LATENCY_SAMPLES))

    def claim_least_busy(self, provider: str, labels: Sequence[str], call_id: str, lease_s: float) -> int:
        del lease_s  # a process's own calls end or take the process with them
        with self._lock:
            busy = [len(self._in_flight[(provider, label)]) for label in labels]
            chosen = busy.index(min(busy))
            self._in_flight[(provider, labels[chosen])].add(call_id)
            return chosen

    def release(self, provider: str, label: str, call_id: str) -> None:
        with self._lock:
            self._in_flight[(provider, label)].discard(call_id)

    def latencies(self, provider: str, labels: Sequence[str]) -> list[list[float]]:
        with self._lock:
            return [list(self._latencies[(provider, label)]) for label in labels]

    def observe(self, provider: str, label: str, seconds: float) -> None:
        with self._lock:
            self._latencies[(provider, label)].appendleft(seconds)


@dataclass(frozen=True)
class Pick:
    """The deployment one call goes to, how it was chosen, and its in-flight claim (``least-busy`` only)."""

    provider: str
    target: DeploymentTarget
    strategy: Strategy = "weighted"
    claim: str | None = None


class Router:
    """Picks deployments for one worker process; see the module's docstring for the strategies."""

    def __init__(self, backend: RouteBackend, rand: random.Random | None = None) -> None:
        self._backend = backend
        self._rand = rand or random.Random()  # noqa: S311  (load spreading, not security)
        self._failing_open = threading.Event()

    def pick(self, provider: str, strategy: Strategy, targets: Sequence[DeploymentTarget]) -> Pick:
        """One of ``targets`` (not empty) for the next call to ``provider``; give it back with :meth:`done`."""
        if len(targets) == 1 or targets[0].label is None:
            return Pick(provider, targets[0], strategy)
        try:
            if strategy == "least-busy":
                return self._least_busy(provider, targets)
            if strategy == "latency":
                return Pick(provider, self._fastest(provider, targets), strategy)
        except RedisError as exc:
            if not self._failing_open.is_set():
                self._failing_open.set()
                log.warning("routing state unreachable (%s); picking deployments of %s by weight", exc, provider)
            return Pick(provider, self.weighted(targets))
        self._failing_open.clear()
        return Pick(provider, self.weighted(targets))

    def done(self, pick: Pick, latency_s: float | None) -> None:
        """The call ended: release its claim and, when it succeeded under ``latency``, record how long its answer
        took to start (the samples only that strategy reads)."""
        label = pick.target.label
        if label is None:
            return
        try:
            if pick.claim is not None:
                self._backend.release(pick.provider, label, pick.claim)
            if latency_s is not None and pick.strategy == "latency":
                self._backend.observe(pick.provider, label, latency_s)
        except RedisError as exc:
            log.warning("could not record the end of a call to %s (%s)", pick.target.guard, exc)

    def weighted(self, targets: Sequence[DeploymentTarget]) -> DeploymentTarget:
        return self._rand.choices(list(targets), weights=[target.weight for target in targets])[0]

    def _least_busy(self, provider: str, targets: Sequence[DeploymentTarget]) -> Pick:
        order = list(targets)
        self._rand.shuffle(order)  # equals are broken at random, not always towards the first declared
        call_id = uuid.uuid4().hex
        lease_s = max(target.settings.total_timeout_s for target in order) + LEASE_MARGIN_S
        labels = [cast(str, target.label) for target in order]
        chosen = self._backend.claim_least_busy(provider, labels, call_id, lease_s)
        return Pick(provider, order[chosen], "least-busy", call_id)

    def _fastest(self, provider: str, targets: Sequence[DeploymentTarget]) -> DeploymentTarget:
        samples = self._backend.latencies(provider, [cast(str, target.label) for target in targets])
        unmeasured = [target for target, seen in zip(targets, samples, strict=True) if not seen]
        if unmeasured:
            return self._rand.choice(unmeasured)
        if self._rand.random() < EXPLORE_SHARE:
            return self._rand.choice(list(targets))
        means = [sum(seen) / len(seen) for seen in samples]
        return targets[means.index(min(means))]
