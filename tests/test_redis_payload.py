"""Payload schema v1 and RedisSettings (pure functions: no server needed)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pcq.core.errors import UsageProblem
from pcq.core.redis_common.payload import (
    BadPayload,
    _decode_json,
    dead_record,
    decode,
    decode_batch,
    encode,
    encode_bodies,
    encode_many,
)
from pcq.core.redis_common.settings import RedisSettings, redact_url
from pcq.core.transport import Item

RUN = "0123abcdef01"
CAP = 64 * 1024


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=0, max_value=10**12),
    body=st.text(max_size=200),
    produced_at=st.floats(allow_nan=False, allow_infinity=False),
)
def test_round_trip(n: int, body: str, produced_at: float) -> None:
    item = Item(f"{RUN}:{n}", body, produced_at)
    got = decode(encode(item, RUN, CAP), CAP, deliveries=3)
    assert (got.id, got.body, got.produced_at, got.deliveries) == (item.id, body, produced_at, 3)


def test_encoding_is_plain_json_with_the_documented_keys() -> None:
    raw = encode(Item(f"{RUN}:7", "Meatwad", 1732540000.5), RUN, CAP)
    assert json.loads(raw) == {
        "v": 1, "id": f"{RUN}:7", "run": RUN, "body": "Meatwad",
        "produced_at": 1732540000.5, "deliveries": 0,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        (Item("other:1", "x", 1.0), "is not '<run>:<n>'"),
        (Item(f"{RUN}:x1", "x", 1.0), "is not '<run>:<n>'"),
        (Item(f"{RUN}:1", "x", math.inf), "finite"),
        (Item(f"{RUN}:1", "x" * CAP, 1.0), "exceeds"),
    ],
)
def test_encode_refuses(item: Item, problem: str) -> None:
    with pytest.raises(BadPayload, match=problem):
        encode(item, RUN, CAP)


GOOD = {"v": 1, "id": f"{RUN}:1", "run": RUN, "body": "b", "produced_at": 1.5, "deliveries": 0}


def variant(**changes: object) -> bytes:
    obj = {**GOOD, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "not JSON"),
        (b"", "not JSON"),
        (b'{"v":1} trailing', "not JSON"),
        (b"[" * 50_000, "not JSON: nested too deeply"),
        (b"\xff\xfe\x00", "invalid UTF-8 at byte 0"),
        (b"x" * (CAP + 1), "oversize"),
        (b"[1, 2]", "wrong schema: expected a JSON object"),
        (variant(v=2), "unsupported version"),
        (variant(v=True), "unsupported version"),
        (variant(extra=1), "unexpected keys ['extra']"),
        (variant(body=...), "missing keys ['body']"),
        (variant(body=5), "'body' must be a string"),
        (variant(run="bad run!"), "'run'"),
        (variant(id="someone-else:1"), "'id'"),
        (variant(id=f"{RUN}:-1"), "'id'"),
        (variant(produced_at="yesterday"), "produced_at"),
        (variant(produced_at=True), "produced_at"),
        (b'{"v":1,"id":"' + RUN.encode() + b':1","run":"' + RUN.encode()
         + b'","body":"b","produced_at":NaN,"deliveries":0}', "produced_at"),
        (variant(deliveries=-1), "deliveries"),
        (variant(deliveries=1.5), "deliveries"),
        (b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00\x8c\x07Meatwad\x94.", "invalid UTF-8"),  # a pickle
    ],
)  # fmt: skip
def test_decode_rejects_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(BadPayload) as info:
        decode(raw, CAP)
    assert reason in str(info.value)
    assert "\n" not in str(info.value)


def test_decode_accepts_surrounding_whitespace() -> None:
    item = decode(b"  " + variant() + b"\n", CAP)
    assert item.id == f"{RUN}:1" and item.deliveries == 1


def test_dead_record_keeps_the_payload() -> None:
    record = json.loads(dead_record(b"\xffbad", "invalid UTF-8 at byte 0", "h:1", 12.3456, id=None))
    assert record["payload_b64"] == "/2JhZA==" and record["reason"].startswith("invalid")
    assert record["at"] == 12.346 and record["consumer"] == "h:1"
    assert json.loads(dead_record(b"text", "r", "h:1", 0.0))["payload"] == "text"


def test_settings_from_env_and_overrides() -> None:
    env = {
        "REDIS_URL": "redis://u:p%40ss@example:6380/2", "PCQ_QUEUE": "jobs", "PCQ_BATCH": "50",
        "PCQ_MAX_DELIVERIES": "3", "PCQ_HIGH_WATER": "500", "PCQ_HEARTBEAT_TTL": "2.5",
        "PCQ_MAX_PAYLOAD_BYTES": "1024", "PCQ_MAX_DELAY": "0", "PCQ_ITEMS": "10",
        "PCQ_REDIS_RETRIES": "0",
    }  # fmt: skip
    s = RedisSettings.from_env(env)
    assert (s.queue, s.batch, s.max_deliveries, s.high_water) == ("jobs", 50, 3, 500)
    assert (s.heartbeat_ttl, s.max_payload_bytes, s.max_delay, s.items, s.retries) == (
        2.5, 1024, 0.0, 10, 0,
    )  # fmt: skip
    assert (s.where, s.username, s.password) == ("example:6380", "u", "p@ss")
    assert (s.heartbeat_every, s.reap_every) == (0.5, 1.0)
    assert s.with_overrides(batch=7, queue=None).batch == 7
    assert "p%40ss" not in repr(s) and "p@ss" not in repr(s)
    assert RedisSettings.from_env({}) == RedisSettings()


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"PCQ_BATCH": "many"}, "PCQ_BATCH"),
        ({"PCQ_BATCH": "0"}, "batch"),
        ({"PCQ_BATCH": "1001"}, "batch"),
        ({"PCQ_QUEUE": "no spaces"}, "queue name"),
        ({"PCQ_HIGH_WATER": "5", "PCQ_BATCH": "10"}, "high-water"),
        ({"PCQ_HEARTBEAT_TTL": "0.5"}, "heartbeat"),
        ({"PCQ_MAX_DELAY": "-1"}, "max delay"),
        ({"PCQ_MAX_DELIVERIES": "0"}, "max deliveries"),
        ({"REDIS_URL": "http://x"}, "scheme"),
        ({"REDIS_URL": "redis://:secret@h:99999/0"}, "(?i)port"),
        ({"REDIS_URL": "redis:///0"}, "no host"),
    ],
)
def test_bad_settings_are_usage_problems(env: dict[str, str], problem: str) -> None:
    with pytest.raises(UsageProblem, match=problem) as info:
        RedisSettings.from_env(env)
    assert "secret" not in str(info.value)


def test_redact_url() -> None:
    assert redact_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert redact_url("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


def test_dead_record_keeps_a_bounded_prefix_of_a_huge_payload() -> None:
    raw = b"x" * (200 * 1024)
    record = json.loads(dead_record(raw, "too large", "h:1", 0.0, keep=1024))
    assert record["payload"] == "x" * 1024 and record["truncated"] is True
    assert record["payload_bytes"] == len(raw) and len(record["payload_sha256"]) == 64
    assert "truncated" not in json.loads(dead_record(b"small", "r", "h:1", 0.0, keep=1024))


# The fast paths (orjson decode, batch encode) must agree with the json path.
@settings(max_examples=80, deadline=None)
@given(
    numbers=st.lists(st.integers(min_value=0, max_value=10**18 - 1), min_size=1, max_size=20),
    body=st.text(max_size=50).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)),
    produced_at=st.floats(allow_nan=False, allow_infinity=False),
)
def test_batch_encoding_matches_single_and_json(numbers: list[int], body: str, produced_at: float) -> None:
    items = [Item(f"{RUN}:{n}", body, produced_at) for n in numbers]
    raws = encode_many(items, RUN, CAP)
    assert raws == [encode(item, RUN, CAP) for item in items]
    for raw, item in zip(raws, items):
        assert json.loads(raw) == {"v": 1, "id": item.id, "run": RUN, "body": body,
                                   "produced_at": produced_at, "deliveries": 0}  # fmt: skip
        assert decode(raw, CAP) == _decode_json(raw, 1) == Item(item.id, body, produced_at, 1)


@settings(max_examples=80, deadline=None)
@given(
    first=st.integers(min_value=0, max_value=10**18 - 21),
    bodies=st.lists(st.text(max_size=30), max_size=20),
    produced_at=st.floats(allow_nan=False, allow_infinity=False),
)
def test_encoding_bodies_gives_the_payloads_of_the_same_items(
    first: int, bodies: list[str], produced_at: float
) -> None:
    items = [Item(f"{RUN}:{first + k}", body, produced_at) for k, body in enumerate(bodies)]
    try:
        expected = encode_many(items, RUN, CAP)
    except (BadPayload, UnicodeEncodeError) as exc:  # lone surrogates: refused the same way
        with pytest.raises(type(exc)):
            encode_bodies(RUN, first, bodies, produced_at, CAP)
        return
    assert encode_bodies(RUN, first, bodies, produced_at, CAP) == expected


def test_encoding_bodies_refuses_like_items() -> None:
    assert encode_bodies(RUN, 0, [], 1.0, CAP) == []
    with pytest.raises(BadPayload, match="finite"):
        encode_bodies(RUN, 0, ["x"], math.inf, CAP)
    with pytest.raises(BadPayload, match="is not '<run>:<n>'"):
        encode_bodies(RUN, 10**18, ["x"], 1.0, CAP)  # 19 digits
    with pytest.raises(BadPayload, match="is not '<run>:<n>'"):
        encode_bodies("bad run", 0, ["x"], 1.0, CAP)
    with pytest.raises(BadPayload, match=f"item {RUN}:8: .* exceeds the 200-byte cap"):
        encode_bodies(RUN, 7, ["x", "y" * 200, "z"], 1.0, 200)


def test_batch_encoding_refuses_like_single() -> None:
    good = Item(f"{RUN}:1", "x", 1.0)
    assert encode_many([], RUN, CAP) == []
    with pytest.raises(BadPayload, match="finite"):
        encode_many([good, Item(f"{RUN}:2", "x", math.nan)], RUN, CAP)
    with pytest.raises(BadPayload, match="is not '<run>:<n>'"):
        encode_many([good, Item(f"{RUN}:2:3", "x", 1.0)], RUN, CAP)
    with pytest.raises(BadPayload, match="is not '<run>:<n>'"):
        encode_many([good, Item(f"{RUN}:" + "1" * 19, "x", 1.0)], RUN, CAP)
    with pytest.raises(BadPayload, match="is not '<run>:<n>'"):
        encode_many([good, Item(f"{RUN}:\u0663", "x", 1.0)], RUN, CAP)  # a non-ASCII digit


@pytest.mark.parametrize(
    "raw",
    [
        variant(produced_at=3),  # an int time: valid, json path
        variant(produced_at=10**20),  # orjson reads a big int as a float
        variant(deliveries=2**64),  # orjson reads it as a float: json path keeps it an int
        variant(body="\ud800"),  # a lone surrogate: orjson refuses, json takes it
        variant(id=f"{RUN}:1\n"),
        variant(id=f"{RUN}x:1"),
        variant(id=f"{RUN}:"),
        variant(v=True),
        variant(produced_at=True),
        variant(deliveries=-1),
        b"\xef\xbb\xbf" + variant(),
        b'{"v":1,"v":1,"id":"' + RUN.encode() + b':1","run":"' + RUN.encode()
        + b'","body":"b","produced_at":1.5,"deliveries":0}',
        variant(produced_at=...) [:-1] + b',"produced_at":1e400}',
    ],
)
def test_fast_decode_agrees_with_json_path(raw: bytes) -> None:
    def outcome(fn: Callable[[], Item]) -> object:
        try:
            return fn()
        except BadPayload as exc:
            return str(exc)
        except Exception as exc:  # noqa: BLE001 - whatever json does, the fast path must too
            return type(exc)

    assert outcome(lambda: decode(raw, CAP)) == outcome(lambda: _decode_json(raw, 1))


ODD = [
    b"not json", b"", b'{"v":1} trailing', b"[1, 2]", b"x" * (CAP + 1), b"\xff\xfe\x00",
    variant(v=2), variant(v=True), variant(v=1.0), variant(extra=1), variant(body=...),
    variant(body=5), variant(run="bad run!"), variant(id="someone-else:1"), variant(id=f"{RUN}:-1"),
    variant(id=f"{RUN}:1\n"), variant(id=f"{RUN}x:1"), variant(id=f"{RUN}:"),
    variant(id=f"{RUN}:1,{RUN}:2"), variant(id=f"{RUN}:1234567890123456789"),
    variant(id=f"{RUN}:\u0661"), variant(run=RUN + "x"),
    variant(produced_at="yesterday"), variant(produced_at=True), variant(produced_at=3),
    variant(produced_at=10**20), variant(deliveries=-1), variant(deliveries=1.5),
    variant(deliveries=2**64), variant(body="\ud800"), b"\xef\xbb\xbf" + variant(),
    variant() + b"," + variant(), b" " + variant() + b" ",
]  # fmt: skip


@pytest.mark.parametrize("raw", ODD)
def test_batch_decode_takes_only_what_decode_takes_the_same_way(raw: bytes) -> None:
    """decode_batch is a fast path: when it answers, it answers as decode would, item by item."""
    good = variant()
    decode(good, CAP)  # the run is known (decode_batch leaves unknown runs to decode)
    batch = decode_batch([good, raw, good], CAP)
    if batch is None:
        return
    assert batch == [decode(good, CAP), decode(raw, CAP), decode(good, CAP)]


def test_batch_decode_of_a_producer_batch_equals_item_by_item() -> None:
    raws = encode_many([Item(f"{RUN}:{n}", f"name {n}", 1.5 + n) for n in range(50)], RUN, CAP)
    decode(raws[0], CAP)
    assert decode_batch(raws, CAP, deliveries=2) == [decode(r, CAP, deliveries=2) for r in raws]
    assert decode_batch([*raws, b"not json"], CAP) is None
