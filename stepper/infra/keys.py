"""Every Redis key stepper writes, in one place and one namespace (``stepper_key_namespace``, default ``stepper``).

Two fleets can share one Redis by giving each its own namespace (and its own Celery queues). Keys of one
provider carry a ``{provider}`` hash tag, so a provider's guard state stays on one Redis Cluster slot, and a cache
or idempotency entry's digest is the tag of the entry and the keys derived from it (README, "Redis Cluster for
the state", says which stores are Cluster-safe).

    <ns>:{<provider>}:breaker:pybreaker:*   pybreaker's state, failure counter, opened-at (fleet-wide breaker)
    <ns>:{<provider>}:probe                the half-open probe's lease (one trial call fleet-wide)
    <ns>:{<provider>}:rpm | :tpm           rate-limit token buckets (hash: tokens, ts)
    <ns>:{<provider>}:cooldown             set for as long as the provider's Retry-After asked the fleet to wait
    <ns>:{<provider>}:refused:<model>      optional parameters the provider's model refused (set, expires)
    <ns>:{<provider>}:inflight:<label>     calls in flight on one deployment (sorted set: call id -> lease end, ms)
    <ns>:{<provider>}:latency:<label>      one deployment's recent latencies (list of ms, newest first)
    <ns>:{spend}:<scope>:<name>:<window>:<period>   money spent (provider, model or gateway key; day or month)
    <ns>:cache:<kind>:{<digest>}           a cached result; +":flight" its computation's claim, +":refreshing"
    <ns>:idem:<kind>:{<digest>}            an idempotency key's result; +":task" the first task's id
    <ns>:stream:<task id>                  a streamed chat's events (Redis stream)
    <ns>:dlq:entries | index | by-task | replays   the dead-letter store
    <ns>:deliveries:<task id>              redelivered runs of a task that did not end (poison messages)
    <ns>:attempts:<task id>                the attempts of a task's earlier broker runs (list, one JSON per run)
    <ns>:delayed:due | messages            messages with a countdown or ETA, kept until due (entry id -> due ms, JSON)
    <ns>:revoked                           revoked task ids, scored by the time of the revoke (ms)
    <ns>:inflight:since | messages         published task messages not finished yet (task id -> ms, JSON)
    <ns>:inflight:suspects                 journaled tasks found nowhere, and since when (ms)
    <ns>:inflight:lock                     the reconciliation's lock
    <ns>:recovery:lease:<worker>           delivery tags a live worker holds
    <ns>:recovery:suspects:<redis run id>  tags seen unleased, and since when
    <ns>:recovery:sweep                    the sweep's lock
    <ns>:alerts:firing | dlq | exhausted:<minute>   alert state
    <ns>:gateway:task:<task id>            which kind a gateway-issued task is
    <ns>:workflow:<workflow id>            a workflow's state: its request, stage and each piece (hash)
"""

from __future__ import annotations

from functools import cache


@cache
def namespace() -> str:
    """The prefix of every key, read once per process from the settings."""
    from stepper.config import current_settings

    return current_settings().key_namespace


def provider_base(provider: str) -> str:
    return f"{namespace()}:{{{provider}}}"


def breaker(provider: str) -> str:
    """pybreaker's own key layout lives under this prefix (``<prefix>:pybreaker:state`` and so on)."""
    return f"{provider_base(provider)}:breaker"


def probe(provider: str) -> str:
    return f"{provider_base(provider)}:probe"


def rate_bucket(provider: str, limit: str) -> str:
    """``limit``: ``rpm`` (requests per minute) or ``tpm`` (tokens per minute)."""
    return f"{provider_base(provider)}:{limit}"


def cooldown(provider: str) -> str:
    return f"{provider_base(provider)}:cooldown"


def refused_parameters(provider: str, model: str) -> str:
    return f"{provider_base(provider)}:refused:{model}"


def in_flight(provider: str, label: str) -> str:
    """Calls in flight on one deployment; every deployment of a provider shares its hash tag (one Lua script)."""
    return f"{provider_base(provider)}:inflight:{label}"


