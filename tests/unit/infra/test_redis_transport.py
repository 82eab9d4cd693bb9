"""stepper's kombu Redis transport: one redis-py client per pool, the in-flight journal written with each stepper
message, and otherwise kombu's."""

from __future__ import annotations

from typing import Any

import kombu
import pytest
import redis
from kombu import Connection
from kombu.transport import redis as kombu_redis
from kombu.utils import json as kombu_json

from stepper.celery import StepperCelery, create_app
from stepper.config import load_config
from stepper.gateway.auth import Caller, KeyAdmission, KeyLimiter, RateLimitExceeded
from stepper.guards.admission import RedisGuardBackend
from stepper.infra import inflight, keys, result_riders
from stepper.infra.lua import LuaScript
from stepper.infra.redis_transport import Channel, Transport
from tests.support.redis_server import RedisServer


def test_a_channel_reuses_its_client_until_its_pool_changes(redis_server: RedisServer) -> None:
    with Connection(f"redis://127.0.0.1:{redis_server.port}/7", transport=Transport) as connection:
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        first = channel._create_client()
        assert channel._create_client() is first
        # The asynchronous client is the one kombu pins the BRPOP connection on: never shared.
        assert channel._create_client(asynchronous=True) is not channel._create_client(asynchronous=True)
        channel._pool = None  # what kombu does when it drops its pools after a connection error
        assert channel._create_client() is not first
        assert channel._create_client().connection_pool is channel.pool


