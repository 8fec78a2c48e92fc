"""The local batch fast path: ItemRun, ack_many and consume's batch loop."""

from __future__ import annotations

import pickle

import pytest
from fixtures_local import LocalRoles, make_roles, run_local_cli

from pcq.core.console import Console
from pcq.core.local.channel import MAX_MESSAGE, SENTINEL
from pcq.core.local.items import ItemRun, item_ids, make_items
from pcq.core.pattern import consume_batches, produce_batches
from pcq.core.transport import Item


def bodies(first: int, count: int, pad: str = "") -> list[str]:
    return [f"name-{i}{pad}" for i in range(first, first + count)]


def test_item_run_reads_like_a_list_of_items() -> None:
    run = ItemRun(5, ["a", "b", "c"], 12.5, 2)
    expected = [Item("5", "a", 12.5, 2), Item("6", "b", 12.5, 2), Item("7", "c", 12.5, 2)]
    assert len(run) == 3
    assert list(run) == expected
    assert (run[0], run[-1], run[1:]) == (expected[0], expected[2], expected[1:])
    with pytest.raises(IndexError):
        run[3]
    assert type(run[0]) is Item


def test_make_items_equals_the_constructor() -> None:
    got = make_items(98, ["x", "y", "z"], [1.0, 2.0, 3.0], 4)
    assert got == [Item("98", "x", 1.0, 4), Item("99", "y", 2.0, 4), Item("100", "z", 3.0, 4)]
    assert all(type(item) is Item for item in got)


@pytest.mark.parametrize("first", [0, 1, 7, 99, 100, 101, 150, 199, 1234, 1_234_567])
@pytest.mark.parametrize("count", [0, 1, 2, 99, 100, 101, 250])
def test_item_ids_equal_str(first: int, count: int) -> None:
    assert item_ids(first, count) == [str(i) for i in range(first, first + count)]


def test_item_run_round_trip_with_one_stamp(roles: LocalRoles) -> None:
    roles.run_producer.put(ItemRun(3, bodies(3, 4), 1000.0))
    got = roles.consumer.get(1.0)
    assert got == [Item(str(n), f"name-{n}", 1000.0, 1) for n in range(3, 7)]
    assert roles.state.put[0] == 4
    assert list(roles.state.produced_at[3:7]) == [1000.0] * 4


def test_item_run_over_the_message_cap_is_split_and_counted(roles: LocalRoles) -> None:
    big = bodies(0, 100, pad="z" * 1000)  # ~100 KB: over the 64 KiB cap
    roles.run_producer.put(ItemRun(0, big, 1.0))
    assert roles.state.put[0] == 100
    got: list[Item] = []
    while len(got) < 100:
        part = roles.consumer.get(1.0)
        assert part, "a message went missing"
        got.extend(part)
    assert [i.body for i in got] == big


def test_item_run_under_queue_size_takes_a_slot_per_message() -> None:
    q = make_roles(queue_size=2)
    sem = q.channel.sem
    try:
        q.run_producer.put(ItemRun(0, bodies(0, 5), 1.0))
        q.run_producer.put(ItemRun(5, bodies(5, 5), 1.0))
        assert sem is not None and not sem.acquire(False)  # both slots taken
        assert [i.id for i in q.consumer.get(1.0) or []] == [str(n) for n in range(5)]
        assert sem.acquire(False)  # the consumer gave one back
    finally:
        q.close()


def test_ack_many_records_a_run_in_one_go_and_clears_the_claim(roles: LocalRoles) -> None:
    roles.run_producer.put(ItemRun(10, bodies(10, 6), 1.0))
    got = roles.consumer.get(1.0) or []
    roles.consumer.ack_many(got[:4])
    assert roles.state.held_by(0)[:2] == (10, 6)  # two items still in hand
    assert list(roles.state.done[10:16]) == [1, 1, 1, 1, 0, 0]
    roles.consumer.ack_many(got[4:])
    assert roles.state.held_by(0)[1] == 0
    assert list(roles.state.done[10:16]) == [1] * 6
    assert roles.state.dups[0] == 0


def test_ack_many_counts_an_item_done_elsewhere_as_a_duplicate(roles: LocalRoles) -> None:
    roles.run_producer.put(ItemRun(0, bodies(0, 4), 1.0))
    got = roles.consumer.get(1.0) or []
    roles.state.done[2] = 3  # another consumer (serial 2) handled item 2 first
    roles.consumer.ack_many(got)
    assert list(roles.state.done[0:4]) == [1, 1, 3, 1]  # the first handler keeps the credit
    assert roles.state.dups[0] == 1
    assert roles.state.held_by(0)[1] == 0


