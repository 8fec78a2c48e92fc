"""The local transport's roles on their own: the wire, the shared state, and why it is
not an mp.Queue."""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import queue as stdlib_queue
import signal
import threading
import time

import psutil
import pytest
from fixtures_local import LocalRoles, make_roles

from pcq.core.errors import PcqError
from pcq.core.local.channel import MAX_MESSAGE, SENTINEL, Channel, encode, runs
from pcq.core.local.consumer import LocalConsumer
from pcq.core.local.items import make_item
from pcq.core.transport import Consumer, Item, Producer

CTX = mp.get_context("fork")


def items(first: int, count: int) -> list[Item]:
    return [Item(str(i), f"name-{i}", 1000.0 + i) for i in range(first, first + count)]


def test_each_role_satisfies_its_protocol(roles: LocalRoles) -> None:
    assert isinstance(roles.producer, Producer)
    assert isinstance(roles.run_producer, Producer)
    assert isinstance(roles.consumer, Consumer)


def test_put_get_round_trip_keeps_ids_bodies_and_times(roles: LocalRoles) -> None:
    roles.producer.put(items(3, 4))
    got = roles.consumer.get(1.0)
    assert got is not None
    assert [(i.id, i.body, i.produced_at, i.deliveries) for i in got] == [
        (str(n), f"name-{n}", 1000.0 + n, 1) for n in range(3, 7)
    ]
    assert roles.state.held_by(0)[:2] == (3, 4)  # the claim is recorded while held
    for item in got:
        roles.consumer.ack(item)
    assert roles.state.held_by(0)[1] == 0  # ... and cleared after the last ack
    assert list(roles.state.done[3:7]) == [1, 1, 1, 1]  # serial 0 + 1
    assert roles.state.put[0] == 4


def test_get_times_out_empty_and_sentinel_ends(roles: LocalRoles) -> None:
    start = time.monotonic()
    assert roles.consumer.get(0.05) == []
    assert time.monotonic() - start < 1.0
    assert roles.port.send_nowait(SENTINEL)
    assert roles.consumer.get(1.0) is None


def test_second_ack_is_a_duplicate_not_a_second_consumption(roles: LocalRoles) -> None:
    roles.producer.put(items(0, 1))
    (item,) = roles.consumer.get(1.0) or []
    roles.consumer.ack(item)
    roles.consumer.ack(item)
    assert roles.state.done[0] == 1
    assert roles.state.dups[0] == 1


def test_non_consecutive_batch_is_sent_as_runs(roles: LocalRoles) -> None:
    roles.producer.put([*items(0, 2), *items(10, 1)])
    first = roles.consumer.get(1.0) or []
    second = roles.consumer.get(1.0) or []
    assert [i.id for i in first] == ["0", "1"]
    assert [i.id for i in second] == ["10"]


def test_large_batch_is_split_under_the_message_cap() -> None:
    bodies = [f"{i:04d}" + "x" * 1000 for i in range(200)]  # ~200 KB: over the 64 KiB cap
    messages = encode(0, 0, bodies, False)
    assert len(messages) > 1
    assert all(len(m) <= MAX_MESSAGE for m in messages)
    decoded = [pickle.loads(m) for m in messages]
    assert [b for _, _, part, _ in decoded for b in part] == bodies
    assert [first for first, _, _, _ in decoded] == sorted(first for first, _, _, _ in decoded)


def test_single_oversized_item_is_refused() -> None:
    with pytest.raises(PcqError, match="too large"):
        encode(0, 0, ["x" * (MAX_MESSAGE + 1)], False)


def test_runs() -> None:
    assert list(runs([1, 2, 3, 7, 9, 10])) == [(1, 3), (7, 1), (9, 2)]
    assert list(runs([])) == []


def test_queue_size_blocks_the_producer_until_a_consumer_takes_one() -> None:
    q = make_roles(queue_size=1)
    try:
        q.producer.put(items(0, 1))
        second_put = threading.Event()
        worker = threading.Thread(target=lambda: (q.producer.put(items(1, 1)), second_put.set()))
        worker.start()
        # the queue holds one message: the second put must still be blocked
        assert not second_put.wait(0.3)
        got = q.consumer.get(1.0)
        assert got and got[0].id == "0"
        assert second_put.wait(5.0)  # taking one freed the slot
        worker.join(5.0)
        assert [i.id for i in q.consumer.get(1.0) or []] == ["1"]
    finally:
        q.close()


def wait_until_blocked(proc: mp.process.BaseProcess, ready: object) -> None:
    """Wait until the child said it is about to block, then until the kernel shows it asleep."""
    assert ready.wait(10.0)  # type: ignore[attr-defined]
    child = psutil.Process(proc.pid)
    deadline = time.monotonic() + 10.0
    while child.status() != psutil.STATUS_SLEEPING:
        assert time.monotonic() < deadline, "child never blocked"
        time.sleep(0.01)


def _idle_get(channel: Channel, ready: object) -> None:
    consumer = LocalConsumer(channel, 1, 1)
    ready.set()  # type: ignore[attr-defined]
    consumer.get(60.0)


def test_consumer_killed_while_waiting_does_not_block_the_others(roles: LocalRoles) -> None:
    """The mp.Queue failure mode (see the next test) does not exist here."""
    ready = CTX.Event()
    proc = CTX.Process(target=_idle_get, args=(roles.channel, ready))
    proc.start()
    wait_until_blocked(proc, ready)
    os.kill(proc.pid or 0, signal.SIGKILL)
    proc.join(5.0)
    assert proc.exitcode == -signal.SIGKILL
    roles.producer.put(items(0, 1))
    got = roles.consumer.get(2.0)
    assert got and got[0].id == "0"


def _idle_mp_get(q: mp.Queue, ready: object) -> None:  # type: ignore[type-arg]
    ready.set()  # type: ignore[attr-defined]
    q.get()


def test_plain_mp_queue_deadlocks_after_the_same_kill() -> None:
    """Why the local channel exists: mp.Queue.get holds its read lock while waiting."""
    q: mp.Queue = CTX.Queue()  # type: ignore[type-arg]
    ready = CTX.Event()
    proc = CTX.Process(target=_idle_mp_get, args=(q, ready))
    proc.start()
    wait_until_blocked(proc, ready)
    os.kill(proc.pid or 0, signal.SIGKILL)
    proc.join(5.0)
    q.put("item")
    with pytest.raises(stdlib_queue.Empty):
        q.get(timeout=0.5)  # the item is there, but the dead process holds the lock
    q.close()
    q.join_thread()


def test_fast_item_construction_equals_the_constructor() -> None:
    fast = make_item("7", "Meatwad", 12.5, 2)
    assert type(fast) is Item
    assert fast == Item("7", "Meatwad", 12.5, 2)
    assert fast.delivered() == Item("7", "Meatwad", 12.5, 3)
    with pytest.raises(AttributeError):
        fast.body = "Carl"  # type: ignore[misc]  # still frozen


def test_split_batch_is_counted_per_message_sent(roles: LocalRoles) -> None:
    big = [Item(str(i), f"{i:04d}" + "y" * 1000, 1.0) for i in range(100)]  # ~100 KB
    roles.producer.put(big)
    assert roles.state.put[0] == 100
    got: list[Item] = []
    while len(got) < 100:
        part = roles.consumer.get(1.0)
        assert part, "a message went missing"
        got.extend(part)
        for item in part:
            roles.consumer.ack(item)
    assert [i.id for i in got] == [str(i) for i in range(100)]
