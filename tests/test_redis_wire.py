"""The queue's hot path (pcq.core.redis_list.wire.Wire, claim.lua's shortcuts) against a real redis-server.

Claims and pushes bypass redis-py's per-command machinery; these tests check
that what that machinery gave us still holds: scripts reload after Redis forgot
them, a dropped connection is re-opened and the call retried (safely: call ids
and batch numbers), the connection goes back to the pool, and a consumer that a
reaper removed registers again before it holds anything.
"""

from __future__ import annotations

import time

import pytest
import redis
from fixtures_redis import quiet
from redis_procs import held_items

from pcq.core.pattern import consume, produce
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list import consumer as consumer_module
from pcq.core.redis_list.consumer import ListConsumer
from pcq.core.redis_list.producer import ListProducer
from pcq.core.redis_list.tally import read_tally
from pcq.core.transport import Item


def items(run: str, start: int, n: int) -> list[Item]:
    return [Item(f"{run}:{i}", f"name {i}", time.time()) for i in range(start, start + n)]


def drain_all(consumer: ListConsumer, n: int) -> list[str]:
    seen: list[str] = []
    while len(seen) < n:
        for item in consumer.get(0.2) or []:
            seen.append(item.id)
            consumer.ack(item)
    consumer.flush()
    return seen


@pytest.mark.parametrize("batch", [1, 10])
def test_scripts_reload_after_script_flush(client: redis.Redis, redis_settings: RedisSettings,
                                           batch: int) -> None:  # fmt: skip
    settings = redis_settings.with_overrides(batch=batch)
    producer = ListProducer(client, settings)
    consumer = ListConsumer(client, settings, consumer="c1")
    try:
        run = producer.open_run()
        producer.put(items(run, 0, 20))
        producer.flush()
        first = drain_all(consumer, 20)
        client.script_flush()  # Redis forgets every script (as after a restart without AOF)
        producer.put(items(run, 20, 20))
        producer.flush()
        second = drain_all(consumer, 20)
    finally:
        consumer.close()
        producer.close()
    assert sorted(first + second) == sorted(f"{run}:{i}" for i in range(40))
    tally = read_tally(client, Keys(settings.queue), run)
    assert (tally["produced"], tally["consumed"], tally["duplicates"]) == (40, 40, 0)


