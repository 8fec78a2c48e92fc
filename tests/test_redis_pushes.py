"""Pushes in flight (pcq.core.redis_list.pushes): exactly once and in order, against a real redis-server.

The producer keeps up to ``WINDOW`` pushes unconfirmed; ``push.lua`` refuses a
push whose predecessor was not applied (status 3, a gap). These tests check the
rule itself, then the producer through what breaks a window: a queue at its
high-water mark, a killed connection, a Redis that forgot its scripts; and that
the outside ledger only lists what Redis confirmed.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import redis
from fixtures_redis import quiet

from pcq.core.ledger import PRODUCED, LedgerFile, LedgerProducer
from pcq.core.pattern import consume
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list import pushes
from pcq.core.redis_list.consumer import ListConsumer
from pcq.core.redis_list.envelope import pack, unpack
from pcq.core.redis_list.producer import ListProducer
from pcq.core.redis_list.pushes import WINDOW
from pcq.core.redis_list.scripts import Scripts
from pcq.core.transport import Item


def items(run: str, start: int, n: int) -> list[Item]:
    return [Item(f"{run}:{i}", f"name {i}", time.time()) for i in range(start, start + n)]


def queued_ids(client: redis.Redis, keys: Keys) -> list[str]:
    """The ids in the queue, head first, envelopes opened."""
    return [json.loads(raw)["id"] for element in client.lrange(keys.queue, 0, -1)
            for raw in unpack(element)]  # fmt: skip


def ledger_ids(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


class TestGapRule:
    """push.lua's ARGV[6], the floor: a push above it goes in only right after its predecessor."""

    def push(self, client: redis.Redis, keys: Keys, seq: int, floor: int) -> list[int]:
        envelope = pack([f'{{"seq":{seq}}}'.encode()])
        reply = Scripts(client).push([keys.queue, keys.run("r"), keys.queue_extra],
                                     [0, 0, seq, 1, envelope, floor])  # fmt: skip
        return [int(x) for x in reply]

    def state(self, client: redis.Redis, keys: Keys) -> tuple[list[bytes], dict[bytes, bytes]]:
        return client.lrange(keys.queue, 0, -1), client.hgetall(keys.run("r"))

    def test_a_push_after_one_not_applied_is_refused_whole(
        self, client: redis.Redis, redis_settings: RedisSettings
    ) -> None:
        keys = Keys(redis_settings.queue)
        assert self.push(client, keys, 1, 1) == [1, 1]
        before = self.state(client, keys)
        # 2 never arrived (or was refused): 3, sent behind it with floor 2, is a gap.
        assert self.push(client, keys, 3, 2)[0] == 3
        assert self.state(client, keys) == before  # nothing applied, nothing counted
        assert self.push(client, keys, 2, 2) == [1, 2]
        assert self.push(client, keys, 3, 2) == [1, 3]
        assert self.push(client, keys, 3, 3) == [2, 3]  # applied already: confirmed, not again
        assert client.lrange(keys.queue, 0, -1) == [b'{"seq":1}', b'{"seq":2}', b'{"seq":3}']
        assert client.hmget(keys.run("r"), "seq", "produced") == [b"3", b"3"]

    def test_the_floor_goes_in_after_a_rollback(
        self, client: redis.Redis, redis_settings: RedisSettings
    ) -> None:
        keys = Keys(redis_settings.queue)
        for seq in (1, 2, 3):
            assert self.push(client, keys, seq, seq)[0] == 1
        # A restart from an AOF one second behind: 2 and 3 were confirmed, then forgotten.
        client.rpop(keys.queue, 2)
        client.hset(keys.run("r"), mapping={"seq": 1, "produced": 1})
        # The producer's oldest unconfirmed push is 4: it goes in, as before windows
        # (what was forgotten is lost, as the docs say of appendfsync everysec) ...
        assert self.push(client, keys, 5, 4)[0] == 3  # ... but nothing overtakes it
        assert self.push(client, keys, 4, 4) == [1, 2]
        assert self.push(client, keys, 5, 4) == [1, 3]
        assert client.lrange(keys.queue, 0, -1) == [b'{"seq":1}', b'{"seq":4}', b'{"seq":5}']


def test_a_window_at_the_high_water_mark_keeps_order(
    client: redis.Redis, redis_settings: RedisSettings, tmp_path: Path
) -> None:
    """Refusals in the middle of a window (status 0, then gaps) are sent again, in order."""
    settings = redis_settings.with_overrides(high_water=12, batch=2)
    lines: list[str] = []
    producer = ListProducer(client, settings, notify=lines.append, put_timeout=30)
    run = producer.open_run()
    out = LedgerFile(tmp_path / PRODUCED)
    seen: list[str] = []
    consumer = ListConsumer(client, settings, consumer="slow", drain=True)

    def handle(item: Item) -> None:
        seen.append(item.id)
        time.sleep(0.001)  # slower than the producer: the queue stays at its mark

    reader = threading.Thread(target=consume, args=(consumer, handle, quiet()),
                              kwargs={"poll": 0.05})  # fmt: skip
    reader.start()
    try:
        sink = LedgerProducer(producer, out)
        # Big and small envelopes against a mark of 12: a big one refused, the
        # small one behind it would fit. It must wait (a gap) or it overtakes.
        start = 0
        for size in [8, 1, 3, 1] * 25:
            sink.put(items(run, start, size))
            start += size
        sink.end_stream()
        reader.join(60)
        assert not reader.is_alive()
    finally:
        consumer.close()
        producer.close()
        out.close()
    expected = [f"{run}:{i}" for i in range(start)]
    assert seen == expected  # one consumer, FIFO: exactly once and in the producer's order
    assert ledger_ids(tmp_path / PRODUCED) == expected
    assert any("high-water 12" in line for line in lines), lines  # it did wait
    assert int(client.hget(Keys(settings.queue).run(run), "produced") or 0) == start == 325


