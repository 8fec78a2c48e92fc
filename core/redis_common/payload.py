"""The wire format of one item on the Redis list: JSON, schema v1, size-capped.

Never pickle: a payload comes from the network, and unpickling runs code.

Schema v1 (one JSON object, exactly these keys)::

    {"v": 1,                      # schema version (int)
     "id": "<run>:<n>",           # unique item id; n = its bit in the acked bitmap
     "run": "<run>",              # the producer run it belongs to
     "body": "Meatwad",           # the work (the seed's "name")
     "produced_at": 1732540000.5, # producer's time.time() (number)
     "deliveries": 0}             # deliveries before it was pushed (int >= 0)

``run`` is 1-64 characters of ``[A-Za-z0-9_-]`` and ``id`` is ``run + ":" +``
1-18 decimal digits. Payloads are never modified once pushed: the live delivery
count is kept next to them in Redis (see :mod:`pcq.core.redis_common.keys`), so ``deliveries``
here stays what the producer wrote (0).

:func:`decode` turns anything else -- too large, invalid UTF-8, not JSON, wrong
schema -- into :class:`BadPayload` with a one-line reason; the consumer
dead-letters such a payload at once and keeps going. A producer that cannot
encode an item (:func:`encode`, :func:`encode_many`) was given bad input: under
:func:`refused_as_usage` that is the user's :class:`~pcq.core.errors.UsageProblem` (exit 2).

Speed: :func:`decode` parses with orjson (a third of the cost of :mod:`json`)
and takes the result only when it is a plain, valid item by the cheapest tests;
anything else -- orjson refusing, an unusual but maybe valid shape -- goes
through :mod:`json`, which has the last word, so every refusal keeps its exact
reason. :func:`encode_many` builds the text by hand, formatting a batch's
times in one orjson call.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import json.scanner
import math
import operator
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import msgspec
import orjson

from pcq.core.errors import UsageProblem
from pcq.core.transport import Item

__all__ = [
    "SCHEMA_VERSION", "BadPayload", "dead_record", "decode", "decode_batch", "encode", "encode_bodies",
    "encode_many",
    "new_run_id",
    "refused_as_usage", "run_of",
]  # fmt: skip

SCHEMA_VERSION = 1
_KEYS = frozenset({"v", "id", "run", "body", "produced_at", "deliveries"})
_RUN_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")
_ID_RE = re.compile(r"^([A-Za-z0-9_\-]{1,64}):[0-9]{1,18}$")
# A dead letter keeps at most this much of its payload (the default payload cap).
DEAD_KEEP_BYTES = 64 * 1024
_dumps_str = json.JSONEncoder(ensure_ascii=False).encode  # the fast C encoder for one str
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_GOOD_RUNS: set[str] = set()
_orjson_loads = orjson.loads


class BadPayload(ValueError):
    """A payload that cannot be an item; ``str(exc)`` is the dead-letter reason."""


@contextmanager
def refused_as_usage(before: Callable[[], object] | None = None) -> Iterator[None]:
    """Producers: an item refused while encoding is the user's input, one line, exit 2.

    Both producers (the list's and RQ's) run their pushes under this, so a
    ``BadPayload`` raised there becomes a :class:`~pcq.core.errors.UsageProblem`
    with the same reason; ``before`` (e.g. ending the stream) runs first.
    """
    try:
        yield
    except BadPayload as exc:
        if before is not None:
            before()
        raise UsageProblem(str(exc)) from None


def new_run_id() -> str:
    """A fresh producer run id (12 hex digits)."""
    return uuid.uuid4().hex[:12]


def run_of(item_id: str) -> str:
    """Return the run part of an item id ``<run>:<n>``."""
    return item_id.rpartition(":")[0]


def encode(item: Item, run: str, max_bytes: int) -> bytes:
    """Encode ``item`` of ``run`` as a v1 payload.

    Raises:
        BadPayload: the id does not belong to ``run`` or the result exceeds
            ``max_bytes`` (refused at the producer rather than dead-lettered).
    """
    return encode_many([item], run, max_bytes)[0]


def encode_many(items: Sequence[Item], run: str, max_bytes: int) -> list[bytes]:
    """Encode a batch of ``run``'s items (see :func:`encode`), one payload each."""
    if not items:
        return []
    if not _run_ok(run):
        raise BadPayload(f"item id {items[0].id!r} is not '<run>:<n>' for run {run!r}")
    head = run + ":"
    skip = len(head)
    for item in items:
        item_id = item.id
        number = item_id[skip:]
        if not (item_id.startswith(head) and 0 < len(number) <= 18 and number.isdigit()
                and number.isascii()):  # fmt: skip
            raise BadPayload(f"item id {item_id!r} is not '<run>:<n>' for run {run!r}")
    # The times of the whole batch in one orjson call (a float's text has no
    # ','): a tenth of the cost of repr() per float, and the same shortest
    # text that reads back to the same float. orjson writes NaN and inf as null.
    times = orjson.dumps([float(item.produced_at) for item in items])
    if b"null" in times:
        bad = next(item for item in items if not math.isfinite(item.produced_at))
        raise BadPayload(f"item {bad.id}: produced_at must be a finite number")
    out = []
    # Built by hand: id and run are checked above to need no escaping.
    start, middle = '{"v":1,"id":"', f'","run":"{run}","body":'
    for item, at in zip(items, times[1:-1].decode("ascii").split(",")):
        raw = (
            f'{start}{item.id}{middle}{_dumps_str(item.body)},'
            f'"produced_at":{at},"deliveries":{int(item.deliveries)}}}'
        ).encode()
        if len(raw) > max_bytes:
            raise BadPayload(f"item {item.id}: {len(raw)} bytes exceeds the {max_bytes}-byte cap")
        out.append(raw)
    return out