def test_messages_go_through_and_acks_clear_the_unacked_hash(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    with Connection(f"redis://127.0.0.1:{redis_server.port}/0", transport=Transport) as connection:
        queue = connection.SimpleQueue("reused-clients")
        for number in range(3):
            queue.put({"number": number})
        received = [queue.get(timeout=5) for _ in range(3)]
        assert [message.payload["number"] for message in received] == [0, 1, 2]
        assert redis_client.hlen("unacked") == 3
        for message in received:
            message.ack()
        assert redis_client.hlen("unacked") == 0
        queue.close()


def test_a_delivery_is_recorded_in_one_command_with_the_entries_kombu_writes(
    redis_server: RedisServer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kombu records every delivered message with a transaction of four commands; stepper's transport writes the
    same index and hash entries with one script."""
    entries: dict[str, tuple[list[Any], float | None]] = {}
    for name, transport in (("kombu", kombu_redis.Transport), ("stepper", Transport)):
        with Connection(f"redis://127.0.0.1:{redis_server.port}/0", transport=transport) as connection:
            queue = connection.SimpleQueue("recorded")
            queue.put({"by": name})
            sent = sent_commands(monkeypatch)
            message = queue.get(timeout=5)
            if name == "stepper":
                assert [command for command in sent if command != "BRPOP"] == ["EVAL"]
            tag = message.delivery_tag
            entries[name] = (
                kombu_json.loads(redis_client.hget("unacked", tag) or b""),
                redis_client.zscore("unacked_index", tag),
            )
            message.ack()
            queue.close()
    (kombu_entry, kombu_stamp), (stepper_entry, stepper_stamp) = entries["kombu"], entries["stepper"]
    assert stepper_entry[1:] == kombu_entry[1:]  # the exchange and routing key
    assert stepper_entry[0].keys() == kombu_entry[0].keys()  # the raw message, as kombu's restore reads it
    assert kombu_stamp is not None
    assert stepper_stamp is not None
    assert 0 <= stepper_stamp - kombu_stamp < 60  # delivery times, in seconds


def sent_commands(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of every command any Redis connection of this process sends from now on, one by one (a pipeline's
    are sent packed, and not seen here)."""
    sent: list[str] = []
    send = redis.connection.AbstractConnection.send_command

    def counting(connection: redis.connection.AbstractConnection, *args: Any, **options: Any) -> None:
        sent.append(str(args[0]))
        send(connection, *args, **options)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_command", counting)
    return sent


def test_a_delivery_never_acknowledged_is_restored_by_kombu(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    url = f"redis://127.0.0.1:{redis_server.port}/0"
    with Connection(url, transport=Transport) as connection:
        queue = connection.SimpleQueue("restored")
        queue.put({"number": 1})
        queue.get(timeout=5)  # taken, never acknowledged
        assert redis_client.hlen("unacked") == 1
        connection.default_channel.qos.restore_unacked_once()  # what kombu does when the channel closes
    assert redis_client.hlen("unacked") == 0
    with Connection(url, transport=Transport) as connection:
        again = connection.SimpleQueue("restored").get(timeout=5)
        assert again.payload == {"number": 1}
        again.ack()


def test_a_delivery_is_handed_on_before_the_answer_of_its_record_is_read(
    redis_server: RedisServer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The consumer sends the record, hands the message on (to the pool, in a worker), then reads the answer."""
    events: list[str] = []
    read = redis.connection.AbstractConnection.read_response

    def reading(connection: redis.connection.AbstractConnection, *args: Any, **options: Any) -> Any:
        answer = read(connection, *args, **options)
        if answer == 1:  # unacked_add.lua's (BRPOP answers with the message)
            events.append("record answered")
        return answer

    with Connection(f"redis://127.0.0.1:{redis_server.port}/0", transport=Transport) as connection:
        queue = kombu.Queue("handed-on")
        with connection.Producer() as producer:
            producer.publish({"n": 1}, routing_key="handed-on", declare=[queue])
        sent = sent_commands(monkeypatch)
        monkeypatch.setattr(redis.connection.AbstractConnection, "read_response", reading)
        received: list[kombu.Message] = []

        def handed_on(body: Any, message: kombu.Message) -> None:
            events.append(f"handed on after {[command for command in sent if command != 'BRPOP']}")
            received.append(message)

        with connection.Consumer(queue, callbacks=[handed_on]):
            connection.drain_events(timeout=5)
        assert events == ["handed on after ['EVAL']", "record answered"]
        assert redis_client.hlen("unacked") == 1
        monkeypatch.undo()
        received[0].ack()
    assert redis_client.hlen("unacked") == 0


def delivered_unconfirmed(connection: Connection, name: str, task_id: str = "") -> tuple[Any, kombu.Message]:
    """A message taken with basic_get, whose record is sent and its answer not read yet, and its channel's QoS."""
    channel = connection.default_channel
    headers = {"id": task_id} if task_id else {}
    channel.basic_publish(channel.prepare_message("{}", headers=headers), exchange="", routing_key=name)
    raw = channel.basic_get(name)
    assert raw is not None
    assert channel.qos._records._sent  # sent, not confirmed
    return channel.qos, raw


def test_an_acknowledgement_reads_the_answer_of_the_record_first(
    redis_server: RedisServer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing may remove a message's entries before its record is written: the ack would find nothing, and the
    record would then leave behind an entry that a restore runs again."""
    events: list[str] = []
    read = redis.connection.AbstractConnection.read_response
    send_packed = redis.connection.AbstractConnection.send_packed_command

    def reading(connection: redis.connection.AbstractConnection, *args: Any, **options: Any) -> Any:
        events.append("answer read")
        return read(connection, *args, **options)

    def sending(connection: redis.connection.AbstractConnection, command: Any, *args: Any, **options: Any) -> None:
        events.append("pipeline sent")  # kombu's acknowledgement: ZREM and HDEL in a transaction
        send_packed(connection, command, *args, **options)  # type: ignore[no-untyped-call]

    with Connection(f"redis://127.0.0.1:{redis_server.port}/0", transport=Transport) as connection:
        qos, message = delivered_unconfirmed(connection, "acked")
        monkeypatch.setattr(redis.connection.AbstractConnection, "read_response", reading)
        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", sending)
        qos.ack(message.delivery_tag)
        monkeypatch.undo()
        assert events[:2] == ["answer read", "pipeline sent"]
        assert not qos._records._sent
        assert redis_client.hlen("unacked") == 0
        assert redis_client.zcard("unacked_index") == 0


def test_a_record_is_sent_only_once_the_answer_due_before_it_is_read(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """redis-py checks a connection idle for ``health_check_interval`` with a PING before the next command, and
    would read an answer still due as its PONG: that answer would never come, and its reader would wait for it
    until the socket timed out (the consumer of a prefork worker stalled on it)."""
    with Connection(f"redis://127.0.0.1:{redis_server.port}/0", transport=Transport) as connection:
        qos, first = delivered_unconfirmed(connection, "one-due")
        held = qos._records._connection
        held.health_check_interval, held.next_health_check = 25, 0  # the next command is checked
        _qos, second = delivered_unconfirmed(connection, "one-due")
        assert len(qos._records._sent) == 1  # the second's; the first's answer was read before it was sent
        qos.confirm()
        assert redis_client.hexists("unacked", first.delivery_tag)
        assert redis_client.hexists("unacked", second.delivery_tag)


def test_a_record_whose_answer_is_lost_with_its_connection_is_written_again(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    with Connection(f"redis://127.0.0.1:{redis_server.port}/0", transport=Transport) as connection:
        qos, message = delivered_unconfirmed(connection, "lost-answer")
        redis_client.delete("unacked", "unacked_index")  # as if the record never reached Redis
        qos._records._connection.disconnect()  # and its connection dropped before the answer
        qos.confirm()
        assert redis_client.hexists("unacked", message.delivery_tag)
        assert redis_client.zscore("unacked_index", message.delivery_tag) is not None
        qos.ack(message.delivery_tag)
    assert redis_client.hlen("unacked") == 0


def test_a_record_stays_due_until_redis_can_be_reached_and_the_store_waits_for_it(
    redis_server: RedisServer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis restart loses the answers due; writing the records again fails while it is down. The result store
    of a task that finishes then fails (Celery tries it again) and takes its delivery only once the record is
    written, so its script can still remove the entries."""
    written = LuaScript.__call__
    calls: list[str] = []

    def unreachable_once(script: LuaScript, *args: Any, **options: Any) -> Any:
        calls.append("write again")
        if len(calls) == 1:
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")
        return written(script, *args, **options)

    with Connection(f"redis://127.0.0.1:{redis_server.port}/0", transport=Transport) as connection:
        qos, message = delivered_unconfirmed(connection, "restarted", task_id="t-restarted")
        database = result_riders.database(connection.default_channel._create_client())
        redis_client.delete("unacked", "unacked_index")  # lost with the restart
        qos._records._connection.disconnect()  # and the answer with its connection
        monkeypatch.setattr(LuaScript, "__call__", unreachable_once)
        with pytest.raises(redis.ConnectionError):
            result_riders.take_deliveries("t-restarted", database)
        assert not redis_client.hexists("unacked", message.delivery_tag)
        (taken,) = result_riders.take_deliveries("t-restarted", database)  # the store, tried again
        assert taken.delivery_tag == message.delivery_tag
        assert calls == ["write again", "write again"]
        assert redis_client.hexists("unacked", message.delivery_tag)
        result_riders.acknowledged(message.delivery_tag)


def test_a_record_is_written_as_it_arrives_even_after_redis_lost_its_scripts(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """The record is written before anyone reads its answer: a worker that dies meanwhile leaves it for the
    restore. An EVALSHA that Redis no longer knows (after a restart) would write nothing until answered."""
    with Connection(f"redis://127.0.0.1:{redis_server.port}/0", transport=Transport) as connection:
        delivered_unconfirmed(connection, "loaded-first")[0].confirm()
        redis_client.script_flush()  # what a restarted Redis has forgotten
        qos, message = delivered_unconfirmed(connection, "no-script")
        assert redis_client.hexists("unacked", message.delivery_tag)
        assert redis_client.zscore("unacked_index", message.delivery_tag) is not None
        qos.confirm()


def test_a_record_redis_refuses_is_raised(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    with Connection(f"redis://127.0.0.1:{redis_server.port}/0", transport=Transport) as connection:
        redis_client.set("unacked", "not a hash")
        qos, _message = delivered_unconfirmed(connection, "refused")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            qos.confirm()
        assert not qos._records._sent
        redis_client.delete("unacked")


CHAT = {"messages": [{"role": "user", "content": "journaled"}]}


def app_on(redis_server: RedisServer, **environ: str) -> StepperCelery:
    given = {"STEPPER_REDIS_URL": redis_server.url, "CELERY_CONFIG_MODULE": "absent_config", **environ}
    return create_app(load_config(given))


def chat_queues(client: redis.Redis) -> list[bytes]:
    """Every list kombu keeps for the chat queue (one per priority level)."""
    return [name for name in client.keys("chat*") if isinstance(name, bytes) and client.type(name) == b"list"]


def test_a_stepper_message_and_its_journal_entry_are_written_together(
    redis_server: RedisServer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    def separately(*args: Any) -> None:
        raise AssertionError("the entry was written in a round trip of its own")

    monkeypatch.setattr(inflight, "record", separately)
    result = app_on(redis_server).send_task("stepper.chat", kwargs=CHAT)
    assert inflight.message(redis_client, result.id) is not None
    (queue,) = chat_queues(redis_client)
    pushed = redis_client.lindex(queue, 0)
    assert isinstance(pushed, bytes) and result.id.encode() in pushed


def test_a_journaled_message_is_encoded_once(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The producer checks that the message is JSON and journals that same text (it was encoded twice)."""
    encoded: list[str] = []
    dumps = kombu_json.dumps

    def counted(value: Any) -> str:
        text = str(dumps(value))
        encoded.append(text)
        return text

    monkeypatch.setattr(kombu_json, "dumps", counted)  # the function stepper.infra.delayed encodes with
    result = app_on(redis_server).send_task("stepper.chat", kwargs=CHAT)
    assert len([text for text in encoded if result.id in text and '"stepper.chat"' in text]) == 1


def test_a_push_refused_leaves_no_journal_entry(
    redis_server: RedisServer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both or neither: a message the producer was told failed must not be published later from its entry."""
    redis_client.set("taken", "not a list")
    monkeypatch.setattr(Channel, "_q_for_pri", lambda self, queue, priority: "taken")
    with pytest.raises(Exception, match="WRONGTYPE"):
        app_on(redis_server).send_task("stepper.chat", kwargs=CHAT)
    assert redis_client.hlen(keys.inflight_messages()) == 0
    assert redis_client.zcard(keys.inflight_since()) == 0


def test_with_the_journal_in_another_redis_its_entry_is_written_before_the_push(
    redis_server: RedisServer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_url = redis_server.url.rsplit("/", 1)[0] + "/5"
    happened: list[str] = []
    record, push = inflight.record, kombu_redis.Channel._put

    def journal(*args: Any) -> None:
        happened.append("journal")
        record(*args)

    def put(*args: Any, **kwargs: Any) -> None:
        happened.append("push")
        push(*args, **kwargs)

    monkeypatch.setattr(inflight, "record", journal)
    monkeypatch.setattr(kombu_redis.Channel, "_put", put)
    result = app_on(redis_server, STEPPER_STATE_REDIS_URL=state_url).send_task("stepper.chat", kwargs=CHAT)
    assert happened == ["journal", "push"]
    state = redis.Redis.from_url(state_url)
    assert inflight.message(state, result.id) is not None
    assert inflight.message(redis_client, result.id) is None  # not in the broker's database
    state.flushdb()
    state.close()


def key_admission(url: str, rpm: int, key: str = "k") -> KeyAdmission:
    """A gateway key's admission of one request (``rpm`` requests a minute), not asked yet, its buckets in the
    Redis at ``url``."""
    admission = KeyLimiter(redis.Redis.from_url(url), rpm=rpm, tpm=0).admission(Caller(key))
    assert admission is not None
    return admission


def send_admitted(app: StepperCelery, admission: KeyAdmission) -> Any:
    token = inflight.admitting.set(admission)
    try:
        return app.send_task("stepper.chat", kwargs=CHAT)
    finally:
        inflight.admitting.reset(token)


def requests_left(client: redis.Redis, key: str = "k") -> float:
    return float(client.hget(keys.rate_bucket(f"gateway-{key}", "rpm"), "tokens") or 0)


def test_an_admission_rides_with_the_push_and_its_journal_entry(
    redis_server: RedisServer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    def alone(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the admission was asked in a round trip of its own")

    monkeypatch.setattr(RedisGuardBackend, "admit", alone)
    monkeypatch.setattr(inflight, "record", alone)
    admission = key_admission(redis_server.url, rpm=10)
    result = send_admitted(app_on(redis_server), admission)
    assert admission.asked
    assert requests_left(redis_client) == 9
    assert inflight.message(redis_client, result.id) is not None
    (queue,) = chat_queues(redis_client)
    assert result.id.encode() in (redis_client.lindex(queue, 0) or b"")


def test_a_refused_admission_publishes_nothing_and_stops_waiting_for_a_result(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    key_admission(redis_server.url, rpm=1).ask()  # the key's one request this minute
    app = app_on(redis_server)
    refused = key_admission(redis_server.url, rpm=1)
    with pytest.raises(RateLimitExceeded) as raised:
        send_admitted(app, refused)
    assert raised.value.retry_after_s >= 1
    assert chat_queues(redis_client) == []
    assert redis_client.hlen(keys.inflight_messages()) == 0
    assert not app.backend.result_consumer.subscribed_to  # Celery subscribed to the result's channel, then let go
    with pytest.raises(RateLimitExceeded):  # asked again: the same refusal, no second charge
        refused.ask()


def test_an_admission_asked_already_is_not_charged_again_by_the_publish(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    admission = key_admission(redis_server.url, rpm=10)
    admission.ask()
    send_admitted(app_on(redis_server), admission)
    assert requests_left(redis_client) == 9
    assert len(chat_queues(redis_client)) == 1


def test_an_admission_in_another_redis_is_asked_alone_before_the_push(
    redis_server: RedisServer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_url = redis_server.url.rsplit("/", 1)[0] + "/6"
    other = redis.Redis.from_url(other_url)
    happened: list[str] = []
    admit, publish = RedisGuardBackend.admit, inflight.Publishing.journal_and_push

    def asked(*args: Any, **kwargs: Any) -> Any:
        happened.append("admission")
        return admit(*args, **kwargs)

    def pushed(*args: Any) -> None:
        publish(*args)
        happened.append("push")

    monkeypatch.setattr(RedisGuardBackend, "admit", asked)
    monkeypatch.setattr(inflight.Publishing, "journal_and_push", pushed)
    result = send_admitted(app_on(redis_server), key_admission(other_url, rpm=10))
    assert happened == ["admission", "push"]
    assert requests_left(other) == 9
    assert redis_client.exists(keys.rate_bucket("gateway-k", "rpm")) == 0
    assert inflight.message(redis_client, result.id) is not None
    other.flushdb()
    other.close()


def test_a_message_delivered_before_its_connection_closed_can_still_be_acknowledged(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """Celery acknowledges a task that was running when the broker connection broke once the task ends, on the
    closed channel: kombu's transport then fails building a pool for a connection it has dropped (AttributeError,
    and the worker stops). stepper's channel acknowledges with the client it had."""
    connection = Connection(f"redis://127.0.0.1:{redis_server.port}/0", transport=Transport)
    queue = connection.SimpleQueue("late-ack")
    queue.put({"n": 1})
    message = queue.get(timeout=5)
    message.channel.qos.restore_unacked_once = lambda *args: None  # as when Redis was down at the close
    connection.close()
    assert redis_client.hlen("unacked") == 1
    message.ack()
    assert redis_client.hlen("unacked") == 0


def test_a_message_shows_its_arguments_bounded_and_keeps_a_display_given(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    app = app_on(redis_server)
    long = {**CHAT, "messages": [{"role": "user", "content": "word " * 2000}] * 20}
    app.send_task("stepper.chat", kwargs=long)
    app.send_task("stepper.chat", kwargs=CHAT, kwargsrepr="{'shown': 'as given'}")
    (queue,) = chat_queues(redis_client)
    shown = [kombu_json.loads(raw)["headers"] for raw in reversed(redis_client.lrange(queue, 0, -1))]
    assert shown[0]["argsrepr"] == "()"
    assert len(shown[0]["kwargsrepr"]) <= 1024
    assert shown[0]["kwargsrepr"].startswith("{'messages': [{'content': 'word word")
    assert "..." in shown[0]["kwargsrepr"]  # the content cut short, and the list after a few of its turns
    assert shown[1]["kwargsrepr"] == "{'shown': 'as given'}"


def test_a_queue_is_declared_on_the_first_publish_of_a_connection_only(
    redis_server: RedisServer, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    declared: list[str] = []
    kombu_declare = kombu.common._imaybe_declare

    def declare(entity: Any, *args: Any, **kwargs: Any) -> Any:
        declared.append(entity.name)
        return kombu_declare(entity, *args, **kwargs)

    monkeypatch.setattr(kombu.common, "_imaybe_declare", declare)
    app = app_on(redis_server)

    def reconnected() -> None:
        """kombu's producer pools are shared by equal connections: one of an earlier test may have declared."""
        with app.producer_or_acquire() as producer:
            producer.connection.declared_entities.clear()  # as kombu does when the connection closes

    reconnected()
    for _ in range(3):
        app.send_task("stepper.chat", kwargs=CHAT)
    assert declared == ["chat"]
    reconnected()
    app.send_task("stepper.chat", kwargs=CHAT)
    assert declared == ["chat", "chat"]
    (queue,) = chat_queues(redis_client)
    assert redis_client.llen(queue) == 4
