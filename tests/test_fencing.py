"""Fencing a paused consumer: past its heartbeat's lifetime, what it held is not its own.

A consumer paused longer than its heartbeat TTL (SIGSTOP here; ``docker pause``
in ``test_reliability_docker.py``) is reaped by the others: its items go back to
the queue and are handled elsewhere. Once it runs again it must not start
handling any of them; the item in hand when the pause began may complete. Then
it rejoins (core/redis_list/lease.py). The first tests drive one consumer in
this process, step by step; the last one pauses a real ``pcq consume`` process
mid-run and judges by the outside ledger.
"""

from __future__ import annotations

import signal
import time
from typing import TYPE_CHECKING, Any

import pytest
import redis
from audit import HANDLED
from redis_procs import wait_until

from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.acked import is_acked
from pcq.core.redis_list.consumer import ListConsumer
from pcq.core.redis_list.producer import ListProducer
from pcq.core.redis_list.tally import read_tally
from pcq.core.transport import Item

if TYPE_CHECKING:  # imported as a plugin below: importing it here would skip its rewrite
    from fixtures_redis import RedisServer
    from fixtures_reliability import Crew

pytest_plugins = ["fixtures_reliability"]
pytestmark = pytest.mark.timeout(300)

TTL = 1.0


def items(run: str, n: int) -> list[Item]:
    return [Item(f"{run}:{i}", f"item {i}", time.time()) for i in range(n)]


def claimed_then_expired(client: redis.Redis, settings: RedisSettings,
                         lines: list[str]) -> tuple[ListConsumer, list[Item], Keys]:  # fmt: skip
    """Consumer "a" claims a batch of 3, then beats no more (as if paused) until its key expires."""
    keys = Keys(settings.queue)
    producer = ListProducer(client, settings)
    producer.put(items(producer.open_run(), 3))
    producer.flush()
    a = ListConsumer(client, settings, consumer="a", notify=lines.append)
    a.beat(join=True)  # what start() does, without the heartbeat thread
    held = a._claims.claim(3)
    assert len(held) == 3 and a.holds(held[0])
    wait_until(lambda: not client.exists(keys.heartbeat("a")), 10 * TTL, "a's heartbeat to expire")
    return a, held, keys


def reaped_by_b(client: redis.Redis, settings: RedisSettings
                ) -> tuple[ListConsumer, list[Item], Keys, ListConsumer]:  # fmt: skip
    """As :func:`claimed_then_expired`, then consumer "b" reaps "a" (its batch goes back)."""
    a, held, keys = claimed_then_expired(client, settings, [])
    b = ListConsumer(client, settings, consumer="b")
    b.beat(join=True)
    assert b.reap() == (1, 3, 0)
    return a, held, keys, b