def encode_bodies(run: str, first: int, bodies: Sequence[str], produced_at: float,
                  max_bytes: int) -> list[bytes]:
    """Encode items ``<run>:<first>``, ``<run>:<first + 1>``, ... with these bodies, one stamp.

    The same payloads as :func:`encode_many` gives for those items, at about a
    third of its cost per item: every body is escaped in one orjson call and
    the rest of each payload is a per-batch template.

    Raises:
        BadPayload: a bad run id, stamp or body, or a payload over ``max_bytes``
            (the same reasons as :func:`encode_many`).
    """
    if not bodies:
        return []
    # Anything unusual takes the long way, which refuses it with its exact reason.
    if not _run_ok(run) or not 0 <= first <= 10**18 - len(bodies) or not math.isfinite(produced_at):
        return encode_many(_items_of(run, first, bodies, produced_at), run, max_bytes)
    try:
        escaped = orjson.dumps(list(bodies))
    except TypeError:  # a body that is not a str, or not valid UTF-8: the long way's reason
        return encode_many(_items_of(run, first, bodies, produced_at), run, max_bytes)
    # orjson's '["b1","b2",...]': inside a string every '"' is escaped, so '","'
    # occurs only between two bodies, and splitting on it is exact.
    texts = escaped[2:-2].split(b'","')
    head = f'{{"v":1,"id":"{run}:'.encode()
    middle = f'","run":"{run}","body":"'.encode()
    tail = f'","produced_at":{orjson.dumps(float(produced_at)).decode()},"deliveries":0}}'.encode()
    out = [b"%s%d%s%s%s" % (head, n, middle, text, tail)
           for n, text in zip(range(first, first + len(texts)), texts)]  # fmt: skip
    if max(map(len, out)) > max_bytes:
        big = next(k for k, raw in enumerate(out) if len(raw) > max_bytes)
        raise BadPayload(f"item {run}:{first + big}: {len(out[big])} bytes exceeds the "
                         f"{max_bytes}-byte cap")  # fmt: skip
    return out


def _items_of(run: str, first: int, bodies: Sequence[str], produced_at: float) -> list[Item]:
    return [Item(f"{run}:{first + k}", body, produced_at) for k, body in enumerate(bodies)]