def test_a_killed_connection_with_pushes_in_flight(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings = redis_settings.with_overrides(high_water=0)
    keys = Keys(settings.queue)
    logs: list[str] = []
    producer = ListProducer(client, settings, log=logs.append)
    admin = redis.Redis.from_url(settings.url)
    try:
        run = producer.open_run()
        in_flight, kills = [], 0
        for start in range(0, 200, 4):
            producer.put(items(run, start, 4))
            if start % 20 == 0:  # (a kill is noticed a send or two later, then recovered)
                in_flight.append(producer.unconfirmed)
                kills += admin.client_kill_filter(_type="normal", skipme=True)  # the Wire's too
        producer.flush()
        assert producer.unconfirmed == 0
    finally:
        producer.close()
        admin.close()
    assert kills >= 10 and max(in_flight) > 1, (kills, in_flight)
    assert queued_ids(client, keys) == [f"{run}:{i}" for i in range(200)]  # once each, in order
    assert client.hget(keys.run(run), "produced") == b"200"
    assert not [line for line in logs if "retry" in line]  # a blip: reconnected at once


def test_script_flush_with_pushes_in_flight(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    keys = Keys(redis_settings.queue)
    producer = ListProducer(client, redis_settings)
    try:
        run = producer.open_run()
        producer.put(items(run, 0, 3))
        client.script_flush()  # Redis forgets push.lua: what was sent may get NOSCRIPT
        for start in range(3, 3 + 3 * (WINDOW + 2), 3):
            producer.put(items(run, start, 3))
            if start == 9:
                client.script_flush()  # and again, with a full window behind it
        producer.flush()
    finally:
        producer.close()
    total = 3 + 3 * (WINDOW + 2)
    assert queued_ids(client, keys) == [f"{run}:{i}" for i in range(total)]
    assert client.hget(keys.run(run), "produced") == str(total).encode()


def test_the_ledger_lists_only_confirmed_ids(
    client: redis.Redis, redis_settings: RedisSettings, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pushes, "CONFIRM_AFTER", 60.0)  # only the window makes it read
    producer = ListProducer(client, redis_settings)
    path = tmp_path / PRODUCED
    out = LedgerFile(path)
    sink = LedgerProducer(producer, out)
    try:
        run = producer.open_run()
        first = [f"{run}:0", f"{run}:1"]
        sink.put(items(run, 0, 2))  # the run's first push is confirmed at once
        assert producer.unconfirmed == 0 and ledger_ids(path) == first
        for start in range(2, 2 + 2 * WINDOW, 2):  # a window's worth: nothing read yet
            sink.put(items(run, start, 2))
        assert producer.unconfirmed == WINDOW and ledger_ids(path) == first
        sink.put(items(run, 2 + 2 * WINDOW, 2))  # one more: the oldest reply is read first
        assert producer.unconfirmed == WINDOW
        assert ledger_ids(path) == [*first, f"{run}:2", f"{run}:3"]
        producer.flush()
        assert producer.unconfirmed == 0
        assert ledger_ids(path) == [f"{run}:{i}" for i in range(2 * WINDOW + 4)]
    finally:
        producer.close()
        out.close()


def test_close_drops_a_connection_with_replies_unread(
    client: redis.Redis, redis_settings: RedisSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pushes, "CONFIRM_AFTER", 60.0)
    producer = ListProducer(client, redis_settings)
    run = producer.open_run()
    producer.put(items(run, 0, 1))  # confirmed at once (the run's first)
    producer.put(items(run, 1, 1))
    producer.put(items(run, 2, 1))
    assert producer.unconfirmed == 2
    producer.close()  # does not wait for them
    pool = client.connection_pool
    assert not pool._in_use_connections  # type: ignore[attr-defined]
    for conn in pool._available_connections:  # type: ignore[attr-defined]
        assert conn._sock is None or not conn.can_read(), "a connection with replies unread"
    assert client.ping()  # and the pool still works


def test_the_first_push_of_a_run_is_confirmed_at_once(
    client: redis.Redis, redis_settings: RedisSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fresh Redis knows no script: the first push gets NOSCRIPT. Found out
    # (and sent again) before put returns, not WINDOW pushes later.
    monkeypatch.setattr(pushes, "CONFIRM_AFTER", 60.0)
    keys = Keys(redis_settings.queue)
    client.script_flush()
    producer = ListProducer(client, redis_settings)
    try:
        run = producer.open_run()
        producer.put(items(run, 0, 5))
        assert producer.unconfirmed == 0
        assert queued_ids(client, keys) == [f"{run}:{i}" for i in range(5)]
    finally:
        producer.close()


def test_an_old_push_is_confirmed_before_the_next_is_sent(
    client: redis.Redis, redis_settings: RedisSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A producer that pushes now and then learns of a refusal at its next push.
    monkeypatch.setattr(pushes, "CONFIRM_AFTER", 0.0)  # every push is "old" at the next
    keys = Keys(redis_settings.queue)
    producer = ListProducer(client, redis_settings)
    try:
        run = producer.open_run()
        producer.put(items(run, 0, 1))
        client.script_flush()  # the next push is refused (NOSCRIPT)...
        producer.put(items(run, 1, 1))
        assert queued_ids(client, keys) == [f"{run}:0"]
        producer.put(items(run, 2, 1))  # ...and sent again before this one goes
        assert producer.unconfirmed == 1
        assert queued_ids(client, keys)[:2] == [f"{run}:0", f"{run}:1"]
    finally:
        producer.close()
