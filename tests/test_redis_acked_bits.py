"""A run's acked bitmap (``run:<run>:bits``) beside its acked set, on a real redis-server.

claim.lua sets bit n for item ``<run>:<n>`` when n is canonical decimal, below
the run's produced count and below ``BITS_CAP``; any other id goes to the acked
set. Readers (reap, requeue, tally, :mod:`pcq.core.redis_list.acked`) use both.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import redis
from fixtures_redis import quiet

from pcq.core.pattern import consume
from pcq.core.redis_common.keys import BITS_CAP, Keys
from pcq.core.redis_common.payload import encode
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.acked import acked_count, acked_ids, bit_numbers, bit_of, is_acked
from pcq.core.redis_list.acks import AckBuffer, _by_run_slow
from pcq.core.redis_list.consumer import ListConsumer
from pcq.core.redis_list.dead_letters import newest, requeue
from pcq.core.redis_list.producer import ListProducer
from pcq.core.redis_list.tally import read_tally
from pcq.core.transport import Item

LIB = Path(__file__).parents[1] / "core" / "redis_list" / "lua" / "lib" / "acked.lua"


def push(client: redis.Redis, settings: RedisSettings, ids: list[str],
         producer: ListProducer | None = None) -> str:  # fmt: skip
    """Push one item per id (``{run}`` in an id is the run's id); return the run.

    A new run, or ``producer``'s. (The producer accepts any ``<run>:<digits>`` id,
    so odd numbers get through it, as from a hostile producer.)
    """
    if producer is None:
        producer = ListProducer(client, settings)
        producer.open_run()
    run = producer.run
    producer.put([Item(i.format(run=run), f"body {i}", time.time()) for i in ids])
    producer.flush()
    return run


def drain(client: redis.Redis, settings: RedisSettings) -> list[str]:
    """Handle everything queued with one consumer, acknowledging each; return the ids."""
    seen: list[str] = []
    consumer = ListConsumer(client, settings, consumer="drainer", drain=True)
    try:
        consume(consumer, lambda item: seen.append(item.id), quiet(), poll=0.05)
    finally:
        consumer.close()
    return seen


def send_acks(client: redis.Redis, settings: RedisSettings, ids: list[str]) -> None:
    """Acknowledge ``ids`` through claim.lua as a consumer's buffer sends them (held or not)."""
    consumer = ListConsumer(client, settings, consumer="acker")
    consumer.beat(join=True)
    for item_id in ids:
        consumer._acks.add(item_id, time.monotonic())
    consumer.flush()


def close_run(client: redis.Redis, settings: RedisSettings, run: str) -> None:
    client.hset(Keys(settings.queue).run(run), "closed_at", time.time())
    client.srem(Keys(settings.queue).open, run)


def test_the_lua_cap_is_the_python_cap() -> None:
    (cap,) = re.findall(r"local BITS_CAP = (\d+)", LIB.read_text(encoding="utf-8"))
    assert int(cap) == BITS_CAP


def test_by_run_sends_ranges_and_odd_ids_verbatim() -> None:
    acks = AckBuffer()
    acks.ids = [f"r:{n}" for n in range(1020, 1100)]  # crosses a cached block of text
    assert acks.by_run() == [1, "r", "1020-1099", ""]
    acks.ids = ["r:7"]
    assert acks.by_run() == [1, "r", "7-7", ""]
    acks.ids = ["r:3", "r:1", "r:2", "r:5", "r:5", "r:07", "r:-1", f"r:{BITS_CAP}", "s:0", "r:"]
    assert acks.by_run() == [2, "r", "1-3,5-5,5-5", f"r:07,r:-1,r:{BITS_CAP},r:", "s", "0-0", ""]
    acks.ids = ["r:0", "r:1,r:2", "r:3"]  # not three ids 0..2: no range may say so
    assert acks.by_run()[2] != "0-2"
    acks.ids = ["r:\u0661", "r:\u0662"]  # digits, but not ASCII ones
    assert acks.by_run() == [1, "r", "", "r:\u0661,r:\u0662"]


def test_bits_decode_high_bit_first() -> None:
    assert bit_numbers(b"\x80\x01\xff") == [0, 15, *range(16, 24)]
    assert [bit_of(i) for i in ("r:0", "r:10", "r:010", "r:+1", "r:", f"r:{BITS_CAP}")] == [
        0, 10, None, None, None, None]  # fmt: skip