def decode(raw: bytes, max_bytes: int, deliveries: int = 1) -> Item:
    """Decode and validate one payload.

    Args:
        raw: The bytes read from Redis.
        max_bytes: Size cap; larger payloads are refused before parsing.
        deliveries: The live delivery count (this delivery included).

    Raises:
        BadPayload: with the reason, for anything that is not a v1 item.
    """
    if len(raw) > max_bytes:
        raise BadPayload(f"oversize: {len(raw)} bytes exceeds the {max_bytes}-byte cap")
    try:
        item = _plain(_orjson_loads(raw), deliveries)
    except orjson.JSONDecodeError:
        item = None
    return item if item is not None else _decode_json(raw, deliveries)


class _V1(msgspec.Struct, forbid_unknown_fields=True):
    """Schema v1 as msgspec checks it, in C: the six keys, their JSON types (strictly),
    the version and a delivery count >= 0. (Not the id: a ``pattern`` costs more
    per item than :func:`decode_batch`'s own test of it.)
    """

    v: Literal[1]
    id: str
    run: str
    body: str
    produced_at: float
    deliveries: Annotated[int, msgspec.Meta(ge=0)]


_decode_v1s = msgspec.json.Decoder(list[_V1]).decode


def decode_batch(raws: Sequence[bytes], max_bytes: int, deliveries: int = 1) -> list[Item] | None:
    """Decode a batch's payloads in one call, if every one is a plain valid item; else ``None``.

    The batch's payloads become one JSON array that msgspec parses and
    type-checks in C: about half the cost of :func:`decode` per item on the
    project's machine (``tests/test_redis_payload.py`` keeps the two in step).
    ``None`` -- a payload too big, not JSON, of another shape, of a run not
    seen yet -- sends the caller to :func:`decode`, one payload at a time,
    which has the last word and the exact reasons.
    """
    if not raws or max(map(len, raws)) > max_bytes:
        return None
    try:
        decoded = _decode_v1s(b"[" + b",".join(raws) + b"]")
    except msgspec.DecodeError:  # not JSON, or not a plain v1 item (ValidationError)
        return None
    if len(decoded) != len(raws):  # a payload that was itself several JSON values
        return None
    run = decoded[0].run
    if run not in _GOOD_RUNS:
        return None
    # Every id "<run>:<1-18 ASCII digits>" and every run field the same: tested
    # per batch in C (a regex over the ids joined, a set of the runs), which
    # costs a third of a Python test per item.
    ids = ",".join(map(_ID, decoded))
    if (set(map(_RUN, decoded)) != {run} or ids.count(",") != len(decoded) - 1
            or not _ids_of(run).fullmatch(ids)):  # fmt: skip
        return None
    return [Item(p.id, p.body, p.produced_at, p.deliveries + deliveries) for p in decoded]


_ID, _RUN = operator.attrgetter("id"), operator.attrgetter("run")


@functools.lru_cache(maxsize=64)
def _ids_of(run: str) -> re.Pattern[str]:
    """Ids of ``run`` joined by ',' (``run`` is a known run: no regex metacharacter)."""
    one = f"{run}:[0-9]{{1,18}}"
    return re.compile(f"(?:{one},)*{one}")


def _plain(obj: Any, deliveries: int) -> Item | None:
    """The item, if ``obj`` is a valid v1 item by the cheapest tests; else ``None``.

    A strict subset of :func:`_validate`: ``None`` (anything unusual, e.g. an
    integer ``produced_at``, a run not seen yet) hands the payload to the
    standard library path, which decides and gives the reason.
    """
    if type(obj) is not dict or len(obj) != 6:
        return None
    try:
        version, item_id, run, body = obj["v"], obj["id"], obj["run"], obj["body"]
        at, pushed = obj["produced_at"], obj["deliveries"]
    except KeyError:
        return None
    if not (type(version) is int and version == 1 and type(run) is str and run in _GOOD_RUNS
            and type(body) is str and type(pushed) is int and pushed >= 0
            and type(at) is float and at - at == 0.0  # finite: inf - inf and nan are nan
            and type(item_id) is str and item_id.startswith(run)):  # fmt: skip
        return None
    number = item_id[len(run) + 1 :]  # run has no ':', so this is '<run>:<digits>' exactly
    if item_id[len(run) : len(run) + 1] != ":" or not (
        0 < len(number) <= 18 and number.isdigit() and number.isascii()
    ):
        return None
    return Item(item_id, body, at, pushed + deliveries)


