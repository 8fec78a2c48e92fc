"""Envelopes: one Redis list element per batch, its items still settled one by one.

Against a real redis-server: claims split envelopes that do not fit a batch
(so no consumer holds more than it asked for), a bad payload inside an envelope
is dead-lettered alone, a nack or release takes only its item out, and a reaper
gives back only the items of a dead consumer's envelope that were not
acknowledged. The queue's length stays in items.
"""

from __future__ import annotations

import json
import time

import pytest
import redis
from fixtures_redis import quiet
from redis_procs import held_items, queued_items

from pcq.core.pattern import consume, produce
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.claims import DEPTH
from pcq.core.redis_list.consumer import ListConsumer
from pcq.core.redis_list.envelope import pack, size, unpack
from pcq.core.redis_list.producer import ListProducer
from pcq.core.redis_list.status import queue_status
from pcq.core.redis_list.tally import read_tally
from pcq.core.transport import Item


def items(run: str, first: int, last: int) -> list[Item]:
    return [Item(f"{run}:{i}", f"name {i}", time.time()) for i in range(first, last)]


def pushed(client: redis.Redis, base: RedisSettings, batch: int, n: int,
           *, close: bool = True) -> tuple[RedisSettings, Keys, str]:
    """A queue with consumer batch ``batch`` holding one envelope of ``n`` items of a new run.

    ``close``: the run's stream is closed too (a draining consumer then stops).
    """
    settings = base.with_overrides(batch=batch)
    producer = ListProducer(client, settings)
    run = producer.open_run()
    producer.put(items(run, 0, n))
    producer.flush()
    if close:
        producer.end_stream()
    producer.close()
    return settings, Keys(settings.queue), run


def test_framing_round_trip() -> None:
    assert pack([b"a"]) == b"a" and unpack(b"a") == [b"a"] and size(b"a") == 1
    element = pack([b"{1}", b"{2}", b"{3}"])
    assert element == b"#batch 3\n{1}\n{2}\n{3}"
    assert unpack(element) == [b"{1}", b"{2}", b"{3}"] and size(element) == 3
    # Without a well-formed header an element is one payload, newlines and all.
    for odd in (b"#batch x\n{1}\n{2}", b"#batch 2", b"{\n}"):
        assert unpack(odd) == [odd] and size(odd) == 1


@pytest.mark.parametrize(("pushed", "claimed"), [(10, 3), (1, 10), (7, 7), (100, 1)])
def test_any_batch_sizes_meet_and_nobody_holds_more_than_its_bound(
    client: redis.Redis, redis_settings: RedisSettings, pushed: int, claimed: int
) -> None:
    settings = redis_settings.with_overrides(batch=claimed)
    producer = ListProducer(client, settings)
    run = producer.open_run()
    produce(producer, items(run, 0, 100), quiet(), batch=pushed)
    assert queued_items(client, settings) == 100
    k, seen = Keys(settings.queue), []
    consumer = ListConsumer(client, settings, consumer="c1", drain=True)

    def handle(item: Item) -> None:
        # The bound, whatever the producer's batch was: this batch, and the DEPTH
        # claims in flight while it is handled (a fast consumer prefetches).
        assert held_items(client, k.processing("c1")) <= (1 + DEPTH) * claimed
        seen.append(item.id)

    try:
        consume(consumer, handle, quiet(), poll=0.1)
    finally:
        consumer.close()
    assert sorted(seen) == sorted(f"{run}:{i}" for i in range(100))
    tally = read_tally(client, k, run)
    assert (tally["consumed"], tally["lost"], tally["duplicates"]) == (100, 0, 0)
    assert queued_items(client, settings) == 0 and int(client.get(k.queue_extra) or 0) == 0


