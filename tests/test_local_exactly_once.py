"""Exactly-once, checked on the ledger, over random shapes of a local run."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pcq.core.local.plan import Plan
from pcq.core.local.run import LocalConfig, run_local


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    producers=st.integers(1, 4),
    consumers=st.integers(1, 4),
    items=st.integers(0, 80),
    batch=st.integers(1, 9),
    queue_size=st.one_of(st.none(), st.integers(1, 4)),
)
def test_every_item_is_consumed_exactly_once(
    producers: int, consumers: int, items: int, batch: int, queue_size: int | None
) -> None:
    cfg = LocalConfig(
        producers=producers, consumers=consumers, items=items, batch=batch,
        queue_size=queue_size, max_delay=0, quiet=True, json=True, start_method="fork",
    )
    result = run_local(cfg)
    assert result.exit_code == 0
    assert result.missing == []  # every id 0 .. items-1 is marked done in the ledger
    assert (result.produced, result.consumed, result.lost) == (items, items, 0)
    assert (result.duplicates, result.redelivered, result.dead_letters) == (0, 0, [])
    assert len(result.per_consumer) == consumers
    assert sum(result.per_consumer.values()) == items


def test_plan_splits_items_across_producers_without_gaps() -> None:
    plan = Plan.build(producers=3, items=10)
    assert plan.ranges == ((0, 4), (4, 7), (7, 10))
    seed = Plan.build()
    assert seed.ranges == ((0, 4), (4, 9), (9, 14))  # one producer per seed list
    assert seed.bodies(4, 2) == ["Early", "Rusty"]
    more = Plan.build(producers=5, items=3)
    assert [end - start for start, end in more.ranges] == [1, 1, 1, 0, 0]
