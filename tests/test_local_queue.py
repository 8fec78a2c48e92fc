"""LocalQueue on its own: the wire, the ledger, and why it is not an mp.Queue."""

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

from pcq.core.errors import PcqError
from pcq.core.local.channel import (
    MAX_MESSAGE,
    SENTINEL,
    Ledger,
    LocalQueue,
    encode,
    make_item,
    runs,
)
from pcq.core.transport import Consumer, Item, Producer

CTX = mp.get_context("fork")


def make_queue(total: int = 100, queue_size: int | None = None) -> LocalQueue:
    ledger = Ledger(CTX, total, slots=2, serials=4, producers=1)
    return LocalQueue(CTX, ledger, queue_size=queue_size)


@pytest.fixture
def lq():
    q = make_queue()
    q.attach_producer(0)
    q.attach_consumer(0, 0)  # one object can play both roles in a test
    yield q
    q.close()


def items(first: int, count: int) -> list[Item]:
    return [Item(str(i), f"name-{i}", 1000.0 + i) for i in range(first, first + count)]


def test_satisfies_transport_protocol(lq: LocalQueue) -> None:
    assert isinstance(lq, Producer) and isinstance(lq, Consumer)


def test_put_get_round_trip_keeps_ids_bodies_and_times(lq: LocalQueue) -> None:
    lq.put(items(3, 4))
    got = lq.get(1.0)
    assert got is not None
    assert [(i.id, i.body, i.produced_at, i.deliveries) for i in got] == [
        (str(n), f"name-{n}", 1000.0 + n, 1) for n in range(3, 7)
    ]
    assert lq.ledger.held_by(0)[:2] == (3, 4)  # the claim is recorded while held
    for item in got:
        lq.ack(item)
    assert lq.ledger.held_by(0)[1] == 0  # ... and cleared after the last ack
    assert list(lq.ledger.done[3:7]) == [1, 1, 1, 1]  # serial 0 + 1
    assert lq.ledger.put[0] == 4


def test_get_times_out_empty_and_sentinel_ends(lq: LocalQueue) -> None:
    start = time.monotonic()
    assert lq.get(0.05) == []
    assert time.monotonic() - start < 1.0
    assert lq.send_nowait(SENTINEL)
    assert lq.get(1.0) is None


def test_second_ack_is_a_duplicate_not_a_second_consumption(lq: LocalQueue) -> None:
    lq.put(items(0, 1))
    (item,) = lq.get(1.0) or []
    lq.ack(item)
    lq.ack(item)
    assert lq.ledger.done[0] == 1
    assert lq.ledger.dups[0] == 1


def test_non_consecutive_batch_is_sent_as_runs(lq: LocalQueue) -> None:
    lq.put([*items(0, 2), *items(10, 1)])
    first = lq.get(1.0) or []
    second = lq.get(1.0) or []
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
    q = make_queue(queue_size=1)
    q.attach_producer(0)
    q.attach_consumer(0, 0)
    try:
        q.put(items(0, 1))
        second_put = threading.Event()
        worker = threading.Thread(target=lambda: (q.put(items(1, 1)), second_put.set()))
        worker.start()
        # the queue holds one message: the second put must still be blocked
        assert not second_put.wait(0.3)
        got = q.get(1.0)
        assert got and got[0].id == "0"
        assert second_put.wait(5.0)  # taking one freed the slot
        worker.join(5.0)
        assert [i.id for i in q.get(1.0) or []] == ["1"]
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


def _idle_get(q: LocalQueue, ready: object) -> None:
    q.attach_consumer(1, 1)
    ready.set()  # type: ignore[attr-defined]
    q.get(60.0)


def test_consumer_killed_while_waiting_does_not_block_the_others(lq: LocalQueue) -> None:
    """The mp.Queue failure mode (see the next test) does not exist here."""
    ready = CTX.Event()
    proc = CTX.Process(target=_idle_get, args=(lq, ready))
    proc.start()
    wait_until_blocked(proc, ready)
    os.kill(proc.pid or 0, signal.SIGKILL)
    proc.join(5.0)
    assert proc.exitcode == -signal.SIGKILL
    lq.put(items(0, 1))
    got = lq.get(2.0)
    assert got and got[0].id == "0"


def _idle_mp_get(q: mp.Queue, ready: object) -> None:  # type: ignore[type-arg]
    ready.set()  # type: ignore[attr-defined]
    q.get()


def test_plain_mp_queue_deadlocks_after_the_same_kill() -> None:
    """Why LocalQueue exists: mp.Queue.get holds its read lock while waiting."""
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


def test_split_batch_is_counted_per_message_sent(lq: LocalQueue) -> None:
    big = [Item(str(i), f"{i:04d}" + "y" * 1000, 1.0) for i in range(100)]  # ~100 KB
    lq.put(big)
    assert lq.ledger.put[0] == 100
    got: list[Item] = []
    while len(got) < 100:
        part = lq.get(1.0)
        assert part, "a message went missing"
        got.extend(part)
        for item in part:
            lq.ack(item)
    assert [i.id for i in got] == [str(i) for i in range(100)]
