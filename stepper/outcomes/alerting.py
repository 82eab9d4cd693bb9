"""Feeds the chain-exhausted-rate alert (:mod:`stepper.ops.alerts`): one count per ChainExhausted failure."""

from __future__ import annotations

from stepper.errors import ChainExhausted
from stepper.infra.connections import state_redis
from stepper.ops.alerts import count_exhausted
from stepper.outcomes.base import OutcomeListener, RequestLike


class ExhaustedCounter(OutcomeListener):
    def failed(self, task_id: str, kind: str, request: RequestLike, error: BaseException, retries: int) -> None:
        if isinstance(error, ChainExhausted):
            count_exhausted(state_redis())