def test_a_runs_acks_land_in_the_bitmap_and_the_tally_is_exact(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings = redis_settings.with_overrides(batch=7)
    keys = Keys(settings.queue)
    producer = ListProducer(client, settings)
    run = producer.open_run()
    producer.put([Item(f"{run}:{n}", "x", time.time()) for n in range(100)])
    producer.end_stream()
    assert sorted(drain(client, settings)) == sorted(f"{run}:{n}" for n in range(100))
    assert client.bitcount(keys.acked_bits(run)) == 100
    assert client.strlen(keys.acked_bits(run)) == 13  # 100 bits, one per item
    assert not client.exists(keys.acked(run))  # nothing went to the set
    assert acked_ids(client, keys, run) == {f"{run}:{n}" for n in range(100)}
    assert acked_count(client, keys, run) == 100
    tally = read_tally(client, keys, run)
    assert (tally["produced"], tally["consumed"], tally["lost"], tally["duplicates"]) == (
        100, 100, 0, 0)  # fmt: skip


def test_ranges_set_exactly_their_bits_and_count_duplicates(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    keys = Keys(redis_settings.queue)
    run = push(client, redis_settings, [f"{{run}}:{n}" for n in range(40)])
    send_acks(client, redis_settings, [f"{run}:{n}" for n in range(3, 22)])  # partial bytes both ends
    assert [n for n in range(48) if client.getbit(keys.acked_bits(run), n)] == list(range(3, 22))
    again = [0, 2, *range(23, 40), 5, 5]  # 5 twice in one batch, and acknowledged before
    send_acks(client, redis_settings, [f"{run}:{n}" for n in again])
    want = {0, 2, *range(3, 22), *range(23, 40)}
    assert {n for n in range(48) if client.getbit(keys.acked_bits(run), n)} == want
    assert client.hget(keys.run(run), "duplicates") == b"2"
    send_acks(client, redis_settings, [f"{run}:{n}" for n in range(40)])  # the whole range again
    assert client.hget(keys.run(run), "duplicates") == str(2 + len(want)).encode()
    assert acked_count(client, keys, run) == 40 and client.strlen(keys.acked_bits(run)) == 5
    assert int(client.hget(keys.by_consumer(run), "acker") or 0) == 19 + len(again) + 40


def test_a_mixed_batch_splits_between_bitmap_and_set_and_counts_stay_exact(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    keys = Keys(redis_settings.queue)
    odd = ["{run}:007", "{run}:15", f"{{run}}:{BITS_CAP}"]  # 15 >= produced (13)
    producer = ListProducer(client, redis_settings)
    producer.open_run()
    run = push(client, redis_settings, [*(f"{{run}}:{n}" for n in range(10)), *odd], producer)
    close_run(client, redis_settings, run)
    everything = {*(f"{run}:{n}" for n in range(10)), *(i.format(run=run) for i in odd)}
    assert set(drain(client, redis_settings)) == everything
    assert client.bitcount(keys.acked_bits(run)) == 10
    assert {m.decode() for m in client.smembers(keys.acked(run))} == {
        i.format(run=run) for i in odd}  # fmt: skip
    assert acked_ids(client, keys, run) == everything
    tally = read_tally(client, keys, run)
    assert (tally["consumed"], tally["lost"], tally["duplicates"]) == (13, 0, 0), tally
    send_acks(client, redis_settings, sorted(everything))  # every one a duplicate
    tally = read_tally(client, keys, run)
    assert (tally["consumed"], tally["duplicates"]) == (13, 13), tally
    # The run grows past 15: an acknowledgement of run:15 now moves it to the bitmap,
    # so it is counted once (not in both) and as a duplicate.
    push(client, redis_settings, [f"{{run}}:{n}" for n in range(13, 23)], producer)
    send_acks(client, redis_settings, [f"{run}:15"])
    assert client.getbit(keys.acked_bits(run), 15) == 1
    assert not client.sismember(keys.acked(run), f"{run}:15")
    tally = read_tally(client, keys, run)
    assert (tally["consumed"], tally["duplicates"]) == (13, 14), tally


def test_a_hostile_id_with_a_huge_number_allocates_no_bitmap(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    keys = Keys(redis_settings.queue)
    hostile = ["{run}:99999999", "{run}:4294967295", f"{{run}}:{BITS_CAP - 1}"]
    run = push(client, redis_settings, ["{run}:0", *hostile])
    other = Item("x:9999999", "a run nobody opened", time.time())
    client.rpush(keys.queue, encode(other, "x", redis_settings.max_payload_bytes))
    close_run(client, redis_settings, run)
    drain(client, redis_settings)
    assert client.strlen(keys.acked_bits(run)) == 1  # item 0 only
    assert (client.memory_usage(keys.acked_bits(run)) or 0) < 1024
    assert client.strlen(keys.acked_bits("x")) == 0 and not client.exists(keys.acked_bits("x"))
    assert client.scard(keys.acked(run)) == 3 and client.sismember(keys.acked("x"), "x:9999999")
    assert all(is_acked(client, keys, i.format(run=run)) for i in hostile)
    assert read_tally(client, keys, run)["consumed"] == 4


def test_the_reaper_does_not_redeliver_items_acked_in_the_bitmap(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings = redis_settings.with_overrides(batch=10)
    keys = Keys(settings.queue)
    run = push(client, settings, [f"{{run}}:{n}" for n in range(10)])  # one envelope
    a = ListConsumer(client, settings, consumer="a")
    a.beat(join=True)  # registered, no heartbeat thread
    held = a._claims.claim(10)
    assert len(held) == 10
    for item in held[:6]:
        a.ack(item)
    a.flush()  # the envelope stays in a's list: 4 of its items are unsettled
    assert client.bitcount(keys.acked_bits(run)) == 6 and not client.exists(keys.acked(run))
    client.delete(keys.heartbeat("a"))  # "a" died
    b = ListConsumer(client, settings, consumer="b")
    b.beat(join=True)
    assert b.reap() == (1, 4, 0)
    again = b._claims.claim(10)
    assert sorted(i.id for i in again) == sorted(i.id for i in held[6:])
    assert read_tally(client, keys, run)["redelivered"] == 4


def test_dead_requeue_of_an_acknowledged_id_is_refused_as_before(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings = redis_settings.with_overrides(max_deliveries=1, batch=5)
    keys = Keys(settings.queue)
    run = push(client, settings, ["{run}:0", "{run}:1", "{run}:2"])
    close_run(client, settings, run)

    def refuse_the_first_two(item: Item) -> None:
        if not item.id.endswith(":2"):
            raise ValueError("no")

    consumer = ListConsumer(client, settings, consumer="c", drain=True)
    try:
        consume(consumer, refuse_the_first_two, quiet(), poll=0.05)
    finally:
        consumer.close()
    assert read_tally(client, keys, run)["dead_letters"] == 2
    send_acks(client, settings, [f"{run}:0"])  # a redelivered copy was handled after all
    assert client.getbit(keys.acked_bits(run), 0) == 1
    tally = read_tally(client, keys, run)
    assert (tally["consumed"], tally["dead_letters"], tally["lost"]) == (2, 1, 0), tally
    letters = {letter.item_id: letter for letter in newest(client, keys)}
    outcome = requeue(client, keys, settings, letters[f"{run}:0"])
    assert outcome.startswith("already acknowledged"), outcome
    assert client.llen(keys.dead) == 2 and client.llen(keys.queue) == 0  # left in the inbox
    assert requeue(client, keys, settings, letters[f"{run}:1"]) == "requeued"
    assert client.llen(keys.dead) == 1 and client.llen(keys.queue) == 1


def _expand(ranges: str) -> list[int]:
    out: list[int] = []
    for part in filter(None, ranges.split(",")):
        a, b = map(int, part.split("-"))
        out += range(a, b + 1)
    return sorted(out)


def test_by_run_agrees_with_reading_id_by_id() -> None:
    """The fast paths (one range; stretches by compares) against the plain per-id reading."""
    rng = random.Random(7)
    acks = AckBuffer()
    for _ in range(2000):
        base, m = rng.choice([0, 1000, 2040, 123456, BITS_CAP - 200]), rng.randint(1, 300)
        shape = rng.random()
        if shape < 0.3:
            numbers = [base + rng.randint(0, 400) for _ in range(m)]  # repeats, any order
        elif shape < 0.6:
            numbers = sorted({base + rng.randint(0, 400) for _ in range(m)})  # gaps
        else:
            numbers = list(range(base, base + m))
        ids = [f"r:{n}" for n in numbers]
        for _ in range(rng.randint(0, 3)):
            j = rng.randrange(len(ids))
            ids[j] = rng.choice(["r:007", "r:99999999999", "r:0", ids[j - 1]])
        if rng.random() < 0.2:
            rng.shuffle(ids)
        acks.ids = ids
        got, want = acks.by_run(), _by_run_slow(ids)
        assert got[:2] == want[:2] == [1, "r"]
        assert _expand(got[2]) == _expand(want[2]), ids
        assert sorted(filter(None, got[3].split(","))) == sorted(filter(None, want[3].split(",")))


def test_random_batches_set_exactly_the_bits_a_model_expects(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    rng = random.Random(11)
    keys = Keys(redis_settings.queue)
    produced = 300
    run = push(client, redis_settings, [f"{{run}}:{n}" for n in range(produced)])
    seen: set[str] = set()
    sent = 0
    for _ in range(30):
        a = rng.randrange(produced + 40)
        numbers = [*range(a, a + rng.randint(1, 70)), *(rng.randrange(produced) for _ in range(5))]
        ids = [f"{run}:{n}" for n in numbers] + rng.choice([[], [f"{run}:0{a}"]])
        send_acks(client, redis_settings, ids)
        seen.update(ids)
        sent += len(ids)
    bits = {int(i.rpartition(":")[2]) for i in seen if bit_of(i) is not None and bit_of(i) < produced}
    assert set(bit_numbers(client.get(keys.acked_bits(run)) or b"")) == bits
    assert {m.decode() for m in client.smembers(keys.acked(run))} == {
        i for i in seen if int(i.rpartition(":")[2]) not in bits or bit_of(i) is None}  # fmt: skip
    assert acked_ids(client, keys, run) == seen
    assert client.hget(keys.run(run), "duplicates") == str(sent - len(seen)).encode()
