"""Providers for integration tests, loaded by real workers from their config module.

They record what happened in the test's private Redis (``STEPPER_REDIS_URL``), so the test process can
count calls made inside worker processes.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from pathlib import Path
from typing import Any, ClassVar

import redis
from celery import current_task

from stepper.contracts import Provider, Reply
from stepper.errors import Unavailable
from stepper.infra.streams import current_sink
from stepper.providers.mock import MockProvider
from stepper.schemas import (
    KINDS,
    ChatOutput,
    ChatRequest,
    Kind,
    OcrOutput,
    OcrRequest,
    ReportOutput,
    ReportRequest,
    SpeechOutput,
    SpeechRequest,
    StepsOutput,
    StepsRequest,
    VisionOutput,
    VisionRequest,
)
from stepper.settings import ProviderSettings

CALLS_KEY = "test:calls:{name}"
ORDER_KEY = "test:order"
TASK_KEY = "test:task:{message}"


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["STEPPER_REDIS_URL"])


def run_order(client: redis.Redis) -> list[str]:
    """The messages SlowChat served, in the order it served them."""
    return [item.decode() if isinstance(item, bytes) else item for item in client.lrange(ORDER_KEY, 0, -1)]


def calls(client: redis.Redis, name: str) -> int:
    """How many calls the test provider ``name`` received, across every worker process."""
    return int(client.get(CALLS_KEY.format(name=name)) or 0)


class CountingProvider(MockProvider):
    """The mock's answers, counting every call."""

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self._client = _redis()

    def _count(self) -> None:
        self._client.incr(CALLS_KEY.format(name=self.settings.name))

    def generate_report(self, request: ReportRequest, model: str) -> Reply[ReportOutput]:
        self._count()
        return super().generate_report(request, model)

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        self._count()
        return super().complete(request, model)

    def read(self, request: OcrRequest, model: str) -> Reply[OcrOutput]:
        self._count()
        return super().read(request, model)

    def detect_steps(self, request: StepsRequest, model: str) -> Reply[StepsOutput]:
        self._count()
        return super().detect_steps(request, model)

    def analyse(self, request: VisionRequest, model: str) -> Reply[VisionOutput]:
        self._count()
        return super().analyse(request, model)

    def synthesise(self, request: SpeechRequest, model: str) -> Reply[SpeechOutput]:
        self._count()
        return super().synthesise(request, model)


class FailingChat(Provider):
    """A chat provider that is down: every call fails with a retryable error."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"chat"})

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        _redis().incr(CALLS_KEY.format(name=self.settings.name))
        raise Unavailable(f"{self.settings.name} answered 503 Service Unavailable")


class SlowChat(CountingProvider):
    """Takes ``options.delay_s`` per call and records the order in which requests ran."""

    kinds: ClassVar[frozenset[Kind]] = frozenset(KINDS)

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        self._client.rpush(ORDER_KEY, request.messages[-1].content)
        time.sleep(float(self.settings.options.get("delay_s", 0.2)))
        return super().complete(request, model)


def serving_task(client: redis.Redis, message: str) -> str | None:
    """The id of the task TricklingChat is serving (or served) for the chat message ``message``."""
    found = client.get(TASK_KEY.format(message=message))
    return found.decode() if isinstance(found, bytes) else found


class TricklingChat(CountingProvider):
    """The mock's answer followed by ``options.words`` more words (default 20), streamed a word at a time
    ``options.delay_s`` apart (default 0.1) when the request streams, else returned after the same time. It
    records the id of the task it serves under ``test:task:<last message>`` (see :func:`serving_task`)."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"chat"})

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        self._client.set(TASK_KEY.format(message=request.messages[-1].content), current_task.request.id, ex=3600)
        reply = super().complete(request, model)
        extra = [f"word{number}" for number in range(int(self.settings.options.get("words", 20)))]
        words = [*(reply.output.message.content or "").split(" "), *extra]
        delay_s = float(self.settings.options.get("delay_s", 0.1))
        sink = current_sink.get() if request.stream else None
        for position, word in enumerate(words):
            time.sleep(delay_s)
            if sink is not None:
                sink.delta(word if position == 0 else f" {word}")
        message = reply.output.message.model_copy(update={"content": " ".join(words)})
        return Reply(reply.output.model_copy(update={"message": message}), reply.usage)


