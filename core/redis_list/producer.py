"""The producer role of the Redis list: :class:`ListProducer` (open a run, push batches, close it).

A producer *run* (id ``<run>``, items ``<run>:<n>``) is registered (``run:<run>``
hash, the ``open`` and ``runs`` sets), then pushed in batches by one Lua call
each (``push.lua``) on the link's Wire, a batch as one list element (an
envelope: :mod:`pcq.core.redis_list.envelope`): the push, the run's ``produced`` count
and a batch sequence number change together, so a push retried after a lost
reply is not applied twice. Several pushes travel at once (up to ``WINDOW``,
:mod:`pcq.core.redis_list.pushes`): :meth:`ListProducer.put` returns once
its batch is *sent*, and a batch is *confirmed* once its reply is read;
:meth:`ListProducer.flush` waits for every confirmation, and a ``done``
callback given to ``put`` runs at its batch's. The call pushes nothing while
the queue is above the high-water mark (items, or bytes of the queue list as
``MEMORY USAGE`` estimates them), nor after a push of the window that was
refused: backpressure, the refused batches are sent again, in order, once
there is room. A full Redis (``maxmemory`` under ``noeviction``) is
backpressure as well: Redis refuses the whole push before it runs
(``push.lua`` has no ``allow-oom`` flag), and the producer retries it until
``full_timeout``, with a line every 10 s. :meth:`ListProducer.end_stream`
flushes, then closes the run. While the producer lives, a heartbeat thread
keeps the run's liveness key fresh, so ``consume --drain`` stops waiting for
a run whose producer was killed before closing it.
"""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence

import redis

from pcq.core.redis_common.connection import stderr_log
from pcq.core.redis_common.payload import encode_bodies, encode_many, new_run_id
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.envelope import pack
from pcq.core.redis_list.heartbeat import Heartbeat
from pcq.core.redis_list.link import ListLink, Notify
from pcq.core.redis_list.pushes import Backpressure, Pushes
from pcq.core.transport import Item

__all__ = ["PRODUCER_TTL_FACTOR", "BodyRun", "ListProducer", "ListRunProducer"]

# A producer's run stays open for `consume --drain` while its liveness key lives:
# this many heartbeat TTLs (30 s by default), longer than a Redis restart takes.
PRODUCER_TTL_FACTOR = 6