def test_a_reaped_consumer_lets_go_of_its_batch_and_rejoins(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings = redis_settings.with_overrides(batch=3, heartbeat_ttl=TTL)
    lines: list[str] = []
    a, held, keys = claimed_then_expired(client, settings, lines)
    b = ListConsumer(client, settings, consumer="b")
    b.beat(join=True)
    assert b.reap() == (1, 3, 0)  # "a" looks dead: its batch goes back

    assert not a.holds(held[1])  # a beat finds "a" reaped: the item is someone else's
    assert a.lease.lost
    assert not client.exists(keys.heartbeat("a")), "the beat brought a reaped consumer back"
    assert not client.sismember(keys.consumers, "a")
    a.release(held[1:])  # lets go without handing anything back a second time
    again = b._claims.claim(3)
    assert [i.id for i in again] == [i.id for i in held] and all(i.deliveries == 2 for i in again)
    assert client.llen(keys.queue) == 0

    assert a.get(0.05) == []  # rejoins before it claims
    assert not a.lease.lost and client.sismember(keys.consumers, "a")
    assert client.exists(keys.heartbeat("a"))
    assert any("lost its lease" in line for line in lines), lines
    a.close()
    b.close()


def test_a_late_beat_keeps_what_nobody_reaped(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    settings = redis_settings.with_overrides(batch=3, heartbeat_ttl=TTL)
    a, held, keys = claimed_then_expired(client, settings, [])
    # No reaper ran meanwhile: nothing was taken, so the items are still ours.
    assert a.holds(held[1]) and not a.lease.lost
    assert client.exists(keys.heartbeat("a")) and client.llen(keys.processing("a")) == 1
    for item in held:
        a.ack(item)
    a.close()
    assert read_tally(client, keys, held[0].id.rpartition(":")[0])["consumed"] == 3


def test_an_acknowledgement_after_the_reap_does_not_bring_the_consumer_back(
    client: redis.Redis, redis_settings: RedisSettings
) -> None:
    # The item in hand when the pause began completes; its acknowledgement is
    # recorded, but the claim carrying it must not register "a" again (that
    # would make the next lease check pass for items already handed out).
    a, held, keys, b = reaped_by_b(client, redis_settings.with_overrides(batch=3, heartbeat_ttl=TTL))
    a.ack(held[0])
    a.flush()
    assert is_acked(client, keys, held[0].id)
    assert not client.sismember(keys.consumers, "a")
    assert not a.holds(held[1])
    a.close()
    b.close()


@pytest.mark.parametrize("noticed_by", ["flush", "beat"])
def test_a_late_acknowledgement_keeps_the_redelivered_copy_counted(
    client: redis.Redis, redis_settings: RedisSettings, noticed_by: str
) -> None:
    # "a" handled item 0 while paused, but its acknowledgement reaches Redis only
    # after a reaper requeued the batch (deliveries 1 each). The copy in the queue
    # is still a redelivery: the late acknowledgement must not wipe its count, or
    # its next handler would see delivery 1 again (docker pause of Redis, CI).
    # "flush": the acknowledgement leaves at once (a fenced call); "beat": it waits
    # in the buffer, a lease check notices the reap, and it leaves with the rejoin.
    a, held, keys, b = reaped_by_b(client, redis_settings.with_overrides(batch=3, heartbeat_ttl=TTL))
    if noticed_by == "beat":
        a._last_settled = time.monotonic()  # a quick item: its acknowledgement is buffered
    a.ack(held[0])
    if noticed_by == "flush":
        a.flush()
        again = b._claims.claim(3)
    else:
        assert a._acks.ids, "the acknowledgement left at once"
        assert not a.holds(held[1])
        again = a._claim(0.05)  # get() without start(): rejoins (acknowledging), then claims
    assert is_acked(client, keys, held[0].id)
    assert sorted(i.id for i in again) == sorted(i.id for i in held)
    assert {i.id: i.deliveries for i in again} == {i.id: 2 for i in held}
    a.close()
    b.close()


def test_sigstop_past_the_ttl_mid_batch_handled_twice_at_most_once(
    redis_server: RedisServer, crew: Any
) -> None:
    """3 consumers, batches of 10, 20 ms per item; one is SIGSTOPped until the others
    have reaped it and handled what it held, then SIGCONTed."""
    settings = redis_server.settings(heartbeat_ttl=2.0, batch=10, high_water=2000)
    team: Crew = crew(settings)
    (team.dir / "slow").touch()
    victim = team.consumer(delay=0.02)
    for _ in range(2):
        team.consumer(delay=0.02)
    producer = team.producer(900, PCQ_BATCH="50")
    with redis_server.client() as client:
        def handled_by_victim() -> int:
            return sum(1 for row in team.ledger.rows(HANDLED) if row[1].endswith(f":{victim.pid}"))

        # Early in one of its batches (1 or 2 of 10 handled), so that most of the batch
        # is still unhandled: that is what a paused consumer must not handle once back.
        wait_until(lambda: handled_by_victim() >= 15 and handled_by_victim() % 10 in (1, 2), 60,
                   "the victim early in a batch")
        victim.send_signal(signal.SIGSTOP)
        paused = time.monotonic()
        try:
            wait_until(lambda: int(client.hget(team.keys.stats, "reaped") or 0) >= 1, 30,
                       "the others to reap the paused consumer")
            # ... and to handle what it held (back at the head of the queue).
            wait_until(lambda: sum(1 for row in team.ledger.rows(HANDLED) if row[2] != "1") >= 5,
                       30, "the victim's items handled elsewhere")
        finally:
            victim.send_signal(signal.SIGCONT)
        pause = time.monotonic() - paused
        assert team.wait_all([producer], 120) == [0], team.logs()[-3000:]
        assert team.wait_all(team.consumers, 120) == [0, 0, 0], team.logs()[-3000:]
        tally = read_tally(client, team.keys, team.run_id())
    report = team.ledger.report()
    print(f"paused {pause:.1f}s; {report.summary()}; tally {tally}")
    report.assert_sound(duplicates_allowed=1)  # at most the item in hand
    assert tally["redelivered"] >= 5 and tally["lost"] == 0, tally
    assert "lost its lease" in team.logs()
