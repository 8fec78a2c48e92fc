"""The local run's ledger in shared memory: counting it at the end of a run."""

from __future__ import annotations

import multiprocessing as mp
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from pcq.core.local.shared_state import SharedState


def _state(values: list[int], serials: int) -> SharedState:
    state = SharedState(mp.get_context("fork"), len(values), 1, serials, 1)
    for i, v in enumerate(values):
        state.done[i] = v
    return state


def _expected(values: list[int]) -> dict[int, int]:
    return {v: n for v, n in Counter(values).items() if v != 0}


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 253).flatmap(
    lambda s: st.tuples(st.just(s), st.lists(st.integers(-1, s), max_size=300))
))  # fmt: skip
def test_done_counts_matches_a_plain_count(case: tuple[int, list[int]]) -> None:
    serials, values = case
    assert _state(values, serials).done_counts(serials) == _expected(values)


def test_done_counts_past_one_byte_counts_one_by_one() -> None:
    # Serial 299 stores 300: its cell's low byte (44) would pass for serial 43's.
    values = [300, 44, 44, -1, 0, 256, 1]
    assert _state(values, 300).done_counts(300) == _expected(values)


def test_done_counts_ignores_cells_past_the_run() -> None:
    state = _state([1, 2, 0], 2)
    assert state.done_counts(2) == {1: 1, 2: 1}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0, 1, 2, 5, 256, 65536, 300, -1]), max_size=200),
       st.integers(0, 210))  # fmt: skip
def test_first_undone_is_the_first_zero_cell_from_start(values: list[int], start: int) -> None:
    # 256 after a small value puts four zero bytes across two cells: not a zero cell.
    expected = next((i for i in range(start, len(values)) if values[i] == 0), len(values))
    assert _state(values, 300).first_undone(start) == expected


def test_first_undone_skips_zero_bytes_that_straddle_two_cells() -> None:
    assert _state([5, 256, 7, 0], 2).first_undone(0) == 3


def test_first_undone_across_chunks() -> None:
    values = [1] * 70_000
    values[65_535], values[65_536], values[69_999] = 5, 256, 0
    state = _state(values, 2)
    assert state.first_undone(0) == 69_999
    state.done[69_999] = 1
    assert state.first_undone(10) == 70_000
