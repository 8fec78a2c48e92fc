"""A reliable Redis list as the queue: :class:`RedisQueue` implements the Transport.

The reliable-list pattern (key layout in :mod:`pcq.core.redis_common.keys`):

* **produce** -- a producer *run* (id ``<run>``, items ``<run>:<n>``) is
  registered, then pushed in batches by one Lua call each (``push.lua``): the
  push, the run's ``produced`` count and a batch sequence number change
  together, so a push retried after a lost reply is not applied twice. The call
  pushes nothing while the queue is above the high-water mark: backpressure.
  ``end_stream`` closes the run.
* **claim** -- a consumer moves up to ``batch`` payloads from the queue into its
  own processing list in one Lua call (``claim.lua``); when the queue is empty
  it blocks in ``BLMOVE``. The same call first acknowledges the previous batch:
  one round trip per batch.
* **ack** -- remove from the processing list, add the id to the run's ledger
  (a SET: adding an id already there counts a duplicate) and bump the
  per-consumer count. Acks are buffered until the next claim (or 0.5 s).
* **nack** -- a handler failure counts a failed delivery (``retry.lua``) and
  puts the item back at the tail, or, at ``max_deliveries``, moves it to the
  dead-letter list with the reason (``dead.lua``).
* **heartbeat / reaper** -- a background thread refreshes ``hb:<consumer>``
  (TTL ``heartbeat_ttl``) five times per TTL, and every ``0.4 x TTL`` runs
  ``reap.lua``: the processing lists of consumers whose heartbeat expired go
  back to the head of the queue, each item counted as a failed delivery (so an
  item that keeps killing its consumer is dead-lettered too). With the default
  5 s TTL a SIGKILLed consumer's items are back in play within ~7 s.
* **bad payloads** (not JSON, wrong schema, too big, invalid UTF-8) are
  dead-lettered at once with the reason; the consumer keeps going.

Claims, acknowledgements and pushes -- the per-item hot path -- go over one
connection of the client's pool that the queue keeps for its thread
(:class:`pcq.core.redis_list.scripts.Wire`), without redis-py's per-command machinery; the
rest (heartbeat thread, nack, release, status) goes through redis-py as usual.

The producer half lives in :mod:`pcq.core.redis_list.producer`; while a producer runs it
keeps its run's liveness key fresh, so ``consume --drain`` stops waiting for a
run whose producer was killed before closing it.

Consumer ids are ``<hostname>:<pid>`` (in a container the hostname is the
container id), so ``pcq consume --check`` finds its own container's consumer.
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
from pcq.core.redis_common.connection import Retrier, stderr_log
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.payload import BadPayload, dead_record, decode
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.producer import ProducerSide
from pcq.core.redis_list.scripts import AckBuffer, AckHistory, Heartbeat, Scripts, Wire
from pcq.core.transport import Item

__all__ = ["RedisQueue", "consumer_id"]

ACK_FLUSH_SECONDS = 0.5  # longest an acknowledgement waits in the buffer
Notify = Callable[[str], None]


def consumer_id() -> str:
    """This process's consumer id: ``<hostname>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class RedisQueue(ProducerSide):
    """The Transport over a reliable Redis list (one object per process role).

    Args:
        client: From :func:`pcq.core.redis_common.connection.connect`; the caller closes it.
        settings: Queue name, batch, caps, heartbeat TTL, retries.
        consumer: Consumer id (default :func:`consumer_id`).
        run: Producer run id (default: a fresh one at :meth:`open_run`).
        drain: ``get`` returns ``None`` once the queue is drained (no open
            stream, nothing queued, nothing in flight anywhere).
        log: Sink for retry lines (stderr).
        notify: Sink for events worth a console line (dead letters, reaping).
        wait: Sleep used between retries and backpressure polls.
        put_timeout: Longest a ``put`` waits for room below the high-water mark.
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: RedisSettings,
        *,
        consumer: str | None = None,
        run: str | None = None,
        drain: bool = False,
        log: Notify = stderr_log,
        notify: Notify | None = None,
        wait: Callable[[float], object] = time.sleep,
        put_timeout: float | None = 300.0,
    ) -> None:
        self.client = client
        self.settings = settings
        self.keys = Keys(settings.queue)
        self.consumer = consumer or consumer_id()
        self.run = run
        self.drain = drain
        self.notify = notify or log
        self.put_timeout = put_timeout
        self._wait = wait
        self._retry = Retrier(settings, log, wait)
        self._scripts = Scripts(client)
        self._wire = Wire(client)  # claims and pushes: this thread's own connection
        self._seq = 0
        self._quiet_until = 0.0  # backpressure: no "waiting" line before this time
        # What this consumer holds: id -> payload, and further copies of an id
        # claimed twice in one batch (rare: only a hostile or duplicated push).
        self._held: dict[str, bytes] = {}
        self._dups: dict[str, list[bytes]] = {}
        self._acks = AckBuffer()
        self.history = AckHistory()  # acknowledgements, for the heartbeat's rate
        self._busy = True  # items were left in the queue: try a non-blocking claim first
        self._calls = 0
        self._call_prefix = uuid.uuid4().hex[:8]
        self._heart: Heartbeat | None = None  # consumer: heartbeat + reaper
        self._pheart: Heartbeat | None = None  # producer: run liveness
        self._ckeys: list[str] = []

    # Consumer side -------------------------------------------------------------
    def start(self) -> None:
        """Register this consumer (first heartbeat) and start the heartbeat thread."""
        if self._heart is not None:
            return
        self._retry.call(self.reap, self.consumer)  # nothing claimed yet: all left by a predecessor
        self._retry.call(self.beat)
        s = self.settings
        self._heart = Heartbeat(s.heartbeat_every, self.beat, self.reap, s.reap_every)
        self._heart.start()

    def beat(self) -> None:
        """Refresh the heartbeat and (re-)register: a reaped consumer comes back."""
        k, ttl, now = self.keys, self.settings.heartbeat_ttl, time.time()
        value = json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "ttl": ttl, "at": now,
             **self.history.sample(now)}
        )
        with self.client.pipeline(transaction=True) as pipe:
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

    def get(self, timeout: float) -> Sequence[Item] | None:
        """Claim up to one batch (see :class:`pcq.core.transport.Transport`).

        One round trip either way: while the last claim left items in the
        queue, one claim call (which also acknowledges the previous batch);
        when it left the queue empty, a pipeline of acknowledge, ``BLMOVE``
        (block up to ``timeout`` for one item) and claim up to ``batch - 1`` more.
        """
        self.start()
        batch = self.settings.batch
        items: list[Item] = []
        if self._busy:
            items = self._claim(batch)
        if not items:
            items = self._wait_and_claim(timeout)
        if items or not self.drain:
            return items
        return None if self.drained() else []

    def drained(self) -> bool:
        """True when no stream is open and no item is queued or in flight."""
        k = self.keys
        keys = [k.runs, k.open, k.queue, k.consumers]
        return bool(self._retry.call(self._scripts.drained, keys, [k.prefix, f"{time.time():.3f}"]))

    def ack(self, item: Item) -> None:
        """Buffer the acknowledgement; it is sent with the next claim (or within 0.5 s)."""
        now = time.monotonic()
        self._acks.add(item.id, self._take(item), now)
        self.history.count += 1
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
        self._retry.call(self._scripts.retry, keys, [k.prefix, raw, item.id, reason])

    def release(self, items: Sequence[Item]) -> None:
        """Hand back unhandled items to the head of the queue (no delivery counted)."""
        raws = [self._take(item) for item in items]
        if raws:
            k = self.keys
            self._retry.call(self._scripts.release, [k.processing(self.consumer), k.queue], raws)

    def flush(self) -> None:
        """Send buffered acknowledgements now."""
        if self._acks:
            self._eval("claim", self._claim_keys(), self._claim_args(0))
            self._acks.clear()

    def close(self, reachable: bool = True) -> None:
        """Flush acks, hand back anything held, stop the heartbeats, deregister.

        A consumer that still holds items (it could not hand them back) stays
        registered without a heartbeat, so a reaper gives them to another.

        Args:
            reachable: ``False`` after Redis stayed unreachable: only stop the
                threads (no more retrying); the reaper will requeue our items.
        """
        self._stop_producer_beat()
        try:
            if not reachable:
                if self._heart is not None:
                    self._heart.stop()
                    self._heart = None
                return
            try:
                self.flush()
                left = [Item(i, "", 0.0) for i in self._held]
                left += [Item(i, "", 0.0) for i, raws in self._dups.items() for _ in raws]
                self.release(left)
            finally:
                if self._heart is not None:
                    self._heart.stop()
                    self._heart = None
                    self._retry.call(self._deregister)
        finally:
            self._wire.close()

    def _deregister(self) -> None:
        k, me = self.keys, self.consumer
        if self.client.llen(k.processing(me)) == 0:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.srem(k.consumers, me)
                pipe.delete(k.heartbeat(me), k.call(me), k.processing(me))
                pipe.execute()

    # Internals -------------------------------------------------------------------
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

    def _claim_keys(self) -> list[str]:
        if not self._ckeys:
            k, me = self.keys, self.consumer
            self._ckeys = [k.queue, k.processing(me), k.consumers, k.deliveries, k.errors,
                           k.stats, k.call(me)]  # fmt: skip
        return self._ckeys

    def _claim_args(self, want: int) -> list[Any]:
        # Every call gets the next number; the script skips one it has applied.
        self._calls += 1
        acks = self._acks.args(covers_all=not self._held and not self._dups)
        return [self.keys.prefix, self.consumer, self._call_prefix, self._calls, want, *acks]

    def _claim(self, want: int) -> list[Item]:
        reply = self._eval("claim", self._claim_keys(), self._claim_args(want))
        self._acks.clear()
        return self._hold(reply)

    def _wait_and_claim(self, timeout: float) -> list[Item]:
        k, keys, me = self.keys, self._claim_keys(), self.consumer
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
        replies = self._retry.call(self._scripts.reloading, lambda: self._wire.execute(commands))
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
            failed = self._retry.call(self.client.hmget, self.keys.deliveries, [i.id for i in items])
            items = [
                Item(i.id, i.body, i.produced_at, i.deliveries + int(f)) if f else i
                for i, f in zip(items, failed)
            ]
        return items

    def _dead_letter(self, raw: bytes, reason: str, item_id: str, kind: str, **extra: Any) -> None:
        k = self.keys
        record = dead_record(raw, reason, self.consumer, time.time(), id=item_id or None, **extra)
        keys = [k.processing(self.consumer), k.dead, k.stats, k.deliveries, k.errors]
        self._retry.call(self._scripts.dead, keys, [k.prefix, raw, record, item_id, kind])
        self.notify(f"{os.getpid()} dead-lettered {item_id or 'a payload'}: {reason}")