def test_a_bad_payload_in_an_envelope_is_dead_lettered_alone(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings, k, run = pushed(client, redis_settings, 100, 99)
    [element] = client.lrange(k.queue, 0, -1)
    good = unpack(element)
    client.delete(k.queue)
    client.rpush(k.queue, pack([*good[:50], b"not json", *good[50:]]))
    seen: list[str] = []
    consumer = ListConsumer(client, settings, consumer="c1", drain=True)
    try:
        consume(consumer, lambda item: seen.append(item.id), quiet(), poll=0.1)
    finally:
        consumer.close()
    assert len(seen) == 99
    [record] = [json.loads(r) for r in client.lrange(k.dead, 0, -1)]
    assert record["payload"] == "not json" and record["reason"].startswith("not JSON")
    assert read_tally(client, k, run)["lost"] == 0
    assert client.llen(k.processing("c1")) == 0


def test_a_nack_and_a_release_take_only_their_item_out(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings, k, run = pushed(client, redis_settings, 5, 5)
    consumer = ListConsumer(client, settings, consumer="c1")
    try:
        held = consumer.get(0.5) or []
        assert len(held) == 5 and client.llen(k.processing("c1")) == 1
        consumer.ack(held[0])
        consumer.nack(held[1], "boom")
        # The failed item went back alone; the envelope kept the other four.
        assert json.loads(client.lindex(k.queue, 0) or b"")["id"] == held[1].id
        assert client.hget(k.errors, held[1].id) == b"boom"
        assert held_items(client, k.processing("c1")) == 4
        consumer.release(held[3:])
        assert queued_items(client, settings) == 3  # the nacked one, then the two released
        # Item 2 is still in hand; item 0 (acknowledged) stays until the envelope is settled.
        assert held_items(client, k.processing("c1")) == 2
        consumer.ack(held[2])
        consumer.flush()
        assert client.llen(k.processing("c1")) == 0
    finally:
        consumer.close()
    tally = read_tally(client, k, run)
    assert tally["consumed"] == 2 and tally["redelivered"] == 1
    released = [json.loads(p)["id"] for p in unpack(client.lindex(k.queue, 0))]
    assert released == [held[3].id, held[4].id]  # at the head, one envelope; the nack at the tail


def test_a_reaper_gives_back_only_what_a_dead_consumer_had_not_acknowledged(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings, k, run = pushed(client, redis_settings, 10, 10)
    victim = ListConsumer(client, settings, consumer="victim")
    reaper = ListConsumer(client, settings, consumer="reaper")
    try:
        held = victim.get(0.5) or []
        for item in held[:4]:
            victim.ack(item)
        victim.flush()  # four acknowledged; the envelope stays until all ten are settled
        assert client.llen(k.processing("victim")) == 1
        victim._stop_heart()  # it dies: no more beats ...
        client.delete(k.heartbeat("victim"))  # ... and its heartbeat has expired
        assert reaper.reap() == (1, 6, 0)
        assert queued_items(client, settings) == 6
        back = [json.loads(p)["id"] for p in unpack(client.lindex(k.queue, 0))]
        assert back == [item.id for item in held[4:]]
        assert queue_status(settings, client)["length"] == 6
    finally:
        reaper.close()
        victim.link.close()
    assert read_tally(client, k, run)["redelivered"] == 6


def test_a_slow_consumer_holds_one_batch_and_leaves_the_rest_to_others(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    """Prefetch is for consumers that come back fast: a slow one never claims ahead."""
    settings, k, run = pushed(client, redis_settings, 2, 8)
    slow = ListConsumer(client, settings, consumer="slow")
    other = ListConsumer(client, settings, consumer="other")
    try:
        for _ in range(3):
            batch = slow.get(0.5) or []
            assert len(batch) == 2
            assert held_items(client, k.processing("slow")) == 2  # nothing claimed ahead
            time.sleep(0.06)  # handling takes longer than PREFETCH_BELOW
            for item in batch:
                slow.ack(item)
        rest = other.get(0.5) or []
        assert len(rest) == 2  # the last two were still in the queue for an idle consumer
        for item in rest:
            other.ack(item)
    finally:
        slow.close()
        other.close()
    assert read_tally(client, k, run)["consumed"] == 8


def test_a_fast_consumer_claims_its_next_batches_while_it_handles_this_one(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings, k, run = pushed(client, redis_settings, 2, 7)
    consumer = ListConsumer(client, settings, consumer="fast")
    seen: list[str] = []
    try:
        for item in consumer.get(0.5) or []:
            consumer.ack(item)
            seen.append(item.id)
        batch = consumer.get(0.5) or []  # back at once: the next claims go out now
        # This batch, and DEPTH more (of the 3 items left: batches of 2, then 1).
        assert held_items(client, k.processing("fast")) == 2 + min(DEPTH * 2, 3)
        for item in batch:
            consumer.ack(item)
            seen.append(item.id)
        # Stopped here: close hands back the prefetched batches, nothing is lost.
    finally:
        consumer.close()
    assert queued_items(client, settings) == 3 and client.llen(k.processing("fast")) == 0
    tally = read_tally(client, k, run)
    assert tally["consumed"] == 4 and tally["redelivered"] == 0 and len(seen) == 4