def latency(provider: str, label: str) -> str:
    return f"{provider_base(provider)}:latency:{label}"


def spend(scope: str, name: str, window: str, period: str) -> str:
    """What ``name`` (a provider, ``provider:model`` or a gateway key's identity) spent in one day or month
    (``period``: ``2026-12-01`` or ``2026-12``); one hash tag, so one transaction charges every scope."""
    return f"{namespace()}:{{spend}}:{scope}:{name}:{window}:{period}"


def breaker_state_pattern() -> str:
    """A SCAN pattern matching every provider's breaker state key."""
    return f"{namespace()}:{{*}}:breaker:pybreaker:state"


def rate_bucket_pattern() -> str:
    return f"{namespace()}:{{*}}:[rt]pm"


def provider_of(key: str) -> str:
    """The provider named by a key's hash tag: ``stepper:{openai}:rpm`` -> ``openai``."""
    return key.split("{", 1)[1].split("}", 1)[0]


def cache_entry(kind: str, digest: str) -> str:
    """The digest is a hash tag: the entry, its flight claim and its refresh lease share a Cluster slot."""
    return f"{namespace()}:cache:{kind}:{{{digest}}}"


def idempotency(kind: str, digest: str) -> str:
    return f"{namespace()}:idem:{kind}:{{{digest}}}"


def flight(entry: str) -> str:
    """The claim of the computation of a cache or idempotency entry (single flight)."""
    return f"{entry}:flight"


def refreshing(entry: str) -> str:
    """Held by the one caller that enqueued a stale entry's refresh."""
    return f"{entry}:refreshing"


def idempotency_task(entry: str) -> str:
    """The id of the first task submitted under an idempotency key."""
    return f"{entry}:task"


def stream(task_id: str) -> str:
    return f"{namespace()}:stream:{task_id}"


def dead_letters() -> tuple[str, str, str, str]:
    """The store's entries (hash), index (sorted set), by-task (hash) and replays (hash), in that order."""
    base = f"{namespace()}:dlq"
    return f"{base}:entries", f"{base}:index", f"{base}:by-task", f"{base}:replays"


def dead_letter_index() -> str:
    return dead_letters()[1]


def attempts(task_id: str) -> str:
    return f"{namespace()}:attempts:{task_id}"


def deliveries(task_id: str) -> str:
    return f"{namespace()}:deliveries:{task_id}"


def delayed_due() -> str:
    return f"{namespace()}:delayed:due"


def delayed_messages() -> str:
    return f"{namespace()}:delayed:messages"


def inflight_since() -> str:
    return f"{namespace()}:inflight:since"


def inflight_messages() -> str:
    return f"{namespace()}:inflight:messages"


def inflight_suspects() -> str:
    return f"{namespace()}:inflight:suspects"


def inflight_lock() -> str:
    return f"{namespace()}:inflight:lock"


def revoked() -> str:
    return f"{namespace()}:revoked"


def recovery_lease(worker: str) -> str:
    return f"{namespace()}:recovery:lease:{worker}"


def recovery_lease_pattern() -> str:
    return f"{namespace()}:recovery:lease:*"


def recovery_suspects(run_id: str) -> str:
    return f"{namespace()}:recovery:suspects:{run_id}"


def recovery_sweep_lock() -> str:
    return f"{namespace()}:recovery:sweep"


def alerts_firing() -> str:
    return f"{namespace()}:alerts:firing"


def alerts_dead_letter_baseline() -> str:
    return f"{namespace()}:alerts:dlq"


def alerts_exhausted(minute: int) -> str:
    return f"{namespace()}:alerts:exhausted:{minute}"


def gateway_task(task_id: str) -> str:
    return f"{namespace()}:gateway:task:{task_id}"


def workflow(workflow_id: str) -> str:
    """A workflow's state (hash): ``meta``, ``state``, ``stage`` and ``done:``/``running:``/``failed:`` per piece."""
    return f"{namespace()}:workflow:{workflow_id}"