def _decode_json(raw: bytes, deliveries: int) -> Item:
    """Decode and validate with the standard library (exact reasons)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadPayload(f"invalid UTF-8 at byte {exc.start}") from None
    try:
        # The C scanner behind json.loads, called directly: half the cost per
        # item. Anything it does not take whole (leading or trailing
        # whitespace, errors) goes through json.loads, which has the last word.
        obj, end = _scan(text, 0)
        if end != len(text):
            obj = json.loads(text)
    except StopIteration:
        obj = _loads(text)
    except RecursionError:
        raise BadPayload("not JSON: nested too deeply") from None
    except ValueError as exc:
        raise BadPayload(f"not JSON: {exc}") from None
    return _validate(obj, deliveries)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError:
        raise BadPayload("not JSON: nested too deeply") from None
    except ValueError as exc:
        raise BadPayload(f"not JSON: {exc}") from None


def _validate(obj: Any, deliveries: int) -> Item:
    if type(obj) is not dict or obj.keys() != _KEYS:
        raise BadPayload(_shape_problem(obj))
    version, item_id, run, body = obj["v"], obj["id"], obj["run"], obj["body"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise BadPayload(f"wrong schema: unsupported version {version!r}")
    if type(run) is not str or not _run_ok(run):
        raise BadPayload("wrong schema: 'run' must be 1-64 of [A-Za-z0-9_-]")
    if type(item_id) is not str or not _ID_RE.match(item_id) or item_id.rpartition(":")[0] != run:
        raise BadPayload("wrong schema: 'id' must be '<run>:<n>'")
    if type(body) is not str:
        raise BadPayload(f"wrong schema: 'body' must be a string, got {type(body).__name__}")
    produced_at = obj["produced_at"]
    kind = type(produced_at)  # exact types: bool is an int subclass, and not a time
    if (kind is not float and kind is not int) or not math.isfinite(produced_at):
        raise BadPayload("wrong schema: 'produced_at' must be a finite number")
    pushed = obj["deliveries"]
    if type(pushed) is not int or pushed < 0:
        raise BadPayload("wrong schema: 'deliveries' must be an integer >= 0")
    return Item(item_id, body, float(produced_at), pushed + deliveries)


def _shape_problem(obj: Any) -> str:
    if type(obj) is not dict:
        return f"wrong schema: expected a JSON object, got {type(obj).__name__}"
    missing = sorted(_KEYS - obj.keys())
    extra = sorted(obj.keys() - _KEYS)
    return f"wrong schema: missing keys {missing}, unexpected keys {extra}"


def _run_ok(run: str) -> bool:
    # A queue carries few runs: remember the good ones (bounded) to skip the regex.
    if run in _GOOD_RUNS:
        return True
    if not _RUN_RE.match(run):
        return False
    if len(_GOOD_RUNS) >= 1024:
        _GOOD_RUNS.clear()
    _GOOD_RUNS.add(run)
    return True


def dead_record(
    raw: bytes, reason: str, consumer: str, at: float, *, keep: int = DEAD_KEEP_BYTES, **extra: Any
) -> str:
    """Return the JSON dead-letter record for ``raw``.

    The payload is kept as text when it is valid UTF-8, else base64 in
    ``payload_b64``, so a record is always valid JSON. At most ``keep`` bytes
    of it are kept: whoever can write to the queue must not be able to fill
    Redis twice over with oversize junk that lands here. A cut payload says so
    (``truncated``) and keeps its full size and SHA-256 to identify it.
    """
    record: dict[str, Any] = {"reason": reason, "consumer": consumer, "at": round(at, 3)}
    kept = raw[:keep]
    if len(raw) > keep:
        record.update(truncated=True, payload_bytes=len(raw),
                      payload_sha256=hashlib.sha256(raw).hexdigest())  # fmt: skip
    try:
        record["payload"] = kept.decode("utf-8")
    except UnicodeDecodeError:
        record["payload_b64"] = base64.b64encode(kept).decode("ascii")
    record.update(extra)
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))