class LeakyChat(CountingProvider):
    """Logs its own key, as careless adapter code (or a vendor's echoed error) might: the logs must not show it."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"chat"})

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        logging.getLogger("tests.leaky").warning("calling with key %s", self.api_key)
        logging.getLogger("tests.leaky").warning("header Authorization: Bearer %s", "a-token-nobody-configured-987")
        return super().complete(request, model)


class RandomlyFailingChat(CountingProvider):
    """Fails ``options.failure_rate`` of its calls at random with a retryable error."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"chat"})

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        self._client.incr(f"test:tries:{self.settings.name}")
        if random.random() < float(self.settings.options.get("failure_rate", 0.3)):
            raise Unavailable(f"{self.settings.name} failed at random")
        return super().complete(request, model)


class SwitchableChat(CountingProvider):
    """Down while the Redis key ``test:down:<name>`` exists; when up, answers after ``options.delay_s``."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"chat"})

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        self._client.incr(f"test:tries:{self.settings.name}")
        if self._client.exists(f"test:down:{self.settings.name}"):
            raise Unavailable(f"{self.settings.name} is down")
        time.sleep(float(self.settings.options.get("delay_s", 0.0)))
        return super().complete(request, model)


class JournalChat(MockProvider):
    """Answers after ``options.delay_s``, writing ``start <message>`` and ``finish <message>`` lines to the file
    ``options.journal``. It never touches Redis, like a real vendor, so it keeps working while Redis restarts;
    a call cut short by a killed worker has a start and no finish."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"chat"})

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        self._write("start", request.messages[-1].content)
        time.sleep(float(self.settings.options.get("delay_s", 0.2)))
        reply = super().complete(request, model)
        self._write("finish", request.messages[-1].content)
        return reply

    def _write(self, event: str, message: str) -> None:
        with Path(self.settings.options["journal"]).open("a") as journal:  # O_APPEND: whole lines, across processes
            journal.write(f"{event} {message}\n")


def journal_settings(path: Path, delay_s: float, recovery: dict[str, float]) -> dict[str, Any]:
    """A fleet whose chat chain is JournalChat answering after ``delay_s`` and journaling to ``path``, with
    these ``stepper_recovery`` settings."""
    journal_chat = {
        "class": "tests.support.providers:JournalChat",
        "options": {"delay_s": delay_s, "journal": str(path)},
    }
    return {
        "stepper_providers": {"journal": journal_chat},
        "stepper_chains": {"chat": ["journal:m"]},
        "stepper_recovery": recovery,
    }


def journal(path: Path, event: str) -> list[str]:
    """The messages of ``event`` lines (``start`` or ``finish``) in a JournalChat journal, in order."""
    lines = path.read_text().splitlines() if path.exists() else []
    return [line.split(" ", 1)[1] for line in lines if line.startswith(f"{event} ")]


def tries(client: redis.Redis, name: str) -> int:
    """Calls that reached a provider, failed or not."""
    return int(client.get(f"test:tries:{name}") or 0)


#: Chat content that makes KillingChat kill the process running it.
POISON = "poison"


class KillingChat(CountingProvider):
    """Kills the process it runs in (SIGKILL, as the OOM killer does) on a message containing POISON; answers
    like the mock otherwise. Every call is counted first, so a test sees how often the poison was run."""

    kinds: ClassVar[frozenset[Kind]] = frozenset({"chat"})

    def complete(self, request: ChatRequest, model: str) -> Reply[ChatOutput]:
        if POISON in request.messages[-1].content:
            self._count()
            os.kill(os.getpid(), signal.SIGKILL)
        return super().complete(request, model)
