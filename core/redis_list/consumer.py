"""The consumer role of the Redis list: :class:`ListConsumer` (claim, settle, beat, reap).

How one batch goes (the whole picture is in :mod:`pcq.core.redis_list`):
:meth:`ListConsumer.get` claims up to ``batch`` payloads into this consumer's
processing list in one round trip on the link's Wire (``claim.lua``, or
``BLMOVE`` when the queue ran dry), carrying the acknowledgements buffered
since the previous claim (:class:`~pcq.core.redis_list.acks.AckBuffer`);
:meth:`~ListConsumer.nack` (``retry.lua`` / ``dead.lua``) and
:meth:`~ListConsumer.release` (``release.lua``) go through redis-py at once.
A heartbeat thread beats and reaps (``reap.lua``).

Consumer ids are ``<hostname>:<pid>`` (in a container the hostname is the
container id).
A restarted container keeps its hostname and usually its pid, so a new process
can find its predecessor's processing list under its own id, with the old
heartbeat still alive. A consumer therefore reaps its own id once at start,
before its first claim: those items go back to the queue as counted
redeliveries instead of being silently adopted.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import redis

from pcq.core.errors import PcqError
from pcq.core.redis_common.connection import stderr_log
from pcq.core.redis_common.payload import BadPayload, dead_record, decode
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.acks import AckBuffer
from pcq.core.redis_list.health import HealthFile
from pcq.core.redis_list.heartbeat import Heartbeat
from pcq.core.redis_list.link import ListLink, Notify
from pcq.core.redis_list.rates import RateWindow
from pcq.core.transport import Item

__all__ = ["ListConsumer", "consumer_id"]

ACK_FLUSH_SECONDS = 0.5  # longest an acknowledgement waits in the buffer


def consumer_id() -> str:
    """This process's consumer id: ``<hostname>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ListConsumer:
    """The consumer role (a :class:`pcq.core.transport.Consumer`).

    Args:
        client: From :func:`pcq.core.redis_common.connection.connect`; the caller closes it.
        settings: Queue name, batch, caps, heartbeat TTL, retries.
        consumer: Consumer id (default :func:`consumer_id`).
        drain: ``get`` returns ``None`` once the queue is drained (no open
            stream, nothing queued, nothing in flight anywhere).
        log: Sink for retry lines (stderr).
        notify: Sink for events worth a console line (dead letters, reaping).
        wait: Sleep used between retries.
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: RedisSettings,
        *,
        consumer: str | None = None,
        drain: bool = False,
        log: Notify = stderr_log,
        notify: Notify | None = None,
        wait: Callable[[float], object] = time.sleep,
    ) -> None:
        self.link = ListLink(client, settings, log=log, wait=wait)
        self.settings = settings
        self.keys = self.link.keys
        self.consumer = consumer or consumer_id()
        self.drain = drain
        self.notify = notify or log
        self._retry = self.link.retry.call  # every step but the claim: redis-py, retried
        self._scripts = self.link.scripts
        # What this consumer holds: id -> payload, and further copies of an id
        # claimed twice in one batch (rare: only a hostile or duplicated push).
        self._held: dict[str, bytes] = {}
        self._dups: dict[str, list[bytes]] = {}
        self._acks = AckBuffer()
        self.acked = 0  # acknowledgements so far; only this consumer's thread writes it
        self.rates = RateWindow()  # of `acked`, sampled by each heartbeat
        self._busy = True  # items were left in the queue: try a non-blocking claim first
        self._calls = 0
        self._call_prefix = uuid.uuid4().hex[:8]
        self._heart: Heartbeat | None = None  # beats and reaps from start() to close()
        k, me = self.keys, self.consumer
        self._claim_keys = [k.queue, k.processing(me), k.consumers, k.deliveries, k.errors,
                            k.stats, k.call(me)]  # fmt: skip

    # Liveness ------------------------------------------------------------------
    def start(self) -> None:
        """Register this consumer (first heartbeat) and start the heartbeat thread."""
        if self._heart is not None:
            return
        self._retry(self.reap, self.consumer)  # nothing claimed yet: all left by a predecessor
        self._retry(self.beat)
        s = self.settings
        self._heart = Heartbeat(s.heartbeat_every, self.beat, self.reap, s.reap_every,
                                listener=HealthFile.of(s))  # the healthcheck's file
        self._heart.start()

    def beat(self) -> None:
        """Refresh the heartbeat and (re-)register: a reaped consumer comes back.

        The value carries the acknowledgement count now and ~10 s ago, so
        ``pcq status`` reads a rate in one look.
        """
        k, ttl, now, acked = self.keys, self.settings.heartbeat_ttl, time.time(), self.acked
        self.rates.add(now, acked)
        since_at, since = self.rates.oldest
        value = json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "ttl": ttl, "at": now,
             "acked": acked, "since": [round(since_at, 3), since]}
        )
        with self.link.client.pipeline(transaction=True) as pipe:
            pipe.set(k.heartbeat(self.consumer), value, px=int(ttl * 1000))
            pipe.sadd(k.consumers, self.consumer)
            pipe.execute()

    def reap(self, predecessor: str = "") -> tuple[int, int, int]:
        """Requeue the items of consumers whose heartbeat expired.

        Args:
            predecessor: A consumer id reaped even though its heartbeat is
                alive: this process's own id, before it has claimed anything.

        Returns:
            (consumers reaped, items requeued, items dead-lettered).
        """
        k = self.keys
        keys = [k.consumers, k.queue, k.deliveries, k.errors, k.dead, k.stats]
        args: list[str | int] = [
            k.prefix,
            self.settings.max_deliveries,
            f"{time.time():.3f}",
            "" if predecessor == self.consumer else self.consumer,
            self.settings.max_payload_bytes,
            predecessor,
        ]
        reaped, requeued, dead = (int(x) for x in self._scripts.reap(keys, args))
        if reaped:
            self.notify(
                f"reaped {reaped} dead consumer(s): {requeued} item(s) back in the queue, "
                f"{dead} dead-lettered"
            )
        return reaped, requeued, dead

    # The Consumer role -----------------------------------------------------------
    def get(self, timeout: float) -> Sequence[Item] | None:
        """Claim up to one batch (see :class:`pcq.core.transport.Consumer`).

        One round trip either way: while the last claim left items in the
        queue, one claim call (which also acknowledges the previous batch);
        when it left the queue empty, a pipeline of acknowledge, ``BLMOVE``
        (block up to ``timeout`` for one item) and claim up to ``batch - 1`` more.
        """
        self.start()
        items: list[Item] = []
        if self._busy:
            items = self._claim(self.settings.batch)
        if not items:
            items = self._wait_and_claim(timeout)
        if items or not self.drain:
            return items
        return None if self.drained() else []

    def drained(self) -> bool:
        """True when no stream is open and no item is queued or in flight."""
        k = self.keys
        keys = [k.runs, k.open, k.queue, k.consumers]
        return bool(self._retry(self._scripts.drained, keys, [k.prefix, f"{time.time():.3f}"]))

    def ack(self, item: Item) -> None:
        """Buffer the acknowledgement; it is sent with the next claim (or within 0.5 s)."""
        now = time.monotonic()
        self._acks.add(item.id, self._take(item), now)
        self.acked += 1
        if now - self._acks.since > ACK_FLUSH_SECONDS:
            self.flush()

    def nack(self, item: Item, reason: str) -> None:
        """Deliver again later, or dead-letter once ``max_deliveries`` is reached."""
        raw = self._take(item)
        k, most = self.keys, self.settings.max_deliveries
        if item.deliveries >= most:
            why = f"{reason} (delivery {item.deliveries} of max {most})"
            self._dead_letter(raw, why, item.id, "", deliveries=item.deliveries)
            return
        keys = [k.processing(self.consumer), k.queue, k.deliveries, k.errors, k.stats]
        self._retry(self._scripts.retry, keys, [k.prefix, raw, item.id, reason])

    def release(self, items: Sequence[Item]) -> None:
        """Hand back unhandled items to the head of the queue (no delivery counted)."""
        raws = [self._take(item) for item in items]
        if raws:
            k = self.keys
            self._retry(self._scripts.release, [k.processing(self.consumer), k.queue], raws)

    def flush(self) -> None:
        """Send buffered acknowledgements now (a claim of nothing that carries them)."""
        if self._acks:
            self.link.eval("claim", self._claim_keys, self._claim_args(0))
            self._acks.clear()

    def close(self, reachable: bool = True) -> None:
        """Flush acks, hand back anything held, stop the heartbeat, deregister.

        A consumer that still holds items (it could not hand them back) stays
        registered without a heartbeat, so a reaper gives them to another.

        Args:
            reachable: ``False`` after Redis stayed unreachable: only stop the
                thread (no more retrying); the reaper will requeue our items.
        """
        try:
            if not reachable:
                self._stop_heart()
                return
            try:
                self.flush()
                left = [Item(i, "", 0.0) for i in self._held]
                left += [Item(i, "", 0.0) for i, raws in self._dups.items() for _ in raws]
                self.release(left)
            finally:
                if self._stop_heart():
                    self._retry(self._deregister)
        finally:
            self.link.close()

    def _stop_heart(self) -> bool:
        """Stop the heartbeat thread; True if it was running."""
        if self._heart is None:
            return False
        self._heart.stop()
        self._heart = None
        return True

    def _deregister(self) -> None:
        k, me, client = self.keys, self.consumer, self.link.client
        if client.llen(k.processing(me)) == 0:
            with client.pipeline(transaction=True) as pipe:
                pipe.srem(k.consumers, me)
                pipe.delete(k.heartbeat(me), k.call(me), k.processing(me))
                pipe.execute()

    # Claims ----------------------------------------------------------------------
    def _take(self, item: Item) -> bytes:
        if self._dups:
            raws = self._dups.get(item.id)
            if raws:
                raw = raws.pop()
                if not raws:
                    del self._dups[item.id]
                return raw
        taken = self._held.pop(item.id, None)
        if taken is None:
            raise PcqError(f"item {item.id} is not held by consumer {self.consumer}")
        return taken

    def _claim_args(self, want: int) -> list[Any]:
        # Every call gets the next number; the script skips one it has applied.
        self._calls += 1
        acks = self._acks.args(covers_all=not self._held and not self._dups)
        return [self.keys.prefix, self.consumer, self._call_prefix, self._calls, want, *acks]

    def _claim(self, want: int) -> list[Item]:
        reply = self.link.eval("claim", self._claim_keys, self._claim_args(want))
        self._acks.clear()
        return self._hold(reply)

    def _wait_and_claim(self, timeout: float) -> list[Item]:
        k, keys, me = self.keys, self._claim_keys, self.consumer
        acks = self._claim_args(0) if self._acks else None
        self._acks.clear()
        more = self.settings.batch - 1
        claim = self._claim_args(more) if more else None

        commands: list[Sequence[Any]] = []
        if acks is not None:
            commands.append(self._scripts.command("claim", keys, acks))
        commands.append(("BLMOVE", k.queue, k.processing(me), "LEFT", "RIGHT", timeout))
        if claim is not None:
            commands.append(self._scripts.command("claim", keys, claim))
        else:  # batch 1: read what we hold natively (cheaper than a script)
            commands += [("SADD", k.consumers, me), ("HLEN", k.deliveries), ("LLEN", k.queue),
                         ("LRANGE", k.processing(me), 0, -1)]  # fmt: skip
        replies = self.link.execute(commands)
        if claim is not None:
            return self._hold(replies[-1])
        return self._hold([replies[-3], replies[-2], replies[-1]])

    def _hold(self, reply: list[Any]) -> list[Item]:
        """Take the claim script's reply as what this consumer now holds."""
        self._held, self._dups = {}, {}
        self._busy = int(reply[1]) > 0  # the queue may hold more (see claim.lua)
        return self._decode(reply[2], int(reply[0]) > 0)

    def _decode(self, raws: list[bytes], counted: bool) -> list[Item]:
        items: list[Item] = []
        cap, held = self.settings.max_payload_bytes, self._held
        for raw in raws:
            try:
                item = decode(raw, cap)
            except BadPayload as exc:
                self._dead_letter(raw, str(exc), "", "malformed")
                continue
            if held.setdefault(item.id, raw) is not raw:
                self._dups.setdefault(item.id, []).append(raw)
            items.append(item)
        if counted and items:  # some items failed before: fetch their counts
            failed = self._retry(self.link.client.hmget, self.keys.deliveries, [i.id for i in items])
            items = [
                Item(i.id, i.body, i.produced_at, i.deliveries + int(f)) if f else i
                for i, f in zip(items, failed)
            ]
        return items

    def _dead_letter(self, raw: bytes, reason: str, item_id: str, kind: str, **extra: Any) -> None:
        k = self.keys
        record = dead_record(raw, reason, self.consumer, time.time(), id=item_id or None, **extra)
        keys = [k.processing(self.consumer), k.dead, k.stats, k.deliveries, k.errors]
        self._retry(self._scripts.dead, keys, [k.prefix, raw, record, item_id, kind])
        self.notify(f"{os.getpid()} dead-lettered {item_id or 'a payload'}: {reason}")