def test_ack_many_of_non_consecutive_items_goes_item_by_item(roles: LocalRoles) -> None:
    roles.run_producer.put(ItemRun(0, bodies(0, 5), 1.0))
    got = roles.consumer.get(1.0) or []
    roles.consumer.ack_many([got[0], got[2], got[4]])
    assert list(roles.state.done[0:5]) == [1, 0, 1, 0, 1]
    roles.consumer.ack_many([])
    roles.consumer.ack_many([got[1], got[3]])
    assert roles.state.held_by(0)[1] == 0


def _fail_on_3(item: Item) -> None:
    if item.id == "3":
        raise ValueError("no 3")


def test_fast_path_nacks_a_failure_and_acks_the_rest(roles: LocalRoles) -> None:
    roles.run_producer.put(ItemRun(0, bodies(0, 6), 1.0))
    assert roles.port.send_nowait(SENTINEL)
    stats = consume_batches(roles.consumer, _fail_on_3, Console(quiet=True), poll=0.1)
    assert (stats.handled, stats.failed, stats.released) == (5, 1, 0)
    assert list(roles.state.done[0:6]) == [1, 1, 1, 0, 1, 1]
    assert roles.state.held_by(0)[1] == 0
    kind, first, deliveries, sent, why = pickle.loads(roles.channel.ev_rx.recv(MAX_MESSAGE))
    assert (kind, first, deliveries, sent, why) == ("retry", 3, 1, ["name-3"], "ValueError: no 3")


def test_fast_path_stop_acks_what_was_handled_and_releases_the_rest(roles: LocalRoles) -> None:
    roles.run_producer.put(ItemRun(0, bodies(0, 6), 1.0))
    seen: list[str] = []
    stats = consume_batches(roles.consumer, lambda item: seen.append(item.id), Console(quiet=True),
                            stop=lambda: len(seen) >= 2, poll=0.1)
    assert seen == ["0", "1"]
    assert (stats.handled, stats.failed, stats.released) == (2, 0, 4)
    assert list(roles.state.done[0:6]) == [1, 1, 0, 0, 0, 0]
    assert roles.state.held_by(0)[1] == 0
    kind, first, deliveries, sent, _ = pickle.loads(roles.channel.ev_rx.recv(MAX_MESSAGE))
    assert (kind, first, deliveries, sent) == ("requeue", 2, 0, bodies(2, 4))


def test_produce_batches_puts_each_run_and_counts_items(roles: LocalRoles) -> None:
    runs = [ItemRun(0, bodies(0, 3), 1.0), ItemRun(3, [], 1.0), ItemRun(3, bodies(3, 2), 2.0)]
    assert produce_batches(roles.run_producer, runs, Console(quiet=True)) == 5
    assert [i.id for i in roles.consumer.get(1.0) or []] == ["0", "1", "2"]
    assert [i.id for i in roles.consumer.get(1.0) or []] == ["3", "4"]
    assert roles.consumer.get(0.05) == []


def test_produce_batches_stops_before_the_next_batch(roles: LocalRoles) -> None:
    runs = [ItemRun(0, bodies(0, 3), 1.0), ItemRun(3, bodies(3, 3), 1.0)]
    calls = iter([False, True])
    stop = lambda: next(calls)
    assert produce_batches(roles.run_producer, runs, Console(quiet=True), stop=stop) == 3


def test_kill_mid_batch_on_the_fast_path_redelivers_the_unacked_items() -> None:
    """--ack batch, batch 10: the consumer handles 4 items, dies in the 5th.

    None of its batch was acknowledged yet (acks go per batch), so all of it,
    the 4 handled items included, is put back and counted as redelivered.
    """
    run = run_local_cli(
        "--items", "40", "--batch", "10", "--consumers", "1", "--max-delay", "0.001",
        "--kill-consumer-after", "5", "--ack", "batch", "--quiet", "--json",
    )
    assert run.code == 0, run.stderr
    data = run.data
    assert (data["consumed"], data["lost"], data["duplicates"]) == (40, 0, 0)
    assert data["replacements"] == 1
    assert data["redelivered"] >= 5  # the 4 handled but unacknowledged, and the one in hand
