"""The Redis list's roles (ListProducer, ListConsumer) in-process, against a real redis-server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis
from fixtures_redis import quiet
from redis_procs import queued_items

from pcq.core.errors import PcqError
from pcq.core.ledger import PRODUCED, LedgerFile, LedgerProducer
from pcq.core.pattern import consume, consume_batches, produce, produce_batches
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.consumer import ListConsumer
from pcq.core.redis_list.producer import BodyRun, ListProducer, ListRunProducer
from pcq.core.redis_list.status import queue_status
from pcq.core.redis_list.tally import read_tally, retire_run, wait_for_tally
from pcq.core.transport import BatchAckConsumer, Consumer, Item, Producer


def items(run: str, n: int, prefix: str = "name") -> list[Item]:
    return [Item(f"{run}:{i}", f"{prefix} {i}", time.time()) for i in range(n)]


def test_is_a_transport(client: redis.Redis, redis_settings: RedisSettings) -> None:
    producer, consumer = ListProducer(client, redis_settings), ListConsumer(client, redis_settings)
    assert isinstance(producer, Producer) and isinstance(consumer, Consumer)


def test_produce_consume_exactly_once(client: redis.Redis, redis_settings: RedisSettings) -> None:
    settings = redis_settings.with_overrides(batch=7)
    producer = ListProducer(client, settings)
    run = producer.open_run()
    put = produce(producer, items(run, 100), quiet(), batch=13)
    assert put == 100
    seen: list[str] = []
    consumer = ListConsumer(client, settings, consumer="c1", drain=True)
    try:
        stats = consume(consumer, lambda item: seen.append(item.id), quiet(), poll=0.1)
    finally:
        consumer.close()
    assert stats.handled == 100
    assert sorted(seen) == sorted(f"{run}:{i}" for i in range(100))
    tally = read_tally(client, Keys(settings.queue), run)
    assert tally["produced"] == 100 and tally["consumed"] == 100 and tally["lost"] == 0
    assert tally["duplicates"] == 0 and tally["per_consumer"] == {"c1": 100}
    assert tally["closed"]
    keys = Keys(settings.queue)
    assert client.llen(keys.processing("c1")) == 0
    assert not client.sismember(keys.consumers, "c1")  # deregistered on close


def test_batch_acknowledgements_settle_every_item_once(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    """``ack_many`` (``pcq consume --ack batch``): the tally is exact, nothing stays held."""
    settings = redis_settings.with_overrides(batch=10)
    producer = ListProducer(client, settings)
    run = producer.open_run()
    produce(producer, items(run, 95), quiet(), batch=20)  # envelopes and batches do not line up
    consumer = ListConsumer(client, settings, consumer="c1", drain=True)
    assert isinstance(consumer, BatchAckConsumer)
    try:
        stats = consume_batches(consumer, lambda item: None, quiet(), poll=0.1)
    finally:
        consumer.close()
    assert stats.handled == 95
    tally = read_tally(client, Keys(settings.queue), run)
    assert (tally["consumed"], tally["duplicates"], tally["lost"]) == (95, 0, 0)
    assert tally["per_consumer"] == {"c1": 95}
    assert client.llen(Keys(settings.queue).processing("c1")) == 0


def test_ack_many_of_an_item_not_held_takes_none_of_them(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings = redis_settings.with_overrides(batch=3)
    producer = ListProducer(client, settings)
    run = producer.open_run()
    produce(producer, items(run, 3), quiet(), batch=3)
    consumer = ListConsumer(client, settings, consumer="c1")
    try:
        got = list(consumer.get(1.0) or [])
        assert len(got) == 3
        with pytest.raises(PcqError, match="not held"):
            consumer.ack_many([got[0], Item(f"{run}:99", "x", 0.0), got[1]])
        consumer.ack_many(got)  # all three were still held: the failed call took nothing
        assert consumer.acked == 3
    finally:
        consumer.close()
    assert read_tally(client, Keys(settings.queue), run)["consumed"] == 3


def test_a_draining_consumer_waits_for_a_run_opened_but_not_yet_beating(
    client: redis.Redis, redis_settings: RedisSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The run's liveness key comes with its registration, not with the first
    # beat after it: a drain check between the two took the run for abandoned,
    # and the consumer stopped before the first push (seen in CI).
    monkeypatch.setattr(ListProducer, "_beat", lambda self: True)  # no beat at all
    producer = ListProducer(client, redis_settings)
    run = producer.open_run()
    consumer = ListConsumer(client, redis_settings, consumer="c", drain=True)
    try:
        assert consumer.drained() is False
        assert client.sismember(Keys(redis_settings.queue).open, run)
    finally:
        consumer.close()
        producer.close()


def test_bodies_pushed_as_runs_are_the_same_items(
    client: redis.Redis, redis_settings: RedisSettings, tmp_path: Path
) -> None:
    producer = ListProducer(client, redis_settings)
    run = producer.open_run()
    out = LedgerFile(tmp_path / PRODUCED)
    sink = LedgerProducer(ListRunProducer(producer), out)
    batches = [BodyRun(run, 0, ["a", 'b "quoted"', "c\nd"], 5.0), BodyRun(run, 3, ["e"], 6.0)]
    assert produce_batches(sink, batches, quiet()) == 4
    out.close()
    with pytest.raises(ValueError, match="run"):
        ListRunProducer(producer).put(BodyRun("otherrun", 0, ["x"], 1.0))
    got: list[Item] = []
    consumer = ListConsumer(client, redis_settings, consumer="c", drain=True)
    try:
        consume(consumer, got.append, quiet(), poll=0.1)
    finally:
        consumer.close()
        producer.close()
    bodies = ["a", 'b "quoted"', "c\nd", "e"]
    assert [(i.id, i.body, i.produced_at) for i in got] == [
        (f"{run}:{n}", body, 5.0 if n < 3 else 6.0) for n, body in enumerate(bodies)
    ]
    assert (tmp_path / PRODUCED).read_text().split() == [f"{run}:{n}" for n in range(4)]
    tally = read_tally(client, Keys(redis_settings.queue), run)
    assert (tally["produced"], tally["consumed"], tally["lost"]) == (4, 4, 0)


def test_fifo_order_and_payload_round_trip(client: redis.Redis, redis_settings: RedisSettings) -> None:
    producer = ListProducer(client, redis_settings)
    run = producer.open_run()
    sent = [Item(f"{run}:{i}", body, 1732540000.123456789 + i) for i, body in
            enumerate(["Meatwad", "Ünïcode ✓", 'quo"te\\', ""])]  # fmt: skip
    producer.put(sent)
    producer.end_stream()
    consumer = ListConsumer(client, redis_settings.with_overrides(batch=10), consumer="c")
    try:
        got = consumer.get(0.1)
        assert got is not None
        assert [(i.id, i.body, i.produced_at, i.deliveries) for i in got] == [
            (i.id, i.body, i.produced_at, 1) for i in sent
        ]
        for item in got:
            consumer.ack(item)
    finally:
        consumer.close()


def test_handler_failure_redelivers_then_dead_letters(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings = redis_settings.with_overrides(max_deliveries=3)
    producer = ListProducer(client, settings)
    run = producer.open_run()
    produce(producer, [Item(f"{run}:0", "poison pill", time.time()), *items(run, 5)[1:]], quiet())
    deliveries: list[int] = []

    def handle(item: Item) -> None:
        if item.body.startswith("poison"):
            deliveries.append(item.deliveries)
            raise ValueError("cannot digest")

    consumer = ListConsumer(client, settings, consumer="c", drain=True)
    try:
        stats = consume(consumer, handle, quiet(), poll=0.1)
    finally:
        consumer.close()
    assert deliveries == [1, 2, 3]
    assert stats.failed == 3 and stats.handled == 4
    keys = Keys(settings.queue)
    dead = [json.loads(r) for r in client.lrange(keys.dead, 0, -1)]
    assert len(dead) == 1
    assert dead[0]["id"] == f"{run}:0" and dead[0]["deliveries"] == 3
    assert "ValueError: cannot digest" in dead[0]["reason"] and "max 3" in dead[0]["reason"]
    assert json.loads(dead[0]["payload"])["body"] == "poison pill"
    tally = read_tally(client, keys, run)
    assert (tally["consumed"], tally["dead_letters"], tally["lost"]) == (4, 1, 0)
    assert tally["redelivered"] == 2
    assert client.hlen(keys.deliveries) == 0  # no leftovers


def test_release_hands_back_without_counting(client: redis.Redis, redis_settings: RedisSettings) -> None:
    settings = redis_settings.with_overrides(batch=5)
    producer = ListProducer(client, settings)
    run = producer.open_run()
    producer.put(items(run, 5))
    producer.flush()
    a = ListConsumer(client, settings, consumer="a")
    got = a.get(0.1)
    assert got is not None and len(got) == 5
    a.ack(got[0])
    a.release(got[1:])
    a.close()
    b = ListConsumer(client, settings, consumer="b")
    again = b.get(0.1)
    assert again is not None
    assert [i.id for i in again] == [i.id for i in got[1:]]
    assert all(i.deliveries == 1 for i in again)
    for item in again:
        b.ack(item)
    b.close()
    tally = read_tally(client, Keys(settings.queue), run)
    assert tally["consumed"] == 5 and tally["redelivered"] == 0
    assert tally["per_consumer"] == {"a": 1, "b": 4}


def test_reaper_requeues_a_dead_consumers_items(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings = redis_settings.with_overrides(batch=3)
    keys = Keys(settings.queue)
    producer = ListProducer(client, settings)
    run = producer.open_run()
    producer.put(items(run, 3))
    producer.flush()
    dead = ListConsumer(client, settings, consumer="dead")
    dead.beat(join=True)
    held = dead._claims.claim(3)  # claims without starting a heartbeat thread
    assert len(held) == 3
    reaper = ListConsumer(client, settings, consumer="reaper")
    assert reaper.reap() == (0, 0, 0)  # heartbeat still alive: hands off
    client.delete(keys.heartbeat("dead"))  # as if its TTL ran out
    assert reaper.reap() == (1, 3, 0)
    assert client.llen(keys.processing("dead")) == 0
    assert not client.sismember(keys.consumers, "dead")
    reaper.beat(join=True)
    again = reaper._claims.claim(3)
    assert [i.id for i in again] == [i.id for i in held]
    assert all(i.deliveries == 2 for i in again)
    assert read_tally(client, keys, run)["redelivered"] == 3


def test_a_restarted_consumer_with_the_same_id_requeues_what_it_inherited(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    # A restarted container keeps its hostname and often its pid: same id, and
    # the old heartbeat has not expired yet. Its items must count as redelivered.
    settings = redis_settings.with_overrides(batch=3)
    keys = Keys(settings.queue)
    producer = ListProducer(client, settings)
    run = producer.open_run()
    producer.put(items(run, 3))
    producer.flush()
    old = ListConsumer(client, settings, consumer="host:7")
    old.beat(join=True)
    held = old._claims.claim(3)  # then SIGKILLed: no ack, heartbeat still alive
    assert len(held) == 3 and client.exists(keys.heartbeat("host:7"))
    new = ListConsumer(client, settings, consumer="host:7")
    new.start()
    try:
        assert client.llen(keys.processing("host:7")) == 0
        again = new.get(1.0)
        assert again is not None
        assert [i.id for i in again] == [i.id for i in held]
        assert all(i.deliveries == 2 for i in again)
        for item in again:
            new.ack(item)
    finally:
        new.close()
    tally = read_tally(client, keys, run)
    assert tally["redelivered"] == 3 and tally["consumed"] == 3 and tally["duplicates"] == 0


def test_malformed_payloads_are_dead_lettered(client: redis.Redis, redis_settings: RedisSettings) -> None:
    settings = redis_settings.with_overrides(batch=10, max_payload_bytes=1024)
    keys = Keys(settings.queue)
    producer = ListProducer(client, settings)
    run = producer.open_run()
    good = items(run, 2)
    producer.put(good[:1])
    producer.flush()
    client.rpush(keys.queue, b"not json", b'{"v":1,"id":"x"}', b"\xff\xfeinvalid", b"[" * 2000)
    client.rpush(keys.queue, json.dumps({"v": 1, "body": "x" * 2000}))
    producer.put(good[1:])
    producer.end_stream()
    seen: list[str] = []
    consumer = ListConsumer(client, settings, consumer="c", drain=True, notify=lambda line: None)
    try:
        consume(consumer, lambda i: seen.append(i.id), quiet(), poll=0.1)
    finally:
        consumer.close()
    assert seen == [good[0].id, good[1].id]
    reasons = [json.loads(r)["reason"] for r in client.lrange(keys.dead, 0, -1)]
    assert reasons[0].startswith("not JSON")
    assert reasons[1].startswith("wrong schema")
    assert reasons[2].startswith("invalid UTF-8")
    assert reasons[3].startswith("oversize") and reasons[4].startswith("oversize")
    record = json.loads(client.lrange(keys.dead, 2, 2)[0])
    assert "payload_b64" in record
    assert queue_status(settings, client)["stats"]["malformed"] == 5


def test_backpressure_waits_for_room(client: redis.Redis, redis_settings: RedisSettings) -> None:
    settings = redis_settings.with_overrides(high_water=10, batch=5)
    lines: list[str] = []
    consumer = ListConsumer(client, settings, consumer="c")
    waits: list[float] = []

    def wait(seconds: float) -> None:  # the producer's pause: let a consumer take 5
        waits.append(seconds)
        got = consumer.get(0.1)
        assert got is not None
        for item in got:
            consumer.ack(item)

    producer = ListProducer(client, settings, notify=lines.append, wait=wait)
    run = producer.open_run()
    batch = items(run, 15)
    for i in range(0, 15, 5):
        producer.put(batch[i : i + 5])  # sent: the third is refused, then sent again
        assert queued_items(client, settings) <= 10
    producer.flush()
    assert queued_items(client, settings) == 10
    consumer.close()
    assert len(waits) == 1 and any("high-water 10" in line for line in lines)


def test_queue_status(client: redis.Redis, redis_settings: RedisSettings) -> None:
    settings = redis_settings.with_overrides(batch=2)
    producer = ListProducer(client, settings)
    run = producer.open_run()
    producer.put(items(run, 5))
    producer.flush()
    consumer = ListConsumer(client, settings, consumer="host:1")
    try:
        assert consumer.get(0.1) is not None
        status = queue_status(settings, client)
        assert status["length"] == 3 and status["in_flight"] == 2 and status["open_runs"] == 1
        [me] = status["consumers"]
        assert me["id"] == "host:1" and me["alive"] and me["in_flight"] == 2
        assert 0 <= me["heartbeat_age"] < settings.heartbeat_ttl
    finally:
        consumer.close()


def test_retire_run_expires_its_keys_and_trims_old_runs(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    keys = Keys(redis_settings.queue)
    producer = ListProducer(client, redis_settings)
    run = producer.open_run()
    producer.put(items(run, 2))
    producer.end_stream()
    client.setbit(keys.acked_bits(run), 0, 1)  # as an ack would
    client.sadd(keys.acked(run), f"{run}:007")  # as an ack of an id with leading zeros would
    client.zadd(keys.runs, {"ancient": time.time() - 3600})
    retire_run(client, keys, run, 0)  # 0: keep for ever
    assert client.ttl(keys.run(run)) == -1 and client.zscore(keys.runs, "ancient") is not None
    retire_run(client, keys, run, 600)
    ttls = [client.ttl(k) for k in (keys.run(run), keys.acked_bits(run), keys.acked(run))]
    assert all(0 < t <= 600 for t in ttls), ttls
    assert client.zscore(keys.runs, "ancient") is None  # started an hour ago: forgotten
    assert client.zscore(keys.runs, run) is not None  # this run is still listed


def test_wait_for_tally_polls_soon_then_every_poll() -> None:
    # A run settles soon after its last push: the first waits are short.
    reads = iter([{"closed": True, "lost": n} for n in (5, 4, 3, 2, 1, 0)])
    waits: list[float] = []
    tally = wait_for_tally(lambda: next(reads), timeout=None, wait=waits.append, poll=0.8)
    assert tally["complete"] is True
    assert waits == [0.1, 0.2, 0.4, 0.8, 0.8]
