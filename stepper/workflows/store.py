"""A workflow's state under its id: one Redis hash (``stepper.infra.keys.workflow``) that expires with the results.

Fields: ``meta`` (the workflow's name, request and options, JSON), ``state``, ``stage``, ``error``, and per piece
(``steps``, ``title``, ``write:<i>``, ``narrate:<i>``, ``assemble``) ``done:<piece>`` (its validated output,
JSON), ``running:<piece>`` (the task computing it) or ``failed:<piece>`` (why, JSON). Each writer sets only its
own fields, so pieces finishing at once never overwrite each other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from redis import Redis

from stepper.errors import InvalidRequest
from stepper.infra import keys
from stepper.workflows.schemas import Stage, WorkflowState

DONE, RUNNING, FAILED = "done:", "running:", "failed:"


@dataclass(frozen=True)
class Meta:
    """What a workflow was started with."""

    workflow: str
    request: dict[str, Any]
    priority: int
    callback_url: str | None


@dataclass(frozen=True)
class Snapshot:
    """One read of a workflow's whole state."""

    id: str
    meta: Meta
    state: WorkflowState
    stage: Stage
    error: str | None
    done: dict[str, Any]
    running: dict[str, str]
    failed: dict[str, dict[str, str]]


class WorkflowStore:
    def __init__(self, client: Redis, expiry_s: float) -> None:
        self.client = client
        self.expiry_s = int(expiry_s)

    def create(self, workflow_id: str, meta: Meta) -> None:
        fields = {
            "meta": json.dumps(meta.__dict__),
            "state": "RUNNING",
            "stage": "steps",
        }
        self._write(workflow_id, fields)

    def load(self, workflow_id: str) -> Snapshot:
        """The workflow's state; ``InvalidRequest`` when no workflow has this id (or its state expired)."""
        raw = {
            _text(k): _text(v) for k, v in cast(dict[Any, Any], self.client.hgetall(keys.workflow(workflow_id))).items()
        }
        if "meta" not in raw:
            raise InvalidRequest(f"no workflow {workflow_id!r}: the id is wrong or its state expired with the results")
        meta = json.loads(raw["meta"])
        return Snapshot(
            id=workflow_id,
            meta=Meta(**meta),
            state=cast(WorkflowState, raw["state"]),
            stage=cast(Stage, raw["stage"]),
            error=raw.get("error"),
            done={k[len(DONE) :]: json.loads(v) for k, v in raw.items() if k.startswith(DONE)},
            running={k[len(RUNNING) :]: v for k, v in raw.items() if k.startswith(RUNNING)},
            failed={k[len(FAILED) :]: json.loads(v) for k, v in raw.items() if k.startswith(FAILED)},
        )

    def claim(self, workflow_id: str, piece: str, task_id: str) -> bool:
        """Mark ``piece`` as being computed by ``task_id``, unless it already is (or is done): exactly one
        dispatch wins, however many advance the workflow at once. Recorded before the task is sent, so a
        cancel finds it."""
        key = keys.workflow(workflow_id)
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hexists(key, DONE + piece)
            pipe.hsetnx(key, RUNNING + piece, task_id)
            pipe.expire(key, self.expiry_s)
            already_done, claimed, _ = pipe.execute()
        if already_done and claimed:
            self.client.hdel(key, RUNNING + piece)
        return bool(claimed) and not already_done

    def release(self, workflow_id: str, pieces: list[str]) -> None:
        """Forget that ``pieces`` are running (their tasks ended without recording anything)."""
        if pieces:
            self.client.hdel(keys.workflow(workflow_id), *(RUNNING + piece for piece in pieces))

    def done(self, workflow_id: str, piece: str, output: Any) -> None:
        self._write(workflow_id, {DONE + piece: json.dumps(output)})
        self.client.hdel(keys.workflow(workflow_id), RUNNING + piece, FAILED + piece)

    def failed(self, workflow_id: str, piece: str, error_type: str, message: str, task_id: str) -> None:
        """The piece failed for good: the workflow waits for ``resume``."""
        why = {"type": error_type, "message": message, "task_id": task_id}
        fields = {FAILED + piece: json.dumps(why), "state": "WAITING", "error": f"{piece}: {error_type}: {message}"}
        self._write(workflow_id, fields)
        self.client.hdel(keys.workflow(workflow_id), RUNNING + piece)

    def set_stage(self, workflow_id: str, stage: Stage, state: WorkflowState = "RUNNING") -> None:
        self._write(workflow_id, {"stage": stage, "state": state})

    def set_state(self, workflow_id: str, state: WorkflowState) -> None:
        self._write(workflow_id, {"state": state})

    def resumed(self, workflow_id: str, failed: list[str]) -> None:
        """Forget the failures: the pieces are missing again, and the workflow runs."""
        if failed:
            self.client.hdel(keys.workflow(workflow_id), *(FAILED + piece for piece in failed))
        self.client.hdel(keys.workflow(workflow_id), "error")
        self.set_state(workflow_id, "RUNNING")

    def _write(self, workflow_id: str, fields: dict[str, str]) -> None:
        if not fields:
            return
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hset(keys.workflow(workflow_id), mapping=cast(Any, fields))  # redis-py's Mapping is invariant
            pipe.expire(keys.workflow(workflow_id), self.expiry_s)
            pipe.execute()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def open_store(app: Any = None) -> WorkflowStore:
    """The store on ``app``'s state Redis (``stepper.celery.app`` by default), expiring with its
    ``result_expires``."""
    if app is None:
        from stepper.celery import app
    return WorkflowStore(app.state_client(), float(app.conf.result_expires or 86400))
