"""The consumer role of the Redis list: :class:`ListConsumer` (claim, settle, beat, reap).

How one batch goes (the whole picture is in :mod:`pcq.core.redis_list`):
:meth:`ListConsumer.get` claims up to ``batch`` payloads into this consumer's
processing list in one round trip on the link's Wire (``claim.lua``, or
``BLMOVE`` when the queue ran dry), carrying the acknowledgements buffered
since the previous claim (:class:`~pcq.core.redis_list.acks.AckBuffer`);
:meth:`~ListConsumer.nack` (``retry.lua`` / ``dead.lua``) and
:meth:`~ListConsumer.release` (``release.lua``) go through redis-py at once.
A heartbeat thread beats (``beat.lua``) and reaps (``reap.lua``, then the
dead-letter retention, ``retain.lua``).

On a full Redis (``maxmemory``, ``noeviction``) every step here still runs:
the scripts are flagged ``allow-oom`` (see :mod:`pcq.core.redis_list.scripts`),
and when Redis refuses ``BLMOVE`` (its own command, not a script) :meth:`get`
polls with the claim script instead.

Consumer ids are ``<hostname>:<pid>`` (in a container the hostname is the
container id).
A restarted container keeps its hostname and usually its pid, so a new process
can find its predecessor's processing list under its own id, with the old
heartbeat still alive. A consumer therefore reaps its own id once at start,
before its first claim: those items go back to the queue as counted
redeliveries instead of being silently adopted.

Fencing (:mod:`pcq.core.redis_list.lease`): before each item the pattern asks
:meth:`ListConsumer.holds`; a consumer paused past its heartbeat's lifetime
finds it was reaped, leaves the rest of what it held to the others, and
rejoins (the same way it started) at its next :meth:`~ListConsumer.get`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from pcq.core.errors import RedisFull
from pcq.core.redis_common.connection import stderr_log
from pcq.core.redis_common.payload import BadPayload, dead_record, decode, decode_batch
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.acks import AckBuffer
from pcq.core.redis_list.claims import Claims
from pcq.core.redis_list.dead_letters import retain
from pcq.core.redis_list.envelope import pack
from pcq.core.redis_list.health import HealthFile
from pcq.core.redis_list.heartbeat import Heartbeat, consumer_beat
from pcq.core.redis_list.held import ACKED, Envelope, Held
from pcq.core.redis_list.lease import Lease
from pcq.core.redis_list.link import ListLink, Notify
from pcq.core.redis_list.rates import RateWindow
from pcq.core.redis_list.reaper import reap
from pcq.core.transport import Item

__all__ = ["ListConsumer", "consumer_id"]

ACK_FLUSH_SECONDS = 0.5  # longest an acknowledgement waits in the buffer
# A draining consumer's wait before it asks drained.lua (a timed-out BLMOVE ends at Redis's next tick).
DRAIN_GLANCE = 0.02
# Prefetch (claim the next batches while handling this one, claims.DEPTH in
# flight) only for a consumer that handled its previous batch within this many
# seconds: it holds at most 1 + DEPTH batches, each waiting no longer than this
# per batch ahead of it, so a slow consumer never sits on work an idle one could do.
PREFETCH_BELOW = 0.05
# An item that took at least this long is acknowledged at once, not buffered:
# one round trip (~0.1 ms) is then <= 5% of its time, and a consumer paused or
# killed right after it does not leave it to be handled again.
ACK_AT_ONCE_AFTER = 0.002


def consumer_id() -> str:
    """This process's consumer id: ``<hostname>:<pid>``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class ListConsumer:
    """The consumer role (a :class:`pcq.core.transport.BatchAckConsumer`).

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
        self._held = Held()  # the envelopes claimed, and where each unsettled item sits
        self._acks = AckBuffer()
        self.acked = 0  # acknowledgements so far; only this consumer's thread writes it
        self.rates = RateWindow()  # of `acked`, sampled by each heartbeat
        self.lease = Lease()  # until when what we claimed is surely ours
        self._claims = Claims(self.link, self.consumer, self._held, self._acks, self._decode,
                              self.lease)  # fmt: skip
        self._last_get = -PREFETCH_BELOW  # monotonic time get last returned
        self._last_settled = 0.0  # monotonic time of the last get or ack
        self._heart: Heartbeat | None = None  # beats and reaps from start() to close()

    # Liveness ------------------------------------------------------------------
    def start(self) -> None:
        """Register this consumer (first heartbeat) and start the heartbeat thread."""
        if self._heart is not None:
            return
        self._retry(self.reap, self.consumer)  # nothing claimed yet: all left by a predecessor
        self._retry(self.beat, True)
        s = self.settings
        self._heart = Heartbeat(s.heartbeat_every, self.beat, self.reap, s.reap_every,
                                listener=HealthFile.of(s))  # the healthcheck's file
        self._heart.start()

    def beat(self, join: bool = False) -> bool:
        """Refresh the heartbeat and renew the lease; False if a reaper removed us.

        Only ``join`` registers: a plain beat of a consumer that was reaped
        writes nothing and marks the lease lost (:mod:`pcq.core.redis_list.lease`).
        """
        started = time.monotonic()
        k, ttl, now, acked = self.keys, self.settings.heartbeat_ttl, time.time(), self.acked
        self.rates.add(now, acked)
        value = consumer_beat(ttl, now, acked, self.rates.oldest)
        # beat.lua, not MULTI: it runs on a full Redis (allow-oom), so a busy
        # consumer is never taken for dead there.
        written = self._scripts.beat([k.heartbeat(self.consumer), k.consumers],
                                     [value, int(ttl * 1000), self.consumer,
                                      "join" if join else "stay"])  # fmt: skip
        if written:
            self.lease.renewed(started, ttl)
        else:
            self.lease.forfeit()
        return bool(written)

    def holds(self, item: Item) -> bool:
        """Whether ``item`` is still ours to handle (see :class:`pcq.core.transport.Consumer`).

        While the last acknowledged beat's lifetime runs, yes without a round
        trip; after it (a pause), a beat decides.
        """
        lease = self.lease
        if time.monotonic() < lease.until:  # lease.sure(), inlined: this runs per item
            return True
        if not lease.lost:
            self._retry(self.beat)
        return not lease.lost

    def _rejoin(self) -> None:
        """After a lost lease: forget what we held, take back any leftovers, register again.

        A reaper normally took everything already; reaping our own id hands
        back whatever is still listed (say, Redis restarted and lost the
        reaper's work), skipping what is acknowledged. Buffered acknowledgements
        go first, unregistered: claim.lua records them as a fenced call, which
        keeps the delivery counts of the copies a reaper requeued.
        """
        self._claims.forget()
        self._held.clear()
        self._acks.settled = []
        self.flush()
        self._retry(self.beat, True)  # registered again, so reap.lua sees our id
        self._retry(self.reap, self.consumer)
        self.lease.rejoined()
        self._retry(self.beat, True)  # the fresh registration's lease
        self.notify(f"consumer {self.consumer} lost its lease (paused past its heartbeat); "
                    f"what it held went to others; rejoined")  # fmt: skip

    def reap(self, predecessor: str = "") -> tuple[int, int, int]:
        """Requeue the items of consumers whose heartbeat expired.

        See :func:`pcq.core.redis_list.reaper.reap`; a line when it did, then
        the dead-letter retention.
        """
        reaped, requeued, dead = reap(self.link, self.consumer, predecessor)
        if reaped:
            self.notify(
                f"reaped {reaped} dead consumer(s): {requeued} item(s) back in the queue, "
                f"{dead} dead-lettered"
            )
        self._retain()
        return reaped, requeued, dead

    def _retain(self) -> None:
        retain(self._scripts, self.keys, self.settings, time.time(), say=self.notify)

    # The Consumer role -----------------------------------------------------------
    def get(self, timeout: float) -> Sequence[Item] | None:
        """Claim up to one batch (see :class:`pcq.core.transport.Consumer`).

        One round trip either way: while the last claim left items in the
        queue, one claim call (which also acknowledges the previous batch);
        when it left the queue empty, a pipeline of acknowledge, ``BLMOVE``
        (block up to ``timeout`` for one item) and what a claim needs besides.
        A consumer that came back for more within ``PREFETCH_BELOW`` of its
        previous batch, while the queue holds more, keeps its next claims in
        flight while it handles this batch, so the round trips overlap the work.
        A draining consumer blocks at most ``DRAIN_GLANCE`` before it asks
        whether the queue is drained, so it leaves soon after the last item.
        """
        self.start()
        items = self._claim(timeout)
        if self.lease.lost:  # a reply said a reaper had removed us: rejoin, claim again
            items = self._claim(timeout)
        now = time.monotonic()
        if items and self._claims.busy and now - self._last_get < PREFETCH_BELOW:
            self._claims.prefetch()
        self._last_get = self._last_settled = now
        if items or not self.drain:
            return items
        return None if self.drained() else []

    def _claim(self, timeout: float) -> list[Item]:
        """What a prefetch brought, a claim, or a wait in BLMOVE (see :meth:`get`)."""
        if self.lease.lost:
            self._rejoin()
        claims, batch = self._claims, self.settings.batch
        claims.land()
        items, claims.ready = claims.ready[:batch], claims.ready[batch:]
        if not items and claims.busy:
            items = claims.claim(batch)
        if not items and not self.lease.lost:
            wait = min(timeout, DRAIN_GLANCE) if self.drain else timeout
            try:
                items = claims.wait_and_claim(wait)
            except RedisFull:
                # Redis refuses BLMOVE at maxmemory (the queue is empty, something
                # else filled it): poll with the claim script, which may run there.
                time.sleep(wait)
                items = claims.claim(batch)
        return items

    def drained(self) -> bool:
        """True when no stream is open and no item is queued or in flight."""
        k = self.keys
        args = [k.prefix, f"{time.time():.3f}"]
        return bool(self._retry(self._scripts.drained, [k.runs, k.open, k.queue, k.consumers], args))

    def ack(self, item: Item) -> None:
        """Buffer the acknowledgement; it is sent with the next claim (or within 0.5 s)."""
        now = time.monotonic()
        envelope, index = self._held.take(item.id, self.consumer)
        envelope.states[index] = ACKED
        envelope.open -= 1
        acks = self._acks
        if not envelope.open:  # (Held.settle's work, inline: this runs per item)
            self._held.drop(envelope)
            acks.envelope_settled(envelope)
        acks.add(item.id, now)
        self.acked += 1
        took, self._last_settled = now - self._last_settled, now
        if took >= ACK_AT_ONCE_AFTER or now - acks.since > ACK_FLUSH_SECONDS:
            self.flush()

    def ack_many(self, items: Sequence[Item]) -> None:
        """Buffer the acknowledgements of a batch's handled items (``AckMode.BATCH``).

        :meth:`ack` once per batch (of 100: 2.25-2.36 -> 2.01-2.20 us of consumer CPU per
        item, in-process); sent at once if the items took ``ACK_AT_ONCE_AFTER`` each.
        """
        if not items:
            return
        now = time.monotonic()
        ids = [item.id for item in items]
        acks = self._acks
        acks.settled += self._held.settle(ids, self.consumer)
        acks.add_many(ids, now)
        self.acked += len(ids)
        took, self._last_settled = now - self._last_settled, now
        if took >= ACK_AT_ONCE_AFTER * len(ids) or now - acks.since > ACK_FLUSH_SECONDS:
            self.flush()

    def nack(self, item: Item, reason: str) -> None:
        """Deliver again later, or dead-letter once ``max_deliveries`` is reached."""
        envelope, index = self._held.take(item.id, self.consumer)
        most = self.settings.max_deliveries
        if item.deliveries >= most:
            why = f"{reason} (delivery {item.deliveries} of max {most})"
            self._dead_letter(envelope, index, why, item.id, "", deliveries=item.deliveries)
            return
        k, held, payload = self.keys, envelope.element, envelope.payloads[index]
        rest = self._take_out(envelope, index)
        keys = [k.processing(self.consumer), k.queue, k.deliveries, k.errors, k.stats]
        self._retry(self._scripts.retry, keys, [k.prefix, held, rest, payload, item.id, reason])

    def release(self, items: Sequence[Item]) -> None:
        """Hand back unhandled items to the head of the queue (no delivery counted).

        Acknowledgements go first, so what stays held of an envelope is only its
        items still unsettled.
        """
        if not items or self.lease.lost:  # lost: a reaper has handed them back already
            return
        self.flush()
        leaving: dict[Envelope, list[int]] = {}
        for item in items:
            envelope, index = self._held.take(item.id, self.consumer)
            leaving.setdefault(envelope, []).append(index)
        args: list[bytes | int] = []
        for envelope, indexes in leaving.items():
            held, back = envelope.element, pack([envelope.payloads[i] for i in sorted(indexes)])
            rest = envelope.remove(indexes)
            if not envelope.open:  # what is left is acknowledged (flushed above): it goes
                self._held.drop(envelope)
                rest = b""
            args += [held, rest, back, len(indexes)]
        k = self.keys
        self._retry(self._scripts.release, [k.processing(self.consumer), k.queue, k.queue_extra], args)

    def _take_out(self, envelope: Envelope, index: int) -> bytes:
        """Take one item out of its envelope (nack, dead letter); return what stays of it.

        An envelope left with acknowledged items only is dropped by the flush that
        records those acknowledgements, never before.
        """
        rest = envelope.remove([index])
        if not envelope.open:
            self._held.drop(envelope)
            if rest:
                self._acks.envelope_settled(envelope)
        return rest

    def flush(self) -> None:
        """Send buffered acknowledgements now (a claim of nothing that carries them)."""
        self._claims.flush()

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
                self.flush()  # a prefetched batch lands first: it is released too
                self._claims.ready = []
                self.release([Item(i, "", 0.0) for i in self._held.ids()])
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
        k, me = self.keys, self.consumer
        self._scripts.leave([k.processing(me), k.consumers, k.heartbeat(me), k.call(me)], [me])

    # What claims bring -------------------------------------------------------------
    def _decode(self, envelopes: list[Envelope], counted: bool) -> list[Item]:
        items: list[Item] = []
        cap, held = self.settings.max_payload_bytes, self._held
        for envelope in envelopes:
            batch = decode_batch(envelope.payloads, cap) if len(envelope.payloads) > 1 else None
            if batch is not None:  # all plain and valid: the batch's fast path
                for index, item in enumerate(batch):
                    held.place(item.id, envelope, index)
                items += batch
                continue
            for index, raw in enumerate(envelope.payloads):
                try:
                    item = decode(raw, cap)
                except BadPayload as exc:
                    self._dead_letter(envelope, index, str(exc), "", "malformed")
                    continue
                held.place(item.id, envelope, index)
                items.append(item)
        if counted and items:  # some items failed before: fetch their counts
            failed = self._retry(self.link.client.hmget, self.keys.deliveries, [i.id for i in items])
            items = [
                Item(i.id, i.body, i.produced_at, i.deliveries + int(f)) if f else i
                for i, f in zip(items, failed)
            ]
        return items

    def _dead_letter(
        self, envelope: Envelope, index: int, reason: str, item_id: str, kind: str, **extra: Any
    ) -> None:
        k, held, payload = self.keys, envelope.element, envelope.payloads[index]
        rest = self._take_out(envelope, index)
        record = dead_record(payload, reason, self.consumer, time.time(), id=item_id or None, **extra)
        keys = [k.processing(self.consumer), k.dead, k.stats, k.deliveries, k.errors]
        self._retry(self._scripts.dead, keys, [k.prefix, held, rest, record, item_id, kind])
        self._retry(self._retain)
        self.notify(f"{os.getpid()} dead-lettered {item_id or 'a payload'}: {reason}")