def test_a_killed_connection_is_reopened_without_duplicates(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings = redis_settings.with_overrides(batch=5)
    logs: list[str] = []
    producer = ListProducer(client, settings, log=logs.append)
    consumer = ListConsumer(client, settings, consumer="c1", log=logs.append)
    try:
        run = producer.open_run()
        kills = 0
        for start in range(0, 50, 10):
            # Confirmed before each kill, so the next push finds its connection
            # dead (kills with pushes in flight: tests/test_redis_pushes.py).
            producer.put(items(run, start, 10))
            producer.flush()
            kills += client.client_kill_filter(_type="normal", skipme=True)  # all but this one
        seen = drain_all(consumer, 25)
        kills += client.client_kill_filter(_type="normal", skipme=True)
        seen += drain_all(consumer, 25)
        assert kills >= 6  # the producer's connection each time, then the consumer's
    finally:
        consumer.close()
        producer.close()
    assert sorted(seen) == sorted(f"{run}:{i}" for i in range(50))
    tally = read_tally(client, Keys(settings.queue), run)
    assert (tally["produced"], tally["consumed"], tally["duplicates"], tally["lost"]) == (50, 50, 0, 0)
    assert not [line for line in logs if "retry" in line]  # a blip, absorbed like redis-py does


def test_the_queue_gives_its_connection_back(client: redis.Redis, redis_settings: RedisSettings) -> None:
    pool = client.connection_pool
    producer = ListProducer(client, redis_settings)
    run = producer.open_run()
    produce(producer, items(run, 0, 5), quiet())
    consumer = ListConsumer(client, redis_settings, consumer="c1", drain=True)
    consume(consumer, lambda item: None, quiet(), poll=0.1)
    consumer.close()
    producer.close()
    assert not pool._in_use_connections  # type: ignore[attr-defined]


def test_a_reaped_consumer_rejoins_before_it_holds_anything(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings = redis_settings.with_overrides(batch=3)
    k = Keys(settings.queue)
    producer = ListProducer(client, settings)
    lines: list[str] = []
    consumer = ListConsumer(client, settings, consumer="c1", notify=lines.append)
    try:
        run = producer.open_run()
        producer.put(items(run, 0, 9))
        producer.flush()
        first = consumer.get(0.2) or []
        assert len(first) == 3 and client.sismember(k.consumers, "c1")
        for item in first:
            consumer.ack(item)
        # What reap.lua does to a consumer it reaps: out of the set, call key gone.
        client.srem(k.consumers, "c1")
        client.delete(k.call("c1"))
        # The claim that carries the acknowledgements finds it: it records them,
        # claims nothing, and the consumer rejoins before it claims again.
        second = consumer.get(0.2) or []
        assert len(second) == 3 and not consumer.lease.lost
        assert any("lost its lease" in line for line in lines), lines
        assert client.sismember(k.consumers, "c1") and client.exists(k.heartbeat("c1"))
        # Its batch (and the next one, when it came back fast enough to claim ahead).
        assert held_items(client, k.processing("c1")) in (3, 6)
        for item in second:
            consumer.ack(item)
        rest = drain_all(consumer, 3)
    finally:
        consumer.close()
        producer.close()
    assert len(rest) == 3
    tally = read_tally(client, k, run)
    assert (tally["consumed"], tally["duplicates"], tally["lost"]) == (9, 0, 0)


def test_claims_tell_whether_the_queue_may_hold_more(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings = redis_settings.with_overrides(batch=4)
    producer = ListProducer(client, settings)
    consumer = ListConsumer(client, settings, consumer="c1")
    try:
        run = producer.open_run()
        producer.put(items(run, 0, 6))
        producer.flush()
        got = consumer.get(0.2) or []
        assert len(got) == 4 and consumer._claims.busy  # got all it asked for: maybe more
        for item in got:
            consumer.ack(item)
        got = consumer.get(0.2) or []
        assert len(got) == 2 and not consumer._claims.busy  # fewer: the queue is empty
        for item in got:
            consumer.ack(item)
        assert consumer.get(0.05) == []  # then it blocks in BLMOVE, and times out
    finally:
        consumer.close()
        producer.close()


def test_one_by_one_claims_see_an_empty_queue(client: redis.Redis, redis_settings: RedisSettings) -> None:
    settings = redis_settings.with_overrides(batch=1)
    producer = ListProducer(client, settings)
    consumer = ListConsumer(client, settings, consumer="c1")
    try:
        run = producer.open_run()
        producer.put(items(run, 0, 2))
        producer.flush()
        got = consumer.get(0.2) or []
        assert len(got) == 1 and consumer._claims.busy  # one more is waiting
        consumer.ack(got[0])
        got = consumer.get(0.2) or []
        assert len(got) == 1 and not consumer._claims.busy  # that was the last: block next time
        consumer.ack(got[0])
        consumer.flush()
    finally:
        consumer.close()
        producer.close()


def test_a_claim_after_redis_lost_confirmed_writes_hands_the_processing_list_back(
    client: redis.Redis, redis_settings: RedisSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Redis restarted from an AOF behind its replies (appendfsync everysec) forgot our
    last call: what the processing list holds is then unknown to us, so it goes back
    to the queue (counted) instead of being dropped with the next acknowledgements."""
    # The three acknowledgements go together, however slow this test's steps are.
    monkeypatch.setattr(consumer_module, "ACK_AT_ONCE_AFTER", 60.0)
    settings = redis_settings.with_overrides(batch=3)
    k = Keys(settings.queue)
    producer = ListProducer(client, settings)
    consumer = ListConsumer(client, settings, consumer="c1")
    try:
        run = producer.open_run()
        producer.put(items(run, 0, 6))
        producer.flush()
        first = consumer.get(0.2) or []
        assert len(first) == 3
        # The rollback, as the restarted Redis shows it: the call key is one call
        # behind, and the processing list holds a batch this consumer never saw.
        orphans = client.lpop(k.queue, 3)
        client.rpush(k.processing("c1"), *orphans)
        prefix, number = client.get(k.call("c1")).decode().rsplit(":", 1)
        client.set(k.call("c1"), f"{prefix}:{int(number) - 1}")
        for item in first:
            consumer.ack(item)
        consumer.flush()
        assert client.lrange(k.queue, 0, -1) == orphans  # back, not dropped
        rest = drain_all(consumer, 3)
    finally:
        consumer.close()
        producer.close()
    assert len(rest) >= 3
    tally = read_tally(client, k, run)
    assert (tally["consumed"], tally["lost"]) == (6, 0)
    assert tally["redelivered"] >= 3
