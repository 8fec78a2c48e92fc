"""A consumer's claims in flight (pcq.core.redis_list.claims, DEPTH) against a real redis-server.

A fast consumer keeps DEPTH claims travelling while it handles what it has.
When the connection breaks under them, Redis may have applied all of them or
none; either way the consumer must end up holding what its processing list
holds, handle every item once, and leave nothing behind.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from fixtures_redis import quiet
from redis_procs import held_items

from pcq.core.pattern import produce
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.claims import DEPTH
from pcq.core.redis_list.consumer import ListConsumer
from pcq.core.redis_list.producer import ListProducer
from pcq.core.redis_list.tally import read_tally
from pcq.core.transport import Item

N = 60


def wait_for(check: object, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


Setup = tuple[ListConsumer, Keys, str, list[str]]  # the consumer, keys, run, ids handled so far


@pytest.fixture
def in_flight(client: redis.Redis, redis_settings: RedisSettings, request: pytest.FixtureRequest
              ) -> Iterator[Setup]:  # fmt: skip
    """N items queued in batches of ``request.param``; a consumer with claims in flight, applied."""
    batch = request.param
    settings = redis_settings.with_overrides(batch=batch)
    producer = ListProducer(client, settings)
    run = producer.open_run()
    produce(producer, [Item(f"{run}:{i}", f"name {i}", time.time()) for i in range(N)], quiet(),
            batch=batch)  # fmt: skip
    producer.close()
    consumer, keys, seen = ListConsumer(client, settings, consumer="c1"), Keys(settings.queue), []
    try:
        claims_in_flight(client, consumer, keys, batch, seen)
        yield consumer, keys, run, seen
    finally:
        consumer.close()


def handle(consumer: ListConsumer, seen: list[str], gets: int = 1) -> None:
    for _ in range(gets):
        for item in consumer.get(0.5) or []:
            seen.append(item.id)
            consumer.ack(item)


def claims_in_flight(client: redis.Redis, consumer: ListConsumer, keys: Keys, batch: int,
                     seen: list[str]) -> None:  # fmt: skip
    """Two gets back to back (the second sends DEPTH claims before it returns), then
    wait until Redis has applied them: the consumer's list holds the batch it has
    and DEPTH more, of which it has read nothing yet."""
    handle(consumer, seen, gets=2)
    wait_for(lambda: held_items(client, keys.processing("c1")) == (1 + DEPTH) * batch,
             "the claims in flight to be applied")  # fmt: skip


def drain(consumer: ListConsumer, seen: list[str]) -> None:
    deadline = time.monotonic() + 10
    while len(seen) < N:
        assert time.monotonic() < deadline, f"{len(seen)} of {N} items handled"
        handle(consumer, seen)
    consumer.flush()


def check_once(client: redis.Redis, keys: Keys, run: str, seen: list[str]) -> None:
    assert sorted(seen) == sorted(f"{run}:{i}" for i in range(N))
    tally = read_tally(client, keys, run)
    assert (tally["consumed"], tally["duplicates"], tally["redelivered"], tally["lost"]) == (N, 0, 0, 0)
    assert client.llen(keys.queue) == 0 and held_items(client, keys.processing("c1")) == 0


@pytest.mark.parametrize("in_flight", [1, 3], indirect=True)
def test_claims_applied_before_the_connection_broke_are_held_once(
    client: redis.Redis, in_flight: Setup
) -> None:
    consumer, keys, run, seen = in_flight
    assert client.client_kill_filter(_type="normal", skipme=True) >= 1  # their replies with it
    drain(consumer, seen)
    check_once(client, keys, run, seen)


@pytest.mark.parametrize("in_flight", [1, 3], indirect=True)
def test_claims_that_never_ran_are_run_again(client: redis.Redis, in_flight: Setup) -> None:
    consumer, keys, run, seen = in_flight
    before = client.lrange(keys.processing("c1"), 0, -1)
    client.client_pause(5000, all=False)  # write commands (claims among them) wait in Redis
    try:
        # Lands the oldest claim in flight (its reply is there) and sends one
        # more, which Redis holds unapplied; the other stays applied, unread.
        handle(consumer, seen)
        wait_for(lambda: any("b" in c["flags"] and c["cmd"] == "evalsha" for c in client.client_list()),
                 "the claim to wait in Redis")  # fmt: skip
        assert client.client_kill_filter(_type="normal", skipme=True) >= 1  # dropped unapplied
    finally:
        client.client_unpause()
    assert client.lrange(keys.processing("c1"), 0, -1) == before  # the claim never ran
    drain(consumer, seen)
    check_once(client, keys, run, seen)


@pytest.mark.parametrize("in_flight", [1, 3], indirect=True)
def test_an_interrupt_with_claims_in_flight_loses_nothing(
    client: redis.Redis, redis_settings: RedisSettings, in_flight: Setup,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer, keys, run, seen = in_flight

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(consumer.link, "receive", interrupted)
    with pytest.raises(KeyboardInterrupt):
        consumer.get(0.5)  # the replies of claims Redis applied are lost
    monkeypatch.undo()
    # What those claims took is listed as c1's but not held: shutting down must
    # not drop the list whole, so c1 stays registered and a reaper hands it back.
    consumer.close()
    assert held_items(client, keys.processing("c1")) > 0
    other = ListConsumer(client, redis_settings, consumer="c2")
    try:
        other.reap("c1")
        drain(other, seen)
    finally:
        other.close()
    assert sorted(seen) == sorted(f"{run}:{i}" for i in range(N))
    tally = read_tally(client, keys, run)
    assert (tally["consumed"], tally["duplicates"], tally["lost"]) == (N, 0, 0)