class ListProducer:
    """The producer role (a :class:`pcq.core.transport.Producer` of ``Sequence[Item]``).

    Args:
        client: From :func:`pcq.core.redis_common.connection.connect`; the caller closes it.
        settings: Queue name, batch, high-water mark, heartbeat TTL, retries.
        run: This producer's run id (default: a fresh one); registered by
            :meth:`open_run` or the first :meth:`put`.
        log: Sink for retry lines (stderr).
        notify: Sink for events worth a console line (backpressure waits).
        wait: Sleep used between retries and backpressure polls.
        put_timeout: Longest wait for room below the high-water mark (in ``put``,
            ``flush`` or ``end_stream``; None: for ever).
    """

    def __init__(
        self,
        client: redis.Redis,
        settings: RedisSettings,
        *,
        run: str | None = None,
        log: Notify = stderr_log,
        notify: Notify | None = None,
        wait: Callable[[float], object] = time.sleep,
        put_timeout: float | None = 300.0,
    ) -> None:
        self.link = ListLink(client, settings, log=log, wait=wait)
        self.settings = settings
        self.keys = self.link.keys
        self.run = run or new_run_id()
        self.notify = notify or log
        self.put_timeout = put_timeout
        self._opened = False
        self._seq = 0  # batch number: push.lua skips one it has applied
        self.backpressure = Backpressure(settings, self.notify, wait, put_timeout)
        self._pushes = Pushes(self.link, self.run, self.backpressure)
        self._alive: Heartbeat | None = None  # the run's liveness, from open_run to end_stream

    def open_run(self) -> str:
        """Register this producer's run (stream open) and keep it alive; return the run id."""
        run, k, client = self.run, self.keys, self.link.client

        def register() -> None:
            # The liveness key is set in the same MULTI as the open set: a run
            # seen open without it is taken for abandoned by `consume --drain`
            # (drained.lua), which would then stop before the first push.
            with client.pipeline(transaction=True) as pipe:
                pipe.hsetnx(k.run(run), "started_at", repr(time.time()))
                pipe.hset(k.run(run), mapping={"host": socket.gethostname(), "pid": os.getpid()})
                pipe.hsetnx(k.run(run), "produced", 0)
                pipe.set(k.run_alive(run), os.getpid(), px=self._alive_ms())
                pipe.sadd(k.open, run)
                pipe.zadd(k.runs, {run: time.time()}, nx=True)
                pipe.execute()

        self.backpressure.while_full(lambda: self.link.retry.call(register))
        self._opened = True
        if self._alive is None:
            self._alive = Heartbeat(self.settings.heartbeat_every, self._beat)
            self._alive.start()
        return run

    def _beat(self) -> bool:
        # While this key lives the run counts as open for `consume --drain`; a
        # producer killed without closing its stream lets it expire.
        # beat.lua (allow-oom): a producer waiting on a full Redis is still alive.
        return bool(self.link.scripts.beat([self.keys.run_alive(self.run)],
                                           [os.getpid(), self._alive_ms()]))

    def _alive_ms(self) -> int:
        return int(self.settings.heartbeat_ttl * 1000) * PRODUCER_TTL_FACTOR

    def put(self, items: Sequence[Item], done: Callable[[], object] | None = None) -> None:
        """Send ``items`` as one batch; ``done()`` once Redis confirmed it.

        Returns once the batch is *sent*: up to ``WINDOW`` batches
        (:mod:`pcq.core.redis_list.pushes`) travel unconfirmed, and a batch
        may still be refused and sent again (in order, never twice) until
        :meth:`flush` (or :meth:`end_stream`) returns. While ``WINDOW`` are
        unconfirmed, ``put`` first waits for the oldest confirmation --
        through backpressure: the queue at its high-water mark, or a full Redis
        (``maxmemory``: refused whole, retried until ``settings.full_timeout``).
        An empty batch sends nothing (and ``done`` is not called).

        Raises:
            PcqError: the queue stayed above its high-water mark ``put_timeout`` s.
            RedisFull: Redis stayed full ``full_timeout`` s (nothing of the refused batches pushed).
        """
        if not items:
            return
        self.push(encode_many(items, self.run, self.settings.max_payload_bytes), done)

    def push(self, raws: list[bytes], done: Callable[[], object] | None = None) -> None:
        """Send payloads already encoded for this run as one batch (see :meth:`put`)."""
        if not raws:
            return
        if not self._opened:
            self.open_run()
        self._seq += 1
        self._pushes.send(self._seq, len(raws), pack(raws), done)

    def flush(self) -> None:
        """Wait until every batch sent is confirmed (their ``done`` called); raises as :meth:`put`."""
        self._pushes.flush()

    @property
    def unconfirmed(self) -> int:
        """Batches sent whose confirmation has not been read yet (at most ``WINDOW``)."""
        return self._pushes.unconfirmed

    def end_stream(self) -> None:
        """Wait until every batch is confirmed, then close this producer's stream.

        (``consume --drain`` waits for the close.)
        """
        if not self._opened:
            return
        self.flush()
        run, k = self.run, self.keys

        def close() -> None:  # close.lua (allow-oom): also on a full Redis
            self.link.scripts.close([k.run(run), k.open, k.run_alive(run)], [run, repr(time.time())])

        self._stop_beat()
        self.link.retry.call(close)

    def close(self) -> None:
        """Stop the run's liveness thread (if still going) and give the Wire's connection back.

        Does not end the stream: a producer that stops without :meth:`end_stream`
        leaves its run open until the liveness key expires. Does not wait for
        confirmations either: batches still unconfirmed are dropped with the
        connection (their replies unread; each may or may not be in Redis).
        """
        self._stop_beat()
        self._pushes.drop()  # never a connection with unread replies back in the pool
        self.link.close()

    def _stop_beat(self) -> None:
        if self._alive is not None:
            self._alive.stop()
            self._alive = None


class BodyRun:
    """Items ``<run>:<first>`` .. of one run, made at one instant: the bodies, a stamp.

    The batch type of :class:`ListRunProducer`, which encodes it without
    building an :class:`Item` per item (:func:`~pcq.core.redis_common.payload.encode_bodies`).
    Iterating it still gives its items, built on demand (the ledger reads
    their ids).
    """

    __slots__ = ("bodies", "first", "produced_at", "run")

    def __init__(self, run: str, first: int, bodies: list[str], produced_at: float) -> None:
        self.run, self.first, self.bodies, self.produced_at = run, first, bodies, produced_at

    def __len__(self) -> int:
        return len(self.bodies)

    def __iter__(self) -> Iterator[Item]:
        run, at = self.run, self.produced_at
        return (Item(f"{run}:{n}", body, at) for n, body in enumerate(self.bodies, self.first))


class ListRunProducer:
    """The producer role (a :class:`pcq.core.transport.Producer` of :class:`BodyRun`).

    ``pcq produce``'s fast path: a :class:`ListProducer` fed bodies instead of
    items (~0.3 us of CPU an item to encode against ~1.2; docs/benchmarks.md,
    "Redis list"). Every batch must be of the inner producer's run.
    """

    def __init__(self, inner: ListProducer) -> None:
        self.inner = inner

    def put(self, batch: BodyRun, done: Callable[[], object] | None = None) -> None:
        """Encode and send ``batch`` as one envelope; ``done()`` once confirmed (:meth:`ListProducer.put`)."""
        inner = self.inner
        if batch.run != inner.run:
            raise ValueError(f"batch of run {batch.run!r} given to run {inner.run!r}'s producer")
        cap = inner.settings.max_payload_bytes
        inner.push(encode_bodies(batch.run, batch.first, batch.bodies, batch.produced_at, cap), done)

    def flush(self) -> None:
        """Wait until every batch is confirmed (:meth:`ListProducer.flush`)."""
        self.inner.flush()

    def end_stream(self) -> None:
        """Wait for every confirmation, close the run's stream (:meth:`ListProducer.end_stream`)."""
        self.inner.end_stream()
